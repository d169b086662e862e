"""Known answers, edge cases and CPU/torch agreement for the event representations."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facealign_ros.events import representations as rep
from facealign_ros.events import representations_torch as rept
from facealign_ros.events.types import EVENT_DTYPE, empty_events, make_events

W, H = 6, 4
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def ev(*rows: tuple[int, int, int, int]) -> np.ndarray:
    """Events from (t, x, y, p) rows."""
    t, x, y, p = zip(*rows, strict=True)
    return make_events(t, x, y, p)


def random_events(seed: int, n: int, width: int, height: int, margin: int = 2) -> np.ndarray:
    """Random time-ordered events, some outside the sensor by up to ``margin`` pixels."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(1_000_000, 60_000_000, n))
    return make_events(
        t,
        rng.integers(0, width + margin, n),
        rng.integers(0, height + margin, n),
        rng.integers(0, 2, n),
    )


# ----------------------------------------------------------------------------- count frame


def test_count_frame_known_answer():
    events = ev((0, 1, 2, 1), (5, 1, 2, 1), (7, 3, 0, 0))
    out = rep.count_frame(events, W, H)
    assert out.shape == (2, H, W) and out.dtype == np.float32
    expected = np.zeros((2, H, W), np.float32)
    expected[1, 2, 1] = 2
    expected[0, 0, 3] = 1
    np.testing.assert_array_equal(out, expected)


def test_count_frame_matches_add_at_reference():
    events = random_events(0, 5000, W, H, margin=0)
    ref = np.zeros((2, H, W), np.float32)
    np.add.at(ref, (events["p"].astype(int), events["y"], events["x"]), 1)
    np.testing.assert_array_equal(rep.count_frame(events, W, H), ref)


@pytest.mark.parametrize(
    "fn",
    [
        lambda e: rep.count_frame(e, W, H),
        lambda e: rep.time_surface(e, W, H, 100, 10.0),
        lambda e: rep.voxel_grid(e, W, H, 3),
        lambda e: rep.event_frame(e, W, H) - 0.5,
    ],
)
def test_out_of_range_events_are_ignored(fn):
    outside = ev((1, W, 0, 1), (2, 0, H, 0), (3, 65535, 65535, 1), (4, W + 7, H + 9, 0))
    assert not np.any(fn(outside))


@pytest.mark.parametrize(
    ("fn", "shape", "value"),
    [
        (lambda e: rep.count_frame(e, W, H), (2, H, W), 0.0),
        (lambda e: rep.time_surface(e, W, H, 100, 10.0), (2, H, W), 0.0),
        (lambda e: rep.voxel_grid(e, W, H, 3, normalize=True), (3, H, W), 0.0),
        (lambda e: rep.event_frame(e, W, H, channels=2), (2, H, W), 0.5),
    ],
)
def test_empty_input(fn, shape, value):
    out = fn(empty_events())
    assert out.shape == shape and out.dtype == np.float32
    assert np.all(out == value)


# ----------------------------------------------------------------------------- time surface


def test_time_surface_known_answer():
    tau = 1000.0
    events = ev(
        (0, 1, 0, 1),  # overwritten by the later ON event at the same pixel
        (500, 2, 1, 0),
        (1000, 1, 0, 1),
        (2000, 3, 3, 1),  # exactly at t_ref -> 1
        (2500, 4, 2, 1),  # after t_ref -> ignored
    )
    out = rep.time_surface(events, W, H, t_ref_ns=2000, tau_ns=tau)
    expected = np.zeros((2, H, W), np.float32)
    expected[1, 0, 1] = math.exp(-1.0)
    expected[0, 1, 2] = math.exp(-1.5)
    expected[1, 3, 3] = 1.0
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=0)
    # order does not matter: the latest event wins
    np.testing.assert_array_equal(rep.time_surface(events[::-1], W, H, 2000, tau), out)


@pytest.mark.parametrize("span_ns", [10**6, 5 * 10**9])  # int32-age path and int64 path
@pytest.mark.parametrize("shuffle", [False, True])
def test_time_surface_matches_reference(span_ns, shuffle):
    rng = np.random.default_rng(5)
    n = 4000
    events = make_events(
        np.sort(rng.integers(0, span_ns, n)),
        rng.integers(0, W + 1, n),
        rng.integers(0, H + 1, n),
        rng.integers(0, 2, n),
    )
    if shuffle:
        events = events[rng.permutation(n)]
    t_ref, tau = span_ns * 3 // 4, span_ns / 5
    last = np.full((2, H + 1, W + 1), np.iinfo(np.int64).min)
    keep = events["t"] <= t_ref
    e = events[keep]
    np.maximum.at(last, (e["p"].astype(int), e["y"], e["x"]), e["t"])
    last = last[:, :H, :W]
    ref = np.where(last > np.iinfo(np.int64).min, np.exp(-(t_ref - last) / tau), 0.0)
    np.testing.assert_allclose(rep.time_surface(events, W, H, t_ref, tau), ref, rtol=1e-6)


