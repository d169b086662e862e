"""``python -m training.bench.replay_set`` end to end on a generated bag."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_variants_side_by_side(synth_bag: Path, json_command) -> None:
    out = json_command(
        "-m", "training.bench.replay_set", "--bags", str(synth_bag), "--param", "torch_threads=1",
        "--variant", "redetect_looks=1", "--variant", "redetect_looks=2,warm_start=false", "--json",
    )  # fmt: skip
    assert out["base"] == {"torch_threads": 1}
    first, second = out["variants"]
    assert first["params"] == {"redetect_looks": 1}
    assert second["params"] == {"redetect_looks": 2, "warm_start": False}
    for v in (first, second):
        assert v["bags"] == 1 and [r["bag"] for r in v["rows"]] == [synth_bag.name]
        assert 0 < v["mean_nme"] < 1 and v["mean_coverage"] > 0.5 and v["detect_runs"] >= 1
        assert v["mean_face_rate"] == v["rows"][0]["face_rate"] > 0.5


def test_bad_bags_and_parameters_are_clear_errors(
    tmp_path: Path, synth_bag: Path, python_command
) -> None:
    def bench(*args: str) -> subprocess.CompletedProcess:
        return python_command("-m", "training.bench.replay_set", *args, timeout=300)

    res = bench("--bags", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "no such bag" in res.stderr and "nothing" in res.stderr
    res = bench("--bags", str(synth_bag), "--variant", "redetect_looks=0")
    assert res.returncode == 2 and "redetect_looks" in res.stderr


def test_groups_keep_recordings_of_the_same_name_apart(tmp_path: Path, monkeypatch) -> None:
    """Two sets holding a bag of the same name (one seed, two cameras) are summarised apart."""
    import training.replay
    from training.bench import replay_set

    nme = {"a": 0.1, "b": 0.3}
    for d in nme:
        (tmp_path / d / "test_7").mkdir(parents=True)

    def fake_replay(bag: Path, out: Path, cfg, progress: bool) -> dict:
        m = {"nme": nme[bag.parent.name], "coverage": 1.0, "fr10": 0.0}
        return {"metrics": m, "compute_p50_ms": 1.0, "pipeline": {}, "face_rate": 1.0}

    monkeypatch.setattr(training.replay, "replay", fake_replay)
    bags = [tmp_path / d / "test_7" for d in nme]
    group = {f"{d}/*": {str(tmp_path / d / "test_7")} for d in nme}
    (v,) = replay_set.run(bags, [{}], {}, group)["variants"]
    assert [r["bag"] for r in v["rows"]] == ["test_7", "test_7"]
    assert {k: g["mean_nme"] for k, g in v["groups"].items()} == {"a/*": 0.1, "b/*": 0.3}
