"""The MediaPipe face-mesh latency benchmark: parsing, summaries, a missing or broken teacher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.bench import facemesh
from training.bench.facemesh_worker import MeshWorker, MeshWorkerError
from training.label.teacher import TeacherMissingError, default_venv, venv_python

TEACHER = venv_python(default_venv())


def _round(ms: list[float], **extra: object) -> dict:
    return {"ms": ms, "cpu_s": 0.5, "wall_s": 1.0, **extra}


def test_parser_defaults_and_options() -> None:
    args = facemesh.build_parser().parse_args([])
    assert (args.frames, args.rounds, args.json, args.teacher_python) == (60, 5, False, None)
    args = facemesh.build_parser().parse_args(
        ["--frames", "3", "--rounds", "2", "--json", "--teacher-python", "/x/python"]
    )
    assert (args.frames, args.rounds, args.json, args.teacher_python) == (3, 2, True, "/x/python")


@pytest.mark.parametrize("bad", [["--frames", "0"], ["--rounds", "-1"], ["--frames", "x"]])
def test_parser_rejects_non_positive(bad: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        facemesh.build_parser().parse_args(bad)
    assert exc.value.code == 2
    assert "--" + bad[0].lstrip("-") in capsys.readouterr().err


def test_summarise_known_answer() -> None:
    runs = {
        "ours_pipeline": [
            _round([10.0, 12.0, 14.0], faces=[True, True, False], tracked=[True] * 3),
            _round([20.0, 20.0, 20.0], faces=[True] * 3, tracked=[True] * 3),
        ],
        "mediapipe_video": [_round([5.0, 5.0, 5.0]), _round([4.0, 4.0, 4.0])],
        "ours_forward": [_round([8.0, 8.0, 8.0]), _round([8.0, 8.0, 8.0])],
        "mediapipe_static": [_round([2.0, 2.0, 2.0]), _round([2.0, 2.0, 2.0])],
    }
    out = facemesh.summarise(runs)
    ours = out["contenders"]["ours_pipeline"]
    assert ours["median_ms"] == 17.0  # median of 10, 12, 14, 20, 20, 20
    assert ours["round_medians_ms"] == [12.0, 20.0]
    assert ours["frames"] == 6 and ours["rounds"] == 2
    assert ours["faces_fraction"] == pytest.approx(5 / 6)
    assert ours["tracked_fraction"] == 1.0
    assert ours["cpu_per_wall"] == pytest.approx(0.5)
    assert ours["p90_ms"] == pytest.approx(20.0)
    assert "faces_fraction" not in out["contenders"]["ours_forward"]
    assert out["ratios"]["ours_pipeline_over_mediapipe_video"] == pytest.approx(17.0 / 4.5)
    # per round: 12 / 5 and 20 / 4 -> median of 2.4 and 5.0
    assert out["ratios_per_round"]["ours_pipeline_over_mediapipe_video"] == pytest.approx(3.7)
    assert out["ratios"]["ours_forward_over_mediapipe_static"] == pytest.approx(4.0)
    assert set(out["ratios"]) == set(out["ratios_per_round"]) and len(out["ratios"]) == 4


def test_interleave_alternates_and_drops_warmup() -> None:
    calls: list[str] = []

    def make(name: str):
        return lambda: calls.append(name) or {"n": len(calls)}

    runs = facemesh.interleave({"a": make("a"), "b": make("b")}, rounds=2)
    assert calls == ["a", "b"] * 3
    assert runs == {"a": [{"n": 3}, {"n": 5}], "b": [{"n": 4}, {"n": 6}]}


def test_missing_teacher_names_the_install_command(tmp_path: Path) -> None:
    bogus = str(tmp_path / "no-such-venv" / "bin" / "python")
    with pytest.raises(TeacherMissingError, match="--install-teacher"):
        facemesh.run_facemesh_bench(frames=1, rounds=1, teacher_python=bogus)
    res = subprocess.run(
        [sys.executable, "-m", "training.bench.facemesh", "--teacher-python", bogus, "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert res.returncode == 2 and res.stdout == ""
    assert "facealign label --install-teacher" in res.stderr and bogus in res.stderr


def test_worker_without_mediapipe_reports_its_stderr() -> None:
    with pytest.raises(MeshWorkerError, match="exited") as exc, MeshWorker(sys.executable):
        pass
    assert "mediapipe" in str(exc.value)  # the ModuleNotFoundError from its stderr


def test_format_table_lists_every_contender() -> None:
    runs = {name: [_round([1.0, 2.0], faces=[True, True])] for name in facemesh.ORDER}
    result = facemesh.summarise(runs)
    result.update(frames=2, rounds=1, image=[346, 260], source="s", cpu="cpu")
    result.update(loadavg_before=[1.0, 1.0, 1.0], loadavg_after=[2.0, 2.0, 2.0])
    table = facemesh.format_table(result)
    for name in facemesh.ORDER:
        assert facemesh.LABELS[name] in table
    assert "ours_pipeline_over_mediapipe_video: 1.00" in table


@pytest.mark.slow
@pytest.mark.skipif(
    not TEACHER.is_file(), reason="teacher venv (facealign label --install-teacher)"
)
def test_real_run_three_frames(tmp_path: Path, json_command) -> None:
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    bag = tmp_path / "normal"  # a tiny normal-light bag: the default one is not decoded in tests
    write_synth_bag(bag, SceneConfig(seed=3, seconds=0.3, light="normal", motion="slow"))
    cmd = ("-m", "training.bench.facemesh", "--frames", "3", "--rounds", "1", "--json")
    result = json_command(*cmd, "--bag", str(bag), timeout=120)
    for name in facemesh.ORDER:
        c = result["contenders"][name]
        assert c["frames"] == 3 and c["rounds"] == 1
        assert 0 < c["median_ms"] < 10_000
    assert result["contenders"]["mediapipe_static"]["faces_fraction"] > 0
    assert result["versions"]["mediapipe"] == "0.10.21"
    assert result["threads"]["torch"] == 1
    assert result["image"] == [346, 260]
