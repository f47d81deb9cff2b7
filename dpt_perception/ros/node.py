"""`dpt_node`: depth, labels and point clouds from one or several cameras with one DPT model.

Data path: image message -> `image_conversion.message_to_rgb8` -> `PerceptionPipeline.run` (all
ROS-free: inference/) -> `outputs` (message builders) -> the camera's publishers.

Threads: the executor thread only stores incoming messages (latest frame wins, one slot per
camera); an `InferenceWorker` thread converts the newest frame of every camera, runs ONE batched
forward pass for all of them, and publishes. Outputs without subscribers are not computed; when
no output of a camera has a subscriber, its frames are not even decoded (the subscriber counts
come from the publishers' matched events, see `camera.py`).

Start-up is all-or-nothing: parameters are validated, the model is loaded and run once on a
dummy frame before any subscription exists; any failure ends the process with a clear message
and exit status 1 (see `main`). `DptPerception` holds the node's work in lifecycle phases
(configure: parameters, model, class table; activate: cameras, worker, diagnostics) on an rclpy
node it is given: `DptNode` runs them at once, `lifecycle_node.DptLifecycleNode` on managed
transitions.
"""

from __future__ import annotations

# `python -m`: Ctrl-C while torch and rclpy import exits quietly, as with bin/dpt_node
# (main restores Python's handler before rclpy.init).
if __name__ == "__main__":
    from dpt_perception.command_line import exit_quietly_on_interrupt

    exit_quietly_on_interrupt()

import os
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from dpt_perception.caches import cache_report
from dpt_perception.command_line import restore_interrupts
from dpt_perception.inference import autotune
from dpt_perception.inference.class_aware_depth import ClassAwareDepth
from dpt_perception.inference.depth_semantics import CameraDepth, DepthModeError, resolve_depth_mode
from dpt_perception.inference.geometry import PointCloudProjector
from dpt_perception.inference.latency_budget import LatencyBudget
from dpt_perception.inference.loading import describe_model, format_passes, load_dpt_model
from dpt_perception.inference.pipeline import PerceptionPipeline, resolve_device
from dpt_perception.inference.preprocess import parse_net_size
from dpt_perception.inference.scheduling import InferenceWorker
from dpt_perception.inference.weights import WeightsUnavailableError
from dpt_perception.model.depth_units import METRIC
from dpt_perception.model.pair import EncoderPassCounter, TaskPair
from dpt_perception.msg import ClassTable
from dpt_perception.ros import outputs
from dpt_perception.ros.camera import Camera, Needs
from dpt_perception.ros.diagnostics import stream_status
from dpt_perception.ros.image_conversion import ImageConversionError, array_to_image, message_to_rgb8
from dpt_perception.ros.parameters import (
    MODEL_NET_SIZE,
    RUNTIME_PARAMETERS,
    declare_only,
    help_text,
    read_settings,
    validate_value,
    wants_help,
)

LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class StartupError(RuntimeError):
    """The node cannot serve (bad parameters, model that does not load or run)."""


def build_engine(model, backend: str, device: str, precision: str):
    """(model-like, device, precision) for the PerceptionPipeline. Non-eager engines apply the precision
    themselves, so the PerceptionPipeline then runs them at fp32 (no second autocast)."""
    if backend == "eager":
        return model, device, precision
    from dpt_perception.inference.backends import make_engine

    resolved = resolve_device(device)
    return make_engine(model, backend, device=resolved, precision=precision), resolved, "fp32"


