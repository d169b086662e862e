"""Inputs of ``facealign bench pipeline``: the ``face`` and ``search`` scenarios' messages.

``face``: a cached synthetic recording with one face (:func:`synth_recording`), played as a
seamless mirrored loop (:func:`mirror_loop`) with uniform background events added
(:func:`face_stream`); ``search``: a moving face-sized blob of events and a blank-ish image
(:func:`blob_stream`). Messages are built (and packets encoded) before the clock starts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facealign_ros.bag import make_event_packet, msg_class
from facealign_ros.events import EVENT_DTYPE, encode, make_events
from facealign_ros.face.pose import matrix_to_euler
from facealign_ros.messages import image_to_msg

W, H = 346, 260
T0 = 1_700_000_000 * 10**9
EVENTS, INFO, IMAGE = 0, 1, 2
"""Input kinds; at equal times events come first, then camera_info, then the image."""
FIRST_FRAME = 2
"""First recording frame played: earlier ones lack a full event window."""


def _packet(events: np.ndarray, seq: int, stamp_ns: int, size: tuple[int, int] = (W, H)) -> Any:
    """An evt3 ``EventPacket`` of a ``size = (width, height)`` sensor."""
    w, h = size
    return make_event_packet(encode(events, "evt3", w, h), w, h, "evt3", seq, 0, stamp_ns)


def blob_stream(seconds: float, event_rate: float, seed: int = 0) -> tuple[list, list]:
    """``search`` scenario: ``(packets, images)``, lists of ``(feed t_ns, message)``."""
    rng = np.random.default_rng(seed)
    n_per = int(event_rate / 1000)
    packets = []
    for k in range(int(seconds * 1000)):
        cx = W / 2 + 40 * np.sin(2 * np.pi * 0.5 * k / 1000)
        n_face = int(n_per * 0.8)
        x = np.r_[rng.normal(cx, 35, n_face), rng.uniform(0, W, n_per - n_face)]
        y = np.r_[rng.normal(H / 2, 45, n_face), rng.uniform(0, H, n_per - n_face)]
        t = np.sort(rng.integers(0, 1_000_000, n_per)) + k * 1_000_000
        t -= t % 1000  # evt3 has microseconds
        ev = make_events(t, np.clip(x, 0, W - 1), np.clip(y, 0, H - 1), rng.integers(0, 2, n_per))
        packets.append(((k + 1) * 1_000_000, _packet(ev, k, T0 + int(t[0]))))
    yy, xx = np.mgrid[0:H, 0:W]
    images = []
    for k in range(int(seconds * 30)):
        t = int(k * 1e9 / 30)
        cx = W / 2 + 40 * np.sin(2 * np.pi * 0.5 * t / 1e9)
        face = (((xx - cx) / 60) ** 2 + ((yy - H / 2) / 80) ** 2 < 1) * 120 + 60
        img = np.repeat(face.astype(np.uint8)[:, :, None], 3, axis=2)
        images.append((t, image_to_msg(msg_class, img, T0 + t, "camera")))
    return packets, images


def _generate(out: str, seed: int, seconds: float) -> None:
    """Child process: write the synthetic bag and decode it into the array cache."""
    from training.data import load_bag_arrays
    from training.synth.bagout import write_synth_bag
    from training.synth.scene import SceneConfig

    tmp = Path(f"{out}.tmp{os.getpid()}")
    write_synth_bag(tmp, SceneConfig(seed=seed, seconds=seconds, light="normal", motion="slow"))
    with contextlib.suppress(OSError):  # another run may have made it first
        tmp.rename(out)
    shutil.rmtree(tmp, ignore_errors=True)
    load_bag_arrays(out)


def synth_recording(seconds: float = 3.0, seed: int = 0) -> Path:
    """The cached synthetic bag of the ``face`` scenario (generated in a child process once)."""
    from training.synth.assets import cache_dir
    from training.synth.engine import ENGINE_VERSION

    name = f"synth_seed{seed}_{seconds:g}s_normal_slow_{W}x{H}_engine{ENGINE_VERSION}"
    out = cache_dir() / "bench_pipeline" / name
    if not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = multiprocessing.get_context("spawn").Process(
            target=_generate, args=(str(out), seed, seconds)
        )
        proc.start()  # a child: rendering memory stays out of this process's peak RSS
        proc.join()
        if proc.exitcode != 0 or not out.is_dir():
            raise RuntimeError(f"generating the synthetic recording {out} failed")
    return out


@dataclass(frozen=True)
class Loop:
    """One mirrored cycle of a recording (forward, then backward); times ns from its start.

    Attributes:
        events: :data:`EVENT_DTYPE`, ``t`` in ``[0, period_ns)``, sorted.
        frames: ``(F, H, W, 3)`` uint8; ``frame_t``: ``(F,)`` their times, 1/fps apart.
        gt_t: ``(G,)`` times of ground truth; ``gt_points`` ``(G, 70, 2)``, ``gt_visible``.
        pose_deg: ``(F, 3)`` ground-truth head pose (Euler, degrees) at the frames, or None.
        K: camera matrix.
        period_ns: cycle length.
        size: event sensor ``(width, height)``, px.
    """

    events: np.ndarray
    frames: np.ndarray
    frame_t: np.ndarray
    gt_t: np.ndarray
    gt_points: np.ndarray
    gt_visible: np.ndarray
    pose_deg: np.ndarray | None
    K: np.ndarray
    period_ns: int
    size: tuple[int, int] = (W, H)


def mirror_loop(arrays: Any) -> Loop:
    """Fold a recording (:class:`~training.data.BagArrays`) into a seamless mirrored cycle.

    Frames ``FIRST_FRAME .. n-1`` play forward, then ``n-2 .. FIRST_FRAME+1`` backward, all
    1/fps apart; events and ground truth between the first and the last frame follow, reversed
    in time on the way back (events with their polarity flipped: the time-reversed scene).
    """
    from facealign_ros.face.pose import default_intrinsics

    stamps = np.asarray(arrays.frame_stamps, np.int64)
    a, m = int(stamps[FIRST_FRAME]), int(stamps[-1])
    span = m - a

    def unfold(t: np.ndarray, back_end: bool) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cycle times: forward ``[a, m]``, backward ``(a, m)``.

        Events (``back_end``) take ``[a, m)`` forward and ``(a, m]`` backward.
        """
        t = np.asarray(t, np.int64)
        i_f = np.flatnonzero((t >= a) & ((t < m) if back_end else (t <= m)))
        i_b = np.flatnonzero((t > a) & ((t <= m) if back_end else (t < m)))[::-1]
        return np.r_[i_f, i_b], np.r_[t[i_f] - a, 2 * span - (t[i_b] - a)]

    ev = np.array(arrays.events_between(a, m + 1))
    ei, et = unfold(ev["t"], True)
    events = ev[ei]
    events["t"] = et  # ns, not yet on the microsecond grid (face_stream rounds)
    events["p"][np.flatnonzero(et >= span)] ^= 1
    fi, frame_t = unfold(stamps, False)
    gt_stamps = np.r_[np.asarray(arrays.gt_stamps), np.asarray(arrays.hf_stamps)]
    gi, gt_t = unfold(gt_stamps, False)
    order = np.argsort(gt_t, kind="stable")
    points = np.concatenate([arrays.gt_points, arrays.hf_points])[gi][order]
    visible = np.concatenate([arrays.gt_visible, arrays.hf_visible])[gi][order]
    pose = None
    if np.array_equal(arrays.pose_stamps, stamps):
        pose = np.array([np.degrees(matrix_to_euler(R)) for R in arrays.pose_rot])[fi]
    K = arrays.K if arrays.K is not None else default_intrinsics(arrays.width, arrays.height)
    return Loop(events, np.asarray(arrays.frames)[fi], frame_t, gt_t[order], points, visible,
                pose, np.asarray(K, np.float64), 2 * span,
                (int(arrays.width), int(arrays.height)))  # fmt: skip


