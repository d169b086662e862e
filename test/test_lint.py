"""Style gates: ruff (lint + format) here; the ament flake8/pep257 tests where ROS provides them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    return [exe]


def test_ruff_lint() -> None:
    res = subprocess.run(
        [*_ruff(), "check", "--no-cache", str(ROOT)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format() -> None:
    res = subprocess.run(
        [*_ruff(), "format", "--check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.linter
def test_ament_flake8() -> None:
    main_with_errors = pytest.importorskip("ament_flake8.main").main_with_errors
    rc, errors = main_with_errors(argv=[str(ROOT / "facealign_ros"), str(ROOT / "training")])
    assert rc == 0, f"{len(errors)} flake8 errors: " + "\n".join(errors)


@pytest.mark.linter
def test_ament_pep257() -> None:
    main = pytest.importorskip("ament_pep257.main").main
    assert main(argv=[str(ROOT / "facealign_ros"), str(ROOT / "training")]) == 0
