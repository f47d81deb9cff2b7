"""Shapes, finiteness, gradients, readouts, neck sharing and position-embedding resampling of DPT
on tiny configs (same code path as the full-size models)."""

import math

import pytest
import torch

from dpt_perception.model import DPT, DPTConfig, depth_to_metric
from dpt_perception.model.heads import classify_channels_last
from dpt_perception.model.testing import randomize_
from dpt_perception.model.vit import resample_position_grid

torch.set_num_threads(2)

SIZES = [(384, 384), (384, 672), (352, 1216), (480, 640)]
VARIANTS = ["vit_base", "vit_large", "vit_hybrid"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shapes_and_finiteness_at_deployment_sizes(variant):
    model = randomize_(DPT(DPTConfig.tiny(variant)), seed=1).eval()
    for H, W in SIZES:
        with torch.no_grad():
            out = model(torch.randn(1, 3, H, W))
        assert set(out) == {"depth", "segmentation"}
        assert out["depth"].shape == (1, H, W)
        assert out["segmentation"].shape == (1, 5, H, W)
        for name, t in out.items():
            assert torch.isfinite(t).all(), f"{variant} {H}x{W}: non-finite {name}"
        assert (out["depth"] >= 0).all(), "depth head must output non-negative inverse depth"


@pytest.mark.parametrize("readout", ["ignore", "add", "project"])
@pytest.mark.parametrize("variant", ["vit_base", "vit_large"])
def test_readout_variants(variant, readout):
    model = randomize_(DPT(DPTConfig.tiny(variant, readout=readout)), seed=2).eval()
    has_projection = any("readout_projects" in k for k in model.state_dict())
    assert has_projection == (readout == "project")
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 160))
    assert out["depth"].shape == (2, 96, 160) and out["segmentation"].shape == (2, 5, 96, 160)
    assert all(torch.isfinite(t).all() for t in out.values())


def test_hybrid_rejects_non_project_readout():
    with pytest.raises(ValueError, match="readout='project'"):
        DPTConfig.tiny("vit_hybrid", readout="add")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("share_neck", [False, True])
def test_gradients_reach_every_parameter(variant, share_neck):
    model = randomize_(DPT(DPTConfig.tiny(variant, share_neck=share_neck)), seed=3).train()
    with torch.no_grad():  # keep the final ReLU of the depth head alive so gradients can pass it
        model.heads["depth"].output_conv.bias.fill_(1.0)
    out = model(torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0)))
    assert set(out) == {"depth", "segmentation", "aux"}
    assert (out["depth"] > 0).any()
    assert out["aux"].shape == (2, 5, 32, 48)
    loss = sum(t.square().mean() for t in out.values())
    loss.backward()

    # Kept only so reference/HF/timm weights load strictly: the final LayerNorm (DPT taps block
    # outputs) and the skip unit of the deepest fusion block (which has no skip input).
    def unused(name):
        return name.startswith("encoder.norm.") or ".fusion_stage.layers.0.residual_layer1." in name

    for name, p in model.named_parameters():
        if unused(name):
            assert p.grad is None
            continue
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"zero/non-finite gradient for {name}"


def test_one_encoder_pass_feeds_both_heads():
    model = DPT(DPTConfig.tiny("vit_base")).eval()
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert len(calls) == 1 and set(out) == {"depth", "segmentation"}


def test_neck_layout_follows_share_neck():
    assert set(DPT(DPTConfig.tiny("vit_base")).necks) == {"depth", "segmentation"}
    shared = DPT(DPTConfig.tiny("vit_base", share_neck=True))
    assert set(shared.necks) == {"shared"}
    single = DPT(DPTConfig.tiny("vit_base", heads=["depth"]))
    assert set(single.necks) == {"depth"} and set(single.heads) == {"depth"} and single.aux_head is None


def test_only_enabled_heads_and_aux_only_in_training():
    model = DPT(DPTConfig.tiny("vit_base", heads=["segmentation"]))
    x = torch.randn(1, 3, 64, 64)
    assert set(model.train()(x)) == {"segmentation", "aux"}
    with torch.no_grad():
        assert set(model.eval()(x)) == {"segmentation"}
    no_aux = DPT(DPTConfig.tiny("vit_base", heads=["segmentation"], aux_head=False)).train()
    assert set(no_aux(x)) == {"segmentation"}


