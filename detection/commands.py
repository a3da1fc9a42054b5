"""Subcommands of ``defects`` that train, evaluate, predict and export detectors."""

from __future__ import annotations

import argparse


def add_detection_commands(commands: argparse._SubParsersAction) -> None:
    """Registers the detector subcommands (their heavy imports happen when they run)."""
