"""Standalone teacher worker: MediaPipe face mesh over a tiny binary protocol on stdin/stdout.

Run by :class:`training.label.teacher.TeacherProcess` with the teacher's own Python (a separate
virtual environment with ``mediapipe==0.10.21`` and ``numpy<2``). This file imports only the
standard library, numpy and mediapipe, never anything of this project, so it runs in that
environment unchanged.

Protocol (all integers little-endian; one request is answered before the next is read):

* on start, after the models are loaded: ``HELLO`` = ``b"FAT1"``, ``uint32 n``, then ``n`` bytes
  of UTF-8 JSON (versions of mediapipe and numpy);
* request: ``b"FAQ1"``, ``uint32 height``, ``uint32 width``, then ``height * width * 3`` bytes of
  RGB (uint8, row-major); end of input ends the worker;
* reply: ``b"FAR1"``, ``uint32 status``, ``float32 score``, ``uint32 n``, then ``n`` payload
  bytes. ``status`` 0: a face; the payload is ``(478, 3)`` float32 mesh points (``x``, ``y``
  normalised by the image width and height with 0 at the top-left image corner, ``z`` in units
  of the width), ``score`` the face detector's score for that face (0 when the detector missed
  it). ``status`` 1: no face (no payload). ``status`` 2: the worker could not process the
  request; the payload is a UTF-8 message, and the worker keeps serving.

stdout carries only the protocol: file descriptor 1 is redirected to stderr before mediapipe
loads, so native log lines cannot corrupt it.
"""

from __future__ import annotations

import json
import os
import struct
import sys

import numpy as np

HELLO = b"FAT1"
REQUEST = struct.Struct("<4sII")
REQUEST_MAGIC = b"FAQ1"
REPLY = struct.Struct("<4sIfI")
REPLY_MAGIC = b"FAR1"
FACE, NO_FACE, FAILED = 0, 1, 2
N_MESH = 478
MAX_SIDE = 8192


def read_exact(stream, n: int) -> bytes | None:
    """Read exactly ``n`` bytes from a binary stream; None at a clean end of input."""
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            if got:
                raise EOFError(f"input ended inside a message ({got} of {n} bytes)")
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def write_reply(out, status: int, score: float = 0.0, payload: bytes = b"") -> None:
    """Write one reply and flush."""
    out.write(REPLY.pack(REPLY_MAGIC, status, score, len(payload)) + payload)
    out.flush()


class Teacher:
    """MediaPipe face mesh (478 points, iris refined) plus a face detector for the score.

    The detector is the short-range model (faces within ~2 m), the one the mesh itself uses.
    """

    def __init__(self) -> None:
        """Load the models bundled with mediapipe (nothing is downloaded)."""
        import mediapipe as mp

        self.version = mp.__version__
        self.mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=0.3,
        )
        self.detector = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.05
        )

    def infer(self, rgb: np.ndarray) -> tuple[int, float, bytes]:
        """Run on one ``(H, W, 3)`` uint8 RGB image; returns ``(status, score, payload)``."""
        found = self.mesh.process(rgb).multi_face_landmarks
        if not found:
            return NO_FACE, 0.0, b""
        pts = np.array([(p.x, p.y, p.z) for p in found[0].landmark], dtype=np.float32)
        if pts.shape != (N_MESH, 3):
            return FAILED, 0.0, f"mesh has {pts.shape[0]} points, expected {N_MESH}".encode()
        return FACE, self._score(rgb, pts), pts.astype("<f4").tobytes()

    def _score(self, rgb: np.ndarray, pts: np.ndarray) -> float:
        """Best detector score among detections whose box holds the mesh centre (0 if none)."""
        detections = self.detector.process(rgb).detections or []
        cx, cy = (float(v) for v in pts[:, :2].mean(axis=0))
        best = 0.0
        for det in detections:
            box = det.location_data.relative_bounding_box
            inside = box.xmin <= cx <= box.xmin + box.width
            inside = inside and box.ymin <= cy <= box.ymin + box.height
            if inside and det.score:
                best = max(best, float(det.score[0]))
        return best


def serve(stdin, out, teacher) -> None:
    """Answer requests from ``stdin`` on ``out`` until the input ends."""
    while True:
        head = read_exact(stdin, REQUEST.size)
        if head is None:
            return
        magic, height, width = REQUEST.unpack(head)
        if magic != REQUEST_MAGIC or not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
            write_reply(out, FAILED, payload=b"bad request header; stopping")
            return
        data = read_exact(stdin, height * width * 3)
        if data is None:
            raise EOFError("input ended inside an image")
        rgb = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
        try:
            status, score, payload = teacher.infer(rgb)
        except Exception as err:  # keep serving: one bad image is not a dead teacher
            status, score, payload = FAILED, 0.0, f"{type(err).__name__}: {err}".encode()
        write_reply(out, status, score, payload)


def main() -> int:
    """Entry point: redirect fd 1, load the models, say hello, serve."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    teacher = Teacher()
    info = json.dumps({"mediapipe": teacher.version, "numpy": np.__version__}).encode()
    out.write(HELLO + struct.pack("<I", len(info)) + info)
    out.flush()
    serve(sys.stdin.buffer, out, teacher)
    return 0


if __name__ == "__main__":
    sys.exit(main())