def test_time_surface_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau_ns"):
        rep.time_surface(empty_events(), W, H, 0, 0.0)


# ----------------------------------------------------------------------------- voxel grid


def test_voxel_grid_known_answer_bilinear_split():
    # B = 3 over [0, 100]: tn = 2 * t / 100
    events = ev(
        (0, 0, 0, 1),  # tn 0   -> bin0 += 1
        (25, 1, 0, 0),  # tn 0.5 -> bin0 -= 0.5, bin1 -= 0.5
        (75, 2, 1, 1),  # tn 1.5 -> bin1 += 0.5, bin2 += 0.5
        (90, 2, 1, 0),  # tn 1.8 -> bin1 -= 0.2, bin2 -= 0.8
        (100, 0, 0, 1),  # tn 2  -> bin2 += 1
    )
    out = rep.voxel_grid(events, W, H, bins=3)
    expected = np.zeros((3, H, W), np.float32)
    expected[0, 0, 0] = 1.0
    expected[2, 0, 0] = 1.0
    expected[0, 0, 1] = -0.5
    expected[1, 0, 1] = -0.5
    expected[1, 1, 2] = 0.5 - 0.2
    expected[2, 1, 2] = 0.5 - 0.8
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # explicit window: events outside [t0, t1] are ignored, t1 is inclusive
    out = rep.voxel_grid(events, W, H, bins=2, t_start_ns=25, t_end_ns=75)
    expected = np.zeros((2, H, W), np.float32)
    expected[0, 0, 1] = -1.0
    expected[1, 1, 2] = 1.0
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_voxel_grid_degenerate_spans_go_to_bin_zero():
    events = ev((5, 0, 0, 1), (5, 1, 0, 0))
    out = rep.voxel_grid(events, W, H, bins=4)
    assert out[0, 0, 0] == 1.0 and out[0, 0, 1] == -1.0 and not np.any(out[1:])
    one_bin = rep.voxel_grid(random_events(3, 200, W, H, 0), W, H, bins=1)
    counts = rep.count_frame(random_events(3, 200, W, H, 0), W, H)
    np.testing.assert_allclose(one_bin[0], counts[1] - counts[0], atol=1e-5)


def test_voxel_grid_preserves_signed_mass_and_unsorted_input():
    events = random_events(1, 3000, W, H, margin=0)
    out = rep.voxel_grid(events, W, H, bins=5)
    counts = rep.count_frame(events, W, H)
    np.testing.assert_allclose(out.sum(axis=0), counts[1] - counts[0], atol=1e-4)
    shuffled = events[np.random.default_rng(0).permutation(len(events))]
    np.testing.assert_allclose(rep.voxel_grid(shuffled, W, H, bins=5), out, atol=1e-5)


def test_voxel_grid_normalize_nonzero_cells():
    events = random_events(2, 300, 16, 12, margin=0)
    raw = rep.voxel_grid(events, 16, 12, bins=4)
    out = rep.voxel_grid(events, 16, 12, bins=4, normalize=True)
    nz = raw != 0
    np.testing.assert_array_equal(out[~nz], 0)
    assert abs(float(out[nz].mean())) < 1e-5
    assert float(out[nz].std(ddof=1)) == pytest.approx(1.0, abs=1e-5)
    single = rep.voxel_grid(ev((0, 1, 1, 1)), W, H, bins=2, normalize=True)
    assert not np.any(single)  # one nonzero cell: mean removed, no division


# ----------------------------------------------------------------------------- event frame


def test_event_frame_v2e_known_answer():
    events = ev(
        (0, 0, 0, 1), (1, 0, 0, 1), (2, 0, 0, 1),  # net +3 -> clipped to +2 -> 1.0
        (3, 1, 0, 1),  # net +1 -> 0.75
        (4, 2, 0, 0),  # net -1 -> 0.25
        (5, 3, 0, 1), (6, 3, 0, 0),  # net 0 -> 0.5
    )  # fmt: skip
    out = rep.event_frame(events, W, H)
    assert out.shape == (3, H, W)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_allclose(out[0, 0, :5], [1.0, 0.75, 0.25, 0.5, 0.5])
    assert np.all(out[:, 1:] == 0.5)
    wide = rep.event_frame(events, W, H, full_scale_count=4, channels=1)
    np.testing.assert_allclose(wide[0, 0, :3], [7 / 8, 5 / 8, 3 / 8])


