"""One annotator of a team review, for the tests: tags labels through the same calls the
FiftyOne App makes when a person tags them (``fiftyone/server/routes/tag.py``:
``view.select_labels(labels).tag_labels(tags, label_fields)``), one label at a time.

    python -m tests.annotator NAME FIELD TAG SAMPLES [--go FILE] [--pause S] [--done FILE]

SAMPLES is ``even``, ``odd`` or ``all`` (by position in the dataset). Prints one line
per label tagged, so a test can kill it mid-work.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import detection  # noqa: F401  (offline switches)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("field", choices=("ground_truth", "predictions"))
    parser.add_argument("tag")
    parser.add_argument("samples", choices=("even", "odd", "all"))
    parser.add_argument("--go", type=Path, help="start once this file exists")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between labels")
    args = parser.parse_args()

    from detection.review import load_fiftyone

    dataset = load_fiftyone().load_dataset(args.name)
    rows = list(zip(*dataset.values(["id", f"{args.field}.detections.id"])))
    if args.samples != "all":
        rows = rows[0 if args.samples == "even" else 1 :: 2]
    print("ready", flush=True)
    while args.go and not args.go.exists():
        time.sleep(0.05)
    for sample_id, label_ids in rows:
        for label_id in label_ids or []:
            selected = [{"sample_id": sample_id, "field": args.field, "label_id": label_id}]
            dataset.select_labels(selected).tag_labels([args.tag], label_fields=[args.field])
            print(f"tagged {label_id}", flush=True)
            time.sleep(args.pause)
    print("done", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
