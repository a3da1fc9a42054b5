"""Typed errors and the problem report every converter fills in."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field


class ConversionError(Exception):
    """Input that cannot be converted at all (no dataset found, bad arguments)."""


class AnnotationError(ConversionError):
    """One annotation file that cannot be read; ``file`` names it."""

    def __init__(self, file: str, problem: str, detail: str) -> None:
        super().__init__(f"{file}: {problem}: {detail}")
        self.file = file
        self.problem = problem
        self.detail = detail


# Severity of each problem kind. "error": something was dropped or skipped (fails
# --strict); "warning": kept but changed; "info": kept as it was, worth knowing.
PROBLEM_SEVERITY: dict[str, str] = {
    "malformed_xml": "error",
    "empty_xml": "error",
    "forbidden_dtd": "error",
    "missing_image": "error",
    "unreadable_image": "error",
    "corrupt_image": "error",
    "ambiguous_image": "error",
    "duplicate_annotation": "error",
    "unlabeled_image": "error",
    "unknown_class": "error",
    "missing_field": "error",
    "invalid_coordinate": "error",
    "degenerate_box": "error",
    "box_outside_image": "error",
    "duplicate_box": "error",
    "box_clipped": "warning",
    "swapped_corners": "warning",
    "several_bndboxes": "warning",
    "size_mismatch": "warning",
    "exif_turned_boxes": "warning",
    "xml_encoding": "warning",
    "unsafe_path": "warning",
    "name_collision": "warning",
    "case_mismatch": "warning",
    "class_alias": "info",
    "float_coordinates": "info",
    "missing_size": "info",
    "exif_orientation": "info",
    "high_bit_depth": "info",
    "filename_mismatch": "info",
    "duplicate_image": "info",
    "identical_images": "info",
    "identical_images_across_splits": "warning",
    "overlapping_images_across_splits": "warning",
    "unlabeled_as_background": "info",
    "not_dataset_file": "info",
}


@dataclass(frozen=True)
class Problem:
    """One thing found wrong in the input, and what was done about it.

    Attributes:
        file: The file, relative to the source root.
        problem: A key of ``PROBLEM_SEVERITY``.
        detail: Human-readable specifics (values found, values used).
        action: What the converter did (``dropped box``, ``skipped image``, ...).
        object_index: 0-based index of the ``<object>`` in the file, if about one box.
        boxes_dropped: How many input boxes this problem removed from the output.
    """

    file: str
    problem: str
    detail: str
    action: str
    object_index: int | None = None
    boxes_dropped: int = 0

    @property
    def severity(self) -> str:
        return PROBLEM_SEVERITY[self.problem]

    def to_dict(self) -> dict:
        return {**asdict(self), "severity": self.severity}


@dataclass
class Report:
    """Every problem found while reading a dataset, plus the box accounting."""

    problems: list[Problem] = field(default_factory=list)
    boxes_in_input: int = 0

    def add(self, *args: str | int | None, **kwargs: str | int | None) -> None:
        self.problems.append(Problem(*args, **kwargs))

    @property
    def boxes_dropped(self) -> int:
        return sum(p.boxes_dropped for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.problem for p in self.problems).items()))

    def to_dict(self, boxes_written: int | None = None) -> dict:
        summary = {
            "boxes_in_input": self.boxes_in_input,
            "boxes_dropped": self.boxes_dropped,
            "problems_by_kind": self.counts(),
            "errors": len(self.errors),
        }
        if boxes_written is not None:
            summary["boxes_written"] = boxes_written
            summary["accounted"] = boxes_written + self.boxes_dropped == self.boxes_in_input
        return {"summary": summary, "problems": [p.to_dict() for p in self.problems]}
