"""``python -m training.bench.inference``: eager vs traced forward, end to end."""

from __future__ import annotations

import subprocess
import sys


def test_inference_bench_reports_every_signature(json_command) -> None:
    out = json_command("-m", "training.bench.inference", "--repeats", "2", "--json")
    sigs = out["signatures"]
    assert set(sigs) == {
        "fused_cold",
        "fused_warm",
        "fused_warm_rgb_reused",
        "event_cold",
        "event_warm",
    }
    for r in sigs.values():
        assert r["eager_ms"] > 0 and r["traced_ms"] > 0
        assert r["max_abs_diff"] < 1e-4  # the traced graph computes the same landmarks


def test_inference_bench_rejects_bad_repeats() -> None:
    cmd = [sys.executable, "-m", "training.bench.inference", "--repeats", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "--repeats" in res.stderr
