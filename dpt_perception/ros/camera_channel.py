"""One camera served by the node: its subscriptions, its publishers and what it needs computed.

Topic layout (relative names, so the node namespace and remapping apply):
  inputs   <camera ns>/<image_topic>        sensor_msgs/Image (or .../compressed CompressedImage)
           <camera ns>/<camera_info_topic>  sensor_msgs/CameraInfo
           <camera ns>/<sparse_depth_topic> sensor_msgs/Image 32FC1 m / 16UC1 mm (fit mode only)
  outputs  <out>/depth, <out>/depth/camera_info, <out>/depth/relative_inverse, <out>/depth/static,
           <out>/labels, <out>/labels/color, <out>/points
with <out> = output_namespace, plus /<camera ns> when the node serves several cameras.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from dpt_perception.ros.diagnostics import StreamStats

# Inputs: best effort, keep only the newest message (latest frame wins, no queue builds up).
INPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
# Image outputs: reliable keep-last-1 (REP 2003: producers publish reliable so best-effort and
# reliable subscribers, e.g. RViz's defaults, both match; keep-last-1 never blocks the node).
IMAGE_OUTPUT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE
)


@dataclass(frozen=True)
class Needs:
    """Which outputs of one camera have subscribers right now."""

    depth: bool = False
    depth_info: bool = False
    relative: bool = False
    labels: bool = False
    labels_color: bool = False
    points: bool = False
    static: bool = False
    depth_uses_labels: bool = False  # class-aware depth (too-far classes) is on

    @property
    def any_inference(self) -> bool:
        return self.depth_head or self.label_head

    @property
    def depth_head(self) -> bool:
        # depth/camera_info describes the depth image (its size, its stamp): published with it,
        # so a subscriber to it alone needs the depth computed too.
        return self.depth or self.depth_info or self.relative or self.points or self.static

    @property
    def label_head(self) -> bool:
        # The point cloud carries a label field, depth/static is masked by class, and with too-far
        # classes the depth image itself depends on the labels.
        return (
            self.labels or self.labels_color or self.points or self.static
            or (self.depth and self.depth_uses_labels)
        )


def _join(*parts: str) -> str:
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return ("/" + joined) if parts and parts[0].startswith("/") else joined


class CameraChannel:
    def __init__(
        self,
        node,
        camera_ns: str,
        settings,
        several: bool,
        has_depth: bool,
        has_labels: bool,
        on_image,
        use_sparse: bool,
    ):
        self.camera_ns = camera_ns
        self.key = camera_ns.strip("/") or "camera"
        self.stats = StreamStats()
        self._lock = threading.Lock()
        self._info: CameraInfo | None = None
        self._sparse: Image | None = None
        self.rejected_sparse: Image | None = None  # the last sparse message the fit refused (worker)

        def resolve(topic: str) -> str:
            return topic if topic.startswith("/") or not camera_ns else _join(camera_ns, topic)

        out = _join(settings.output_namespace, camera_ns if several else "")
        self.output_prefix = node.resolve_topic_name(out) if out else "/"
        compressed = settings.image_transport == "compressed"
        image_topic = resolve(settings.image_topic) + ("/compressed" if compressed else "")
        self.image_sub = node.create_subscription(
            CompressedImage if compressed else Image, image_topic, lambda msg: on_image(self, msg), INPUT_QOS
        )
        self.info_sub = node.create_subscription(
            CameraInfo, resolve(settings.camera_info_topic), self._on_info, INPUT_QOS
        )
        self.sparse_sub = None
        if use_sparse:
            self.sparse_sub = node.create_subscription(
                Image, resolve(settings.sparse_depth_topic), self._on_sparse, INPUT_QOS
            )
        self.depth_pub = self.depth_info_pub = self.relative_pub = self.points_pub = None
        self.labels_pub = self.labels_color_pub = self.static_pub = None
        self.depth_uses_labels = False  # set by the node from its class-aware depth rules
        if has_depth:
            self.depth_pub = node.create_publisher(Image, _join(out, "depth"), IMAGE_OUTPUT_QOS)
            self.depth_info_pub = node.create_publisher(
                CameraInfo, _join(out, "depth/camera_info"), IMAGE_OUTPUT_QOS
            )
            self.relative_pub = node.create_publisher(
                Image, _join(out, "depth/relative_inverse"), IMAGE_OUTPUT_QOS
            )
            self.points_pub = node.create_publisher(
                PointCloud2, _join(out, "points"), qos_profile_sensor_data
            )
        if has_labels:
            self.labels_pub = node.create_publisher(Image, _join(out, "labels"), IMAGE_OUTPUT_QOS)
            self.labels_color_pub = node.create_publisher(Image, _join(out, "labels/color"), IMAGE_OUTPUT_QOS)
        if has_depth and has_labels:
            self.static_pub = node.create_publisher(Image, _join(out, "depth/static"), IMAGE_OUTPUT_QOS)

    # ---- inputs kept for the worker ------------------------------------------------------------
    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._info = msg

    def _on_sparse(self, msg: Image) -> None:
        with self._lock:
            self._sparse = msg

    def latest_info(self) -> CameraInfo | None:
        with self._lock:
            return self._info

    def latest_sparse(self) -> Image | None:
        with self._lock:
            return self._sparse

    # ---- outputs -----------------------------------------------------------------------------
    def needs(self) -> Needs:
        def wanted(pub) -> bool:
            return pub is not None and pub.get_subscription_count() > 0

        return Needs(
            depth=wanted(self.depth_pub),
            depth_info=wanted(self.depth_info_pub),
            relative=wanted(self.relative_pub),
            labels=wanted(self.labels_pub),
            labels_color=wanted(self.labels_color_pub),
            points=wanted(self.points_pub),
            static=wanted(self.static_pub),
            depth_uses_labels=self.depth_uses_labels,
        )

    def destroy(self, node) -> None:
        """Remove this camera's subscriptions and publishers from `node` (lifecycle deactivate)."""
        for sub in (self.image_sub, self.info_sub, self.sparse_sub):
            if sub is not None:
                node.destroy_subscription(sub)
        for pub in (self.depth_pub, self.depth_info_pub, self.relative_pub, self.points_pub,
                    self.labels_pub, self.labels_color_pub, self.static_pub):
            if pub is not None:
                node.destroy_publisher(pub)
        self.image_sub = self.info_sub = self.sparse_sub = None
        self.depth_pub = self.depth_info_pub = self.relative_pub = self.points_pub = None
        self.labels_pub = self.labels_color_pub = self.static_pub = None

    def input_topics(self) -> list[str]:
        subs = [self.image_sub, self.info_sub] + ([self.sparse_sub] if self.sparse_sub else [])
        return [s.topic_name for s in subs]
