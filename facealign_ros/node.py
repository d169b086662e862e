"""``align_node``: a thin rclpy LifecycleNode over :class:`~facealign_ros.pipeline.Pipeline`.

Lifecycle: *configure* declares nothing new but reads the parameters and loads the model (a
missing or bad checkpoint fails the transition with one clear log line); *activate* creates the
subscriptions (sensor-data QoS), publishers and the worker; *deactivate* stops them and frees GPU
memory; *cleanup* drops the model. Everything that does not need rclpy (parameter table, config
building, per-face publisher bookkeeping, diagnostics values) is plain Python tested without ROS;
this module imports without rclpy installed.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facealign_ros import topics
from facealign_ros.pipeline.config import PARAMETER_RANGES, PipelineConfig
from facealign_ros.pipeline.health import PipelineStats
from facealign_ros.pipeline.inputs import restamp_unstamped
from facealign_ros.results import OutputMessage

try:  # rclpy exists only in a ROS 2 environment
    import rclpy
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
except ImportError:  # pragma: no cover - exercised where rclpy is missing
    rclpy = None
    LifecycleNode = object  # type: ignore[assignment,misc]
    TransitionCallbackReturn = None  # type: ignore[assignment,misc]

NODE_NAME = "facealign"


@dataclass(frozen=True)
class Param:
    """One ROS parameter: name, default, description and (numeric) range."""

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None


IMAGE_TRANSPORTS = ("raw", "compressed")
"""Values of the ``image_transport`` node parameter."""
_NODE_PARAMS = (
    Param("events_topic", "events", "event_camera_msgs/EventPacket input (remappable)"),
    Param("image_topic", "image", "sensor_msgs/Image input: mono8, rgb8, bgr8, ... (remappable)"),
    Param(
        "image_transport",
        "raw",
        "raw: sensor_msgs/Image on image_topic; compressed: sensor_msgs/CompressedImage "
        "(JPEG/PNG) on the remapped image_topic + '/compressed', as image_transport names it",
    ),
    Param("camera_info_topic", "camera_info", "sensor_msgs/CameraInfo (intrinsics for head pose)"),
    Param("publish_tf", True, "broadcast the REP-155 face_<id> TF frame"),
    Param(
        "restamp_unstamped",
        False,
        "event packets and images with header stamp 0 (a driver that does not stamp) take the "
        "node clock's receive time instead of being dropped as 'unstamped' (counted 'restamped')",
    ),
    Param(
        "debug_image_rate_hz",
        10.0,
        "most ~/debug_image frames per second (only when subscribed)",
        (0.0, 1000.0),
    ),  # fmt: skip
    Param("diagnostics_period_s", 1.0, "period of /diagnostics updates", (0.1, 60.0)),
    Param("warn_latency_ms", 40.0, "p99 latency that turns diagnostics WARN", (1.0, 10_000.0)),
    Param("error_latency_ms", 200.0, "p99 latency that turns diagnostics ERROR", (1.0, 60_000.0)),
)
_DESCRIPTIONS = {
    line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
    for line in (PipelineConfig.__doc__ or "").split("Attributes:")[1].split("\n")
    if ":" in line and line.startswith("        ") and not line.startswith("         ")
}


def parameter_table() -> list[Param]:
    """Every node parameter: the :class:`PipelineConfig` fields, then the node's own."""
    out = []
    for f in dataclasses.fields(PipelineConfig):
        default = getattr(PipelineConfig(), f.name)
        default = list(default) if isinstance(default, tuple) else default
        out.append(Param(f.name, default, _DESCRIPTIONS.get(f.name, f.name),
                         PARAMETER_RANGES.get(f.name)))  # fmt: skip
    return out + list(_NODE_PARAMS)


def split_parameters(values: dict[str, Any]) -> tuple[PipelineConfig, dict[str, Any]]:
    """Parameter values -> ``(PipelineConfig, node options)`` (raises ValueError if invalid)."""
    fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    cfg = PipelineConfig.from_dict({k: v for k, v in values.items() if k in fields})
    node = {p.name: values.get(p.name, p.default) for p in _NODE_PARAMS}
    if node["image_transport"] not in IMAGE_TRANSPORTS:
        raise ValueError(
            f"image_transport {node['image_transport']!r}: choose from {IMAGE_TRANSPORTS}"
        )
    return cfg, node


def image_subscription(
    options: dict[str, Any], resolve: Callable[[str], str] | None = None
) -> tuple[str, str]:
    """``(topic, message type)`` of the image input the node options ask for.

    ``compressed`` appends ``/compressed`` to the *resolved* (remapped) image topic, as
    ``image_transport`` does, when ``resolve`` (the node's ``resolve_topic_name``) is given.
    """
    if options["image_transport"] == "compressed":
        base = resolve(options["image_topic"]) if resolve is not None else options["image_topic"]
        return f"{base}/compressed", topics.COMPRESSED_IMAGE_TYPE
    return options["image_topic"], topics.IMAGE_TYPE


