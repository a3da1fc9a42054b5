"""Writes ``reference.json``: tidecv's own TIDE figures for each case in this folder.

tidecv is not a dependency of the project (it requires ``opencv-python``, and two OpenCVs
in one environment overwrite each other), so this runs in a throwaway environment:

    make tide-reference        # a temporary venv with tidecv==1.0.1, then this script

Without tidecv installed, ``--fixtures`` (re)writes the generated cases only: a synthetic
set with every error type, and a slice of real NEU-DET predictions (needs the converted
NEU-DET and a results file). tidecv reads ground-truth boxes through a ``segmentation``
field, so each box is given one (its rectangle as a polygon).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {
    "edge-cases": (HERE.parent / "parity_gt.json", HERE.parent / "parity_dt.json"),
    "every-error-type": (HERE / "errors_gt.json", HERE / "errors_dt.json"),
    "neu-det-slice": (HERE / "neu_gt.json", HERE / "neu_dt.json"),
}
SHORT = {
    "ClassError": "Cls",
    "BoxError": "Loc",
    "OtherError": "Both",
    "DuplicateError": "Dupe",
    "BackgroundError": "Bkg",
    "MissedError": "Miss",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_error_fixtures() -> None:
    """A synthetic set where every TIDE error type occurs many times (seeded)."""
    import random

    rng = random.Random(7)
    images, annotations, results = [], [], []

    def shifted(box: list[float], dx: float, dy: float, scale: float = 1.0) -> list[float]:
        x, y, w, h = box
        return [round(x + dx, 2), round(y + dy, 2), round(w * scale, 2), round(h * scale, 2)]

    for image_id in range(1, 61):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 200, "height": 200})
        for _ in range(rng.randint(0, 3)):
            w, h = rng.uniform(20, 80), rng.uniform(20, 80)
            box = [round(rng.uniform(0, 200 - w), 2), round(rng.uniform(0, 200 - h), 2)]
            box += [round(w, 2), round(h, 2)]
            category = rng.randint(1, 3)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": box,
                    "area": round(box[2] * box[3], 4),
                    "iscrowd": 0,
                }
            )
            kind = rng.choice(["tp", "tp", "cls", "loc", "both", "dupe", "miss", "tp+loc"])
            score = round(rng.uniform(0.05, 0.99), 4)
            other = category % 3 + 1
            made = {
                "tp": [(category, shifted(box, 2, -1))],
                "cls": [(other, shifted(box, 1, 1))],
                "loc": [(category, shifted(box, w * 0.45, h * 0.4))],
                "both": [(other, shifted(box, w * 0.45, h * 0.4))],
                "dupe": [(category, shifted(box, 1, 0)), (category, shifted(box, -2, 2))],
                "miss": [],
                "tp+loc": [(category, shifted(box, 0, 1)), (category, shifted(box, w * 0.5, 0))],
            }[kind]
            for rank, (cat, bbox) in enumerate(made):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": cat,
                        "bbox": bbox,
                        "score": round(score * (0.9**rank), 4),
                    }
                )
        if rng.random() < 0.4:  # background: a box far from everything
            results.append(
                {
                    "image_id": image_id,
                    "category_id": rng.randint(1, 3),
                    "bbox": [150.0, 150.0, 8.0, 8.0],
                    "score": round(rng.uniform(0.05, 0.9), 4),
                }
            )
    categories = [{"id": i, "name": f"class-{i}"} for i in (1, 2, 3)]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    (HERE / "errors_gt.json").write_text(json.dumps(gt) + "\n")
    (HERE / "errors_dt.json").write_text(json.dumps(results) + "\n")


def make_neu_slice(gt_path: Path, results_path: Path, images: int = 60) -> None:
    """The first ``images`` val images of the converted NEU-DET with a detector's results
    above confidence 0.05 (a real error mix, small enough to commit)."""
    gt = json.loads(gt_path.read_text())
    kept = {im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])[:images]}
    gt["images"] = [im for im in gt["images"] if im["id"] in kept]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in kept]
    results = [
        r
        for r in json.loads(results_path.read_text())
        if r["image_id"] in kept and r["score"] >= 0.05
    ]
    (HERE / "neu_gt.json").write_text(json.dumps(gt) + "\n")
    (HERE / "neu_dt.json").write_text(json.dumps(results) + "\n")


def reference() -> dict:
    from tidecv import TIDE, datasets

    found = {}
    for name, (gt_path, dt_path) in CASES.items():
        gt = json.loads(gt_path.read_text())
        for annotation in gt["annotations"]:
            x, y, w, h = annotation["bbox"]
            annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        with tempfile.TemporaryDirectory() as tmp:
            gt_file = Path(tmp) / "gt.json"
            gt_file.write_text(json.dumps(gt))
            tide = TIDE()
            tide.evaluate(
                datasets.COCO(str(gt_file)),
                datasets.COCOResult(str(dt_path)),
                mode=TIDE.BOX,
                name=name,
            )
        errors = tide.get_all_errors()
        run = tide.runs[name]
        found[name] = {
            "inputs_sha256": {"gt": sha256(gt_path), "results": sha256(dt_path)},
            "ap50": run.ap,
            "main": errors["main"][name],
            "special": errors["special"][name],
            "counts": {SHORT[t.__name__]: n for t, n in run.count_errors().items()},
        }
    return found


if __name__ == "__main__":
    if "--fixtures" in sys.argv:
        make_error_fixtures()
        if len(sys.argv) == 4:  # --fixtures NEU_GT NEU_RESULTS
            make_neu_slice(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        import tidecv

        result = {"tidecv": tidecv.__version__ if hasattr(tidecv, "__version__") else "1.0.1"}
        result["cases"] = reference()
        (HERE / "reference.json").write_text(json.dumps(result, indent=2) + "\n")
