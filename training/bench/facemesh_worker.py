"""Standalone timing worker: MediaPipe face mesh per frame, timed inside the teacher's process.

Run by :mod:`training.bench.facemesh` (through :class:`MeshWorker`, the client end, also here)
with the teacher's Python: the separate environment with ``mediapipe==0.10.21`` and ``numpy<2``,
see :mod:`training.label.teacher`. Like ``training/label/worker.py`` this file imports only the
standard library, numpy and mediapipe, never anything of this project, so it runs in that
environment unchanged; timing inside the worker keeps the pipe transfer out of the figures.

Protocol: one JSON object per line on stdin and stdout (UTF-8); one request is answered before the
next is read; end of input ends the worker.

* on start, after mediapipe is imported: ``{"mediapipe": ..., "numpy": ..., "python": ...}``;
* ``{"cmd": "frames", "n": N, "height": H, "width": W}`` followed by ``N * H * W * 3`` bytes of
  RGB (uint8, row-major): store the frames; answer ``{"ok": true, "n": N}``;
* ``{"cmd": "run", "static": bool, "prime": P}``: one round over the stored frames with a face
  mesh (``refine_landmarks=True``, ``max_num_faces=1``) in ``static_image_mode`` ``static``,
  created on first use and kept, so the video mode carries its track from round to round. The
  first ``P`` frames are processed untimed (they let the video mode reacquire the face after the
  jump back from the last frame); answer ``{"ms": [...], "faces": [...], "cpu_s": ..., "wall_s":
  ..., "threads": ...}``: per-frame milliseconds of ``FaceMesh.process`` and whether it found a
  face, for the timed frames, the process CPU seconds and wall seconds of the timed frames, and
  the process's thread count;
* a request the worker cannot serve: ``{"error": "..."}`` (the worker keeps serving).

stdout carries only the protocol: file descriptor 1 is redirected to stderr before mediapipe loads.
"""

from __future__ import annotations

import json
import os
import platform
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MAX_BYTES = 1 << 31
WORKER = Path(__file__)
PRIME = 1
"""Untimed frames at the start of every round (tracks start or reacquire the face there)."""


