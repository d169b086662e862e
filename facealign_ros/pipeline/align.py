"""The work of one target: search or track the face, landmarks, smoothing and head pose.

:class:`FaceStage` keeps the tracking state between targets. While a face is tracked, the crop
comes from its last landmarks and the network starts from them (warm start, ``warm_stages``
finest stages); while none is, a search runs at most every ``detect_interval_ms`` (input time):
from BlazeFace's best box in the RGB frame when a detector is given, else (or when it finds
nothing) from the best-scored of a few grid crops, refined once on the network's landmarks.
While tracking with RGB (``redetect``), the detector looks at each new frame: the crop moves to
the detected face that overlaps the tracked box (the warm start from the last landmarks holds),
and the track restarts where no detected face overlaps it or lies on it.
"""

from __future__ import annotations

import cv2
import numpy as np

from facealign_ros.face.crop import Box, box_from_landmarks
from facealign_ros.face.detector import BlazeFaceDetector
from facealign_ros.face.pose import HeadPose, default_intrinsics, estimate_pose, undistort_points
from facealign_ros.pipeline.config import PipelineConfig
from facealign_ros.pipeline.detection import (
    AGREE_IOU,
    CHECK_WINDOW,
    DETECTION_EXTENT,
    REDETECT_IOU,
    SMALL_FACE,
    BoxCheck,
    box_from_detection,
)
from facealign_ros.pipeline.health import PipelineStats
from facealign_ros.pipeline.model import ModelRunner
from facealign_ros.pipeline.result import DebugFrame, FaceResult
from facealign_ros.tracking import (
    FaceTracker,
    OneEuroFilter,
    activity_map,
    candidate_boxes,
    plausibility,
)

_MS = 1_000_000


