"""``python -m training.bench.crop_input``: ROI copy and warp against their references."""

from __future__ import annotations


def test_crop_input_bench(json_command) -> None:
    r = json_command("-m", "training.bench.crop_input", "--repeats", "2", "--json")
    assert r["events"] == 150_000 and 0 < r["events_in_roi"] < r["events"]
    assert r["roi_copy_equal"] is True  # the kernel returns what the numpy mask does
    assert set(r["median_ms"]) == {"roi_copy", "roi_copy_numpy", "warp", "warp_grouped"}
    assert all(v > 0 for v in r["median_ms"].values())
    assert r["warp_max_abs_error"] < 1e-4 < r["warp_grouped_max_abs_error"]
