"""Smooth random head trajectories with saccade-like turns, near-static holds and tremor.

A trajectory is a seeded sequence of keyframes joined by cubic Hermite segments of three
kinds: *smooth* moves (Catmull-Rom velocities, continuous through keyframes), *saccades* (fast
minimum-jerk turns that start and end at rest, peak angular speed of several hundred deg/s)
and *holds* (near-static). Small sinusoidal tremor (head tremor and camera shake) is added on
top. The state is ``(yaw, pitch, roll, x/z, y/z, z)``: Euler angles (radians), the lateral
offset of the head origin as a tangent of the viewing angle, and the distance (metres; it sets
the apparent scale). It can be evaluated at any time, scalar or vector.

Rotation convention: ``R = R_y(yaw) @ R_x(pitch) @ R_z(roll)`` maps head to camera axes, both
frames x right, y down, z forward/backward-of-head (see :mod:`training.synth.assets`), so
yaw turns about the vertical axis, pitch nods, roll tilts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facealign_ros.face.pose import euler_to_matrix

STATE_NAMES = ("yaw", "pitch", "roll", "x_tan", "y_tan", "z")
_SMOOTH, _SACCADE, _HOLD = 0, 1, 2


@dataclass(frozen=True)
class MotionConfig:
    """Parameters of :class:`HeadTrajectory` (angles in degrees, times in seconds).

    Attributes:
        yaw_deg: yaw limit, +-degrees.
        pitch_deg: pitch limit, +-degrees.
        roll_deg: roll limit, +-degrees.
        distance_m: (min, max) distance of the head origin from the camera, metres.
        offset_tan: limit of ``|x/z|`` and ``|y/z|`` of the head origin.
        smooth_s: (min, max) duration of a smooth move.
        smooth_step_deg: typical (std) angle change of a smooth move, degrees.
        saccade_prob: probability that a segment is a saccade-like turn.
        saccade_s: (min, max) saccade duration.
        saccade_deg: (min, max) saccade yaw amplitude, degrees.
        saccade_max_dps: peak angular speed limit of a saccade, deg/s (stretches its duration).
        hold_prob: probability that a segment is a near-static hold.
        hold_s: (min, max) hold duration.
        tremor_deg: tremor/camera-shake amplitude, degrees (per component).
        tremor_hz: (min, max) tremor frequency.
    """

    yaw_deg: float = 60.0
    pitch_deg: float = 40.0
    roll_deg: float = 30.0
    distance_m: tuple[float, float] = (0.35, 0.9)
    offset_tan: float = 0.12
    smooth_s: tuple[float, float] = (0.8, 2.5)
    smooth_step_deg: float = 15.0
    saccade_prob: float = 0.1
    saccade_s: tuple[float, float] = (0.15, 0.35)
    saccade_deg: tuple[float, float] = (15.0, 50.0)
    saccade_max_dps: float = 450.0
    hold_prob: float = 0.25
    hold_s: tuple[float, float] = (0.4, 2.0)
    tremor_deg: float = 0.05
    tremor_hz: tuple[float, float] = (2.0, 11.0)

    @classmethod
    def preset(cls, motion: str) -> MotionConfig:
        """Presets ``"slow"`` (mostly smooth) and ``"fast"`` (frequent saccades, big steps)."""
        if motion == "slow":
            return cls()
        if motion == "fast":
            return cls(smooth_s=(0.4, 1.2), smooth_step_deg=25.0, saccade_prob=0.4,
                       saccade_s=(0.1, 0.25), saccade_deg=(25.0, 80.0), hold_prob=0.15,
                       tremor_deg=0.1)  # fmt: skip
        raise ValueError(f"unknown motion preset {motion!r}; choose 'slow' or 'fast'")


def _hermite(s: np.ndarray, p0, p1, m0, m1) -> np.ndarray:
    s2, s3 = s * s, s * s * s
    return (
        (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1
        + (s3 - s2) * m1
    )  # fmt: skip


class HeadTrajectory:
    """A seeded random head trajectory over ``[0, duration_s]``.

    Args:
        duration_s: length, seconds (evaluation outside clamps to the ends).
        seed: seed of the numpy Generator (or a Generator).
        config: motion parameters.
    """

    def __init__(
        self,
        duration_s: float,
        seed: int | np.random.Generator = 0,
        config: MotionConfig | None = None,
    ) -> None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        self.duration_s = float(duration_s)
        self.config = cfg = config or MotionConfig()
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._lo = np.array([-np.radians(cfg.yaw_deg), -np.radians(cfg.pitch_deg),
                             -np.radians(cfg.roll_deg), -cfg.offset_tan, -cfg.offset_tan,
                             cfg.distance_m[0]])  # fmt: skip
        self._hi = np.array([-v for v in self._lo[:5]] + [cfg.distance_m[1]])
        self._build(rng)
        self._tremor_f = rng.uniform(*cfg.tremor_hz, size=(3, 3))  # (component, dof)
        self._tremor_ph = rng.uniform(0, 2 * np.pi, size=(3, 3))
        self._tremor_a = np.radians(cfg.tremor_deg) * rng.uniform(0.3, 1.0, size=(3, 3)) / 1.5

    def _build(self, rng: np.random.Generator) -> None:
        cfg, lo, hi = self.config, self._lo, self._hi
        span = hi - lo
        state = lo + span * rng.uniform(0.3, 0.7, size=6)
        times, states, kinds = [0.0], [state], []
        t = 0.0
        while t < self.duration_s:
            u = rng.uniform()
            new = state.copy()
            if u < cfg.saccade_prob:
                kind, dur = _SACCADE, rng.uniform(*cfg.saccade_s)
                amp_deg = rng.uniform(*cfg.saccade_deg)
                dur = max(dur, 1.875 * amp_deg / cfg.saccade_max_dps)  # min-jerk peak speed
                amp = np.radians(amp_deg)
                sign = -np.sign(state[0]) if abs(state[0]) > 0.3 * hi[0] else rng.choice([-1, 1])
                new[0] += sign * amp
                new[1:3] += np.radians(rng.normal(0, 5.0, size=2))
            elif u < cfg.saccade_prob + cfg.hold_prob:
                kind, dur = _HOLD, rng.uniform(*cfg.hold_s)
                new[:3] += np.radians(rng.normal(0, 0.5, size=3))
                new[3:] += rng.normal(0, 0.002, size=3) * span[3:]
            else:
                kind, dur = _SMOOTH, rng.uniform(*cfg.smooth_s)
                new[:3] += np.radians(rng.normal(0, cfg.smooth_step_deg, size=3)) * [1, 0.6, 0.4]
                new[3:] += rng.normal(0, 0.2, size=3) * span[3:]
            # reflect into the limits so the pose stays inside and keeps moving
            new = np.where(new > hi, 2 * hi - new, new)
            new = np.clip(np.where(new < lo, 2 * lo - new, new), lo, hi)
            t += dur
            times.append(t)
            states.append(new)
            kinds.append(kind)
            state = new
        self.key_times = np.asarray(times)
        self.key_states = np.asarray(states)
        self.key_kinds = np.asarray(kinds, np.int64)
        # keyframe velocities: Catmull-Rom (x 0.5 tension), zero next to saccades and holds
        k = self.key_states
        vel = np.zeros_like(k)
        dt = np.diff(self.key_times)
        vel[1:-1] = 0.5 * (k[2:] - k[:-2]) / (dt[1:] + dt[:-1])[:, None]
        still = np.zeros(len(k), bool)
        still[[0, -1]] = True
        stop = self.key_kinds != _SMOOTH
        still[:-1] |= stop
        still[1:] |= stop
        vel[still] = 0.0
        self.key_vel = vel

    def state(self, t: float | np.ndarray) -> np.ndarray:
        """Trajectory state at time(s) ``t``.

        Args:
            t: scalar or (N,) seconds.

        Returns:
            (6,) or (N, 6) float64 ``(yaw, pitch, roll, x/z, y/z, z)`` (radians, -, -, m).
        """
        ts = np.clip(np.asarray(t, np.float64), 0.0, self.duration_s)
        flat = np.atleast_1d(ts)
        i = np.clip(np.searchsorted(self.key_times, flat, side="right") - 1, 0,
                    len(self.key_times) - 2)  # fmt: skip
        t0, t1 = self.key_times[i], self.key_times[i + 1]
        d = (t1 - t0)[:, None]
        s = ((flat - t0) / (t1 - t0))[:, None]
        p0, p1 = self.key_states[i], self.key_states[i + 1]
        out = _hermite(s, p0, p1, self.key_vel[i] * d, self.key_vel[i + 1] * d)
        sac = (self.key_kinds[i] == _SACCADE)[:, None]
        mj = s * s * s * (10 - 15 * s + 6 * s * s)  # minimum-jerk profile
        out = np.where(sac, p0 + (p1 - p0) * mj, out)
        trem = np.sin(2 * np.pi * flat[:, None, None] * self._tremor_f + self._tremor_ph)
        out[:, :3] += np.sum(self._tremor_a * trem, axis=1)
        out = np.clip(out, self._lo, self._hi)
        return out[0] if ts.ndim == 0 else out

    def pose(self, t: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head pose at time(s) ``t``.

        Args:
            t: scalar or (N,) seconds.

        Returns:
            ``(R, T)``: (3, 3) / (N, 3, 3) rotation head -> camera and (3,) / (N, 3)
            translation (metres) of the head origin in the camera frame.
        """
        st = self.state(t)
        rot = euler_to_matrix(st[..., 0], st[..., 1], st[..., 2])
        z = st[..., 5]
        trans = np.stack([st[..., 3] * z, st[..., 4] * z, z], axis=-1)
        return rot, trans
