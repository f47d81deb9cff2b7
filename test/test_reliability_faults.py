"""Resource faults and runtime reconfiguration.

- GPU out-of-memory during inference (simulated on any machine: the model's forward raises
  `torch.OutOfMemoryError` above a pixel budget, exactly what the CUDA caching allocator raises):
  the PerceptionPipeline splits the batch, then lowers the network resolution, warns, keeps serving, and
  remembers the limit so later frames do not hit it again. A host allocation that really fails
  (torch's CPU allocator asked for more than the machine has) is handled the same way.
- Parameter changes while frames flow through a dpt_node process over real DDS: hundreds of
  SetParameters calls (valid and invalid) never crash or deadlock the node, every call gets an
  answer, and outputs keep coming with the last accepted settings.
"""

import logging
import random
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpt_perception.inference.pipeline import PerceptionPipeline  # noqa: E402
from dpt_perception.model import DPT, DPTConfig  # noqa: E402


def _model():
    torch.manual_seed(0)
    return DPT(DPTConfig.tiny(num_classes=4, net_size=[64, 64])).eval()


def _limited(model, budget_pixels: int, calls: list):
    """Make the model's encoder + necks (`forward_features`, which its forward and the pipeline's
    class-id path both run) raise OutOfMemoryError when batch * height * width > budget."""
    real = model.forward_features

    def forward(pixel_values, *args, **kwargs):  # e.g. `heads`
        b, _, h, w = pixel_values.shape
        calls.append((b, h, w))
        if b * h * w > budget_pixels:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {b * h * w * 4096} bytes (simulated for {b}x{h}x{w})"
            )
        return real(pixel_values, *args, **kwargs)

    model.forward_features = forward
    return model


