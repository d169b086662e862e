"""Facial expressions (mouth, blinks, brows, smile) as RBF blend shapes, and the two pupils.

Each expression is a displacement of the 68 iBUG landmarks spread over the mesh with the
landmark-anchored Gaussian RBF of :func:`training.synth.variety.rbf_deform`; the resulting
per-vertex displacement fields are stored once per identity (:class:`ExpressionRig`) and mixed
linearly with weights in [0, 1] (brows in [-1, 1]) at every rendered time, so animating a face
costs one (V, 3) multiply-add per basis instead of an RBF solve. Where the lips part, vertices
of the inner lip band are darkened with the opening (the scans have no mouth cavity).

:class:`ExpressionTrack` samples seeded, time-continuous weights: blinks (Poisson, ~0.1-0.25 s,
fast close and slower opening), talking-like mouth movement in episodes, slow brow and smile
changes. :func:`pupil_points` gives the REP-155 landmarks 68 (right pupil: the subject's right,
iBUG eye 36-41) and 69 (left pupil, eye 42-47) in 3D.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from training.synth.assets import HeadMesh
from training.synth.variety import rbf_deform

EXPRESSIONS = ("mouth_open", "smile", "blink_right", "blink_left", "brow_raise")
"""Names of the expression bases, in weight order."""
PUPIL_FORWARD_M = 0.002
"""Pupils sit this far in front of (towards -z of) the mean of their eye's six lid landmarks."""
_RIGHT_EYE, _LEFT_EYE = np.arange(36, 42), np.arange(42, 48)


