"""Training, evaluation, prediction and review of steel defect detectors.

Importing the package sets the offline switches first (see :mod:`detection.offline`).
"""

from detection import offline as _offline  # noqa: F401  (side effect: offline switches)
