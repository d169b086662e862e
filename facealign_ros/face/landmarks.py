"""Landmark schemes: iBUG 68, REP-155 70 (iBUG 68 + pupils) and WFLW 98.

Coordinates are ``(N, 2)`` arrays of ``(x, y)`` with x to the right and y down. "Right" and
"left" are the subject's (iBUG point 36 is the subject's right eye outer corner, which appears
on the image's left in a frontal view).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _pairs_to_perm(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


_IBUG68_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)
_WFLW98_PAIRS = (
    [(i, 32 - i) for i in range(16)]
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(55, 59), (56, 58)]
    + [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93)]
    + [(96, 97)]
)

WFLW98_TO_IBUG68 = np.array(
    list(range(0, 33, 2))  # jaw: every other contour point
    + [33, 34, 35, 36, 37, 42, 43, 44, 45, 46]  # brows (upper edges)
    + [51, 52, 53, 54, 55, 56, 57, 58, 59]  # nose
    + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]  # eyes
    + list(range(76, 96)),  # mouth
    dtype=np.int64,
)
"""Index into a WFLW 98 array for each iBUG 68 point (the usual 98 -> 68 subset)."""


@dataclass(frozen=True)
class LandmarkScheme:
    """A landmark layout.

    Attributes:
        name: scheme id (``ibug68``, ``rep155_70``, ``wflw98``).
        n_points: number of points.
        flip: permutation to apply after mirroring x so that indices keep their meaning.
        outer_eyes: indices of the (right, left) outer eye corners, for inter-ocular distance.
        pupils: indices of the (right, left) pupils, or None.
        eyes: (right, left) index lists of eye contour points (pupil fallback).
    """

    name: str
    n_points: int
    flip: np.ndarray
    outer_eyes: tuple[int, int]
    pupils: tuple[int, int] | None
    eyes: tuple[tuple[int, ...], tuple[int, ...]]


IBUG68 = LandmarkScheme(
    "ibug68",
    68,
    _pairs_to_perm(68, _IBUG68_PAIRS),
    (36, 45),
    None,
    (tuple(range(36, 42)), tuple(range(42, 48))),
)
REP155_70 = LandmarkScheme(
    "rep155_70",
    70,
    _pairs_to_perm(70, [*_IBUG68_PAIRS, (68, 69)]),
    (36, 45),
    (68, 69),
    (tuple(range(36, 42)), tuple(range(42, 48))),
)
WFLW98 = LandmarkScheme(
    "wflw98",
    98,
    _pairs_to_perm(98, _WFLW98_PAIRS),
    (60, 72),
    (96, 97),
    (tuple(range(60, 68)), tuple(range(68, 76))),
)
SCHEMES = {s.name: s for s in (IBUG68, REP155_70, WFLW98)}


def get_scheme(name_or_n: str | int) -> LandmarkScheme:
    """Look a scheme up by name or by point count (68, 70, 98).

    Raises:
        ValueError: for an unknown scheme.
    """
    if isinstance(name_or_n, str):
        if name_or_n not in SCHEMES:
            raise ValueError(f"unknown landmark scheme {name_or_n!r}; known: {sorted(SCHEMES)}")
        return SCHEMES[name_or_n]
    for scheme in SCHEMES.values():
        if scheme.n_points == int(name_or_n):
            return scheme
    raise ValueError(f"no landmark scheme with {name_or_n} points (68, 70 and 98 are known)")


def flip_landmarks(points: np.ndarray, width: float, scheme: LandmarkScheme) -> np.ndarray:
    """Mirror landmarks horizontally in an image of ``width`` and re-order their indices.

    Pixel-centre convention: x -> width - 1 - x (matches ``np.fliplr`` of the image). For
    normalised ``[0, 1]`` coordinates use :func:`flip_normalized`.

    Args:
        points: ``(..., N, 2)`` landmarks in pixels.
        width: image width in pixels.
        scheme: the landmark scheme of ``points``.

    Returns:
        ``(..., N, 2)`` mirrored landmarks, index ``i`` holding the mirrored point ``flip[i]``.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out[..., scheme.flip, :]


def flip_normalized(points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """Mirror normalised ``[0, 1]`` landmarks (x -> 1 - x) and re-order their indices."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = 1.0 - out[..., 0]
    return out[..., scheme.flip, :]


def inter_ocular(points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """Outer-eye-corner distance of ``(..., N, 2)`` landmarks; shape ``(...)``."""
    r, l_ = scheme.outer_eyes
    return np.linalg.norm(points[..., r, :] - points[..., l_, :], axis=-1)


def pupil_centres(points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """``(..., 2, 2)`` right and left pupil: the pupil points, or eye contour means."""
    if scheme.pupils is not None:
        return points[..., list(scheme.pupils), :]
    right = points[..., list(scheme.eyes[0]), :].mean(axis=-2)
    left = points[..., list(scheme.eyes[1]), :].mean(axis=-2)
    return np.stack([right, left], axis=-2)


def inter_pupil(points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """Pupil-to-pupil distance of ``(..., N, 2)`` landmarks; shape ``(...)``."""
    p = pupil_centres(points, scheme)
    return np.linalg.norm(p[..., 0, :] - p[..., 1, :], axis=-1)


def to_rep155(points: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """Convert ``(..., N, 2|3)`` landmarks of ``scheme`` to the REP-155 70-point layout.

    iBUG 68 gets pupils from the eye contour means; WFLW 98 is subsampled with
    :data:`WFLW98_TO_IBUG68` and keeps its pupils 96/97. Extra trailing columns (e.g. a
    confidence) are carried along.
    """
    pts = np.asarray(points)
    if scheme.name == "rep155_70":
        return pts.copy()
    if scheme.name == "wflw98":
        return pts[..., [*WFLW98_TO_IBUG68.tolist(), 96, 97], :].copy()
    right = pts[..., 36:42, :].mean(axis=-2, keepdims=True)
    left = pts[..., 42:48, :].mean(axis=-2, keepdims=True)
    return np.concatenate([pts, right, left], axis=-2)
