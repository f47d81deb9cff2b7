"""Watching a running node from another process: child-process handling and an output probe.

Used by the demo runner, the overload benchmark and the integration tests. `OutputProbe` owns a
private rclpy context (its own domain id), so it never disturbs a global `rclpy.init`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile

# The source tree (or site-packages) holding this package: first on the children's PYTHONPATH.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
_DDS_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")


def fastdds_profile() -> Path | None:
    """The package's Fast DDS image profile: in the source tree, else in the installed share dir."""
    candidate = PACKAGE_PARENT / "config" / "fastdds_images.xml"
    if candidate.is_file():
        return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        candidate = Path(get_package_share_directory("dpt_perception")) / "config" / "fastdds_images.xml"
    except (ImportError, LookupError):
        return None
    return candidate if candidate.is_file() else None


def private_ros_env(domain_id: int | None = None, log_dir: Path | None = None) -> dict:
    """Environment for child ROS processes on a private DDS domain (random when not given),
    localhost discovery and the package's Fast DDS image profile (unless already set). The DDS
    variables are applied to this process too, so an in-process OutputProbe joins the same domain."""
    if domain_id is None:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID") or random.Random().randint(1, 101))
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = fastdds_profile()
    if profile is not None:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")])
    if log_dir is not None:
        env.setdefault("ROS_LOG_DIR", str(log_dir))
    os.environ.update({key: env[key] for key in _DDS_KEYS if key in env})
    return env


def status_values(status) -> dict[str, str]:
    """Key/value pairs of a DiagnosticStatus ({} for None)."""
    return {} if status is None else {kv.key: kv.value for kv in status.values}


def process_rss_mib(pid: int) -> float:
    """Resident memory of process `pid` in MiB (Linux /proc), NaN when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def param_args(**params) -> list[str]:
    """ROS arguments `-p name:=value` for each keyword, in order (lists become YAML sequences)."""
    args: list[str] = []
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        args += ["-p", f"{name}:={value}"]
    return args


def installed_executable(name: str) -> Path:
    """`lib/dpt_perception/<name>` of the colcon install (what `ros2 run dpt_perception <name>`
    runs); FileNotFoundError saying how to build it when the package or the file is missing."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        path = Path(get_package_prefix("dpt_perception")) / "lib" / "dpt_perception" / name
    except PackageNotFoundError:
        raise FileNotFoundError("dpt_perception is not in the ament index: build it (bash "
                                "scripts/setup.sh) and source scripts/env.sh") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not installed: rebuild with bash scripts/setup.sh")
    return path


def start_process(module: str | Path, ros_args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """`python -m <module> --ros-args <ros_args>` (for a Path: that installed executable, see
    `installed_executable`, run by this Python) with stdout+stderr going to `log_path` (a file:
    no ANSI colour codes, whatever RCUTILS_COLORIZED_OUTPUT the caller's environment has)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process via the Popen object
    program = [str(module)] if isinstance(module, Path) else ["-m", module]
    proc = subprocess.Popen(
        [sys.executable, *program, "--ros-args", *ros_args],
        env=dict(env, RCUTILS_COLORIZED_OUTPUT="0"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc._dpt_log = log  # type: ignore[attr-defined]
    return proc


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGINT (clean rclpy shutdown), then SIGTERM, then SIGKILL; always reaps the process."""
    if proc is None:
        return None
    try:
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return proc.wait(5.0)
    finally:
        log = getattr(proc, "_dpt_log", None)
        if log is not None:
            log.close()


class OutputProbe:
    """Subscribes to topics and keeps every message with its arrival time (time.time())."""

    def __init__(self, domain_id: int | None = None, name: str = "dpt_probe"):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.messages: dict[str, list[tuple[float, object]]] = {}

    def subscribe(self, topic: str, msg_type, qos: QoSProfile | int = 10) -> None:
        self.messages.setdefault(topic, [])
        self.node.create_subscription(
            msg_type, topic, lambda msg: self.messages[topic].append((time.time(), msg)), qos
        )

    def latest(self, topic: str):
        got = self.messages.get(topic) or []
        return got[-1][1] if got else None

    def count(self, topic: str) -> int:
        return len(self.messages.get(topic) or [])

    def latest_status(self, prefix: str = "", suffix: str = ""):
        """The newest received /diagnostics status whose name starts with `prefix` and ends with
        `suffix` (the node names its statuses "<node>: <camera>"), or None."""
        for _, array in reversed(self.messages.get("/diagnostics") or []):
            for status in array.status:
                if status.name.startswith(prefix) and status.name.endswith(suffix):
                    return status
        return None

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Spin until `condition()` holds (True) or `timeout` seconds pass (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def call(self, client, request, timeout: float = 60.0, resend_after: float | None = 5.0):
        """The response of service `client` to `request`, or None after `timeout` seconds.

        An unanswered request is sent again every `resend_after` seconds (None: sent once, for
        requests that must not run twice). Why: a DDS service can receive a request before it has
        matched the client's reply reader (discovery on a loaded machine) and its reply is then
        lost; `service_is_ready()` only tells what the client's side has matched."""
        end = time.monotonic() + timeout
        if not self.spin_until(client.service_is_ready, timeout):
            return None
        while True:
            future = client.call_async(request)
            remaining = end - time.monotonic()
            wait = remaining if resend_after is None else min(resend_after, remaining)
            if self.spin_until(future.done, max(wait, 0.0)):
                return future.result()
            client.remove_pending_request(future)
            if time.monotonic() >= end:
                return None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