def test_input_validation():
    model = DPT(DPTConfig.tiny("vit_base")).eval()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.randn(1, 3, 64, 72))
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        model(torch.randn(1, 1, 64, 64))


def test_position_grid_resampling_matches_bilinear_formula():
    """A position grid that is linear in (row, col) must be resampled to the same linear function
    evaluated at the align_corners=False source coordinates (bilinear is exact on linear data)."""
    side, D = 4, 2
    rows, cols = torch.meshgrid(
        torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64), indexing="ij"
    )
    grid_vals = torch.stack([3.0 * rows + 0.5 * cols, -2.0 * cols], dim=-1).reshape(side * side, D)
    pos = torch.cat([torch.full((1, D), 7.0, dtype=torch.float64), grid_vals])[None]
    out_h, out_w = 3, 7
    got = resample_position_grid(pos, 1, (out_h, out_w))
    assert got.shape == (1, 1 + out_h * out_w, D)
    assert torch.equal(got[0, 0], pos[0, 0])  # the CLS entry is untouched
    for i in range(out_h):
        for j in range(out_w):
            r = min(max((i + 0.5) * side / out_h - 0.5, 0.0), side - 1)
            c = min(max((j + 0.5) * side / out_w - 0.5, 0.0), side - 1)
            expected = torch.tensor([3.0 * r + 0.5 * c, -2.0 * c], dtype=torch.float64)
            assert torch.allclose(got[0, 1 + i * out_w + j], expected, atol=1e-12)


def test_position_embedding_cache_follows_weight_changes():
    model = DPT(DPTConfig.tiny("vit_base")).eval()
    enc = model.encoder
    with torch.no_grad():
        first = enc.position_embedding((3, 5))
        assert enc.position_embedding((3, 5)) is first  # cached for inference
        state = model.state_dict()
        state["encoder.pos_embed"] = state["encoder.pos_embed"] + 1.0
        model.load_state_dict(state)
        second = enc.position_embedding((3, 5))
    assert torch.allclose(second, first + 1.0, atol=1e-6), "stale position embeddings after a weight load"
    enc.train()
    fresh = enc.position_embedding((3, 5))
    assert fresh.requires_grad, "training must recompute position embeddings so gradients flow"


def test_position_embedding_cache_is_bounded_least_recently_used_first():
    """A sender changing its image size every frame must not grow the cache for good."""
    from dpt_perception.model.vit import POS_CACHE_GRIDS

    enc = DPT(DPTConfig.tiny("vit_base")).eval().encoder
    with torch.no_grad():
        kept = enc.position_embedding((2, 2))
        for i in range(3 * POS_CACHE_GRIDS):
            enc.position_embedding((3, 4 + i))
            assert enc.position_embedding((2, 2)) is kept  # in use every frame: never dropped
        assert len(enc._pos_cache) == POS_CACHE_GRIDS
        assert (3, 4) not in enc._pos_cache and (3, 3 + 3 * POS_CACHE_GRIDS) in enc._pos_cache
        again = enc.position_embedding((3, 4))  # recomputed, the same values
    expected = resample_position_grid(enc.pos_embed, enc.num_prefix_tokens, (3, 4), enc.pos_grid_side)
    assert torch.equal(again, expected)


def test_depth_to_metric():
    x = torch.tensor([0.0, 1000.0, 20000.0])
    got = depth_to_metric(x, scale=0.000305, shift=0.1378)
    expected = [1 / max(0.000305 * v + 0.1378, 1e-8) for v in x.tolist()]
    assert torch.allclose(got, torch.tensor(expected))
    assert math.isclose(depth_to_metric(torch.tensor([-1.0]), 1.0, 0.0).item(), 1e8, rel_tol=1e-6)
    model = DPT(
        DPTConfig.tiny("vit_base", heads=["depth"], depth_kind="metric", depth_scale=2.0, depth_shift=0.5)
    )
    assert torch.allclose(model.depth_to_metric(torch.tensor([1.0])), torch.tensor([0.4]))


