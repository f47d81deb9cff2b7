"""Forward memory: the closed-form estimate against a measured peak, net sizes that cannot fit
refused or lowered (the available memory mocked), and memory back at its steady state after a
big frame."""
import gc
import random
import sys

import numpy as np
import pytest
import torch

from dpt_perception.inference import memory
from dpt_perception.inference.memory import (
    MEMORY_HEADROOM,
    available_bytes,
    check_net_size,
    estimate_forward_bytes,
)
from dpt_perception.inference.pipeline import PerceptionPipeline, forward_for_class_ids
from dpt_perception.model.testing import tiny_model

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _peak_of(fn) -> int:
    """Peak RSS growth while fn() runs (VmHWM reset through /proc/self/clear_refs)."""
    base = _status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs)")
    fn()
    return _status("VmHWM") - base


@linux_only
@pytest.mark.parametrize("variant,heads,lowres", [
    ("vit_base", ("depth", "segmentation"), False),
    ("vit_hybrid", ("depth",), False),
])
def test_the_estimate_is_close_to_the_measured_peak(variant, heads, lowres):
    model = tiny_model(variant, seed=0)
    x = torch.zeros(1, 3, 1024, 1024)  # every big tensor mmapped: freed pages leave the RSS
    with torch.inference_mode():
        def forward():
            return forward_for_class_ids(model, x, heads) if lowres else model(x, heads=heads)

        forward()  # warm: weights, caches, allocator
        measured = _peak_of(forward)
    estimate = estimate_forward_bytes(model.config, (1024, 1024), heads=heads, lowres_logits=lowres)
    assert 0.9 * measured <= estimate <= 2.5 * measured, (estimate / 2**20, measured / 2**20)


def test_the_estimate_grows_with_pixels_batch_and_precision():
    config = tiny_model(seed=0).config
    small = estimate_forward_bytes(config, (256, 256))
    assert 3.5 * small <= estimate_forward_bytes(config, (512, 512)) <= 4.5 * small
    assert estimate_forward_bytes(config, (256, 256), batch=2) == 2 * small
    assert estimate_forward_bytes(config, (256, 256), precision="bf16") == small // 2
    assert estimate_forward_bytes(config, (256, 256), heads=("depth",)) < small


@linux_only
def test_available_memory_is_read_from_meminfo():
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    assert 0 < available_bytes("cpu") <= total


def test_a_net_size_that_does_not_fit_names_the_estimate_the_limit_and_what_fits():
    model = tiny_model(seed=0)
    available = estimate_forward_bytes(model.config, (1024, 1024))  # 1024 fits at 100%, not at 80%
    check = check_net_size(model, (4096, 4096), "cpu", available=available)
    assert not check.fits and check.limit == int(available * MEMORY_HEADROOM)
    largest = check.largest
    assert largest[0] == largest[1] and largest[0] % 32 == 0 and largest[0] < 1024
    assert estimate_forward_bytes(model.config, largest) <= check.limit
    bigger = (largest[0] + 32, largest[1] + 32)
    assert estimate_forward_bytes(model.config, bigger) > check.limit
    message = check.message()
    assert f"{check.estimate / 2**20:.0f} MiB" in message and f"{check.limit / 2**20:.0f} MiB" in message
    assert str(list(largest)) in message
    # the aspect ratio is kept; a size that fits is returned as is
    wide = check_net_size(model, (1024, 4096), "cpu", available=available).largest
    assert wide[1] / wide[0] == pytest.approx(4, rel=0.1)
    assert check_net_size(model, (256, 256), "cpu", available=available).fits
    assert not check_net_size(model, (64, 64), "cpu", available=1000).fits
    assert check_net_size(model, (64, 64), "cpu", available=1000).largest is None


def test_the_predictor_checks_with_its_own_model_and_settings(monkeypatch):
    predictor = PerceptionPipeline(tiny_model(seed=0), device="cpu", net_size=(64, 64))
    monkeypatch.setattr(memory, "available_bytes", lambda device: 64 << 20)
    assert predictor.check_memory().fits
    big = predictor.check_memory((4096, 4096))
    assert not big.fits and big.limit == int((64 << 20) * MEMORY_HEADROOM)
    assert predictor.net_size == (64, 64)  # checking changes nothing