def _frames(n, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_oom_on_a_batch_splits_it_and_remembers_the_limit(caplog):
    torch.set_num_threads(1)
    frames = _frames(4)
    reference = PerceptionPipeline(_model(), device="cpu", net_size=64).infer_batch(frames)
    calls = []
    predictor = PerceptionPipeline(_limited(_model(), 2 * 64 * 64, calls), device="cpu", net_size=64)
    with caplog.at_level(logging.WARNING):
        got = predictor.infer_batch(frames)
    assert calls[0] == (4, 64, 64) and all(b <= 2 for b, _, _ in calls[1:])
    for ref, out in zip(reference, got):
        np.testing.assert_allclose(out.depth, ref.depth, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(out.labels, ref.labels)
    assert any("out of memory" in r.getMessage().lower() for r in caplog.records), caplog.text
    calls.clear()
    predictor.infer_batch(frames)  # the limit is remembered: no second failing forward
    assert calls and all(b <= 2 for b, _, _ in calls), calls


def test_oom_on_one_frame_lowers_the_resolution_and_keeps_serving(caplog):
    torch.set_num_threads(1)
    calls = []
    predictor = PerceptionPipeline(_limited(_model(), 48 * 48, calls), device="cpu", net_size=96)
    frame = _frames(1, 96, 96)[0]
    with caplog.at_level(logging.WARNING):
        out = predictor.infer_image(frame)
    assert out.depth.shape == (96, 96) and out.labels.shape == (96, 96)
    h, w = out.net_shape
    assert h * w <= 48 * 48 and h % 32 == 0 and w % 32 == 0
    assert predictor.net_size[0] * predictor.net_size[1] < 96 * 96
    messages = " ".join(r.getMessage() for r in caplog.records).lower()
    assert "out of memory" in messages and "net" in messages, messages
    # The result equals an unconstrained predictor at the lowered size.
    expected = PerceptionPipeline(_model(), device="cpu", net_size=predictor.net_size).infer_image(frame)
    np.testing.assert_allclose(out.depth, expected.depth, rtol=1e-4, atol=1e-6)
    calls.clear()
    predictor.infer_image(frame)
    assert len(calls) == 1 and calls[0][1] * calls[0][2] <= 48 * 48


def test_oom_at_the_smallest_resolution_is_raised_not_looped():
    calls = []
    predictor = PerceptionPipeline(_limited(_model(), 0, calls), device="cpu", net_size=64)
    with pytest.raises(torch.OutOfMemoryError):
        predictor.infer_image(_frames(1)[0])
    assert len(calls) < 10, f"{len(calls)} attempts"


def test_a_failed_cpu_allocation_lowers_the_resolution_like_an_oom(caplog):
    """Above the budget the forward asks torch's CPU allocator for 4 PB: the real allocator error
    (a RuntimeError, not OutOfMemoryError) must be recognised and degrade like a GPU OOM."""
    model = _model()
    real = model.forward_features
    calls = []

    def forward(pixel_values, *args, **kwargs):
        calls.append(tuple(pixel_values.shape))
        if pixel_values.shape[-2] * pixel_values.shape[-1] > 48 * 48:
            torch.empty(10**15, dtype=torch.float32)  # 4 PB: beyond any address space, always refused
        return real(pixel_values, *args, **kwargs)

    model.forward_features = forward
    predictor = PerceptionPipeline(model, device="cpu", net_size=96)
    with caplog.at_level(logging.WARNING):
        out = predictor.infer_image(_frames(1, 96, 96)[0])
    assert out.net_shape[0] * out.net_shape[1] <= 48 * 48 and predictor.oom_events >= 1
    assert "can't allocate memory" in caplog.text and "net_size lowered" in caplog.text


def test_other_runtime_errors_are_not_mistaken_for_oom():
    model = _model()

    def broken(pixel_values, *args, **kwargs):
        raise RuntimeError("shape mismatch somewhere")

    model.forward_features = broken  # the encoder + necks, which every path runs
    predictor = PerceptionPipeline(model, device="cpu", net_size=64)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        predictor.infer_image(_frames(1)[0])
    assert predictor.net_size == (64, 64)


# ---- parameter changes during traffic, over real DDS --------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_parameter_hammering_while_frames_flow(ros_env, tmp_path):
    pytest.importorskip("rclpy", reason="rclpy is not installed")
    pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.srv import GetParameters, SetParameters
    from sensor_msgs.msg import Image, PointCloud2

    from dpt_perception.model.checkpoints import save_model

    from helpers.ros_session import BEST_EFFORT, RosSession, parameter_msg

    save_model(_model(), tmp_path / "tiny")
    rng = random.Random(1234)

    good = {
        "net_size": [[32, 32], [64, 64], [64, 96], [96, 64], [0, 0]],
        "depth_scale": [0.5, 1.0, 3.0],
        "depth_shift": [0.0, 0.2, -0.01],
        "points_decimation": [1, 2, 4],
        "points_max_range": [0.0, 2.0, 50.0],
        "labels_blend": [0.0, 0.5, 1.0],
        "points_color": ["image", "labels"],
        "max_depth": [0.0, 10.0],
    }
    bad = {
        "net_size": [[33, 64], [64], [0, 64]],
        "depth_scale": [0.0, -1.0, float("nan")],
        "points_decimation": [0, 1000],
        "labels_blend": [2.0],
        "points_color": ["plaid"],
        "weights": ["other.safetensors"],
    }
    with RosSession(ros_env, tmp_path, probe_name="hammer_probe") as s:
        probe = s.probe
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        for topic, msg_type in (
            ("/dpt/depth", Image),
            ("/dpt/labels/color", Image),
            ("/dpt/points", PointCloud2),
        ):
            probe.subscribe(topic, msg_type, BEST_EFFORT)
        node = s.start_node(
            "hammered", weights=tmp_path / "tiny.safetensors", net_size=[64, 64], depth_mode="fixed",
            diagnostics_period=0.3, max_batch=2,
        )
        s.start_camera(rate=20.0, width=96, height=72, distinct_frames=2)
        s.wait_for(lambda: probe.count("/dpt/points") >= 2, 90.0, "2 point clouds")
        set_client = probe.node.create_client(SetParameters, "/hammered/set_parameters")
        get_client = probe.node.create_client(GetParameters, "/hammered/get_parameters")
        assert probe.spin_until(set_client.service_is_ready, 15.0)
        last_good: dict = {}
        answered = rejected = 0
        for i in range(240):
            request = SetParameters.Request()
            for _ in range(rng.randint(1, 3)):
                table = bad if rng.random() < 0.3 else good
                name = rng.choice(sorted(table))
                v = rng.choice(table[name])
                request.parameters.append(parameter_msg(name, v))
            response = probe.call(set_client, request, timeout=30.0)
            assert response is not None, f"SetParameters call {i} got no answer (deadlock?)"
            answered += 1
            for param, result in zip(request.parameters, response.results):
                if result.successful:
                    last_good[param.name] = param.value
                else:
                    rejected += 1
                    assert result.reason, f"rejection without a reason for {param.name}"
            if i % 20 == 0:
                probe.spin_for(0.05)
        assert rejected > 0 and node.poll() is None
        # Outputs keep flowing after the storm, and the node reports the last accepted settings.
        before = probe.count("/dpt/depth")
        s.wait_for(lambda: probe.count("/dpt/depth") >= before + 3, 60.0, "3 depth images after the storm")
        request = GetParameters.Request(names=sorted(last_good))
        response = probe.call(get_client, request, timeout=30.0)
        assert response is not None, "GetParameters got no answer"
        for name, got in zip(request.names, response.values):
            want = last_good[name]
            assert got.type == want.type and (
                list(got.integer_array_value) == list(want.integer_array_value)
                and got.double_value == want.double_value
                and got.string_value == want.string_value
                and got.integer_value == want.integer_value
            ), f"{name}: node has {got}, last accepted {want}"
        text = s.log()
        assert "Traceback" not in text and "inference failed" not in text, text[-3000:]
        assert answered == 240 and node.poll() is None


def test_node_keeps_serving_through_a_simulated_oom(tmp_path, caplog):
    """The node's own inference path (decode -> PerceptionPipeline batch -> publish), in process: a forward
    that runs out of memory at the configured resolution lowers it, outputs keep coming, and
    /diagnostics reports the fallback."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
    pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from dpt_perception.inference.scheduling import GatheredFrame
    from dpt_perception.model.checkpoints import save_model
    from dpt_perception.ros.image_conversion import rgb8_to_image
    from dpt_perception.ros.node import DptNode

    torch.set_num_threads(1)
    save_model(_model(), tmp_path / "tiny")
    context = Context()
    rclpy.init(context=context, domain_id=random.Random().randint(1, 101))
    node = None
    try:
        node = DptNode(
            "oom_node",
            context=context,
            parameter_overrides=[
                Parameter("weights", value=str(tmp_path / "tiny.safetensors")),
                Parameter("net_size", value=[96, 96]),
                Parameter("depth_mode", value="fixed"),
            ],
        )
        node.perception.worker.stop()  # drive the worker's batch function directly, deterministically
        received = []
        node.create_subscription(Image, "dpt/depth", received.append, 10)
        calls = []
        _limited(node.perception.pipeline.model, 64 * 64, calls)
        frame = rgb8_to_image(_frames(1, 96, 96)[0])
        key = next(iter(node.perception.cameras))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        for _ in range(200):  # the node learns of its subscriber from the matched event
            if node.perception.cameras[key].needs().depth:
                break
            executor.spin_once(timeout_sec=0.05)
        with caplog.at_level(logging.WARNING):
            for i in range(3):
                frame.header.stamp.sec = i + 1
                node.perception.process_batch([GatheredFrame(key, (frame, 0.0), 0.0)])
        stats = node.perception.cameras[key].stats.snapshot()
        assert stats["processed"] == 3 and stats["errors"] == 0, stats
        net = node.perception.pipeline.net_size
        assert net[0] * net[1] <= 64 * 64, net
        # one failure, then the lower size
        assert node.perception.pipeline.oom_events == 1 and len(calls) == 4, calls
        assert any("out of memory" in r.getMessage() for r in caplog.records), caplog.text
        diagnostics = []
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        for _ in range(50):  # the fallback is visible to operators
            node.perception.publish_diagnostics()
            executor.spin_once(timeout_sec=0.1)
            if diagnostics:
                break
        values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
        assert values["out-of-memory fallbacks"] == "1" and values["worker errors"] == "0", values
        # Every per-size cache with its entries and bound ("pos_embed 2/8, label_taps 3/32, ..."):
        # two network sizes ran (the configured one, then the lowered one).
        caches = dict(re.findall(r"(\w+) (\d+/\d+)", values["caches"]))
        assert {"pos_embed", "label_taps", "point_rays"} <= set(caches), values["caches"]
        for used, bound in (map(int, v.split("/")) for v in caches.values()):
            assert 0 <= used <= bound, values["caches"]
        assert int(caches["pos_embed"].split("/")[0]) >= 2, values["caches"]
        executor.shutdown()
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