# ----------------------------------------------------------------------------- inputs, wrappers


def test_other_structured_dtypes_are_converted():
    tonic_like = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    events = np.array([(1, 2, 10, 1), (-1, 0, 20, 0), (2, 1, 30, -1)], dtype=tonic_like)
    out = rep.count_frame(events, W, H)
    assert out[1, 2, 1] == 1 and out[0, 1, 2] == 1 and out.sum() == 2
    with pytest.raises(TypeError):
        rep.count_frame(np.zeros(3), W, H)


def test_wrappers_are_frozen_and_match_functions():
    events = random_events(4, 500, W, H)
    t_end = int(events["t"][-1])
    assert np.array_equal(rep.CountFrame(W, H)(events), rep.count_frame(events, W, H))
    ts = rep.TimeSurface(W, H, tau_ns=5e6)
    np.testing.assert_array_equal(ts(events), rep.time_surface(events, W, H, t_end, 5e6))
    vg = rep.VoxelGrid(W, H, bins=3, normalize=True)
    np.testing.assert_array_equal(vg(events), rep.voxel_grid(events, W, H, 3, normalize=True))
    np.testing.assert_array_equal(rep.EventFrame(W, H)(events), rep.event_frame(events, W, H))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ts.tau_ns = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: rep.CountFrame(0, 4),
        lambda: rep.TimeSurface(4, 4, tau_ns=-1),
        lambda: rep.VoxelGrid(4, 4, bins=0),
        lambda: rep.EventFrame(4, 4, full_scale_count=0),
    ],
)
def test_wrappers_validate(make):
    with pytest.raises(ValueError):
        make()


# ----------------------------------------------------------------------------- torch agreement


def _compare_all(events: np.ndarray, width: int, height: int, bins: int, device: str) -> None:
    te = rept.events_to_torch(events, device)
    t_ref = int(events["t"][len(events) // 2]) if len(events) else 0
    pairs = [
        (rep.count_frame(events, width, height), rept.count_frame(te, width, height)),
        (
            rep.time_surface(events, width, height, t_ref, 7e6),
            rept.time_surface(te, width, height, t_ref, 7e6),
        ),
        (rep.voxel_grid(events, width, height, bins), rept.voxel_grid(te, width, height, bins)),
        (
            rep.voxel_grid(events, width, height, bins, 5_000_000, 40_000_000, normalize=True),
            rept.voxel_grid(te, width, height, bins, 5_000_000, 40_000_000, normalize=True),
        ),
        (rep.event_frame(events, width, height), rept.event_frame(te, width, height)),
    ]
    for cpu, tor in pairs:
        assert tuple(tor.shape) == cpu.shape and tor.dtype == torch.float32
        assert tor.device.type == torch.device(device).type
        np.testing.assert_allclose(tor.cpu().numpy(), cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 3000),
    width=st.integers(1, 40),
    height=st.integers(1, 30),
    bins=st.integers(1, 7),
)
def test_torch_matches_cpu(device, seed, n, width, height, bins):
    _compare_all(random_events(seed, n, width, height), width, height, bins, device)


def test_torch_accepts_tuple_and_empty():
    te = rept.events_to_torch(empty_events())
    assert not rept.count_frame(te, W, H).any()
    assert torch.all(rept.event_frame(te, W, H) == 0.5)
    events = random_events(7, 100, W, H)
    tup = tuple(rept.events_to_torch(events).values())
    np.testing.assert_allclose(
        rept.voxel_grid(tup, W, H, 3).numpy(), rep.voxel_grid(events, W, H, 3), atol=1e-6
    )
    assert EVENT_DTYPE.itemsize == 16


def test_bench_representations_smoke():
    from training.bench.representations import bench_representations

    events = random_events(11, 20_000, 64, 48, margin=0)
    out = bench_representations(events, 64, 48, repeats=1)
    for name in ("time_surface", "voxel_grid", "count_frame"):
        assert out[f"{name}_mev_s"] > 0
        assert out[f"{name}_vs_tonic"] is None or out[f"{name}_vs_tonic"] > 0
    assert out["notes"] and all(isinstance(n, str) for n in out["notes"])
