"""The RGB face-landmark teacher as a subprocess in its own Python environment.

MediaPipe 0.10.21 (the last release that bundles its face models and runs offline) needs
``numpy<2``, while the runtime needs numpy 2, so the teacher lives in a separate virtual
environment: by default ``~/.cache/facealign_ros/teacher-venv``, or any Python given by
``$FACEALIGN_TEACHER_PYTHON`` / ``--teacher-python``. ``facealign label --install-teacher``
creates the default one. :class:`TeacherProcess` starts ``worker.py`` (next to this file) with
that Python and talks the binary protocol documented there; every read has a deadline, and a
dead, silent or garbled worker is killed and reported with the tail of its stderr.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from training.label import worker as _wire

MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.21"
NUMPY_REQUIREMENT = "numpy<2"
TEACHER_ENV = "FACEALIGN_TEACHER_PYTHON"
WORKER = Path(__file__).with_name("worker.py")
SUPPORTED_PYTHONS = ((3, 9), (3, 12))
"""Oldest and newest Python with mediapipe 0.10.21 wheels."""


class TeacherError(RuntimeError):
    """The teacher could not be started, died, timed out or answered garbage."""


class TeacherMissingError(TeacherError):
    """No teacher Python is installed; the message says how to install one."""


def default_venv() -> Path:
    """The default teacher environment, ``~/.cache/facealign_ros/teacher-venv``."""
    return Path.home() / ".cache" / "facealign_ros" / "teacher-venv"


def venv_python(venv: Path) -> Path:
    """The Python executable inside a virtual environment directory."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def resolve_python(explicit: str | None = None) -> Path:
    """The teacher Python: ``explicit``, else ``$FACEALIGN_TEACHER_PYTHON``, else the default venv.

    Raises:
        TeacherMissingError: if that executable does not exist.
    """
    chosen = explicit or os.environ.get(TEACHER_ENV) or None
    path = Path(chosen).expanduser() if chosen else venv_python(default_venv())
    if not path.is_file():
        raise TeacherMissingError(missing_message(path, from_user=chosen is not None))
    return path


def install_commands(venv: Path, base_python: str = sys.executable) -> list[list[str]]:
    """The commands :func:`install_teacher` runs (also printed as the manual equivalent)."""
    py = str(venv_python(venv))
    return [
        [base_python, "-m", "venv", str(venv)],
        [py, "-m", "pip", "install", MEDIAPIPE_REQUIREMENT, NUMPY_REQUIREMENT],
    ]


def missing_message(path: Path, from_user: bool) -> str:
    """What to tell a user whose teacher Python ``path`` does not exist."""
    manual = install_commands(default_venv(), "python3")
    lines = [f"facealign label: the teacher Python {str(path)!r} does not exist."]
    if from_user:
        lines.append(f"Point --teacher-python / ${TEACHER_ENV} at a Python that has "
                     f"{MEDIAPIPE_REQUIREMENT} and {NUMPY_REQUIREMENT} installed, or")  # fmt: skip
    lines += [
        "install the teacher (MediaPipe, in its own environment so the runtime keeps numpy 2):",
        "    facealign label --install-teacher",
        "or by hand:",
        *("    " + shlex.join(cmd) for cmd in manual),
    ]
    return "\n".join(lines)


def install_teacher(venv: Path | None = None, base_python: str = sys.executable) -> Path:
    """Create the teacher environment at ``venv`` (default :func:`default_venv`).

    Runs :func:`install_commands` (creating the venv, then pip-installing mediapipe and numpy<2
    from the package index); pip's output goes to this process's stdout/stderr.

    Returns:
        The teacher Python executable.

    Raises:
        TeacherError: if ``base_python`` is a Python mediapipe 0.10.21 has no wheels for, or a
            command fails.
    """
    venv = Path(venv) if venv is not None else default_venv()
    _check_base_python(base_python)
    for cmd in install_commands(venv, base_python):
        sys.stderr.write("+ " + shlex.join(cmd) + "\n")
        if subprocess.run(cmd, check=False).returncode != 0:
            raise TeacherError(f"teacher installation failed at: {shlex.join(cmd)}")
    return venv_python(venv)


def _check_base_python(base_python: str) -> None:
    """Refuse a base Python outside :data:`SUPPORTED_PYTHONS`."""
    code = "import sys; print(*sys.version_info[:2])"
    out = subprocess.run([base_python, "-c", code], capture_output=True, text=True, check=False)
    version = tuple(int(v) for v in out.stdout.split()) if out.returncode == 0 else ()
    lo, hi = SUPPORTED_PYTHONS
    if not version or not lo <= version <= hi:
        raise TeacherError(
            f"{MEDIAPIPE_REQUIREMENT} needs Python {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]}, but "
            f"{base_python!r} is {'.'.join(map(str, version)) or 'not runnable'}; create a venv "
            f"with such a Python, pip-install {MEDIAPIPE_REQUIREMENT} '{NUMPY_REQUIREMENT}' "
            f"into it and set ${TEACHER_ENV} to its python"
        )


