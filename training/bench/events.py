"""``facealign bench events``: evt3 decoding and representations against expelliarmus and tonic.

Every figure is measured in one process on the same stream, after a warm-up call (numba
compilation excluded), as the median of ``repeats`` rounds in which the contenders run in turn
(so both see the same machine load). Our kernels are single-threaded.

evt3 figures: ``evt3_decode_mev_s`` decodes the stream as the node receives it (driver-sized
packets of 1 ms); ``evt3_decode_vs_expelliarmus`` divides it by expelliarmus' *best* mode
(``read()`` of the whole file or ``read_chunk()``); the like-for-like ratios are reported too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from facealign_ros.events import Decoder, encode
from training.bench.streams import readout_stream, sparse_stream
from training.bench.timing import interleaved_medians

EVT3_FILE_HEADER = "% evt 3.0\n% format EVT3;height={h};width={w}\n% geometry {w}x{h}\n% end\n"


def _ours_from_file(path: str, width: int, height: int, header_len: int) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8, offset=header_len)
    return Decoder("evt3", width, height).decode(raw)


def _ours_packets(path: str, width: int, height: int, header_len: int, packet_bytes: int) -> int:
    """Decode the file as a driver delivers it: consecutive packets of ``packet_bytes``."""
    raw = np.fromfile(path, dtype=np.uint8, offset=header_len)
    dec = Decoder("evt3", width, height)
    n = 0
    for start in range(0, raw.size, packet_bytes):
        n += dec.decode(raw[start : start + packet_bytes]).size
    return n


def _expelliarmus_check(got: np.ndarray, ref: np.ndarray) -> tuple[bool, str]:
    """Compare expelliarmus' output (t in us) with the events that were encoded."""
    if got.shape[0] != ref.shape[0]:
        return False, f"expelliarmus returned {got.shape[0]} events, stream has {ref.shape[0]}"
    bad_t = int(np.count_nonzero(got["t"].astype(np.int64) != ref["t"] // 1000))
    bad_xy = int(
        np.count_nonzero((got["x"] != ref["x"]) | (got["y"] != ref["y"]) | (got["p"] != ref["p"]))
    )
    if bad_t or bad_xy:
        i = int(np.nonzero(got["t"].astype(np.int64) != ref["t"] // 1000)[0][0]) if bad_t else 0
        detail = (
            f"first at event {i}: {int(got['t'][i])} us vs {int(ref['t'][i]) // 1000} us"
            if bad_t
            else ""
        )
        return False, (
            f"expelliarmus output wrong: {bad_t} timestamps ({detail}), {bad_xy} x/y/p mismatches"
        )
    return True, "expelliarmus output exact"


def bench_evt3(
    events: np.ndarray, width: int, height: int, repeats: int = 5, packet_ms: float = 1.0
) -> dict[str, Any]:
    """Decode rate of one evt3 stream, ours vs expelliarmus (same file, same process).

    Both sides read the stream from the same (page-cached) file, so file reading is included on
    both sides. Each side is measured twice: the whole stream in one call, and in packets of
    ``packet_ms`` of data (ours: EventPacket-sized payloads as a driver publishes them;
    expelliarmus: ``read_chunk`` with as many events per chunk). ``mev_s`` is our packet rate,
    ``peer_mev_s`` expelliarmus' better rate of the two.

    Returns:
        dict with ``mev_s``, ``whole_mev_s``, ``peer_mev_s``, ``peer_whole_mev_s``,
        ``peer_chunk_mev_s`` (None if expelliarmus is missing), ``exact``, ``peer_exact``, ``note``.
    """
    payload = encode(events, "evt3", width, height)
    header = EVT3_FILE_HEADER.format(w=width, h=height).encode()
    duration_ms = max(1e-3, (int(events["t"][-1]) - int(events["t"][0])) / 1e6)
    n_packets = max(1, int(duration_ms / packet_ms))
    packet_bytes = max(2, (len(payload) // n_packets) & ~1)
    events_per_packet = max(1, events.size // n_packets)
    fd, path = tempfile.mkstemp(suffix=".raw")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + payload)
        ours = _ours_from_file(path, width, height, len(header))
        exact = bool(np.array_equal(ours, events))
        exact &= _ours_packets(path, width, height, len(header), packet_bytes) == events.size
        fns: dict[str, Callable[[], Any]] = {
            "whole": lambda: _ours_from_file(path, width, height, len(header)),
            "packets": lambda: _ours_packets(path, width, height, len(header), packet_bytes),
        }
        out: dict[str, Any] = {
            "exact": exact,
            "words_per_event": len(payload) / 2 / max(1, events.size),
            "packet_bytes": packet_bytes,
        }
        try:
            from expelliarmus import Wizard
        except ImportError:
            secs = interleaved_medians(fns, repeats)
            out.update(peer_mev_s=None, peer_exact=None, note="expelliarmus not installed")
        else:
            wiz = Wizard(encoding="evt3", fpath=path, buff_size=1 << 22)
            peer_ok, note = _expelliarmus_check(wiz.read(), events)

            def chunked() -> int:
                w = Wizard(encoding="evt3", fpath=path, chunk_size=events_per_packet)
                return sum(a.shape[0] for a in w.read_chunk())

            fns |= {"peer_whole": wiz.read, "peer_chunk": chunked}
            secs = interleaved_medians(fns, repeats)
            out.update(
                peer_whole_mev_s=events.size / secs["peer_whole"] / 1e6,
                peer_chunk_mev_s=events.size / secs["peer_chunk"] / 1e6,
                peer_mev_s=events.size / min(secs["peer_whole"], secs["peer_chunk"]) / 1e6,
                peer_exact=peer_ok,
                note=note,
            )
        out["mev_s"] = events.size / secs["packets"] / 1e6
        out["whole_mev_s"] = events.size / secs["whole"] / 1e6
        return out
    finally:
        os.unlink(path)


def _round(x: float | None) -> float | None:
    return round(x, 1) if x else None


def run_events_bench(n_events: int = 5_000_000, repeats: int = 5, seed: int = 0) -> dict:
    """All event figures of ``facealign bench events`` as one JSON-serialisable dict."""
    width, height = 1280, 720
    dense = readout_stream(width, height, n_events, rate_mev_s=20.0, seed=seed)
    sparse = sparse_stream(width, height, n_events // 2, seed=seed + 1)
    d = bench_evt3(dense, width, height, repeats)
    s = bench_evt3(sparse, width, height, repeats)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    result: dict[str, Any] = {
        "stream": f"readout-like {width}x{height}, {dense.size} events, 20 Mev/s, seed {seed}",
        "evt3_decode_mev_s": round(d["mev_s"], 1),
        "evt3_decode_vs_expelliarmus": ratio(d["mev_s"], d["peer_mev_s"]),
        "evt3_expelliarmus_mev_s": round(d["peer_mev_s"], 1) if d["peer_mev_s"] else None,
        "evt3_expelliarmus_chunks_mev_s": _round(d.get("peer_chunk_mev_s")),
        "evt3_expelliarmus_read_mev_s": _round(d.get("peer_whole_mev_s")),
        "evt3_packets_vs_expelliarmus_chunks": ratio(d["mev_s"], d.get("peer_chunk_mev_s")),
        "evt3_decode_whole_mev_s": round(d["whole_mev_s"], 1),
        "evt3_whole_vs_expelliarmus_read": ratio(d["whole_mev_s"], d.get("peer_whole_mev_s")),
        "evt3_exact": d["exact"] and s["exact"],
        "evt3_words_per_event": round(d["words_per_event"], 2),
        "evt3_sparse_decode_mev_s": round(s["mev_s"], 1),
        "evt3_sparse_decode_whole_mev_s": round(s["whole_mev_s"], 1),
        "evt3_sparse_expelliarmus_chunks_mev_s": _round(s.get("peer_chunk_mev_s")),
        "evt3_sparse_expelliarmus_read_mev_s": _round(s.get("peer_whole_mev_s")),
        "evt3_sparse_vs_expelliarmus": ratio(s["mev_s"], s["peer_mev_s"]),
        "evt3_sparse_whole_vs_expelliarmus_read": ratio(
            s["whole_mev_s"], s.get("peer_whole_mev_s")
        ),
        "expelliarmus_exact": d["peer_exact"],
        "notes": [f"evt3 readout stream: {d['note']}", f"evt3 sparse stream: {s['note']}"],
    }
    from training.bench.representations import bench_representations

    # Representations are built on DAVIS-sized frames (the synthetic sensor, and about the size
    # of the face crops the pipeline feeds them); at 1280x720 they become memory-bound.
    rw, rh = 346, 260
    rep_events = readout_stream(rw, rh, n_events, rate_mev_s=20.0, seed=seed + 2)
    result["representations_stream"] = f"readout-like {rw}x{rh}, {rep_events.size} events"
    rep = bench_representations(rep_events, rw, rh, repeats=3)
    notes = rep.pop("notes", [])
    result.update({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rep.items()})
    result["notes"] += list(notes)
    return result