def test_model_traces_and_exports_to_onnx():
    """Tracing and ONNX export (opset 17) reproduce the eager outputs at a non-square size."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import io

    model = randomize_(DPT(DPTConfig.tiny("vit_hybrid")), seed=9).eval()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        traced = torch.jit.trace(model, x, strict=False)
        got = traced(x)
    for key in ref:
        assert torch.allclose(got[key], ref[key], atol=1e-5)
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (x,),
        buf,
        opset_version=17,
        dynamo=False,
        input_names=["pixel_values"],
        output_names=["depth", "segmentation"],
    )
    onnx.checker.check_model(onnx.load_from_string(buf.getvalue()))
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    depth, seg = session.run(None, {"pixel_values": x.numpy()})
    assert abs(depth - ref["depth"].numpy()).max() <= 1e-4 * abs(ref["depth"].numpy()).max() + 1e-6
    assert (
        abs(seg - ref["segmentation"].numpy()).max() <= 1e-4 * abs(ref["segmentation"].numpy()).max() + 1e-6
    )


def test_inference_caches_never_serve_stale_weights():
    """Position grids and standardised ResNet weights are cached in inference; loading other
    weights into the same model must give exactly what a fresh model with those weights gives."""
    cfg = DPTConfig.tiny("vit_hybrid", heads=["depth"])
    model = randomize_(DPT(cfg), seed=1).eval()
    other = randomize_(DPT(cfg), seed=2).eval()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(x)  # fills the caches
        model.load_state_dict(other.state_dict())
        assert torch.equal(model(x)["depth"], other(x)["depth"])
    with torch.no_grad():
        model.encoder.patch_embed.backbone.stem.conv.weight.mul_(2.0)  # in-place update
        fresh = DPT(cfg).eval()
        fresh.load_state_dict(model.state_dict())
        assert torch.equal(model(x)["depth"], fresh(x)["depth"])


def test_forward_heads_subset_skips_the_other_tasks_neck_and_head():
    torch.manual_seed(0)
    model = DPT(DPTConfig.tiny(heads=("depth", "segmentation"))).eval()
    x = torch.randn(1, 3, 64, 96)
    calls = []
    for name, neck in model.necks.items():
        neck.register_forward_hook(lambda *_, name=name: calls.append(name))
    with torch.no_grad():
        full = model(x)
        calls.clear()
        depth_only = model(x, heads=["depth"])
    assert set(depth_only) == {"depth"}
    assert calls == [model.config.neck_for("depth")], "the segmentation neck ran for a depth-only request"
    torch.testing.assert_close(depth_only["depth"], full["depth"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="lacks"):
        DPT(DPTConfig.tiny(heads=("depth",)))(x, heads=["segmentation"])


def test_half_resolution_logits_are_the_segmentation_head_before_its_upsample():
    model = randomize_(DPT(DPTConfig.tiny(heads=("depth", "segmentation"), num_classes=9)), seed=3).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        full = model(x)
        fused = model.forward_features(x)
        low = {"segmentation": model.heads["segmentation"].half_resolution_logits(fused["segmentation"]),
               "depth": model.heads["depth"](fused["depth"])}
    assert low["segmentation"].shape == (2, 9, 32, 48)
    # Class axis innermost in memory: the per-pixel argmax reads each pixel's scores in order.
    assert low["segmentation"].is_contiguous(memory_format=torch.channels_last)
    upsampled = torch.nn.functional.interpolate(low["segmentation"], scale_factor=2, mode="bilinear",
                                                align_corners=True)
    torch.testing.assert_close(upsampled, full["segmentation"], rtol=0, atol=1e-6)
    torch.testing.assert_close(low["depth"], full["depth"], rtol=0, atol=0)


def test_channels_last_classifier_equals_the_convolution():
    conv = torch.nn.Conv2d(16, 7, kernel_size=1)
    x = torch.randn(2, 16, 5, 6)
    torch.testing.assert_close(classify_channels_last(conv, x), conv(x), rtol=1e-5, atol=1e-6)
