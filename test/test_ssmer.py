"""SSMER: window streaming from bags, views, SimSiam loss, sharding, exact resume, CLI -> train."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from facealign_ros import topics
from facealign_ros.bag import BagWriter, make_event_packet, msg_class
from facealign_ros.events import EVENT_DTYPE, encode
from facealign_ros.face.crop import Box, crop_affine
from facealign_ros.face.preprocess import InputSpec, channel_slices, empty_event_input, event_input
from facealign_ros.model.config import lite_config
from training.ssmer.config import load_ssmer_config
from training.ssmer.loop import Pretrainer, read_ssmer_metadata
from training.ssmer.model import SimSiam, collapse_ratio, simsiam_loss
from training.ssmer.sources import (
    SourceError,
    Window,
    activity_box,
    expand_bag_paths,
    find_sources,
    stream_windows,
)
from training.ssmer.stream import WindowStream
from training.ssmer.views import ViewAugment, make_views
from training.trainer import build

ROOT = Path(__file__).resolve().parents[1]
SSMER_YAML = ROOT / "training" / "configs" / "ssmer_lite.yaml"
W, H = 160, 120
SMALL = [
    "data.input.size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.stride_ms=5",
    "data.shuffle_buffer=4",
    "model.overrides.backbone_width=4",
    "model.overrides.feature_dim=16",
    "model.proj_dim=16",
    "model.pred_dim=8",
    "run.progress=false",
    "run.tensorboard=false",
    "run.device=cpu",
    "run.log_every=1",
    "schedule.warmup_steps=1",
]


def _blob_events(
    rng: np.random.Generator, t0: int, t1: int, centre: tuple[float, float]
) -> np.ndarray:
    """Events of a moving Gaussian blob (std 8 px) plus 10% uniform noise, 20 events/ms/blob."""
    n = (t1 - t0) // 50_000
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0 // 1000, t1 // 1000, n)) * 1000  # whole microseconds
    drift = (ev["t"] - t0) * 2e-8  # 20 px/s
    xy = rng.normal(0, 8, (n, 2)) + np.asarray(centre) + drift[:, None]
    noise = rng.random(n) < 0.1
    xy[noise] = rng.random((int(noise.sum()), 2)) * [W, H]
    ev["x"] = np.clip(xy[:, 0], 0, W - 1)
    ev["y"] = np.clip(xy[:, 1], 0, H - 1)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def _event_bag(
    path: Path, seed: int, seconds: float = 0.5, storage: str = "mcap", encoding: str = "evt3"
) -> Path:
    """A bag with 5 ms evt3 packets of a blob (plus an unrelated topic)."""
    rng = np.random.default_rng(seed)
    centre = (40 + 10 * seed % 80, 40 + 7 * seed % 40)
    step = 5_000_000
    with BagWriter(path, storage=storage) as bag:
        bag.add_topic(topics.EVENTS, "event_camera_msgs/msg/EventPacket")
        bag.add_topic("/chatter", "std_msgs/msg/String")
        for k in range(int(seconds * 1e9) // step):
            t0 = 1_000_000 + k * step
            ev = _blob_events(rng, t0, t0 + step, centre)
            payload = encode(ev, "evt3", W, H) if encoding == "evt3" else b"\x00" * 16
            msg = make_event_packet(payload, W, H, encoding, k, t0, 10**9 + t0 + step)
            bag.write(topics.EVENTS, 10**9 + t0 + step, msg)
        bag.write("/chatter", 10**9, msg_class("std_msgs/msg/String")(data="hello"))
    return path


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("ssmer_bags")
    return [
        _event_bag(root / "a", 1),
        _event_bag(root / "b", 2, storage="sqlite3"),
        _event_bag(root / "c", 3),
    ]


def test_activity_box_finds_the_blob() -> None:
    rng = np.random.default_rng(0)
    ev = _blob_events(rng, 0, 30_000_000, (100.0, 60.0))
    box = activity_box(ev, W, H, min_side=10)
    assert box is not None
    assert abs(box.cx - 100.6) < 4 and abs(box.cy - 60) < 4  # the drift moves it 0.6 px
    assert 20 < box.side < 70  # about 3 std of the blob
    assert activity_box(ev[:0], W, H, 10) is None


def test_stream_windows_are_exact_time_slices(bags: list[Path]) -> None:
    (src,), _ = find_sources([bags[0]])
    assert (src.encoding, src.width, src.height, src.packets) == ("evt3", W, H, 100)
    wins = list(stream_windows(src, 30_000_000, 10_000_000, min_events=1, margin=100.0))
    assert len(wins) == 47  # ends at 31, 41, ..., 491 ms of sensor time
    rng = np.random.default_rng(1)  # the same draws as _event_bag(seed=1)
    centre = (40 + 10 * 1 % 80, 40 + 7 * 1 % 40)
    truth = np.concatenate(
        [
            _blob_events(rng, 1_000_000 + k * 5_000_000, 6_000_000 + k * 5_000_000, centre)
            for k in range(100)
        ]  # fmt: skip
    )
    for w in wins:
        expect = truth[(truth["t"] >= w.t_end - 30_000_000) & (truth["t"] < w.t_end)]
        assert np.array_equal(w.events["t"], expect["t"])
        assert np.array_equal(w.events["x"], expect["x"])


def test_a_forward_jump_of_the_sensor_time_starts_the_windows_over(tmp_path: Path) -> None:
    # mono packets whose time_base leaps 4e18 ns half-way: before, every empty window of the
    # gap was walked through one stride at a time (~10^11 of them: a hang)
    path, rng = tmp_path / "jump", np.random.default_rng(0)
    with BagWriter(path) as bag:
        bag.add_topic("/event_camera/events", "event_camera_msgs/msg/EventPacket")
        for k in range(20):
            ev = np.zeros(500, EVENT_DTYPE)
            ev["x"], ev["y"] = rng.integers(20, 40, 500), rng.integers(15, 30, 500)
            ev["t"], ev["p"] = np.sort(rng.integers(0, 5_000_000, 500)), 1
            base = 10**9 + k * 5_000_000 + (4 * 10**18 if k >= 10 else 0)
            stamp = 1_700_000_000 * 10**9 + k * 5_000_000
            msg = make_event_packet(encode(ev, "mono", W, H), W, H, "mono", k, base, stamp)
            bag.write("/event_camera/events", stamp, msg)
    (src,), _ = find_sources([path])
    wins = list(stream_windows(src, 10_000_000, 5_000_000, min_events=1, margin=100.0))
    ends = [w.t_end for w in wins]
    assert len(ends) == 16 and ends == sorted(ends)  # 8 windows on each side of the jump
    assert sum(e > 4 * 10**18 for e in ends) == 8


def test_find_sources_names_bad_bags(bags: list[Path], tmp_path: Path) -> None:
    no_events = tmp_path / "no_events"
    with BagWriter(no_events) as bag:
        bag.add_topic("/camera/image_raw", "std_msgs/msg/String")
        bag.write("/camera/image_raw", 1, msg_class("std_msgs/msg/String")(data="x"))
    unknown = _event_bag(tmp_path / "unknown_enc", 4, seconds=0.02, encoding="evt9")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bags[0], corrupt)
    mcap = next(corrupt.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:200])

    with pytest.raises(SourceError, match=r"no_events.*no event_camera_msgs/msg/EventPacket"):
        find_sources([no_events])
    with pytest.raises(SourceError, match=r"unknown_enc.*/event_camera/events.*evt9"):
        find_sources([unknown])
    with pytest.raises(SourceError, match=r"corrupt"):
        find_sources([corrupt])
    with pytest.raises(SourceError, match=r"no topic '/nope'"):
        find_sources([bags[0]], topic="/nope")
    sources, skipped = find_sources([no_events, bags[1], unknown, corrupt], skip_bad=True)
    assert [s.path for s in sources] == [bags[1]]
    assert [p for p, _ in skipped] == [no_events, unknown, corrupt]
    with pytest.raises(SourceError, match="no usable event bag"):
        find_sources([no_events], skip_bad=True)
    assert expand_bag_paths([bags[0].parent]) == sorted(bags)
    with pytest.raises(FileNotFoundError):
        expand_bag_paths([tmp_path / "missing*"])


def test_views_fill_their_own_channels_only() -> None:
    spec = InputSpec(size=32)
    rng = np.random.default_rng(0)
    ev = _blob_events(rng, 0, 30_000_000, (80.0, 60.0))
    box = Box(80.0, 60.0, 60.0)
    win = Window(ev, 30_000_000, box, W, H)
    still = ViewAugment(0, 0, 0, 0, 1.0, 0, 0, 0)  # no augmentation
    views = make_views(win, spec, ("event_frame", "voxel", "all"), still, rng)
    assert views.shape == (3, spec.event_channels, 32, 32) and views.dtype == np.float32
    full = event_input(ev, crop_affine(box, 32, 0.0), spec, W, H, 30_000_000)
    np.testing.assert_allclose(views[2], full, atol=1e-6)
    empty, sl = empty_event_input(spec), channel_slices(spec)
    for k, name in enumerate(("event_frame", "voxel")):
        mine = np.zeros(spec.event_channels, bool)
        mine[sl[name]] = True
        # computed alone, a representation differs from its slice of the full stack only by
        # OpenCV's per-channel-group resampling (a few % of a small value)
        np.testing.assert_allclose(views[k][mine], full[mine], atol=0.02)
        np.testing.assert_array_equal(views[k][~mine], empty[~mine])
    again = make_views(win, spec, ("event_frame", "all"), ViewAugment(), np.random.default_rng(5))
    other = make_views(win, spec, ("event_frame", "all"), ViewAugment(), np.random.default_rng(5))
    np.testing.assert_array_equal(again, other)


def test_simsiam_loss_and_collapse_measure() -> None:
    torch.manual_seed(0)
    same = torch.randn(1, 64, 16).expand(3, 64, 16)  # every view agrees: -1 per pair
    assert float(simsiam_loss(same, 2 * same)) == pytest.approx(-3.0, abs=1e-5)
    z = torch.randn(3, 64, 16, requires_grad=True)
    assert abs(float(simsiam_loss(z.detach(), z.detach()))) < 0.2  # unrelated views
    p = torch.randn(3, 64, 16, requires_grad=True)
    simsiam_loss(z, p).backward()
    assert z.grad is None and p.grad is not None  # stop-gradient on the targets
    assert collapse_ratio(torch.randn(2, 256, 64)) == pytest.approx(1.0, abs=0.1)
    assert collapse_ratio(torch.ones(2, 256, 64) + 1e-4 * torch.randn(2, 256, 64)) < 0.01
    net = lite_config(input_size=32, event_channels=6, backbone_width=4, feature_dim=16)
    model = SimSiam(net, 16, 8)
    z, p, h = model(torch.randn(4, 3, 6, 32, 32))
    assert z.shape == p.shape == (3, 4, 16) and h.shape == (3, 4, 16)
    # a collapsed encoder (every input -> one feature vector) shows in h, not in z: the
    # projector's last batch norm rescales z to unit variance
    with torch.no_grad():
        model.encoder.head[1].weight.zero_()
        model.encoder.head[1].bias.fill_(1.0)
    z, p, h = model(torch.randn(8, 3, 6, 32, 32))
    assert collapse_ratio(h) < 1e-3


def _stream(bags: list[Path], **kw: int) -> WindowStream:
    sources, _ = find_sources(bags)
    args = {"seed": 3, "batch_size": 2, "stride_ms": 5.0, "shuffle_buffer": 4, **kw}
    return WindowStream(
        sources, InputSpec(size=16), ("event_frame", "voxel"), ViewAugment(), **args
    )


def _take(stream: WindowStream, n: int) -> list[torch.Tensor]:
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_stream_resumes_exactly_and_shards_disjointly(bags: list[Path]) -> None:
    full = _take(_stream(bags), 12)
    resumed = _take(_stream(bags, start_step=3), 6)  # 3 batches of 2 done
    for a, b in zip(full[6:], resumed, strict=True):
        assert torch.equal(a, b)
    r0 = _take(_stream(bags, rank=0, world_size=2), 8)
    r1 = _take(_stream(bags, rank=1, world_size=2), 8)
    assert not any(torch.equal(a, b) for a in r0 for b in r1)
    # worker w of 2 has produced ceil((step - w) / 2) batches
    s = _stream(bags, num_workers=2, start_step=5)
    assert (s.skip_windows(0), s.skip_windows(1)) == (6, 4)
    assert (s.role(0), s.role(1)) == (1, 0)  # batch 5 (the first after resume) is role 1's


def test_resume_through_a_dataloader_with_workers_at_an_odd_step(bags: list[Path]) -> None:
    from torch.utils.data import DataLoader

    def batches(start: int, n: int) -> list[torch.Tensor]:
        stream = _stream(bags, num_workers=2, start_step=start)
        it = iter(DataLoader(stream, batch_size=2, num_workers=2))
        return [next(it) for _ in range(n)]

    full = batches(0, 7)
    resumed = batches(3, 4)
    for a, b in zip(full[3:], resumed, strict=True):
        assert torch.equal(a, b)


def _pretrainer(bags: list[Path], out: Path, *extra: str, on_step=None) -> Pretrainer:
    cfg = load_ssmer_config(SSMER_YAML, [*SMALL, f"run.out_dir={out}", "schedule.steps=6", *extra])
    sources, _ = find_sources(bags)
    return Pretrainer(cfg, sources, command="facealign pretrain (test)", on_step=on_step)


def test_kill_and_resume_is_exact(bags: list[Path], tmp_path: Path, one_torch_thread: None) -> None:
    ref = _pretrainer(bags, tmp_path / "a", "run.checkpoint_every=2").fit()

    def kill_at_3(step: int, scalars: object) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _pretrainer(bags, tmp_path / "b", "run.checkpoint_every=2", on_step=kill_at_3).fit()
    resumed = _pretrainer(bags, tmp_path / "b", "run.checkpoint_every=2").fit()
    assert resumed.step == ref.step == 6
    assert resumed.digest == ref.digest
    assert (tmp_path / "b" / "log.jsonl").read_text().count("\n") >= 6
    for line in ref.history:
        assert np.isfinite(line["loss"]) and 0 <= line["collapse_ratio"] < 3


def test_cli_pretrain_then_train_loads_the_encoder(
    bags: list[Path], tmp_path: Path, one_torch_thread: None
) -> None:
    from facealign_ros.cli import main

    out = tmp_path / "ssmer"
    argv = ["pretrain", "--bags", str(bags[0].parent), "--config", str(SSMER_YAML), *SMALL]
    assert main([*argv, "schedule.steps=2", f"run.out_dir={out}"]) == 0
    enc = out / "encoder.safetensors"
    meta = read_ssmer_metadata(enc)
    assert meta["views"] == ["event_frame", "time_surface", "voxel"] and meta["step"] == 2
    net = lite_config(input_size=32, event_channels=6, backbone_width=4, feature_dim=16)
    model = build.build_model(net, None, 0)
    assert build.load_event_encoder(model, enc) == len(model.event_backbone.state_dict())
    build.check_encoder_input(enc, InputSpec(size=32).to_dict())
    with pytest.raises(ValueError, match="size: encoder 32 vs run 64"):
        build.check_encoder_input(enc, InputSpec(size=64).to_dict())
    # bad input: a clear exit code, and --skip-bad goes on without the bad bag
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "metadata.yaml").write_text("not: a bag")
    argv = ["pretrain", "--bags", str(bags[0]), str(junk), "--config", str(SSMER_YAML), *SMALL]
    assert main([*argv, f"run.out_dir={tmp_path / 'x'}"]) == 2
    skip = [argv[0], "--skip-bad", *argv[1:], "schedule.steps=1", f"run.out_dir={tmp_path / 'y'}"]
    assert main(skip) == 0
    assert (tmp_path / "y" / "encoder.safetensors").is_file()
    # a resume with projector/predictor heads of another size: exit 2, not a traceback
    again = ["pretrain", "--bags", str(bags[0].parent), "--config", str(SSMER_YAML), *SMALL]
    assert main([*again, "schedule.steps=3", f"run.out_dir={out}", "model.proj_dim=24"]) == 2
    # ... and one with another LR: the optimizer state would bring the old one back
    assert main([*again, "schedule.steps=3", f"run.out_dir={out}", "optim.lr=0.5"]) == 2


def _ddp_worker(
    rank: int, world: int, port: int, bags: list[str], out: str, extra: list[str]
) -> None:
    import os

    from training.trainer.distributed import torchrun_environment

    os.environ.update(torchrun_environment(rank, world, port))
    torch.set_num_threads(1)
    result = _pretrainer([Path(b) for b in bags], Path(out), "schedule.steps=2", *extra).fit()
    Path(out, f"digest_{rank}.txt").write_text(result.digest, encoding="utf-8")


@pytest.mark.parametrize(
    "extra",
    [[], ["model.dense_weight=1.0", "model.dense_grid=3", "model.dense_dim=8"]],
    ids=["pooled", "dense"],
)
def test_ddp_two_processes_gloo(bags: list[Path], tmp_path: Path, extra: list[str]) -> None:
    import torch.multiprocessing as mp

    from training.trainer.distributed import free_port

    args = (2, free_port(), [str(b) for b in bags], str(tmp_path), extra)
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    digests = {(tmp_path / f"digest_{r}.txt").read_text(encoding="utf-8") for r in range(2)}
    assert len(digests) == 1  # replicas stay identical
    assert read_ssmer_metadata(tmp_path / "encoder.safetensors")["step"] == 2


def test_labelled_subset_is_fixed_by_its_own_seed() -> None:
    from training.data import labelled_subset

    files = [Path(f"bag_{i}") for i in range(36)]
    ten = labelled_subset(files, 0.1)
    assert len(ten) == 4 and ten == sorted(ten, key=files.index) and set(ten) <= set(files)
    assert labelled_subset(files, 0.1) == ten  # same labels whatever the run's seed
    assert labelled_subset(files, 0.1, seed=1) != ten
    assert labelled_subset(files, 1.0) == files
    assert len(labelled_subset(files[:3], 0.01)) == 1  # at least one recording
    with pytest.raises(ValueError, match="label_fraction"):
        labelled_subset(files, 0.0)


def test_shards_share_one_time_grid_when_sources_are_few(bags: list[Path]) -> None:
    stream = _stream(bags[:1], world_size=2)
    ends = []
    for shard in (0, 1):
        it = stream._interleaved(shard, 2)
        ends.append({next(it).t_end for _ in range(20)})
    assert not ends[0] & ends[1]
    grid = {t % stream.stride_ns for t in ends[0] | ends[1]}
    assert len(grid) == 1  # one grid, every other window each


def test_a_too_short_recording_does_not_stop_its_shard(tmp_path: Path, bags: list[Path]) -> None:
    short = _event_bag(tmp_path / "short", 9, seconds=0.02)  # shorter than one window
    stream = _stream([bags[0], short], world_size=2)  # 2 sources, 2 shards: one gets `short`
    for shard in (0, 1):
        it = stream._interleaved(shard, 2)
        assert all(next(it).events.size > 0 for _ in range(5))
