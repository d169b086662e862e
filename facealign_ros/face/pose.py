"""Head pose from 2D landmarks by PnP against a 3D mean face, and Euler-angle conventions.

Frames: the camera optical frame (x right, y down, z forward) and the head frame of
``data/mean_face_68.json`` (x from the subject's right eye to the left eye, y down, z towards
the back of the head; origin 9 cm behind the eyes). A pose ``(R, t)`` maps head-frame points to
the camera: ``p_cam = R @ p_head + t`` (metres); ``R = I`` is a face looking straight at the
camera. Euler angles: ``R = R_y(yaw) @ R_x(pitch) @ R_z(roll)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import cv2
import numpy as np

PNP_POINTS = np.arange(17, 68)
"""iBUG indices used for PnP: brows, nose, eyes and mouth. The jaw contour is left out: its 2D
points follow the silhouette, not fixed points of the face, once the head turns."""


@cache
def mean_face_68() -> np.ndarray:
    """``(68, 3)`` float64 mean face in metres (head frame); read-only."""
    text = resources.files("facealign_ros.face").joinpath("data/mean_face_68.json").read_text()
    pts = np.asarray(json.loads(text)["points"], dtype=np.float64)
    pts.setflags(write=False)
    return pts


def euler_to_matrix(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotation matrices ``R_y(yaw) @ R_x(pitch) @ R_z(roll)`` from radians; ``(..., 3, 3)``."""
    y, p, r = (np.asarray(a, np.float64) for a in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    o, z = np.ones_like(cy), np.zeros_like(cy)
    ry = np.stack([cy, z, sy, z, o, z, -sy, z, cy], -1).reshape(*cy.shape, 3, 3)
    rx = np.stack([o, z, z, z, cp, -sp, z, sp, cp], -1).reshape(*cp.shape, 3, 3)
    rz = np.stack([cr, -sr, z, sr, cr, z, z, z, o], -1).reshape(*cr.shape, 3, 3)
    return ry @ rx @ rz


def matrix_to_euler(rotation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_to_matrix`: ``(..., 3)`` (yaw, pitch, roll) radians."""
    r = np.asarray(rotation, np.float64)
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.stack([yaw, pitch, roll], axis=-1)


DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
"""``sensor_msgs/CameraInfo`` distortion models :func:`undistort_points` handles."""
_PINHOLE_SIZES = (4, 5, 8, 12, 14)  # coefficient counts OpenCV's pinhole model accepts


class UnsupportedDistortionError(ValueError):
    """A distortion model :func:`undistort_points` does not know, with non-zero coefficients."""


def camera_distortion(model: str, coeffs: np.ndarray) -> tuple[str, np.ndarray] | None:
    """A CameraInfo's ``distortion_model`` and ``d`` -> ``(model, coefficients)``, None if none.

    Args:
        model: one of :data:`DISTORTION_MODELS` (ROS ``D`` order is OpenCV's order).
        coeffs: ``(N,)`` coefficients; all zero (or none) means no distortion, whatever the model.

    Raises:
        UnsupportedDistortionError: an unknown model with non-zero coefficients (the camera matrix
            is still good: the caller may use it without the distortion).
        ValueError: non-finite coefficients, or a count the model cannot take.
    """
    d = np.asarray(coeffs, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"distortion coefficients {d.tolist()} are not finite")
    if not np.any(d):
        return None
    if model not in DISTORTION_MODELS:
        known = ", ".join(DISTORTION_MODELS)
        raise UnsupportedDistortionError(
            f"distortion model {model!r} with D={d.tolist()}: not one of {known}"
        )
    if model == "equidistant":
        if d.size < 4 or np.any(d[4:]):
            raise ValueError(f"equidistant distortion needs 4 coefficients, got {d.tolist()}")
        return model, d[:4].copy()
    if d.size not in _PINHOLE_SIZES:
        sizes = ", ".join(map(str, _PINHOLE_SIZES))
        raise ValueError(f"{model} distortion with {d.size} coefficients (OpenCV takes {sizes})")
    return model, d


def undistort_points(
    points_px: np.ndarray, K: np.ndarray, distortion: tuple[str, np.ndarray]
) -> np.ndarray:
    """``(N, 2)`` pixels of the distorted image -> pixels of the ideal pinhole camera ``K``.

    Args:
        points_px: ``(N, 2)`` pixels; NaN rows stay NaN.
        K: ``(3, 3)`` camera matrix.
        distortion: ``(model, coefficients)`` from :func:`camera_distortion`.
    """
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 1, 2)
    model, d = distortion
    if model == "equidistant":
        out = cv2.fisheye.undistortPoints(pts, K, d, P=K)
    else:
        out = cv2.undistortPoints(pts, K, d, P=K)
    return out.reshape(-1, 2)


def project_points(
    points_m: np.ndarray,
    rotation: np.ndarray,
    translation: np.ndarray,
    K: np.ndarray,
    distortion: tuple[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``(N, 3)`` points of the head frame (metres) -> ``(N, 2)`` pixels of the camera's image.

    Args:
        points_m: ``(N, 3)`` points in the head frame, metres.
        rotation: ``(3, 3)`` head -> camera rotation.
        translation: ``(3,)`` head origin in the camera frame, metres.
        K: ``(3, 3)`` camera matrix.
        distortion: ``(model, coefficients)`` from :func:`camera_distortion`; None: the ideal
            pinhole ``K`` (the inverse of :func:`undistort_points` otherwise).
    """
    obj = np.asarray(points_m, dtype=np.float64).reshape(-1, 1, 3)
    rvec, _ = cv2.Rodrigues(np.asarray(rotation, dtype=np.float64))
    tvec = np.asarray(translation, dtype=np.float64).reshape(3, 1)
    K = np.asarray(K, dtype=np.float64)  # OpenCV wants K and the coefficients of one type
    d = np.zeros(5) if distortion is None else np.asarray(distortion[1], dtype=np.float64)
    if distortion is not None and distortion[0] == "equidistant":
        out, _ = cv2.fisheye.projectPoints(obj, rvec, tvec, K, d)
    else:
        out, _ = cv2.projectPoints(obj, rvec, tvec, K, d)
    return out.reshape(-1, 2)


def default_intrinsics(width: int, height: int, hfov_deg: float = 70.0) -> np.ndarray:
    """Pinhole ``K`` for a camera without calibration: principal point at the centre."""
    f = (width / 2) / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


@dataclass(frozen=True)
class HeadPose:
    """A head pose estimate.

    Attributes:
        rotation: ``(3, 3)`` head -> camera rotation.
        translation: ``(3,)`` head origin in the camera frame, metres.
        reprojection_px: RMS reprojection error of the points used, pixels.
        n_points: number of landmarks used.
    """

    rotation: np.ndarray
    translation: np.ndarray
    reprojection_px: float
    n_points: int

    @property
    def euler_deg(self) -> np.ndarray:
        """``(3,)`` yaw, pitch, roll in degrees."""
        return np.degrees(matrix_to_euler(self.rotation))


def estimate_pose(
    points_px: np.ndarray,
    K: np.ndarray,
    confidence: np.ndarray | None = None,
    dist: np.ndarray | None = None,
    min_confidence: float = 0.3,
    prior: HeadPose | None = None,
) -> HeadPose | None:
    """Head pose from 68 (iBUG) or 70 (REP-155) landmarks by PnP against the mean face.

    Args:
        points_px: ``(68|70, 2)`` landmarks, pixels (pixel-centre convention).
        K: ``(3, 3)`` camera matrix of the image the landmarks live in.
        confidence: optional ``(N,)`` per-landmark confidence; points below ``min_confidence``
            are not used.
        dist: optional distortion coefficients (OpenCV order).
        min_confidence: threshold on ``confidence``.
        prior: previous pose, used as the initial guess (tracking).

    Returns:
        The pose, or None when fewer than 6 usable points remain or PnP fails.
    """
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] not in (68, 70):
        raise ValueError(f"estimate_pose: need 68 or 70 landmarks, got {pts.shape[0]}")
    idx = PNP_POINTS
    use = np.all(np.isfinite(pts[idx]), axis=1)
    if confidence is not None:
        use &= np.asarray(confidence, dtype=np.float64).reshape(-1)[idx] >= min_confidence
    idx = idx[use]
    if idx.size < 6:
        return None
    obj = mean_face_68()[idx]
    img = pts[idx]
    d = np.zeros(5) if dist is None else np.asarray(dist, dtype=np.float64)
    if prior is not None:
        rvec, _ = cv2.Rodrigues(prior.rotation)
        tvec = prior.translation.reshape(3, 1).copy()
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, d, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    else:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, d, flags=cv2.SOLVEPNP_EPNP)
        if ok:
            ok, rvec, tvec = cv2.solvePnP(obj, img, K, d, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.all(np.isfinite(tvec)) or float(tvec[2, 0]) <= 0:
        return None
    R, _ = cv2.Rodrigues(rvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, d)
    rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img) ** 2, axis=1))))
    return HeadPose(R, tvec.reshape(3), rms, int(idx.size))


def rotation_error_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    """Geodesic angle between two rotations, degrees."""
    c = (np.trace(np.asarray(R1).T @ np.asarray(R2)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