class DptPerception:
    """The node's work on one rclpy node (a `Node` or a `LifecycleNode`), in lifecycle phases:
    configure / activate / deactivate / cleanup. Holds the pipeline, the worker and one `Camera`
    (all of a camera's state) per served camera; the rclpy node only gives it entities."""

    def __init__(self, node):
        self.node = node
        self.log = node.get_logger()
        self.settings = None
        self.pipeline: PerceptionPipeline | None = None
        self.worker: InferenceWorker | None = None
        self.cameras: dict[str, Camera] = {}
        self.class_table_pub = None
        self.diagnostics_pub = None
        self._diagnostics_timer = None
        self._parameter_callbacks_added = False

    def configure(self) -> None:
        """Validate parameters, load and test-run the model, publish the class table."""
        log = self.log
        try:
            declare_only(self.node)
            self.settings = s = read_settings(self.node)
        except (ValueError, ParameterException) as exc:  # e.g. a value outside its descriptor range
            raise StartupError(str(exc)) from exc
        try:
            model = load_dpt_model(s.weights, s.model)
        except WeightsUnavailableError as exc:  # offline and not cached: the message says what to do
            raise StartupError(f"could not load weights {s.weights!r}: {exc}") from exc
        except Exception as exc:  # any loader failure is fatal at start-up, with its message
            raise StartupError(
                f"could not load weights {s.weights!r} (model {s.model or 'auto'}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            # precision/backend "auto": measured once per machine + model + size, then cached.
            net = _net_size(s.net_size) or parse_net_size(model.config.net_size)
            self.engine_choice = choice = autotune.resolve(
                model, s.device, s.backend, s.precision, net, s.weights)
            if choice.trials:
                log.info(choice.summary())
            self.pipeline = PerceptionPipeline(
                *build_engine(model, choice.backend, s.device, choice.precision),
                net_size=_net_size(s.net_size),
                preprocessing=s.preprocessing,
            )
            self.encoder_passes = EncoderPassCounter(self.pipeline.runner)  # every pass the node runs
            self.depth_mode, self.depth_warnings = resolve_depth_mode(
                s.depth_mode,
                self.pipeline.depth_kind == METRIC,
                self.pipeline.has_depth,
                s.sparse_depth_topic,
            )
            self._fit_net_size_to_memory()
            # One forward on a dummy frame: a model that cannot run fails here, not on the first image.
            # A pair measures each of its models on it: the cost of the two encoders is reported.
            net_h, net_w = self.pipeline.net_size
            pair = model if isinstance(model, TaskPair) else None
            if pair is not None:
                pair.measure = True
            self.pipeline.infer_image(np.zeros((net_h, net_w, 3), np.uint8))
            if pair is not None:
                pair.measure = False
            self.model_summary = describe_model(model, s.weights, net_h, net_w)
        except (ValueError, DepthModeError, RuntimeError, ImportError) as exc:
            raise StartupError(f"{type(exc).__name__}: {exc}") from exc
        for warning in self.depth_warnings:
            log.warning(warning)
        config = self.pipeline.config
        self.latency = LatencyBudget(parse_net_size(config.net_size), s.max_latency_ms, _net_size(s.net_size))
        self.palette = self.pipeline.palette  # the label colours (None without a segmentation head)
        self.projector = PointCloudProjector(s.points_max_range or None, s.points_decimation)
        try:
            self.class_rules = self._class_rules(s.too_far_classes, s.points_exclude_classes)
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from exc
        if self.pipeline.has_labels:
            self.class_table_pub = self.node.create_publisher(
                ClassTable, f"{s.output_namespace}/class_table", LATCHED_QOS
            )
            self.class_table_pub.publish(
                outputs.class_table(
                    config.class_names, config.class_colors, " + ".join(s.weights),
                    self.node.get_clock().now().to_msg(),
                )
            )
        self.node.add_on_set_parameters_callback(self._validate_parameters)
        self.node.add_post_set_parameters_callback(self._apply_parameters)
        self._parameter_callbacks_added = True
        if self.class_rules.too_far_ids.size:
            log.info(
                f"class-aware depth: {self.class_rules.names(self.class_rules.too_far_ids)} published as "
                "+Inf (too far) in depth and left out of points (too_far_classes)"
            )
        log.info(f"model: {self.model_summary}")
        log.info(
            f"configured: weights {' + '.join(s.weights)} (heads: {', '.join(config.heads)}) on "
            f"{self.pipeline.device} {choice.backend}/{choice.precision}, "
            f"net_size {list(self.pipeline.net_size)}, "
            f"depth_mode {self.depth_mode}"
        )

    def activate(self) -> None:
        """Create every camera's topics, start the inference worker and the diagnostics."""
        s = self.settings
        log = self.log
        self.worker = InferenceWorker(
            self.process_batch,
            max_batch=s.max_batch,
            on_error=lambda exc: log.error(f"inference failed: {exc}", throttle_duration_sec=5.0),
        )
        several = len(s.cameras) > 1
        for camera_ns in s.cameras:
            try:
                camera = Camera(
                    self.node,
                    camera_ns,
                    s,
                    several,
                    self.pipeline.has_depth,
                    self.pipeline.has_labels,
                    self.on_image,
                    CameraDepth(self.depth_mode, s.depth_scale, s.depth_shift),
                )
            except Exception as exc:  # an invalid topic name from the parameters (rclpy / rcl errors)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StartupError(f"camera {camera_ns!r}: cannot create its topics: {reason}") from exc
            camera.depth_uses_labels = bool(self.class_rules.too_far_ids.size)
            self.cameras[camera.key] = camera
        self.diagnostics_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.node.create_timer(s.diagnostics_period, self.publish_diagnostics)
        self.worker.start()
        log.info(
            "active; cameras: "
            + "; ".join(
                f"{c.key} <- {', '.join(c.input_topics())} -> {c.output_prefix}/..."
                for c in self.cameras.values()
            )
        )

    def deactivate(self) -> None:
        """Stop the worker and remove the cameras' topics and the diagnostics (idempotent)."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        if self._diagnostics_timer is not None:
            self.node.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self.diagnostics_pub is not None:
            self.node.destroy_publisher(self.diagnostics_pub)
            self.diagnostics_pub = None
        for camera in self.cameras.values():
            camera.destroy(self.node)
        self.cameras = {}

    def cleanup(self) -> None:
        """Release the model and the configure-time entities (idempotent)."""
        self.deactivate()
        if self.class_table_pub is not None:
            self.node.destroy_publisher(self.class_table_pub)
            self.class_table_pub = None
        if self._parameter_callbacks_added:  # (bound methods compare equal: removal finds them)
            self.node.remove_on_set_parameters_callback(self._validate_parameters)
            self.node.remove_post_set_parameters_callback(self._apply_parameters)
            self._parameter_callbacks_added = False
        if self.pipeline is not None:
            device = self.pipeline.device
            self.pipeline = None
            if device.type == "cuda":
                import torch

                torch.cuda.empty_cache()


    def _fit_net_size_to_memory(self) -> None:
        """A net_size whose forward would not fit in the memory available now is lowered to the
        largest multiple-of-32 size that does, with a warning (StartupError if not even 32 x 32 fits)."""
        check = self.pipeline.check_memory()
        if check.fits:
            return
        if check.largest is None:
            raise StartupError(check.message())
        self.pipeline.set_net_size(check.largest)
        self.log.warning(f"{check.message()}: lowered to {list(check.largest)}")

    # ---- parameters --------------------------------------------------------------------------
    def _class_rules(self, too_far, exclude) -> ClassAwareDepth:
        config = self.pipeline.config
        return ClassAwareDepth.from_names(
            config.class_names if self.pipeline.has_labels else None, list(too_far), list(exclude)
        )

    def _validate_parameters(self, params) -> SetParametersResult:
        s = self.settings
        classes = {"too_far_classes": s.too_far_classes, "points_exclude_classes": s.points_exclude_classes}
        for param in params:
            if param.name in RUNTIME_PARAMETERS:
                reason = validate_value(param.name, param.value)
                if reason is not None:
                    return SetParametersResult(successful=False, reason=reason)
            if param.name == "net_size":  # refused before the first frame would try it
                requested = _net_size(list(param.value))
                check = self.pipeline.check_memory(requested or self.pipeline.config.net_size)
                if not check.fits:
                    return SetParametersResult(successful=False, reason=check.message())
            if param.name in classes:
                classes[param.name] = param.value
        try:  # class names are checked against the loaded model's classes
            self._class_rules(classes["too_far_classes"], classes["points_exclude_classes"])
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        s = self.settings
        for param in params:
            if param.name not in RUNTIME_PARAMETERS:
                continue
            value = list(param.value) if param.name == "net_size" else param.value
            setattr(s, param.name, value)
            if param.name == "net_size":
                self.pipeline.set_net_size(self.latency.set_explicit(_net_size(value)))
                self.log.info(f"inference resolution now {list(self.pipeline.net_size)}")
            elif param.name == "max_latency_ms":
                self.latency.set_budget(value)
            elif param.name in ("depth_scale", "depth_shift"):
                for camera in self.cameras.values():
                    camera.depth.set_fixed(s.depth_scale, s.depth_shift)
            elif param.name in ("points_decimation", "points_max_range"):
                self.projector = PointCloudProjector(s.points_max_range or None, s.points_decimation)
            elif param.name in ("too_far_classes", "points_exclude_classes"):
                setattr(s, param.name, [str(c) for c in value])
                self.class_rules = self._class_rules(s.too_far_classes, s.points_exclude_classes)
                for camera in self.cameras.values():
                    camera.depth_uses_labels = bool(self.class_rules.too_far_ids.size)

    # ---- inputs (executor thread: store only) ------------------------------------------------
    def on_image(self, camera: Camera, msg) -> None:
        camera.stats.on_received()
        worker = self.worker
        if worker is not None:  # None between deactivate and a late callback
            worker.submit((msg, time.monotonic()), key=camera.key)

    # ---- inference (worker thread) -----------------------------------------------------------
    def process_batch(self, batch) -> None:
        log = self.log
        work = []
        for frame in batch:
            camera = self.cameras[frame.key]
            msg, received = frame.item
            needs = camera.needs()
            if not needs.any_inference:
                camera.stats.on_skipped()
                continue
            try:
                rgb = message_to_rgb8(msg)
            except ImageConversionError as exc:
                camera.stats.on_error(str(exc))
                log.warning(f"{camera.key}: dropping bad image: {exc}", throttle_duration_sec=5.0)
                continue
            work.append((camera, msg.header, received, rgb, needs))
        if not work:
            return
        outputs = tuple(name for name, wanted in (("depth", any(n.depth_head for *_, n in work)),
                                                  ("labels", any(n.label_head for *_, n in work))) if wanted)
        start = time.monotonic()
        predictions = self.pipeline.run([rgb for _, _, _, rgb, _ in work], outputs)
        latency = time.monotonic() - start
        resized = self.latency.observe(self.pipeline.net_size, predictions[0].timings)
        if resized is not None:  # max_latency_ms: the largest size whose measured time fits
            self.pipeline.set_net_size(resized)
            log.info(f"latency budget {self.latency.budget_ms:g} ms: net_size now {list(resized)}")
        for (camera, header, received, rgb, needs), prediction in zip(work, predictions):
            try:
                self.publish(camera, header, rgb, prediction, needs)
            except (ValueError, ImageConversionError) as exc:
                camera.stats.on_error(str(exc))
                log.warning(f"{camera.key}: could not publish a frame: {exc}", throttle_duration_sec=5.0)
                continue
            camera.stats.on_processed(
                latency, time.monotonic() - received, prediction.net_shape, prediction.source_shape
            )

    def publish(self, camera: Camera, header, rgb: np.ndarray, prediction, needs: Needs) -> None:
        s = self.settings
        shape = prediction.source_shape
        metric = None
        if prediction.depth is not None:
            converter = camera.depth
            if converter.mode == "fit":
                self._feed_sparse(camera, converter, header, prediction.depth)
            metric, relative = converter.convert(prediction.depth, prediction.depth_kind)
            if needs.relative:
                camera.relative_pub.publish(array_to_image(relative, "32FC1", header))
        classed = None
        if metric is not None:
            classed = self.class_rules.apply(metric, prediction.labels, want_static=needs.static)
            if needs.depth:
                camera.depth_pub.publish(outputs.metric_depth_image(classed.depth, header, s.max_depth))
            if needs.static and classed.static_depth is not None:
                static = outputs.metric_depth_image(classed.static_depth, header, s.max_depth)
                camera.static_pub.publish(static)
        info = camera.latest_info()
        if info is None and (needs.depth_info or needs.points):
            self.log.warning(
                f"{camera.key}: no CameraInfo received yet; depth/camera_info and points wait for it",
                throttle_duration_sec=5.0,
            )
        scaled_info = None
        if info is not None:
            try:
                scaled_info = outputs.scaled_camera_info(info, header, shape)
            except ValueError as exc:  # depth and labels still go out
                self.log.warning(
                    f"{camera.key}: no depth/camera_info or points from this CameraInfo: {exc}",
                    throttle_duration_sec=5.0,
                )
        if scaled_info is not None and needs.depth_info and metric is not None:
            camera.depth_info_pub.publish(scaled_info)
        labels = prediction.labels
        if labels is not None:
            if needs.labels:
                camera.labels_pub.publish(outputs.labels_image(labels, header))
            if needs.labels_color:
                camera.labels_color_pub.publish(
                    outputs.labels_color_image(labels, self.palette, rgb, s.labels_blend, header)
                )
        if needs.points and metric is not None and scaled_info is not None:
            colour = rgb if (s.points_color == "image" or labels is None) else self.palette[labels]
            try:
                cloud = outputs.point_cloud(
                    self.projector, classed.points_depth, outputs.projection_matrix(scaled_info), colour,
                    labels, header,
                )
            except ValueError as exc:  # unusable intrinsics: skip the cloud, keep depth and labels
                self.log.warning(
                    f"{camera.key}: no point cloud from this CameraInfo: {exc}", throttle_duration_sec=5.0
                )
            else:
                camera.points_pub.publish(cloud)

    def _feed_sparse(
        self, camera: Camera, converter: CameraDepth, header, relative: np.ndarray
    ) -> None:
        sparse = camera.latest_sparse()
        if sparse is None:
            self.log.warning(
                f"{camera.key}: fit mode is waiting for sparse depth on {camera.sparse_sub.topic_name}",
                throttle_duration_sec=10.0,
            )
            return
        gap = abs(_seconds(sparse.header.stamp) - _seconds(header.stamp))
        if gap > self.settings.sparse_depth_max_age:
            return
        try:
            converter.observe_sparse(relative, outputs.sparse_depth_array(sparse))
        except ValueError as exc:  # ImageConversionError too: a bad side input
            # Only the fit degrades: the last good scale/shift stays, this frame's outputs go out.
            if camera.rejected_sparse is not sparse:  # say why once per bad message
                camera.rejected_sparse = sparse
                self.log.warning(
                    f"{camera.key}: ignoring bad sparse depth on {camera.sparse_sub.topic_name} "
                    f"(keeping the last fit): {exc}",
                    throttle_duration_sec=5.0,
                )

    # ---- diagnostics -------------------------------------------------------------------------
    def publish_diagnostics(self) -> None:
        s = self.settings
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        worker = self.worker.stats()
        common = {
            "device": str(self.pipeline.device),
            "precision": self.engine_choice.precision,
            "engine": f"{self.engine_choice.backend}/{self.engine_choice.precision}"
            + (" (auto)" if autotune.AUTO in (s.backend, s.precision) else ""),
            "weights": " + ".join(s.weights),
            "model": self.model_summary,
            "encoder passes per frame": format_passes(self.encoder_passes.per_frame()),
            "net_size (HxW)": "x".join(map(str, self.pipeline.net_size)),
            "latency budget": self.latency.state(),
            "depth mode": self.depth_mode,
            "worker errors": str(worker.errors),
            "out-of-memory fallbacks": str(getattr(self.pipeline, "oom_events", 0)),
            "caches": cache_report(),  # entries/bound of every per-size cache (dpt_perception.caches)
        }
        for key, camera in self.cameras.items():
            stats = camera.stats.snapshot()
            stats["dropped"] = self.worker.gatherer.mailbox(key).dropped
            extra = dict(common)
            depth = camera.depth
            if depth.mode == "fixed":
                extra["depth scale/shift (inverse)"] = f"{depth.scale:g} / {depth.shift:g}"
            if depth.mode == "fit":
                state = depth.fit_state()
                extra["depth scale/shift (inverse)"] = (
                    "not fitted yet" if state is None else f"{state[0]:g} / {state[1]:g}"
                )
                if depth.last_fit is not None:
                    extra["last fit"] = depth.last_fit.reason
            warnings = list(self.depth_warnings)
            if worker.last_error:
                extra["last worker error"] = worker.last_error
            array.status.append(
                stream_status(f"{self.node.get_name()}: {key}", str(self.pipeline.device), stats, extra,
                              warnings)
            )
        if not self.cameras:
            array.status.append(
                DiagnosticStatus(
                    level=DiagnosticStatus.WARN,
                    name=self.node.get_name(),
                    message="no cameras",
                    values=[KeyValue(key="device", value=common["device"])],
                )
            )
        self.diagnostics_pub.publish(array)


class DptNode(Node):
    """Configured and active from construction; StartupError if it cannot serve."""

    def __init__(self, node_name: str = "dpt_node", **kwargs):
        super().__init__(node_name, **kwargs)
        self.perception = DptPerception(self)
        try:
            self.perception.configure()
            self.perception.activate()
        except BaseException:
            # Release the model and threads; the rcl node itself stays with its context, whose
            # shutdown destroys it. Destroying it here, milliseconds after creation, crashed
            # the process now and then (SIGSEGV inside rcl_node_fini while DDS discovery ran).
            self.perception.cleanup()
            raise

    def shutdown(self) -> None:
        self.perception.cleanup()


def _net_size(value) -> tuple[int, int] | None:
    """The PerceptionPipeline's net_size for a parameter value ([0, 0] = the model's own: None)."""
    return None if tuple(value) == MODEL_NET_SIZE else (int(value[0]), int(value[1]))


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def serve(node) -> int:
    """Spin `node` until Ctrl-C or an external shutdown, then release it and rclpy; returns 0."""
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def start_node(factory, executable: str = "dpt_node"):
    """`factory()` (the node), or the end of the process: a StartupError is logged once as FATAL and
    exits 1; Ctrl-C at any moment of start-up exits 0 without a traceback. rclpy's SIGINT handler
    shuts the context down, so the start-up step running then may fail with an rcl error instead of
    a KeyboardInterrupt: any failure once the context is shut down counts as that Ctrl-C."""
    try:
        return factory()
    except (KeyboardInterrupt, ExternalShutdownException):
        code, message = 0, None
    except Exception as exc:
        if rclpy.ok() and not isinstance(exc, StartupError):
            raise
        code, message = (1, f"{executable} failed to start: {exc}") if rclpy.ok() else (0, None)
    if message is not None:
        # Logged once: the FATAL line goes to stderr (rcutils writes it unbuffered) and the log file.
        rclpy.logging.get_logger(executable).fatal(message)
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit now, destroying nothing: tearing down the just-created node and its DDS participant (or
    # the interpreter, with rclpy/torch finalisers) occasionally died with SIGSEGV, turning a clean
    # "exit 1 with the reason" into a crash.
    os._exit(code)


def run_executable(factory, executable: str, doc: str, argv=None) -> int:
    """An executable's whole life: `--help` prints `doc` with the parameter table; otherwise rclpy
    starts, `factory()` builds the node (`start_node`) and `serve` spins it until the end."""
    argv = list(argv if argv is not None else sys.argv)
    if wants_help(argv):
        print(help_text(executable, doc))
        return 0
    restore_interrupts()
    try:
        rclpy.init(args=argv)
    except KeyboardInterrupt:
        return 0
    return serve(start_node(factory, executable))


def main(argv=None) -> int:
    return run_executable(DptNode, "dpt_node", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
