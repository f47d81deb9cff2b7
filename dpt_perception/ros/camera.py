"""One camera served by the node, all its state in one place: its subscriptions, the latest side
inputs (CameraInfo, sparse depth), its publishers and which of them have subscribers (kept
current by the publishers' matched events, not polled per frame), its depth conversion
(`inference.depth_semantics.CameraDepth`, with the online fit) and its statistics.

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

from rclpy.event_handler import PublisherEventCallbacks, UnsupportedEventTypeError
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from dpt_perception.inference.depth_semantics import CameraDepth
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


class SubscriberCount:
    """Subscribers of one publisher, kept by its matched events (executor thread) and read by the
    worker. Where the middleware has no matched events, it asks the publisher each time."""

    def __init__(self):
        self.publisher = None
        self.count = 0
        self.from_events = True

    def on_matched(self, info) -> None:
        self.count = int(info.current_count)

    def __call__(self) -> int:
        if self.from_events:
            return self.count
        return self.publisher.get_subscription_count()


def create_counted_publisher(node, msg_type, topic: str, qos) -> tuple:
    """(publisher, SubscriberCount) with the count kept current by matched events."""
    counter = SubscriberCount()
    try:
        publisher = node.create_publisher(
            msg_type, topic, qos, event_callbacks=PublisherEventCallbacks(matched=counter.on_matched))
    except UnsupportedEventTypeError:
        publisher = node.create_publisher(msg_type, topic, qos)
        counter.from_events = False
    counter.publisher = publisher
    counter.count = publisher.get_subscription_count()  # subscribers matched before the handler
    return publisher, counter


class Camera:
    """Args:
        node: the rclpy node whose entities these are.
        camera_ns: the camera's namespace ("" = the node's own topics).
        settings: the node's `parameters.Settings`.
        several: whether the node serves several cameras (each then gets <out>/<camera ns>).
        has_depth / has_labels: the loaded model's tasks (which outputs exist).
        on_image: called with (camera, message) for every image (executor thread).
        depth: this camera's conversion of depth into metres (mode, fixed pair, fit).
    """

    def __init__(
        self,
        node,
        camera_ns: str,
        settings,
        several: bool,
        has_depth: bool,
        has_labels: bool,
        on_image,
        depth: CameraDepth,
    ):
        self.camera_ns = camera_ns
        self.key = camera_ns.strip("/") or "camera"
        self.stats = StreamStats()
        self.depth = depth
        self._lock = threading.Lock()
        self._info: CameraInfo | None = None
        self._sparse: Image | None = None
        self.rejected_sparse: Image | None = None  # the last sparse message the fit refused (worker)
        self._subscribers: dict[str, SubscriberCount] = {}
        use_sparse = depth.mode == "fit"

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

        def publisher(name: str, msg_type, topic: str, qos=IMAGE_OUTPUT_QOS):
            pub, self._subscribers[name] = create_counted_publisher(node, msg_type, _join(out, topic), qos)
            return pub

        if has_depth:
            self.depth_pub = publisher("depth", Image, "depth")
            self.depth_info_pub = publisher("depth_info", CameraInfo, "depth/camera_info")
            self.relative_pub = publisher("relative", Image, "depth/relative_inverse")
            self.points_pub = publisher("points", PointCloud2, "points", qos_profile_sensor_data)
        if has_labels:
            self.labels_pub = publisher("labels", Image, "labels")
            self.labels_color_pub = publisher("labels_color", Image, "labels/color")
        if has_depth and has_labels:
            self.static_pub = publisher("static", Image, "depth/static")

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
        """Which outputs have subscribers now (counts kept by the publishers' matched events)."""
        wanted = {name: count() > 0 for name, count in self._subscribers.items()}
        return Needs(depth_uses_labels=self.depth_uses_labels, **wanted)

    def destroy(self, node) -> None:
        """Remove this camera's subscriptions and publishers from `node` (lifecycle deactivate)."""
        for sub in (self.image_sub, self.info_sub, self.sparse_sub):
            if sub is not None:
                node.destroy_subscription(sub)
        for count in self._subscribers.values():  # one per publisher this camera created
            node.destroy_publisher(count.publisher)
        self.image_sub = self.info_sub = self.sparse_sub = None
        self.depth_pub = self.depth_info_pub = self.relative_pub = self.points_pub = None
        self.labels_pub = self.labels_color_pub = self.static_pub = None
        self._subscribers = {}

    def input_topics(self) -> list[str]:
        subs = [self.image_sub, self.info_sub] + ([self.sparse_sub] if self.sparse_sub else [])
        return [s.topic_name for s in subs]
