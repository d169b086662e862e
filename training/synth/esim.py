"""ESIM/v2e-style event camera simulator on sequences of linear-luminance frames.

Model, per pixel:

* log intensity ``f(L)`` of luminance ``L`` (linear below ``lin_log_threshold``, as in v2e),
  optionally low-passed by a photoreceptor whose bandwidth grows with intensity;
* between two rendered sub-frames the log intensity is interpolated *linearly in time*, and
  every crossing of the memorised level +- the pixel's contrast threshold gives an event at the
  exact crossing time (so timestamps fall inside the interval, not on frame times);
* thresholds are ``N(C, sigma)`` per pixel (fixed-pattern mismatch), clipped at
  ``min_contrast``;
* a refractory period after each event; crossings during it are lost and the pixel's
  reference follows the input until it is released;
* leak: the memorised level drifts down at ``leak_rate_hz`` thresholds per second (jittered
  per pixel), giving ON events in static scenes; initial levels have random phase;
* shot noise: Poisson ON/OFF events at :func:`shot_noise_rate` per pixel, which rises in the
  dark.

The simulator is stateful: consecutive calls continue from the memorised levels, the last log
frame and the last event times. Events come out as sorted :data:`EVENT_DTYPE` arrays (t in ns).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from facealign_ros.events.types import EVENT_DTYPE, empty_events


@dataclass(frozen=True)
class EventConfig:
    """Event sensor parameters (log units are natural-log intensity).

    Attributes:
        contrast_on: mean ON threshold, log units.
        contrast_off: mean OFF threshold, log units (positive).
        contrast_sigma: per-pixel threshold std, log units.
        min_contrast: lower clip of thresholds, log units.
        refractory_s: refractory period, seconds.
        leak_rate_hz: mean leak ON event rate per pixel, Hz.
        leak_jitter: relative std of the per-pixel leak rate.
        shot_noise_rate_hz: shot noise rate per pixel in bright light, Hz (ON + OFF).
        shot_noise_dark_gain: how much the shot noise rate grows towards darkness.
        shot_noise_ref_lum: luminance at which the dark increase is half way.
        lin_log_threshold: luminance below which the log response is linearised.
        cutoff_hz: photoreceptor bandwidth at luminance 1, Hz; None disables the low-pass.
    """

    contrast_on: float = 0.25
    contrast_off: float = 0.25
    contrast_sigma: float = 0.03
    min_contrast: float = 0.01
    refractory_s: float = 1.0e-4
    leak_rate_hz: float = 0.1
    leak_jitter: float = 0.1
    shot_noise_rate_hz: float = 0.2
    shot_noise_dark_gain: float = 20.0
    shot_noise_ref_lum: float = 0.02
    lin_log_threshold: float = 0.001
    cutoff_hz: float | None = None


@numba.njit(cache=True, nogil=True)
def _lin_log_flat(lum: np.ndarray, threshold: float, out: np.ndarray) -> None:
    log_th = np.log(threshold)
    for i in range(lum.shape[0]):
        v = lum[i]
        out[i] = np.log(v) if v >= threshold else log_th + (v - threshold) / threshold


def lin_log(lum: np.ndarray, threshold: float) -> np.ndarray:
    """Log response, linear below ``threshold`` (continuous value and slope).

    Args:
        lum: (...) linear luminance.
        threshold: luminance where the response turns from linear to logarithmic.

    Returns:
        (...) float64 log intensity.
    """
    lum = np.ascontiguousarray(lum)
    out = np.empty(lum.shape, np.float64)
    _lin_log_flat(lum.reshape(-1), float(threshold), out.reshape(-1))
    return out


def shot_noise_rate(lum: np.ndarray, config: EventConfig) -> np.ndarray:
    """Per-pixel shot-noise event rate (Hz, ON + OFF) at luminance ``lum``.

    ``rate = shot_noise_rate_hz * (1 + dark_gain * ref / (lum + ref))``: the bright-light rate
    grows up to ``(1 + dark_gain)`` times in the dark.
    """
    ref = config.shot_noise_ref_lum
    lum = np.maximum(np.asarray(lum, np.float64), 0.0)
    return config.shot_noise_rate_hz * (1.0 + config.shot_noise_dark_gain * ref / (lum + ref))


@numba.njit(cache=True, nogil=True)
def _crossings(logs, times, mem, last_t, c_on, c_off, leak, refr_ns):  # noqa: PLR0912, PLR0915
    """Emit threshold crossings of linearly interpolated log frames (see module docstring).

    logs (K, N) float64 with logs[0] the previous state; times (K,) int64 ns; mem (N,) memorised
    level; last_t (N,) int64 last event time; c_on/c_off (N,); leak (N,) log units per ns.
    Updates mem and last_t in place; returns (t int64, pixel int64, polarity uint8, n).
    """
    cap = 1024
    out_t = np.empty(cap, np.int64)
    out_i = np.empty(cap, np.int64)
    out_p = np.empty(cap, np.uint8)
    n = 0
    for k in range(1, logs.shape[0]):
        t0 = float(times[k - 1])
        t1 = float(times[k])
        dt = t1 - t0
        if dt <= 0.0:
            continue
        lo_ns, hi_ns = times[k - 1] + 1, times[k]
        for i in range(logs.shape[1]):
            slope = (logs[k, i] - logs[k - 1, i]) / dt + leak[i]
            d = logs[k - 1, i] - mem[i]
            tc = t0
            con, coff = c_on[i], c_off[i]
            while True:
                if d >= con:
                    tx, pol = tc, 1
                elif d <= -coff:
                    tx, pol = tc, 0
                elif slope > 0.0:
                    tx, pol = tc + (con - d) / slope, 1
                elif slope < 0.0:
                    tx, pol = tc + (-coff - d) / slope, 0
                else:
                    break
                if tx > t1:
                    break
                d += slope * (tx - tc)
                tc = tx
                release = float(last_t[i] + refr_ns)
                if tx < release:  # blind: the reference follows the input until release
                    d = 0.0
                    if release >= t1:
                        tc = t1
                        break
                    tc = release
                    continue
                te = min(max(np.int64(np.ceil(tx)), lo_ns), hi_ns)
                if n == cap:
                    cap *= 2
                    nt = np.empty(cap, np.int64)
                    ni = np.empty(cap, np.int64)
                    np_ = np.empty(cap, np.uint8)
                    nt[:n] = out_t[:n]
                    ni[:n] = out_i[:n]
                    np_[:n] = out_p[:n]
                    out_t, out_i, out_p = nt, ni, np_
                out_t[n], out_i[n], out_p[n] = te, i, pol
                n += 1
                last_t[i] = te
                d = d - con if pol == 1 else d + coff
            d += slope * (t1 - tc)
            mem[i] = logs[k, i] - d
    return out_t, out_i, out_p, n


class EventSimulator:
    """Stateful event camera simulator.

    Args:
        width: sensor width, px.
        height: sensor height, px.
        config: sensor parameters.
        seed: seed of the numpy Generator (per-pixel mismatch, phases, noise), or a Generator.
    """

    def __init__(
        self,
        width: int,
        height: int,
        config: EventConfig = EventConfig(),
        seed: int | np.random.Generator = 0,
    ) -> None:
        self.width, self.height, self.config = width, height, config
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        n = width * height
        c = config
        self.c_on = np.maximum(self.rng.normal(c.contrast_on, c.contrast_sigma, n), c.min_contrast)
        self.c_off = np.maximum(
            self.rng.normal(c.contrast_off, c.contrast_sigma, n), c.min_contrast
        )
        rate = np.maximum(c.leak_rate_hz * (1 + c.leak_jitter * self.rng.standard_normal(n)), 0)
        self.leak = rate * self.c_on * 1e-9  # log units per ns
        self._phase = self.rng.uniform(0.0, 1.0, n)
        self.mem: np.ndarray | None = None
        self.last_log: np.ndarray | None = None
        self.last_lum: np.ndarray | None = None
        self.last_t = np.full(n, np.iinfo(np.int64).min // 2, np.int64)
        self.t_ns: int | None = None

    def _log(self, lum: np.ndarray) -> np.ndarray:
        return lin_log(lum.reshape(lum.shape[0], -1), self.config.lin_log_threshold)

    def reset(self, luminance: np.ndarray, t_ns: int) -> None:
        """Start (or restart) at ``t_ns`` with the frame ``luminance`` (H, W): no events."""
        lum = np.asarray(luminance)[None]
        self.last_log = self._log(lum)[0]
        self.last_lum = lum.reshape(-1).astype(np.float64)
        self.mem = self.last_log - self._phase * self.c_on  # random leak phase
        self.t_ns = int(t_ns)

    def simulate(self, luminances: np.ndarray, times_ns: np.ndarray) -> np.ndarray:
        """Events caused by the frames ``luminances`` taken at ``times_ns``.

        The first call (or one after :meth:`reset` was never called) uses its first frame to
        initialise and emits events only after it.

        Args:
            luminances: (K, H, W) linear luminance (scene intensity x light level).
            times_ns: (K,) int64 increasing times, ns, after the previous call's last time.

        Returns:
            Sorted :data:`EVENT_DTYPE` array with ``t`` in ``(previous time, times_ns[-1]]``.
        """
        lum = np.asarray(luminances)
        times = np.asarray(times_ns, np.int64)
        if lum.ndim != 3 or lum.shape[1:] != (self.height, self.width):
            raise ValueError(
                f"luminances must be (K, {self.height}, {self.width}), got {lum.shape}"
            )
        if times.shape != (lum.shape[0],) or np.any(np.diff(times) <= 0):
            raise ValueError("times_ns must be (K,) and strictly increasing")
        if self.t_ns is None:
            self.reset(lum[0], int(times[0]))
            lum, times = lum[1:], times[1:]
        if lum.shape[0] == 0:
            return empty_events()
        if times[0] <= self.t_ns:
            raise ValueError(f"times_ns must start after {self.t_ns}, got {times[0]}")
        logs = np.empty((lum.shape[0] + 1, self.width * self.height))
        logs[0] = self.last_log
        logs[1:] = self._lowpass(lum, times)
        all_t = np.concatenate([[self.t_ns], times])
        refr = np.int64(round(self.config.refractory_s * 1e9))
        t, idx, pol, n = _crossings(logs, all_t, self.mem, self.last_t, self.c_on, self.c_off,
                                    self.leak, refr)  # fmt: skip
        noise = self._shot_noise(lum, all_t)
        ev = np.zeros(n + noise.shape[0], EVENT_DTYPE)  # zeroed padding: byte-exact output
        ev["t"][:n], ev["p"][:n] = t[:n], pol[:n]
        ev["x"][:n], ev["y"][:n] = idx[:n] % self.width, idx[:n] // self.width
        ev[n:] = noise
        self.last_log = logs[-1]
        self.last_lum = lum[-1].reshape(-1).astype(np.float64)
        self.t_ns = int(times[-1])
        return ev[np.argsort(ev["t"], kind="stable")]

    def _lowpass(self, lum: np.ndarray, times: np.ndarray) -> np.ndarray:
        logs = self._log(lum)
        if self.config.cutoff_hz is None:
            return logs
        state = self.last_log.copy()
        prev_t = self.t_ns
        for k in range(logs.shape[0]):
            flat = lum[k].reshape(-1)
            f = self.config.cutoff_hz * (flat + 0.1) / 1.1  # bandwidth grows with intensity
            eps = np.minimum(2 * np.pi * f * (times[k] - prev_t) * 1e-9, 1.0)
            state += eps * (logs[k] - state)
            logs[k] = state
            prev_t = times[k]
        return logs

    def _shot_noise(self, lum: np.ndarray, all_t: np.ndarray) -> np.ndarray:
        t0, t1 = int(all_t[0]), int(all_t[-1])
        mean_lum = 0.5 * (self.last_lum + lum[-1].reshape(-1))
        lam = shot_noise_rate(mean_lum, self.config) * (t1 - t0) * 1e-9
        counts = self.rng.poisson(lam)
        idx = np.repeat(np.arange(counts.shape[0]), counts)
        ev = np.zeros(idx.shape[0], EVENT_DTYPE)
        ev["t"] = self.rng.integers(t0 + 1, t1 + 1, size=idx.shape[0])
        ev["x"], ev["y"] = idx % self.width, idx // self.width
        ev["p"] = self.rng.integers(0, 2, size=idx.shape[0])
        return ev


def subframe_count(points_a: np.ndarray, points_b: np.ndarray, max_px: float = 1.0) -> int:
    """Uniform sub-frame count so no point moves more than ``max_px`` between sub-frames.

    Args:
        points_a: (N, 2) pixel positions at the interval start.
        points_b: (N, 2) pixel positions at the interval end.
        max_px: largest allowed displacement per sub-frame, px.

    Returns:
        Number of sub-intervals (>= 1).
    """
    disp = np.linalg.norm(np.asarray(points_b) - np.asarray(points_a), axis=-1).max(initial=0.0)
    return max(1, int(np.ceil(disp / max_px)))


def adaptive_sample_times(
    t0_ns: int,
    t1_ns: int,
    positions: Callable[[int], np.ndarray],
    max_px: float = 1.0,
    min_dt_ns: int = 20_000,
) -> np.ndarray:
    """Render times in ``[t0, t1]`` by bisection until no point moves more than ``max_px``.

    Dense where the head moves fast, sparse where it is still (ESIM's adaptive sampling).

    Args:
        t0_ns: interval start, ns.
        t1_ns: interval end, ns.
        positions: ``t_ns -> (N, 2)`` projected pixel positions (e.g. landmarks, silhouette).
        max_px: largest allowed displacement between consecutive samples, px.
        min_dt_ns: intervals are not split below this length, ns.

    Returns:
        (M,) int64 sorted sample times including ``t0_ns`` and ``t1_ns``.
    """
    cache = {int(t0_ns): positions(int(t0_ns)), int(t1_ns): positions(int(t1_ns))}
    stack, out = [(int(t0_ns), int(t1_ns))], {int(t0_ns), int(t1_ns)}
    while stack:
        a, b = stack.pop()
        mid = (a + b) // 2
        if b - a < 2 * min_dt_ns or mid in (a, b):
            continue
        cache[mid] = positions(mid)
        far = max(subframe_count(cache[a], cache[mid], max_px),
                  subframe_count(cache[mid], cache[b], max_px),
                  subframe_count(cache[a], cache[b], max_px))  # fmt: skip
        if far > 1:
            out.add(mid)
            stack += [(a, mid), (mid, b)]
    return np.array(sorted(out), np.int64)


def piecewise_sample_times(
    t0_ns: int,
    t1_ns: int,
    positions: Callable[[int], np.ndarray],
    max_px: float = 1.0,
    probes: int = 4,
    min_dt_ns: int = 20_000,
) -> np.ndarray:
    """Render times in ``[t0, t1]``: probe the motion, then split each probe span uniformly.

    Like :func:`adaptive_sample_times` (dense where points move fast, sparse where they are
    still) but without bisection's power-of-two overshoot: the interval is cut into ``probes``
    equal spans and span ``i`` gets ``subframe_count`` equal sub-intervals, so no point moves
    more than about ``max_px`` between samples when its motion is smooth within a span.

    Args:
        t0_ns: interval start, ns.
        t1_ns: interval end, ns.
        positions: ``t_ns -> (N, 2)`` projected pixel positions.
        max_px: largest allowed displacement between consecutive samples, px.
        probes: number of equal spans whose end points are probed (>= 1).
        min_dt_ns: spans are not split below this length, ns.

    Returns:
        (M,) int64 sorted unique sample times including ``t0_ns`` and ``t1_ns``.
    """
    edges = np.linspace(int(t0_ns), int(t1_ns), max(1, int(probes)) + 1).round().astype(np.int64)
    pos = [positions(int(t)) for t in edges]
    out = [edges[:1]]
    for i in range(len(edges) - 1):
        a, b = int(edges[i]), int(edges[i + 1])
        n = min(subframe_count(pos[i], pos[i + 1], max_px), max(1, (b - a) // max(min_dt_ns, 1)))
        out.append(np.linspace(a, b, n + 1).round().astype(np.int64)[1:])
    return np.unique(np.concatenate(out))
