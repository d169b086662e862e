"""Sim-to-real check on real face photos that ship in installed packages (DESIGN §6).

Photos: matplotlib's ``grace_hopper.jpg`` (the only face photo among the sample data of the
packages this project installs). Reference landmarks: the offline MediaPipe teacher of
``facealign label`` (in its own venv; the command says how to install it when missing), which is
itself ~4-6 % NME from exact ground truth on synthetic faces. Ours: the model on the RGB frame
(events empty: a still photo has none), starting from the teacher's box and re-cropping on its
own landmarks ``--refine`` times, as the tracker does; also at a few scales of the photo.

    python -m training.bench.real_faces --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import cv2
import numpy as np


def photos() -> dict[str, np.ndarray]:
    """Name -> RGB uint8 image of the face photos found in installed packages."""
    out = {}
    try:
        import matplotlib.cbook as cbook

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        img = cv2.imread(str(path))
        if img is not None:
            out["grace_hopper"] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    except (ImportError, OSError, ValueError):
        pass
    return out


def evaluate(model_path: str, scales: Sequence[float], refine: int) -> dict:
    """NME of our landmarks against the teacher's on each photo and scale."""
    from facealign_ros.events import EVENT_DTYPE
    from facealign_ros.face.crop import box_from_landmarks
    from facealign_ros.pipeline.config import default_model_path
    from facealign_ros.pipeline.model import load_model
    from training.label.scoring import label_frame
    from training.label.teacher import TeacherProcess, resolve_python

    model = load_model(model_path or default_model_path(), "cpu", 1)
    rows = []
    with TeacherProcess(resolve_python()) as teacher:
        for name, full in photos().items():
            for s in scales:
                img = cv2.resize(full, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                ref = label_frame(teacher, img)
                if ref.reason:
                    rows.append({"photo": name, "scale": s, "teacher": ref.reason})
                    continue
                iod = float(np.linalg.norm(ref.points[36] - ref.points[45]))
                size = (img.shape[1], img.shape[0])
                box = box_from_landmarks(ref.points, None, model.spec.box_scale)
                for _ in range(refine + 1):
                    out = model.align([box], np.zeros(0, EVENT_DTYPE), img, size, 10**9)
                    box = box_from_landmarks(out.points[0], None, model.spec.box_scale)
                pts, conf = model.to_rep155(out.points[0], out.confidence[0])
                err = np.linalg.norm(pts - ref.points, axis=1) / iod
                rows.append({
                    "photo": name, "scale": s, "size": list(size),
                    "iod_px": round(iod, 1), "teacher_score": round(ref.score, 3),
                    "nme": round(float(err.mean()), 4),
                    "nme_without_jaw": round(float(err[17:].mean()), 4),
                    "mean_confidence": round(float(conf.mean()), 3),
                })  # fmt: skip
    nmes = [r["nme"] for r in rows if "nme" in r]
    return {"rows": rows, "mean_nme": round(float(np.mean(nmes)), 4) if nmes else None}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="", help="checkpoint (default: the shipped weights)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.6, 0.35])
    p.add_argument("--refine", type=int, default=2, help="re-crops on our own landmarks")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if not photos():
        sys.stderr.write("no face photo found (matplotlib's sample data is missing)\n")
        return 2
    from training.label.teacher import TeacherMissingError

    try:
        res = evaluate(a.model, a.scales, a.refine)
    except TeacherMissingError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if a.json:
        sys.stdout.write(json.dumps({"model": a.model or "shipped", **res}) + "\n")
    else:
        for r in res["rows"]:
            sys.stdout.write(json.dumps(r) + "\n")
        sys.stdout.write(f"mean NME vs teacher: {res['mean_nme']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