def face_stream(loop: Loop, seconds: float, event_rate: float, seed: int = 0) -> dict[str, Any]:
    """Inputs of the ``face`` scenario for ``seconds``, uniform background events added.

    Returns:
        ``packets`` and ``images`` (camera_info included): lists of ``(feed t_ns, kind, msg)``;
        ``gt``: a :class:`training.replay.GroundTruth` at the fed stamps; ``event_rate`` (all
        events fed per second) and ``face_event_rate`` (the recording's own).
    """
    from training.replay import GroundTruth
    from training.synth.bagout import image_msgs

    rng = np.random.default_rng(seed)
    w, h = loop.size
    face_rate = loop.events.size / (loop.period_ns / 1e9)
    noise_per_ms = max(event_rate - face_rate, 0.0) / 1000
    t_loop = loop.events["t"]
    packets, n_events = [], 0
    for k in range(int(seconds * 1000)):
        lo = k * 1_000_000
        parts = []
        for c in range(lo // loop.period_ns, (lo + 999_999) // loop.period_ns + 1):
            base = c * loop.period_ns
            i, j = np.searchsorted(t_loop, [lo - base, lo + 1_000_000 - base])
            part = loop.events[i:j].copy()
            part["t"] = (part["t"] + base) // 1000 * 1000  # evt3 has microseconds
            parts.append(part)
        n = rng.poisson(noise_per_ms)
        noise = make_events(lo + 1000 * rng.integers(0, 1000, n), rng.integers(0, w, n),
                            rng.integers(0, h, n), rng.integers(0, 2, n))  # fmt: skip
        ev = np.concatenate([*parts, noise]).astype(EVENT_DTYPE)
        ev = ev[np.argsort(ev["t"], kind="stable")]
        n_events += ev.size
        if ev.size:  # published once its millisecond has passed, stamped at its first event
            msg = _packet(ev, len(packets), T0 + int(ev["t"][0]), loop.size)
            packets.append((lo + 1_000_000, EVENTS, msg))
    images, gt = [], GroundTruth()
    for c in range(int(seconds * 1e9) // loop.period_ns + 1):
        base = c * loop.period_ns
        for f, t in enumerate(loop.frame_t):
            if base + t < seconds * 1e9:
                img, info = image_msgs(T0 + base + int(t), loop.frames[f], loop.K)
                images += [(base + int(t), INFO, info), (base + int(t), IMAGE, img)]
                if loop.pose_deg is not None:
                    gt.poses[T0 + base + int(t)] = loop.pose_deg[f]
        for t, p, v in zip(loop.gt_t, loop.gt_points, loop.gt_visible, strict=True):
            if base + t < seconds * 1e9:
                gt.points[T0 + base + int(t)] = (np.asarray(p, np.float64), np.asarray(v))
    return {"packets": packets, "images": images, "gt": gt,
            "event_rate": n_events / seconds, "face_event_rate": face_rate}  # fmt: skip