def stop_worker(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    """Close a worker's pipes, give it ``grace_s`` to exit, then kill it; always reaps it."""
    if proc is None:
        return
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class TeacherReply:
    """The teacher's answer for one image.

    Attributes:
        mesh: ``(478, 3)`` float64 face mesh in pixels (pixel-centre convention: ``x`` in
            ``[-0.5, W - 0.5]``; ``z`` in pixels, smaller is nearer), or None: no face.
        score: face detector score in ``[0, 1]`` (0 without a face).
        error: the worker's message when it could not process this image (mesh is None).
    """

    mesh: np.ndarray | None
    score: float
    error: str = ""


class TeacherProcess:
    """A running teacher worker; use as a context manager (the process is always reaped).

    Args:
        python: the teacher Python executable.
        worker: the worker script (tests pass a fake one speaking the same protocol).
        start_timeout_s: seconds allowed for the worker to load its models and say hello.
        frame_timeout_s: seconds allowed per image.
    """

    def __init__(
        self,
        python: str | os.PathLike[str],
        worker: str | os.PathLike[str] = WORKER,
        start_timeout_s: float = 120.0,
        frame_timeout_s: float = 30.0,
    ) -> None:
        self.python, self.worker = str(python), str(worker)
        self.start_timeout_s, self.frame_timeout_s = start_timeout_s, frame_timeout_s
        self.info: dict = {}
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._sel: selectors.BaseSelector | None = None

    def __enter__(self) -> TeacherProcess:
        """Start the worker and wait for its hello."""
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        """Stop the worker."""
        self.close()

    def start(self) -> None:
        """Start the worker process and read its hello (versions into :attr:`info`).

        Raises:
            TeacherError: the process cannot start, dies, or does not say hello in time.
        """
        import json

        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives until close()
        env = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        try:
            self._proc = subprocess.Popen(
                [self.python, "-I", self.worker], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, env=env, bufsize=0,
            )  # fmt: skip
        except OSError as err:
            self.close()
            raise TeacherError(f"cannot start the teacher {self.python!r}: {err}") from err
        os.set_blocking(self._proc.stdin.fileno(), False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.start_timeout_s
        magic = self._read(4, deadline, "its hello")
        if magic != _wire.HELLO:
            self._fail(f"the teacher said {magic!r} instead of hello {_wire.HELLO!r}")
        (n,) = struct.unpack("<I", self._read(4, deadline, "its hello"))
        if n > 65536:
            self._fail(f"the teacher's hello claims {n} bytes")
        try:
            self.info = json.loads(self._read(n, deadline, "its hello"))
        except ValueError:
            self._fail("the teacher's hello is not JSON")

    def infer(self, rgb: np.ndarray) -> TeacherReply:
        """Run the teacher on one ``(H, W, 3)`` uint8 RGB image.

        Raises:
            TeacherError: the worker died, timed out or answered garbage (it is stopped). A
                failure the worker reports for one image comes back as a reply with ``error``.
            ValueError: ``rgb`` is not ``(H, W, 3)`` uint8.
        """
        img = np.ascontiguousarray(rgb)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"teacher input must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        deadline = time.monotonic() + self.frame_timeout_s
        self._write(_wire.REQUEST.pack(_wire.REQUEST_MAGIC, h, w) + img.tobytes(), deadline)
        head = self._read(_wire.REPLY.size, deadline, "a reply")
        magic, status, score, n = _wire.REPLY.unpack(head)
        if magic != _wire.REPLY_MAGIC or status not in (_wire.FACE, _wire.NO_FACE, _wire.FAILED):
            self._fail(f"garbled reply header (magic {magic!r}, status {status})")
        expected = {_wire.FACE: _wire.N_MESH * 12, _wire.NO_FACE: 0}.get(status, min(n, 65536))
        if n != expected or not np.isfinite(score):
            self._fail(f"garbled reply (status {status}, {n} payload bytes, score {score})")
        payload = self._read(n, deadline, "a reply")
        if status == _wire.FAILED:  # the worker survived; the frame gets marked
            return TeacherReply(None, 0.0, f"teacher failed: {payload.decode(errors='replace')}")
        if status == _wire.NO_FACE:
            return TeacherReply(None, 0.0)
        mesh = np.frombuffer(payload, "<f4").reshape(_wire.N_MESH, 3).astype(np.float64)
        if not np.all(np.isfinite(mesh)):
            self._fail("the teacher's mesh holds non-finite values")
        mesh = mesh * [w, h, w] - [0.5, 0.5, 0.0]
        return TeacherReply(mesh, float(np.clip(score, 0.0, 1.0)))

    def close(self) -> None:
        """Close stdin, give the worker 5 s to exit, then kill it; always reaps the process."""
        proc, self._proc = self._proc, None
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        stop_worker(proc)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _stderr_tail(self, n: int = 1500) -> str:
        """The last ``n`` characters the worker wrote to stderr."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - n))
        return self._stderr.read().decode(errors="replace").strip()

    def _fail(self, problem: str) -> None:
        """Kill the worker and raise a :class:`TeacherError` with its stderr tail."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
            code = proc.returncode
            problem += f" (worker exit status {code})" if code is not None else ""
        tail = self._stderr_tail()
        self.close()
        detail = f"; its stderr ends with:\n{tail}" if tail else ""
        raise TeacherError(f"teacher {self.python!r} {self.worker!r}: {problem}{detail}")

    def _write(self, data: bytes, deadline: float) -> None:
        """Send bytes to the worker before ``deadline`` (monotonic seconds) or fail."""
        if self._proc is None or self._proc.stdin is None:
            raise TeacherError("the teacher is not running")
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while view:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):
                    self._fail("the teacher stopped reading its input (time limit)")
                try:
                    view = view[os.write(fd, view[: 1 << 20]) :]
                except BlockingIOError:
                    continue
                except OSError:
                    self._fail("the teacher died (broken pipe)")

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        """Read exactly ``n`` bytes before ``deadline`` (monotonic seconds) or fail."""
        if self._proc is None or self._sel is None:
            raise TeacherError("the teacher is not running")
        fd = self._proc.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(timeout=left):
                self._fail(f"no answer within the time limit while waiting for {what}")
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                self._fail(f"the teacher exited while we waited for {what}")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