@linux_only
def test_memory_returns_to_steady_state_after_a_big_frame():
    """A 1024 x 1024 forward (~+300 MiB at its peak) leaves no buffers behind: the resident set
    after it and a few ordinary frames is within a small tolerance of the steady state."""
    predictor = PerceptionPipeline(tiny_model(seed=0), device="cpu", net_size=(128, 128))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    big = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    for _ in range(5):  # steady state: weights, caches and allocator pools warm
        predictor.infer_image(small)
    gc.collect()
    steady = _status("VmRSS")

    def big_frame():
        predictor.set_net_size((1024, 1024))
        predictor.infer_image(big)
        predictor.set_net_size((128, 128))

    peak = _peak_of(big_frame)
    for _ in range(3):
        predictor.infer_image(small)
    gc.collect()
    after = _status("VmRSS")
    assert peak > 100 << 20, peak / 2**20  # the big frame did need the memory (~300 MiB)
    assert after - steady < 0.1 * peak + (16 << 20), ((after - steady) / 2**20, peak / 2**20)


def test_the_node_lowers_a_start_up_net_size_that_cannot_fit_and_refuses_one_at_runtime(
        tmp_path, monkeypatch, capfd):
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed")
    pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from dpt_perception.model.checkpoints import save_model
    from dpt_perception.ros.node import DptNode

    model = tiny_model(seed=0)
    save_model(model, tmp_path / "tiny")
    # As if the machine had the memory for a 1024 x 1024 forward of this model and no more.
    available = estimate_forward_bytes(model.config, (1024, 1024))
    monkeypatch.setattr(memory, "available_bytes", lambda device: available)
    context = Context()
    rclpy.init(context=context, domain_id=random.Random().randint(1, 101))
    node = None
    try:
        node = DptNode("memory_node", context=context, parameter_overrides=[
            Parameter("weights", value=str(tmp_path / "tiny.safetensors")),
            Parameter("net_size", value=[4096, 4096]),
            Parameter("depth_mode", value="fixed"),
        ])
        lowered = node.perception.pipeline.net_size
        logged = capfd.readouterr().err
        assert "net_size [4096, 4096] needs about" in logged, logged
        assert f"lowered to {list(lowered)}" in logged, logged
        assert lowered[0] == lowered[1] and lowered[0] % 32 == 0 and 512 <= lowered[0] < 1024, lowered
        assert node.perception.pipeline.check_memory().fits
        result = node.set_parameters([Parameter("net_size", value=[4096, 4096])])[0]
        assert not result.successful and "needs about" in result.reason and "MiB" in result.reason, result
        assert str(list(lowered)) in result.reason  # the largest that fits, named
        assert node.perception.pipeline.net_size == lowered
        assert node.set_parameters([Parameter("net_size", value=[256, 256])])[0].successful
        assert node.perception.pipeline.net_size == (256, 256)
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown(context=context)


@linux_only
def test_rss_returns_to_steady_state_after_a_strip_frame():
    """A valid 8192 x 384 strip (network input 3520 x 160, ~+100-230 MiB at its peak): its few-MB
    intermediates come from the heap, which glibc keeps after they are freed; the first ordinary
    frame after it trims the heap, and the resident set comes back near its steady state."""
    from dpt_perception.caches import live_caches

    predictor = PerceptionPipeline(tiny_model(seed=0, num_classes=150, net_size=[384, 384]), device="cpu")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    for _ in range(8):
        predictor.infer_image(small)
    gc.collect()
    steady = _status("VmRSS")
    cached = sum(c.bytes for c in live_caches())
    shapes = []
    peak = _peak_of(lambda: shapes.append(
        predictor.infer_image(rng.integers(0, 256, (8192, 384, 3), dtype=np.uint8)).net_shape))
    # (150-230 MiB measured; 96-170 since the depth head works in bands and a one-off size's
    # label index is not kept)
    assert shapes == [(3520, 160)] and peak > 64 << 20, peak / 2**20
    trims = predictor._trim.trims
    for _ in range(3):
        predictor.infer_image(small)
    gc.collect()
    after = _status("VmRSS")
    assert predictor._trim.trims == trims + 1  # once, after the first ordinary frame
    # Only the byte-bounded caches may keep what they hold for the strip's size (label_gather keeps
    # a size's index from its second frame on: nothing here); the rest (13-33 MiB measured, run to
    # run: oneDNN's primitives for the new shapes, heap fragments) stays well under the strip's peak.
    kept = sum(c.bytes for c in live_caches()) - cached
    assert after - steady - kept < 48 << 20, ((after - steady) / 2**20, kept / 2**20, peak / 2**20)


def test_only_outliers_are_followed_by_a_trim(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1) or True)
    trim = memory.OutlierTrim(factor=2.0, window=8, warmup=4)
    assert not any(trim.after(size) for size in [100, 110, 90, 100, 105, 180, 95])  # ordinary traffic
    assert not trim.after(1000)  # the outlier itself: its results are still in use
    assert trim.after(100) and calls == [1]
    assert not trim.after(100) and calls == [1]