def read_exact(stream, n: int) -> bytes:
    """Read exactly ``n`` bytes from a binary stream (EOFError if it ends first)."""
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            raise EOFError(f"input ended inside the frames ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def thread_count() -> int:
    """Threads of this process (Linux ``/proc``; 0 where unknown)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MeshTimer:
    """The stored frames and one face mesh per ``static_image_mode``."""

    def __init__(self, mp) -> None:
        self.mp = mp
        self.frames: np.ndarray | None = None
        self.meshes: dict[bool, object] = {}

    def mesh(self, static: bool):
        """The face mesh of this mode (created on first use)."""
        if static not in self.meshes:
            self.meshes[static] = self.mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static, max_num_faces=1, refine_landmarks=True
            )
        return self.meshes[static]

    def run(self, static: bool, prime: int) -> dict:
        """One round over the frames (see the module docstring)."""
        if self.frames is None:
            return {"error": "no frames stored"}
        mesh = self.mesh(static)
        for img in self.frames[:prime]:
            mesh.process(img)
        ms, faces = [], []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for img in self.frames[prime:]:
            t0 = time.perf_counter()
            res = mesh.process(img)
            ms.append((time.perf_counter() - t0) * 1e3)
            faces.append(bool(res.multi_face_landmarks))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        return {"ms": ms, "faces": faces, "cpu_s": cpu, "wall_s": wall, "threads": thread_count()}


def serve(stdin, out, timer: MeshTimer) -> None:
    """Answer requests from ``stdin`` on ``out`` until the input ends."""
    while True:
        line = stdin.readline()
        if not line:
            return
        try:
            req = json.loads(line)
            if req.get("cmd") == "frames":
                n, h, w = int(req["n"]), int(req["height"]), int(req["width"])
                if not (n > 0 and h > 0 and w > 0 and n * h * w * 3 <= MAX_BYTES):
                    raise ValueError(f"bad frames header {req}")
                data = read_exact(stdin, n * h * w * 3)
                timer.frames = np.frombuffer(data, np.uint8).reshape(n, h, w, 3)
                reply = {"ok": True, "n": n}
            elif req.get("cmd") == "run":
                reply = timer.run(bool(req["static"]), int(req.get("prime", 0)))
            else:
                reply = {"error": f"unknown request {req!r}"}
        except EOFError:
            raise
        except Exception as err:  # keep serving; the client reports it
            reply = {"error": f"{type(err).__name__}: {err}"}
        out.write((json.dumps(reply) + "\n").encode())
        out.flush()


class MeshWorkerError(RuntimeError):
    """The timing worker could not start, died, timed out or reported an error."""


class MeshWorker:
    """The client end: this file run as a worker by the teacher's Python; a context manager.

    Args:
        python: the teacher Python executable (with mediapipe).
        worker: the worker script (default: this file).
        start_timeout_s: seconds allowed for importing mediapipe and saying hello.
        timeout_s: seconds allowed per request (a round over all frames).
    """

    def __init__(
        self,
        python: str | os.PathLike[str],
        worker: str | os.PathLike[str] = WORKER,
        start_timeout_s: float = 120.0,
        timeout_s: float = 600.0,
    ) -> None:
        self.python, self.worker = str(python), str(worker)
        self.start_timeout_s, self.timeout_s = start_timeout_s, timeout_s
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen | None = None
        self._err: Any = None
        self._buf = b""

    def __enter__(self) -> MeshWorker:
        """Start the worker and read its hello (versions into :attr:`info`)."""
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - lives until close()
        env = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        try:
            self._proc = subprocess.Popen(
                [self.python, "-I", self.worker],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._err,
                env=env,
            )
        except OSError as err:
            self.close()
            raise MeshWorkerError(f"cannot start {self.python!r}: {err}") from err
        self.info = self._reply(self.start_timeout_s, "its hello")
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the worker."""
        self.close()

    def send_frames(self, rgb: np.ndarray) -> None:
        """Store ``(N, H, W, 3)`` uint8 frames in the worker."""
        n, h, w, _ = rgb.shape
        head = json.dumps({"cmd": "frames", "n": n, "height": h, "width": w}).encode() + b"\n"
        self._send(head + np.ascontiguousarray(rgb, np.uint8).tobytes())
        self._reply(self.timeout_s, "the frames' receipt")

    def run(self, static: bool, prime: int = PRIME) -> dict[str, Any]:
        """One timed round in ``static_image_mode`` ``static`` (see the worker's docstring)."""
        self._send(json.dumps({"cmd": "run", "static": static, "prime": prime}).encode() + b"\n")
        return self._reply(self.timeout_s, "a round")

    def close(self) -> None:
        """Close stdin, give the worker 5 s to exit, then kill it; always reaps it."""
        from training.label.teacher import stop_worker  # main process only (not in the venv)

        proc, self._proc = self._proc, None
        stop_worker(proc)
        if self._err is not None:
            self._err.close()
            self._err = None

    def _fail(self, problem: str) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        tail = ""
        if self._err is not None:
            self._err.seek(0)
            tail = self._err.read().decode(errors="replace").strip()[-1500:]
        self.close()
        detail = f"; its stderr ends with:\n{tail}" if tail else ""
        raise MeshWorkerError(f"MediaPipe timing worker ({self.python}): {problem}{detail}")

    def _send(self, data: bytes) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise MeshWorkerError("the MediaPipe timing worker is not running")
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except OSError:
            self._fail("it died (broken pipe)")

    def _reply(self, timeout_s: float, what: str) -> dict[str, Any]:
        if self._proc is None or self._proc.stdout is None:
            raise MeshWorkerError("the MediaPipe timing worker is not running")
        deadline = time.monotonic() + timeout_s
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    self._fail(f"no answer within {timeout_s:.0f} s while waiting for {what}")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self._fail(f"it exited while we waited for {what}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            self._fail(f"garbled answer {line[:200]!r}")
        if "error" in reply:
            self._fail(f"it reported: {reply['error']}")
        return reply


def main() -> int:
    """Entry point: redirect fd 1, import mediapipe, say hello, serve."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import mediapipe as mp

    hello = {"mediapipe": mp.__version__, "numpy": np.__version__}
    hello["python"] = platform.python_version()
    out.write((json.dumps(hello) + "\n").encode())
    out.flush()
    serve(sys.stdin.buffer, out, MeshTimer(mp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