class FaceStage:
    """Search, tracking, landmarks and pose for successive targets.

    Args:
        config: pipeline settings.
        model: the network.
        stats: counters to update (``detect_runs``, ``detections``, ``lost``,
            ``detector_runs``, ``box_corrections``, ``redetections``, ``detections_rejected``:
            BlazeFace boxes where the network sees no face).
        keep_debug: attach the inputs to each result.
        detector: face boxes in RGB frames, or None (grid search only).
    """

    def __init__(
        self,
        config: PipelineConfig,
        model: ModelRunner,
        stats: PipelineStats,
        keep_debug: bool,
        detector: BlazeFaceDetector | None = None,
    ) -> None:
        self.config = config
        self.detector = detector
        self.model = model
        self.stats = stats
        self.keep_debug = keep_debug
        self.tracker = FaceTracker(model.spec.box_scale, config.lost_after)
        # camera_info's (K, width, height, distortion (model, D) or None): one tuple, replaced
        # whole, so the worker never pairs one message's K with another's distortion
        self.camera: tuple[np.ndarray, int, int, tuple[str, np.ndarray] | None] | None = None
        self._last_search: int | None = None
        self._last_check: int | None = None
        self._checked_frame: int | None = None
        self._confirmed_frame: int | None = None  # RGB stamp whose detection was on the track
        self._skip_frame = False  # the next new frame is not looked at
        self._elsewhere = 0  # looks with faces only elsewhere since the last confirmation
        self._rgb_box: tuple[int, Box] | None = None  # (RGB stamp, crop box) of reused features

    def reset(self) -> None:
        """Drop the face and the search timer."""
        self.tracker.drop()
        self._last_search = None
        self._last_check = None
        self._checked_frame = None
        self._confirmed_frame = None
        self._skip_frame = False
        self._elsewhere = 0
        self._rgb_box = None
        self.model.forget()

    def _detect(
        self, rgb: np.ndarray, windows: list[tuple[float, float, float]] | None = None
    ) -> list[Box]:
        """Crop boxes of BlazeFace's faces (best first), none under ``min_face_px``."""
        assert self.detector is not None
        self.stats.count("detector_runs")
        scale = self.model.spec.box_scale
        boxes = [box_from_detection(d, scale) for d in self.detector.detect(rgb, windows)]
        return [b for b in boxes if b.side >= self.config.min_face_px]

    def _search(
        self, events: np.ndarray | None, rgb: np.ndarray | None, size: tuple[int, int], t: int
    ) -> tuple[np.ndarray, np.ndarray, Box] | None:
        """Find a face: the best BlazeFace box the network agrees with, else a grid crop."""
        c, scale = self.config, self.model.spec.box_scale
        self.stats.count("detect_runs")
        if rgb is not None and self.detector is not None:
            # a detection frames the face as training crops do: no refinement; the landmark
            # network must still see a face there (BlazeFace fires on some background texture)
            for box in self._detect(rgb):
                out = self.model.align([box], events, rgb, size, t)
                if float(np.mean(out.confidence[0])) >= c.track_threshold:
                    return out.points[0], out.confidence[0], box
                self.stats.count("detections_rejected")
        act = activity_map(events, rgb, size[0], size[1])
        boxes = candidate_boxes(size[0], size[1], act, c.min_face_px, c.detect_candidates)
        out = self.model.align(boxes, events, rgb, size, t)
        scores = [
            float(np.mean(out.confidence[i])) * plausibility(out.points[i], b, scale)
            for i, b in enumerate(boxes)
        ]
        best = int(np.argmax(scores))
        box = box_from_landmarks(out.points[best], None, scale)
        ref = self.model.align([box], events, rgb, size, t)
        pts, conf = ref.points[0], ref.confidence[0]
        score = float(np.mean(conf)) * plausibility(pts, box, scale)
        return (pts, conf, box) if score >= c.detect_threshold else None

    def _check_box(
        self, box: Box, rgb: np.ndarray | None, t: int, rgb_stamp: int | None
    ) -> BoxCheck | None:
        """BlazeFace's view of the tracked ``box`` (new RGB frames, ``redetect_interval_ms``).

        Returns None (no check, or no face found: keep the box), a :class:`BoxCheck` to crop
        this frame at the detection that overlaps the tracked box most (landmark boxes drift
        in scale on real faces; a detection's box does not), or one with ``restart``: faces
        were found and none overlaps the tracked box by more than :data:`REDETECT_IOU` nor is
        centred in it, for the ``redetect_looks``-th look since a look confirmed the track (a
        wrong lock): restart at the best one. A small tracked face is looked
        for in a window around it (:data:`SMALL_FACE`) first, then, if none is there, in the
        whole frame. A frame whose detection is on the track counts as a hit whatever the
        network's confidence, for every answer that uses the frame (events mode answers a frame
        often). After a look where the tracked box and the detection agree (IoU >=
        :data:`AGREE_IOU`) the next new frame is skipped.
        """
        c = self.config
        if self.detector is None or rgb is None or not c.redetect:
            return None
        if rgb_stamp is not None and rgb_stamp == self._checked_frame:
            return None  # this frame was looked at already (events mode reuses frames)
        last = self._last_check
        if last is not None and 0 <= t - last < c.redetect_interval_ms * _MS:
            return None
        self._checked_frame = rgb_stamp
        if self._skip_frame:  # the last look agreed with the tracker
            self._skip_frame = False
            return None
        self._last_check = t
        scale = self.model.spec.box_scale
        windows = None
        if box.side / (DETECTION_EXTENT * scale) < SMALL_FACE * max(rgb.shape[:2]):
            side = CHECK_WINDOW * box.side  # a small face: look around it, at a size it is found
            windows = [(box.cx - side / 2, box.cy - side / 2, side)]
        found = self._detect(rgb, windows)
        if not found and windows is not None:  # nothing near it: is it a face at all?
            found = self._detect(rgb)
        if not found:
            return None
        overlap = [box.iou(f) for f in found]
        k = int(np.argmax(overlap))
        if overlap[k] <= REDETECT_IOU:
            # a face centred in the tracked box is this face, its box drifted in scale
            on = [f for f in found if abs(f.cx - box.cx) < box.side / 2 > abs(f.cy - box.cy)]
            if not on:
                self._elsewhere += 1
                if self._elsewhere < c.redetect_looks:
                    return None  # not yet: keep the box, no confirmation
                self._elsewhere = 0
                self.stats.count("redetections")
                return BoxCheck(found[0], restart=True)
            k = found.index(on[0])
        self._elsewhere = 0
        self._confirmed_frame = rgb_stamp
        self._skip_frame = overlap[k] >= AGREE_IOU
        return BoxCheck(found[k], restart=False)

    def answer(
        self,
        t: int,
        events: np.ndarray | None,
        rgb: np.ndarray | None,
        size: tuple[int, int],
        mode: str,
        frame_id: str,
        rgb_stamp: int | None = None,
    ) -> FaceResult:
        """Track (or search for) the face in one target's inputs.

        Args:
            t: target stamp, ns.
            events: event window ending at ``t``, or None.
            rgb: RGB frame in sensor geometry, or None.
            size: sensor ``(width, height)``.
            mode: inputs used (recorded in the result).
            frame_id: camera optical frame.
            rgb_stamp: stamp of the RGB frame, ns: a frame answered again (events mode) keeps
                its crop and features while the box stays within ``rgb_reuse_tolerance``.
        """
        c, tr = self.config, self.tracker
        w, h = size
        debug = None
        detected = False
        box = tr.box()
        check = (
            self._check_box(box, rgb, t, rgb_stamp)
            if box is not None and tr.track is not None
            else None
        )
        if check is not None and check.restart:  # a wrong lock: a new face where BlazeFace sees one
            tr.drop()
            self._rgb_box = None
            box = check.box
            out = self.model.align([box], events, rgb, size, t)
            pts, conf = out.points[0], out.confidence[0]
            tr.start(pts, conf, t)
            detected = True
            self.stats.count("detections")
        elif box is not None and tr.track is not None:
            snapped = check is not None
            if check is not None:
                box = check.box
                self.stats.count("box_corrections")
            anchor = tr.track.frames % c.warm_anchor_every == 0
            # the warm start holds on a crop moved to the detection (measured: same NME)
            warm = c.warm_start and tr.track.frames > 1 and not anchor
            init = tr.track.points if warm else None
            stages = min(c.warm_stages, self.model.num_stages) if warm else None
            key = rgb_stamp if rgb is not None and events is not None else None
            box = self._reuse_box(key, box)
            out = self.model.align([box], events, rgb, size, t, init, stages, rgb_key=key)
            pts, conf = out.points[0], out.confidence[0]
            seen = snapped or (rgb_stamp is not None and rgb_stamp == self._confirmed_frame)
            hit = seen or float(np.mean(conf)) >= c.track_threshold  # BlazeFace saw it
            if not tr.update(pts, conf, t, hit):
                self.stats.count("lost")
                self._last_search = None
                box = None
        else:
            due = (
                self._last_search is None
                or not 0 <= t - self._last_search < c.detect_interval_ms * _MS
            )
            found = self._search(events, rgb, size, t) if due else None
            if due:
                self._last_search = t
            if found is not None:
                pts, conf, box = found
                self._elsewhere = 0
                tr.start(pts, conf, t)
                detected = True
                self.stats.count("detections")
        if self.keep_debug:
            crop = None if box is None else (box.cx, box.cy, box.side)
            debug = DebugFrame(events, rgb, crop)
        track = tr.track
        if track is None or box is None:
            return FaceResult.no_face(t, mode, w, h, frame_id, debug=debug)
        pts70, c70 = self.model.to_rep155(pts, conf)
        if c.smoothing:
            if track.smoother is None:
                track.smoother = OneEuroFilter(c.smoothing_min_cutoff, c.smoothing_beta)
            pts70 = track.smoother(pts70, t, scale=box.side)
        pose = self._pose(pts70, c70, size, track.pose)
        track.pose = pose
        ok = c70 > 0.5
        sel = pts70[ok] if ok.sum() >= 4 else pts70
        x0, y0 = np.clip(sel.min(axis=0) - 0.5, 0, [w, h])
        x1, y1 = np.clip(sel.max(axis=0) + 0.5, 0, [w, h])
        return FaceResult(
            stamp_ns=t,
            face_id=track.face_id,
            landmarks=pts70,
            confidence=np.clip(c70, 0, 1),
            roi=(float(x0), float(y0), float(x1), float(y1)),
            pose=pose,
            mode=mode,
            width=w,
            height=h,
            frame_id=frame_id,
            latency_ms=0.0,
            compute_ms=0.0,
            detected=detected,
            debug=debug,
        )

    def _reuse_box(self, rgb_stamp: int | None, box: Box) -> Box:
        """The crop box of the frame's reused RGB features if ``box`` is near it, else ``box``."""
        if rgb_stamp is None:
            return box
        held = self._rgb_box
        if (
            held is not None
            and held[0] == rgb_stamp
            and held[1].near(box, self.config.rgb_reuse_tolerance)
        ):
            return held[1]
        self._rgb_box = (rgb_stamp, box)
        return box

    def intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        """Camera matrix for sensor ``size``: camera_info's (scaled if its size differs)."""
        return self.camera_model(size)[0]

    def camera_model(
        self, size: tuple[int, int]
    ) -> tuple[np.ndarray, tuple[str, np.ndarray] | None]:
        """``(K for sensor size, distortion or None)`` from one camera_info (or the default)."""
        camera = self.camera
        if camera is None:
            return default_intrinsics(*size), None
        K, w, h, distortion = camera
        if (w, h) != tuple(size):
            K = np.diag([size[0] / w, size[1] / h, 1.0]) @ K
        return K, distortion

    def _pose(
        self, pts: np.ndarray, conf: np.ndarray, size: tuple[int, int], prior: HeadPose | None
    ) -> HeadPose | None:
        K, distortion = self.camera_model(size)
        try:
            if distortion is not None:  # landmarks live in the distorted image
                pts = undistort_points(pts, K, distortion)
            return estimate_pose(
                pts,
                K,
                conf,
                min_confidence=self.config.pose_min_confidence,
                prior=prior,
            )
        except (cv2.error, ValueError, np.linalg.LinAlgError):
            return None
