"""``python -m training.bench.inference``: eager vs traced forward, end to end."""

from __future__ import annotations

import json
import subprocess
import sys


def test_inference_bench_reports_every_signature() -> None:
    cmd = [sys.executable, "-m", "training.bench.inference", "--repeats", "2", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
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
