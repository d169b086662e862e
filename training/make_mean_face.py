"""Write ``facealign_ros/face/data/mean_face_68.json``: the 3D mean face used for head pose.

Run ``python -m training.make_mean_face``. The mean of the 68 iBUG landmarks of the two head
meshes in menpo3d 0.8.6's source distribution (``james``, ``template``), each in the synthetic
engine's head frame (metres, x from the subject's right eye to the left eye, y down, z towards
the back of the head, outer eye corners 95 mm apart, origin 9 cm behind the eyes), so head
poses from PnP and the engine's ground truth share one frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.synth.assets import load_head

OUT = Path(__file__).resolve().parents[1] / "facealign_ros" / "face" / "data" / "mean_face_68.json"


def mean_face() -> np.ndarray:
    """``(68, 3)`` mean landmark positions in metres (head frame)."""
    return np.mean([load_head(n).landmarks.astype(np.float64) for n in ("james", "template")], 0)


def main() -> None:
    """Compute the mean face and write it as JSON."""
    pts = mean_face()
    doc = {
        "description": "3D mean face, 68 iBUG landmarks (metres, head frame)",
        "frame": "x: subject's right eye -> left eye, y: down, z: towards the back of the head; "
        "origin 9 cm behind the eyes; outer eye corners 95 mm apart",
        "source": "mean of menpo3d 0.8.6 james.ljson and template.ljson landmarks "
        "(python -m training.make_mean_face)",
        "points": np.round(pts, 6).tolist(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