def restamping(
    callback: Callable[[Any], bool], receive_ns: Callable[[], int], stats: PipelineStats
) -> Callable[[Any], bool]:
    """``callback`` that first gives an unstamped message its receive time (``receive_ns()``).

    The ``restamp_unstamped`` parameter: each message so stamped counts as ``restamped``.
    """

    def call(msg: Any) -> bool:
        if restamp_unstamped(msg, receive_ns()):
            stats.count("restamped")
        return callback(msg)

    return call


def rclpy_factory(typename: str) -> type:
    """Message-class factory over installed ROS 2 packages: ``"pkg/msg/Name"`` -> class."""
    pkg, _, name = typename.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class PublisherRouter:
    """Publishers per output topic, created on first use; per-face ones removed with the face.

    Args:
        create: ``create(topic, typename) -> publisher`` (with ``publish(msg)``).
        destroy: ``destroy(publisher)``.
        fixed: kind -> topic for the node's own topics (``~/landmarks`` ...), used instead of the
            message's topic.
    """

    PER_FACE = ("roi", "face_landmarks")

    def __init__(self, create: Callable[[str, str], Any], destroy: Callable[[Any], None],
                 fixed: dict[str, str]) -> None:  # fmt: skip
        self._create, self._destroy, self.fixed = create, destroy, dict(fixed)
        self.publishers: dict[str, Any] = {}
        self._face_topics: set[str] = set()

    def topic_of(self, out: OutputMessage) -> str:
        """The topic an output goes to."""
        return self.fixed.get(out.kind, out.topic)

    def route(self, outputs: list[OutputMessage]) -> list[tuple[Any, Any]]:
        """``(publisher, msg)`` pairs for ``outputs``; drops publishers of vanished faces."""
        pairs, face_topics = [], set()
        for out in outputs:
            if out.kind == "tf":
                continue  # the node sends TF through its broadcaster
            topic = self.topic_of(out)
            if out.kind in self.PER_FACE:
                face_topics.add(topic)
            pub = self.publishers.get(topic)
            if pub is None:
                pub = self.publishers[topic] = self._create(topic, out.typename)
            pairs.append((pub, out.msg))
        if any(o.kind == "tracked" for o in outputs):
            for topic in self._face_topics - face_topics:
                self._destroy(self.publishers.pop(topic))
            self._face_topics = face_topics
        return pairs

    def close(self) -> None:
        """Destroy every publisher."""
        for pub in self.publishers.values():
            self._destroy(pub)
        self.publishers.clear()
        self._face_topics.clear()


def diagnostic_values(snapshot: dict[str, Any]) -> dict[str, str]:
    """Flat ``key -> str`` values of a pipeline snapshot for ``diagnostic_updater``."""
    out: dict[str, str] = {}
    for k, v in snapshot.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": str(vv) for kk, vv in v.items()})
        else:
            out[k] = "n/a" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)
    return out


