"""Sim-to-real check on shipped face photos: photo discovery and the missing-teacher path."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.bench import real_faces


def test_finds_the_grace_hopper_photo() -> None:
    found = real_faces.photos()
    assert "grace_hopper" in found
    img = found["grace_hopper"]
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype.name == "uint8"


def test_missing_teacher_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACEALIGN_TEACHER_PYTHON", str(tmp_path / "no" / "python"))
    assert real_faces.main(["--scales", "0.3"]) == 2
    assert "install" in capsys.readouterr().err.lower()