def _basis_displacements(lm: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """(68, 3) landmark displacements (metres) at full weight and RBF width per basis."""
    out: dict[str, tuple[np.ndarray, float]] = {}
    d = np.zeros((68, 3))
    drop = 0.016
    d[[55, 56, 57, 58, 59, 65, 66, 67], 1] = drop * np.array([0.6, 0.9, 1, 0.9, 0.6, 0.9, 1, 0.9])
    d[[6, 7, 8, 9, 10], 1] = drop * np.array([0.6, 0.85, 0.9, 0.85, 0.6])
    d[[5, 11], 1], d[[4, 12], 1] = 0.35 * drop, 0.12 * drop
    d[[48, 54, 60, 64], 1] = 0.35 * drop
    d[[61, 62, 63], 1] = -0.08 * drop
    d[5:12, 2] += 0.3 * d[5:12, 1]  # the chin swings back a little
    out["mouth_open"] = (d, 0.03)
    d = np.zeros((68, 3))
    cx = 0.5 * (lm[48, 0] + lm[54, 0])
    for i in (48, 54, 60, 64):
        d[i] = [0.006 * np.sign(lm[i, 0] - cx), -0.004, 0.002]
    d[[49, 53, 59, 55], 1] = -0.002
    out["smile"] = (d, 0.02)
    for name, eye in (("blink_right", _RIGHT_EYE), ("blink_left", _LEFT_EYE)):
        d = np.zeros((68, 3))
        upper, lower = eye[[1, 2]], eye[[5, 4]]  # 37,38 over 41,40 (43,44 over 47,46)
        gap = lm[lower] - lm[upper]
        d[upper] = 0.85 * gap
        d[lower] = -0.1 * gap
        out[name] = (d, 0.008)
    d = np.zeros((68, 3))
    d[17:27, 1] = -0.007
    d[17:27, 2] = -0.001
    out["brow_raise"] = (d, 0.02)
    return out


def _inner_lip_band(mesh: HeadMesh) -> np.ndarray:
    """(V,) weights in [0, 1]: how much each vertex lies in the closed inner-lip line."""
    lm = mesh.landmarks.astype(np.float64)
    v = mesh.vertices.astype(np.float64)
    x0, x1 = lm[60, 0], lm[64, 0]
    xs = np.clip(v[:, 0], x0, x1)
    upper = np.interp(xs, lm[[60, 61, 62, 63, 64], 0], lm[[60, 61, 62, 63, 64], 1])
    lower = np.interp(xs, lm[[60, 67, 66, 65, 64], 0], lm[[60, 67, 66, 65, 64], 1])
    mid = 0.5 * (upper + lower)
    half_w = 0.5 * (x1 - x0)
    across = np.clip(1 - np.abs(v[:, 0] - 0.5 * (x0 + x1)) / max(half_w, 1e-6), 0, 1)
    near = np.exp(-(((v[:, 1] - mid) / 0.0025) ** 2))
    front = v[:, 2] < lm[[61, 62, 63, 65, 66, 67], 2].max() + 0.01
    return (near * np.sqrt(across) * front).astype(np.float32)


@dataclass(frozen=True, eq=False)
class ExpressionRig:
    """Linear expression bases of one identity mesh.

    Attributes:
        mesh: the neutral mesh.
        vertex_basis: (E, V, 3) float32 vertex displacements at full weight, metres.
        normal_basis: (E, V, 3) float32 normal changes at full weight.
        landmark_basis: (E, 68, 3) float32 landmark displacements at full weight, metres.
        lip_band: (V,) float32 darkening weight of the inner-lip vertices (mouth opening).
    """

    mesh: HeadMesh
    vertex_basis: np.ndarray
    normal_basis: np.ndarray
    landmark_basis: np.ndarray
    lip_band: np.ndarray

    @classmethod
    def build(cls, mesh: HeadMesh) -> ExpressionRig:
        """Solve the RBF warps of all :data:`EXPRESSIONS` for ``mesh`` (once per identity)."""
        vb, nb, lb = [], [], []
        for name, (disp, sigma) in _basis_displacements(mesh.landmarks.astype(np.float64)).items():
            assert name in EXPRESSIONS
            warped = rbf_deform(mesh, disp, sigma_m=sigma, reg=0.02)
            vb.append(warped.vertices - mesh.vertices)
            nb.append(warped.normals - mesh.normals)
            lb.append(warped.landmarks - mesh.landmarks)
        return cls(mesh, np.stack(vb), np.stack(nb), np.stack(lb), _inner_lip_band(mesh))

    def landmarks(self, weights: np.ndarray) -> np.ndarray:
        """Landmarks under expression weights.

        Args:
            weights: (E,) or (N, E) weights in :data:`EXPRESSIONS` order.

        Returns:
            (68, 3) or (N, 68, 3) float64 head-frame landmarks, metres.
        """
        w = np.asarray(weights, np.float64)
        return self.mesh.landmarks + np.tensordot(w, self.landmark_basis, axes=(-1, 0))

    def apply(self, weights: np.ndarray) -> HeadMesh:
        """The mesh under expression weights (E,): vertices, normals, colours and landmarks."""
        w = np.asarray(weights, np.float32)
        if not np.any(w):
            return self.mesh
        v = self.mesh.vertices + np.tensordot(w, self.vertex_basis, axes=(0, 0))
        n = self.mesh.normals + np.tensordot(w, self.normal_basis, axes=(0, 0))
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
        opening = float(np.clip(w[0], 0.0, 1.0))
        colors = self.mesh.colors
        if opening > 0:
            dark = 1.0 - 0.92 * opening * self.lip_band[:, None]
            colors = (colors * dark).astype(np.float32)
        return replace(
            self.mesh,
            vertices=v.astype(np.float32),
            normals=n.astype(np.float32),
            colors=colors,
            landmarks=self.landmarks(w).astype(np.float32),
        )


def pupil_points(landmarks: np.ndarray) -> np.ndarray:
    """3D pupils from 3D iBUG landmarks: eye centre pushed :data:`PUPIL_FORWARD_M` forward.

    Args:
        landmarks: (..., 68, 3) head-frame landmarks, metres.

    Returns:
        (..., 2, 3) float64: right pupil (REP-155 index 68, iBUG eye 36-41), left pupil (69).
    """
    lm = np.asarray(landmarks, np.float64)
    eyes = np.stack([lm[..., _RIGHT_EYE, :].mean(-2), lm[..., _LEFT_EYE, :].mean(-2)], -2)
    eyes[..., 2] -= PUPIL_FORWARD_M
    return eyes


def landmarks70(rig: ExpressionRig, weights: np.ndarray) -> np.ndarray:
    """REP-155 70 3D points (68 iBUG + right, left pupil) under expression weights.

    Args:
        rig: the identity's expression rig.
        weights: (E,) or (N, E).

    Returns:
        (70, 3) or (N, 70, 3) float64 head-frame points, metres.
    """
    lm = rig.landmarks(weights)
    return np.concatenate([lm, pupil_points(lm)], axis=-2)


def _smooth_noise(rng: np.random.Generator, duration_s: float, rate_hz: float, n: int) -> tuple:
    """Keyframes (times, values) of a smooth random signal with ``n`` channels in [0, 1]."""
    k = int(np.ceil(duration_s * rate_hz)) + 3
    times = (np.arange(k) - 1) / rate_hz
    return times, rng.uniform(0.0, 1.0, size=(k, n))


def _catmull(times: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 1, len(times) - 3)
    s = ((t - times[i]) / (times[i + 1] - times[i]))[:, None]
    p0, p1, p2, p3 = values[i - 1], values[i], values[i + 1], values[i + 2]
    return 0.5 * (2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2
                  + (3 * p1 - p0 - 3 * p2 + p3) * s**3)  # fmt: skip


class ExpressionTrack:
    """Seeded, time-continuous expression weights over ``[0, duration_s]``.

    Args:
        duration_s: length, seconds.
        seed: numpy Generator or seed.
        blink_rate_hz: mean blink rate, Hz.
        talk_fraction: share of time spent talking (mouth moving at ~3-5 Hz).
        amount: overall expression strength in [0, 1] (0: neutral face throughout).
    """

    def __init__(
        self,
        duration_s: float,
        seed: int | np.random.Generator = 0,
        blink_rate_hz: float = 0.3,
        talk_fraction: float = 0.4,
        amount: float = 1.0,
    ) -> None:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.duration_s, self.amount = float(duration_s), float(amount)
        n_blinks = rng.poisson(blink_rate_hz * (duration_s + 1.0))
        self.blink_t = np.sort(rng.uniform(-0.5, duration_s + 0.5, n_blinks))
        self.blink_close = rng.uniform(0.05, 0.09, n_blinks)
        self.blink_open = rng.uniform(0.08, 0.18, n_blinks)
        self.blink_depth = rng.uniform(0.8, 1.0, n_blinks)
        self._talk = _smooth_noise(rng, duration_s, rng.uniform(3.0, 5.0), 1)
        self._gate = _smooth_noise(rng, duration_s, 0.5, 1)
        self._slow = _smooth_noise(rng, duration_s, 0.4, 2)  # smile, brows
        self.talk_threshold = 1.0 - float(np.clip(talk_fraction, 0.0, 1.0))

    def weights(self, t: float | np.ndarray) -> np.ndarray:
        """Expression weights at time(s) ``t`` (seconds).

        Args:
            t: scalar or (N,) seconds.

        Returns:
            (E,) or (N, E) float64 weights in :data:`EXPRESSIONS` order.
        """
        ts = np.atleast_1d(np.asarray(t, np.float64))
        gate = np.clip((_catmull(*self._gate, ts)[:, 0] - self.talk_threshold) * 6.0, 0, 1)
        talk = np.clip(_catmull(*self._talk, ts)[:, 0], 0, 1) * gate
        slow = np.clip(_catmull(*self._slow, ts), 0, 1)
        blink = np.zeros_like(ts)
        for tb, c, o, a in zip(self.blink_t, self.blink_close, self.blink_open, self.blink_depth,
                               strict=True):  # fmt: skip
            rel = ts - tb
            closing = np.clip((rel + c) / c, 0, 1)  # ramps 0 -> 1 over [tb - c, tb]
            opening = np.clip(1 - rel / o, 0, 1)  # 1 -> 0 over [tb, tb + o]
            shape = np.where(rel < 0, closing, opening)
            blink = np.maximum(blink, a * (3 * shape**2 - 2 * shape**3))
        w = np.stack([0.9 * talk, 0.8 * np.maximum(slow[:, 0] - 0.4, 0) / 0.6, blink, blink,
                      1.6 * (slow[:, 1] - 0.5)], axis=1)  # fmt: skip
        w *= self.amount
        return w[0] if np.ndim(t) == 0 else w