class AlignNode(LifecycleNode):  # type: ignore[misc,valid-type]
    """The lifecycle node (needs rclpy; see the module docstring for the transitions).

    Args:
        **kwargs: passed to ``LifecycleNode`` (e.g. ``namespace``, ``parameter_overrides``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

        for p in parameter_table():
            desc = ParameterDescriptor(description=p.description)
            if p.range is not None and isinstance(p.default, float):
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]))
                ]
            elif p.range is not None and not isinstance(p.default, bool):
                desc.integer_range = [
                    IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)
                ]
            self.declare_parameter(p.name, p.default, desc)
        self.pipeline: Any = None
        self.config: PipelineConfig | None = None
        self.options: dict[str, Any] = {}
        self._entities: list[Any] = []
        self._worker: Any = None
        self._router: PublisherRouter | None = None
        self._tf: Any = None
        self._debug: Any = None
        self._debug_last = 0.0
        self._diag: Any = None

    def _values(self) -> dict[str, Any]:
        return {p.name: self.get_parameter(p.name).value for p in parameter_table()}

    def on_configure(self, state: Any) -> Any:
        """Read the parameters and load the model; FAILURE with a clear log if impossible."""
        from facealign_ros.pipeline import ModelLoadError, Pipeline

        try:
            self.config, self.options = split_parameters(self._values())
            self.pipeline = Pipeline.from_config(self.config, self.get_logger().warning)
            self.pipeline.warm_up()
        except (ValueError, RuntimeError, ModelLoadError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"model {self.config.model_path} on {self.pipeline.model.device}, "
            f"mode {self.config.mode}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: Any) -> Any:
        """Subscribe, advertise and start the worker."""
        import diagnostic_updater
        from rclpy.qos import qos_profile_sensor_data
        from tf2_ros import TransformBroadcaster

        from facealign_ros.pipeline import LatestOnlyWorker, ModelLoadError, Pipeline

        if self.pipeline is None and self.config is not None:  # GPU freed by deactivate
            try:
                self.pipeline = Pipeline.from_config(self.config, self.get_logger().warning)
                self.pipeline.warm_up()
            except (ValueError, RuntimeError, ModelLoadError) as exc:
                self.pipeline = None
                self.get_logger().error(f"activate failed: cannot reload the model: {exc}")
                return TransitionCallbackReturn.FAILURE
        pipe, opts = self.pipeline, self.options
        on_events, on_image = pipe.on_events, pipe.on_image
        if opts["restamp_unstamped"]:
            clock = self.get_clock()
            on_events, on_image = (
                restamping(cb, lambda: clock.now().nanoseconds, pipe.stats)
                for cb in (on_events, on_image)
            )
        for topic, typename, cb in (
            (opts["events_topic"], "event_camera_msgs/msg/EventPacket", on_events),
            (*image_subscription(opts, getattr(self, "resolve_topic_name", None)), on_image),
            (opts["camera_info_topic"], "sensor_msgs/msg/CameraInfo", pipe.on_camera_info),
        ):
            self._entities.append(self.create_subscription(
                rclpy_factory(typename), topic, self._wrap(cb), qos_profile_sensor_data
            ))  # fmt: skip
        self._router = PublisherRouter(
            lambda topic, t: self.create_publisher(rclpy_factory(t), topic, 10),
            self.destroy_publisher,
            {"landmarks": "~/landmarks", "head_pose": "~/head_pose"},
        )
        self._tf = TransformBroadcaster(self) if opts["publish_tf"] else None
        self._debug = self.create_publisher(
            rclpy_factory("sensor_msgs/msg/Image"), "~/debug_image", qos_profile_sensor_data
        )
        self._diag = diagnostic_updater.Updater(self, period=float(opts["diagnostics_period_s"]))
        self._diag.setHardwareID(f"facealign ({pipe.model.device})")
        self._diag.add("facealign pipeline", self._diagnose)
        self._worker = LatestOnlyWorker(pipe, self._publish)
        self._worker.start()
        return super().on_activate(state)

    def _wrap(self, cb: Callable[[Any], bool]) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            cb(msg)
            if self._worker is not None:
                self._worker.notify()

        return callback

    def _publish(self, result: Any) -> None:
        import array
        import time

        from facealign_ros.messages import header
        from facealign_ros.pipeline.draw import render_result
        from facealign_ros.results import result_to_messages

        outs = result_to_messages(rclpy_factory, result, "~", publish_tf=self._tf is not None)
        for pub, msg in self._router.route(outs) if self._router else []:
            pub.publish(msg)
        for out in outs:
            if out.kind == "tf" and self._tf is not None:
                self._tf.sendTransform(list(out.msg.transforms))
        wants = self._debug is not None and self._debug.get_subscription_count() > 0
        self.pipeline.face.keep_debug = wants
        rate = float(self.options["debug_image_rate_hz"])
        now = time.monotonic()
        if wants and result.debug is not None and rate > 0 and now - self._debug_last >= 1 / rate:
            self._debug_last = now
            K, distortion = self.pipeline.camera_model((result.width, result.height))
            img = render_result(result, K=K, distortion=distortion)
            h, w = img.shape[:2]
            self._debug.publish(rclpy_factory("sensor_msgs/msg/Image")(
                header=header(rclpy_factory, result.stamp_ns, result.frame_id), height=h,
                width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                data=array.array("B", img.tobytes()),
            ))  # fmt: skip

    def _diagnose(self, stat: Any) -> Any:
        from diagnostic_msgs.msg import DiagnosticStatus

        from facealign_ros.pipeline.health import diagnostic_summary

        if self.pipeline is None:
            stat.summary(DiagnosticStatus.STALE, "not configured")
            return stat
        snap = self.pipeline.snapshot()
        level, message = diagnostic_summary(
            snap, self.options["warn_latency_ms"], self.options["error_latency_ms"]
        )
        levels = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)
        stat.summary(levels[level], message)
        for k, v in diagnostic_values(snap).items():
            stat.add(k, v)
        return stat

    def _stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        for ent in self._entities:
            self.destroy_subscription(ent)
        self._entities.clear()
        if self._router is not None:
            self._router.close()
            self._router = None
        if self._debug is not None:
            self.destroy_publisher(self._debug)
            self._debug = None
        self._tf = self._diag = None

    def _free(self) -> None:
        if self.pipeline is not None:
            self.pipeline.release()
            self.pipeline = None

    def on_deactivate(self, state: Any) -> Any:
        """Stop the worker, drop subscriptions/publishers and free GPU memory."""
        self._stop()
        self._free()
        return super().on_deactivate(state)

    def on_cleanup(self, state: Any) -> Any:
        """Forget the model and the configuration."""
        self._stop()
        self._free()
        self.config = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: Any) -> Any:
        """Same as cleanup."""
        return self.on_cleanup(state)


def main(args: list[str] | None = None) -> int:
    """Console script ``align_node``: spin the lifecycle node (needs ROS 2)."""
    if rclpy is None:
        import sys

        sys.stderr.write("align_node needs ROS 2 (rclpy); source your ROS 2 setup first\n")
        return 1
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args)
    node = AlignNode()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
