"""One place for how the DDS integration tests run a node: its processes on the test's private
domain (the `ros_env` fixture), this process as the probe, teardown and failure output.

    with RosSession(ros_env, tmp_path) as s:
        s.probe.subscribe("/dpt/depth", Image, BEST_EFFORT)
        node = s.start_node("dpt_test_node", weights=weights, depth_mode="fixed")
        s.start_camera(rate=8.0, width=160, height=120)
        s.wait_for(lambda: s.probe.count("/dpt/depth") >= 3, 60.0, "depth images")

Every process is a separate `python -m <module> --ros-args ...` child (dpt_perception.ros.probe)
logging to `<tmp_path>/<log>.log`; leaving the block always stops and reaps them all (the cameras
before the node: reverse start order) and closes the probe, and when the block raised, the tail of
every log is printed, so a failed test shows what the node said whatever its assertion message.
The tests use only the node's external behaviour: topics, parameters, services and its log.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")

from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from dpt_perception.ros.image_conversion import rgb8_to_image  # noqa: E402
from dpt_perception.ros.probe import OutputProbe, param_args, start_process, status_values, stop_process  # noqa: E402

BEST_EFFORT = qos_profile_sensor_data  # what the node's image outputs and camera inputs use
NODE = "dpt_perception.ros.node"
LIFECYCLE_NODE = "dpt_perception.ros.lifecycle_node"
CAMERA = "dpt_perception.ros.camera_publisher"
LOG_TAIL = 3000  # characters of a log shown in a failure message
FAILURE_LOG_TAIL = 8000  # characters of each log printed when a session block raised


def stamp_key(header) -> tuple[int, int]:
    """A message's stamp as a dict key: outputs of one camera frame share the frame's stamp."""
    return (header.stamp.sec, header.stamp.nanosec)


def parameter_msg(name: str, value) -> Parameter:
    """rcl_interfaces/Parameter `name` with the type of the Python `value`, as `ros2 param set`
    would send it: str STRING, float DOUBLE, int INTEGER, list of int INTEGER_ARRAY, list of str
    STRING_ARRAY (rclpy's own mapping, so a test sends exactly what a ROS client sends)."""
    return Parameter(name, value=value).to_parameter_msg()


def camera_info(height: int, width: int, fx: float, fy: float, cx: float, cy: float) -> CameraInfo:
    """A plumb-bob CameraInfo calibrated at `height` x `width` with these pinhole intrinsics."""
    info = CameraInfo(height=height, width=width, distortion_model="plumb_bob")
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class RosSession:
    """The processes of one test on the domain of `env` (from `ros_env`), logging under `log_dir`,
    and an OutputProbe (`probe`) on that domain. Use as a context manager."""

    def __init__(self, env: dict, log_dir: Path, probe_name: str = "dpt_probe"):
        self.env, self.log_dir = env, Path(log_dir)
        self.procs: dict = {}  # log name -> Popen, in start order
        self.exit_codes: dict[str, int | None] = {}  # log name -> exit status, set by close()
        self._parameter_clients: dict = {}
        self.probe = OutputProbe(domain_id=int(env["ROS_DOMAIN_ID"]), name=probe_name)

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        finally:  # after the stop, so the logs are complete; pytest shows them with the failure
            if exc_type is not None:
                for name in self.procs:
                    print(f"----- {name}.log, last {FAILURE_LOG_TAIL} characters -----")
                    print(self.log(name)[-FAILURE_LOG_TAIL:])

    # --- processes ---------------------------------------------------------------------------

    def start(self, module: str, log: str, remaps: dict | None = None, **params):
        """`python -m module --ros-args -r key:=value... -p name:=value...`, logging to `<log>.log`."""
        if log in self.procs:
            raise ValueError(f"a process logging to {log}.log already runs in this session")
        args = [word for key, value in (remaps or {}).items() for word in ("-r", f"{key}:={value}")]
        proc = start_process(module, [*args, *param_args(**params)], self.env, self.log_path(log))
        self.procs[log] = proc
        return proc

    def start_node(self, node_name: str | None = None, *, module: str = NODE, log: str = "node", **params):
        """The node (or `module`, e.g. LIFECYCLE_NODE) named `node_name` (its default when None)."""
        return self.start(module, log, {"__node": node_name} if node_name else None, **params)

    def start_camera(self, namespace: str | None = None, camera_name: str | None = None, *,
                     log: str = "camera", **params):
        """The synthetic camera publisher, in `/namespace` and named `camera_name` when given."""
        remaps = {}
        if namespace:
            remaps["__ns"] = f"/{namespace}"
        if camera_name:
            remaps["__node"] = camera_name
        return self.start(CAMERA, log, remaps, **params)

    def close(self) -> None:
        """Stop and reap every process (reverse start order), then close the probe; idempotent."""
        try:
            for name, proc in reversed(list(self.procs.items())):
                if name not in self.exit_codes:
                    self.exit_codes[name] = stop_process(proc)
        finally:
            if self.probe is not None:
                self.probe.close()
                self.probe = None

    # --- logs --------------------------------------------------------------------------------

    def log_path(self, name: str = "node") -> Path:
        return self.log_dir / f"{name}.log"

    def log(self, name: str = "node") -> str:
        """Everything process `name` has written so far ("" before its first line)."""
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    # --- waiting and diagnostics ---------------------------------------------------------------

    def wait_for(self, condition, timeout: float, what: str, log: str = "node") -> None:
        """Spin the probe until `condition()` holds. Fail after `timeout` s, or as soon as a process
        of this session has exited (none of them ends on its own while a test waits on it), saying
        `what` was awaited, how many messages each subscribed topic got, the newest diagnostics and
        the tail of the `log` process's log (of the one that exited, if one did)."""
        exited: dict[str, int] = {}

        def done():
            exited.update({n: p.returncode for n, p in self.procs.items() if p.poll() is not None})
            return bool(exited) or condition()

        if self.probe.spin_until(done, timeout) and not exited:
            return
        counts = {topic: len(got) for topic, got in self.probe.messages.items()}
        newest = self.probe.latest("/diagnostics")
        statuses = {} if newest is None else {s.name: status_values(s) for s in newest.status}
        why = f"not within {timeout} s"
        if exited:
            log = next(iter(exited))
            why = "the process of " + ", ".join(f"{n}.log exited with {code}" for n, code in exited.items())
        raise AssertionError(
            f"{what}: {why}\nmessages received: {counts}\nnewest diagnostics: {statuses}\n"
            f"{log}.log tail:\n{self.log(log)[-LOG_TAIL:]}"
        )

    def wait_for_log(self, text: str, timeout: float, log: str = "node") -> None:
        """Spin the probe until process `log`'s log contains `text` (see wait_for)."""
        self.wait_for(lambda: text in self.log(log), timeout, f"{text!r} in {log}.log", log)

    def status(self, prefix: str = "", suffix: str = "") -> dict[str, str]:
        """Key/values of the newest /diagnostics status named `prefix...suffix` ({} if none yet)."""
        return status_values(self.probe.latest_status(prefix, suffix))

    def camera_status(self, camera: str = "camera") -> dict[str, str]:
        """The node's newest diagnostics of one camera (it names them "<node>: <camera>")."""
        return self.status(suffix=f": {camera}")

    # --- parameters --------------------------------------------------------------------------

    def set_parameters(self, node_name: str, **values) -> list:
        """Set `values` on /node_name through its SetParameters service, in one request (types
        from the Python values, see parameter_msg); returns the per-parameter results. Setting the
        same values twice is harmless, so an unanswered request is sent again (OutputProbe.call)."""
        client = self._parameter_clients.get(node_name)
        if client is None:
            client = self.probe.node.create_client(SetParameters, f"/{node_name}/set_parameters")
            self._parameter_clients[node_name] = client
        self.wait_for(client.service_is_ready, 30.0, f"/{node_name}/set_parameters service")
        request = SetParameters.Request(parameters=[parameter_msg(n, v) for n, v in values.items()])
        response = self.probe.call(client, request, timeout=30.0)
        assert response is not None, f"/{node_name}/set_parameters: no answer to {sorted(values)} in 30 s"
        return response.results


class ProbeCamera:
    """This process as the camera, for tests that control every frame: one fixed random rgb8
    image stamped 1, 2, 3... s (`stamp`: the last one sent) on /camera/image_raw, preceded by
    `info` (a CameraInfo, None: none sent) with the same header, like a camera driver."""

    def __init__(self, session: RosSession, height: int, width: int, info: CameraInfo | None = None):
        self.session, self.probe, self.info = session, session.probe, info
        node = self.probe.node
        self.image_pub = node.create_publisher(Image, "/camera/image_raw", BEST_EFFORT)
        self.info_pub = node.create_publisher(CameraInfo, "/camera/camera_info", BEST_EFFORT)
        self.sparse_pub = node.create_publisher(Image, "/camera/sparse_depth", BEST_EFFORT)
        rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        self.frame = rgb8_to_image(rgb)
        self.frame.header.frame_id = "cam"
        self.stamp = 0

    def wait_until_served(self, status, timeout: float = 90.0) -> None:
        """Until the node subscribes to the image and `status()` (its diagnostics) is not empty,
        then 1 s more: the node must also have matched the probe's output subscriptions, or it
        skips computing them."""
        ready = lambda: self.image_pub.get_subscription_count() > 0 and bool(status())  # noqa: E731
        self.session.wait_for(ready, timeout, "node subscribed to the image and reporting")
        self.probe.spin_for(1.0)

    def stream(self, seconds: float, outputs, sparse=None) -> dict[str, int]:
        """Send frames at ~10 Hz for `seconds` (and `sparse(header)` on /camera/sparse_depth when
        given and not None); returns how many messages each topic of `outputs` got meanwhile."""
        counts = {t: self.probe.count(t) for t in outputs}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.stamp += 1
            self.frame.header.stamp.sec = self.stamp
            before_image = False  # a side message goes out, and is spun, before its image
            if self.info is not None:
                self.info.header = self.frame.header
                self.info_pub.publish(self.info)
                before_image = True
            if sparse is not None and (msg := sparse(self.frame.header)) is not None:
                self.sparse_pub.publish(msg)
                before_image = True
            if before_image:
                self.probe.spin_for(0.01)
            self.image_pub.publish(self.frame)
            self.probe.spin_for(0.1)
        return {t: self.probe.count(t) - counts[t] for t in outputs}