def test_cuda_memory_counts_free_memory_and_the_allocators_unused_blocks(monkeypatch):
    """No GPU needed: the CUDA readings are mocked (free 10 GiB; torch holds 3 GiB, 1 GiB in use)."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 3 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1 << 30)
    assert available_bytes("cuda:0") == 12 << 30
    assert available_bytes("meta") is None


def _conv_calls(head, fn) -> int:
    """How many times the depth head's full-resolution 3x3 conv runs during fn()."""
    calls = []
    handle = head.head[2].register_forward_hook(lambda *_: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


@pytest.mark.parametrize("shape,rows", [((2, 16, 37, 23), 3), ((1, 16, 3, 90), 1), ((1, 16, 50, 3), 7)])
def test_depth_head_bands_give_the_same_depth_and_only_in_eager_inference(monkeypatch, shape, rows):
    """Above DEPTH_HEAD_BAND_PIXELS output pixels the full-resolution stage runs on bands of rows
    (each reading one real row beyond its edges): bit-identical to the whole-image run, on band
    counts that do not divide the height, a batch of 2 and single-row bands; with autograd or
    while tracing it runs whole (a trace must not bake one size's band count in)."""
    from dpt_perception.model import heads as heads_module

    head = heads_module.DepthHead(shape[1]).eval()
    torch.manual_seed(0)
    x = torch.randn(shape)
    banded = []
    with torch.inference_mode():
        whole = head(x)
        monkeypatch.setattr(heads_module, "DEPTH_HEAD_BAND_PIXELS", 2 * shape[-1] * rows)
        calls = _conv_calls(head, lambda: banded.append(head(x)))
    assert calls == -(-2 * shape[-2] // rows) > 1
    assert torch.equal(banded[0], whole), (banded[0] - whole).abs().max()
    with torch.no_grad():
        assert _conv_calls(head, lambda: head(x)) > 1  # no_grad is inference too
    assert _conv_calls(head, lambda: head(x)) == 1  # autograd on: whole
    with torch.no_grad():
        assert _conv_calls(head, lambda: torch.jit.trace(head, x, check_trace=False)) == 1


@linux_only
def test_a_strip_shaped_network_input_keeps_the_depth_heads_working_set_to_a_band():
    """A 3520 x 160 network input (an 8192 x 384 frame at net_size 384 x 384, at
    MAX_NET_AREA_RATIO): the depth head's 32-channel full-resolution activations were the
    forward's peak, +155 MiB of +171 for the tiny 150-class model; in bands it is under 60 %."""
    from dpt_perception.model import heads as heads_module

    head = tiny_model(seed=0, num_classes=150, net_size=[384, 384]).heads["depth"]
    x = torch.randn(1, head.head[0].in_channels, 1760, 80)  # the fused map at half resolution
    with torch.inference_mode():
        head(x)
        banded = _peak_of(lambda: head(x))
        old = heads_module.DEPTH_HEAD_BAND_PIXELS
        heads_module.DEPTH_HEAD_BAND_PIXELS = 1 << 40
        try:
            head(x)
            whole = _peak_of(lambda: head(x))
        finally:
            heads_module.DEPTH_HEAD_BAND_PIXELS = old
    assert banded < 0.6 * whole, (banded / 2**20, whole / 2**20)


def test_an_outlier_frame_gives_its_forward_memory_back_before_post_processing(monkeypatch):
    events = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: events.append("trim") or True)
    trim = memory.OutlierTrim(factor=2.0, window=8, warmup=4)
    assert not trim.is_outlier(10**9)  # nothing recorded yet: no judgement
    for size in (100, 110, 90, 100):
        trim.after(size)
    assert trim.is_outlier(201) and not trim.is_outlier(200)
    pipeline = PerceptionPipeline(tiny_model(num_classes=7, net_size=[64, 64]), device="cpu")
    real_post_depth = pipeline._post_depth
    monkeypatch.setattr(pipeline, "_post_depth",
                        lambda *a: events.append("post-processing") or real_post_depth(*a))
    frame = np.zeros((64, 64, 3), np.uint8)
    for _ in range(4):
        pipeline.infer_image(frame)
    assert "trim" not in events  # ordinary traffic never trims
    events.clear()
    pipeline.infer_image(np.zeros((64, 1024, 3), np.uint8))  # a strip: 4x the usual network input
    assert events == ["trim", "post-processing"], events
    pipeline.infer_image(frame)  # and the deferred trim after the next ordinary frame, as before
    assert events[-1] == "trim", events
