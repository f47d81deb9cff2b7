"""Parity with Hugging Face transformers' DPT (the test-only oracle) through our HF converter.

Each test builds an HF model with random weights, saves it with `save_pretrained` (config.json +
model.safetensors), loads that directory with `dpt_perception.model.checkpoints.load_model` and
compares outputs: max|diff| <= 1e-4 * max|HF output|.

What HF supports (checked against transformers 5.24): its plain-ViT reassemble reshapes N tokens to
sqrt(N) x sqrt(N), so it only runs square inputs, and its hybrid embeddings reject any input size
other than `config.image_size`. Non-square parity is therefore not testable against HF; our
non-square path is covered by the position-embedding resampling test below (against an
independent computation) and by the shape tests in test_model_shapes.py.
"""

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import DPTConfig as HFConfig  # noqa: E402
from transformers import DPTForDepthEstimation, DPTForSemanticSegmentation  # noqa: E402

from dpt_perception.model.checkpoints import load_model  # noqa: E402
from dpt_perception.model.testing import randomize_  # noqa: E402

torch.set_num_threads(2)

TINY_VIT = dict(
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=128,
    fusion_hidden_size=16,
    attn_implementation="eager",
)


def hf_config(kind: str, task: str, image_size: int = 64, readout: str = "project") -> HFConfig:
    if kind == "base":
        extra = dict(
            num_hidden_layers=4, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 24, 32]
        )
    elif kind == "large":
        # Large's structure: taps spread over a deeper stack, neck widths ending in two equal sizes.
        extra = dict(
            num_hidden_layers=8, backbone_out_indices=[1, 3, 5, 7], neck_hidden_sizes=[16, 24, 32, 32]
        )
    else:
        grid = image_size // 16
        extra = dict(
            is_hybrid=True,
            num_hidden_layers=4,
            backbone_out_indices=[0, 1, 2, 3],
            neck_hidden_sizes=[16, 32, 32, 32],
            backbone_featmap_shape=[1, 64, grid, grid],
            backbone_config=dict(
                embedding_size=16,
                hidden_sizes=[16, 32, 64],
                depths=[1, 2, 2],
                num_groups=4,
                out_features=["stage1", "stage2", "stage3"],
                layer_type="bottleneck",
                global_padding="same",
                embedding_dynamic_padding=True,
            ),
        )
    cfg = dict(TINY_VIT, image_size=image_size, readout_type=readout, **extra)
    if task == "segmentation":
        cfg.update(num_labels=7, use_batch_norm_in_fusion_residual=True, use_auxiliary_head=True)
    return HFConfig(**cfg)


def run_parity(tmp_path, kind: str, task: str, image_size: int = 64, readout: str = "project", seed: int = 0):
    cls = DPTForSemanticSegmentation if task == "segmentation" else DPTForDepthEstimation
    hf = randomize_(cls(hf_config(kind, task, image_size, readout)), seed=seed).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        ref_out = hf(pixel_values=x)
        ref = ref_out.logits if task == "segmentation" else ref_out.predicted_depth
        got = ours(x)[task]
    assert got.shape == ref.shape
    scale = ref.abs().max().item()
    assert scale > 1e-3, "degenerate oracle output; the comparison would be meaningless"
    err = (got - ref).abs().max().item()
    assert err <= 1e-4 * scale, f"{kind}/{task}: max|diff| {err:.3g} > 1e-4 * {scale:.3g}"
    return ours


@pytest.mark.parametrize("kind", ["base", "large", "hybrid"])
@pytest.mark.parametrize("task", ["depth", "segmentation"])
def test_parity_with_hf(tmp_path, kind, task):
    ours = run_parity(tmp_path, kind, task)
    assert ours.config.numerics == "hf"
    assert ours.config.variant == {"base": "vit_base", "large": "vit_large", "hybrid": "vit_hybrid"}[kind]


@pytest.mark.parametrize("readout", ["ignore", "add"])
def test_parity_with_hf_readout_variants(tmp_path, readout):
    run_parity(tmp_path, "base", "depth", readout=readout)


@pytest.mark.parametrize("kind", ["base", "hybrid"])
def test_parity_with_hf_at_384(tmp_path, kind):
    """True 384x384 input (24x24 token grid), the released models' resolution."""
    run_parity(tmp_path, kind, "depth" if kind == "base" else "segmentation", image_size=384)


def test_hf_segmentation_class_names_and_aux_are_carried(tmp_path):
    cfg = hf_config("base", "segmentation")
    cfg.id2label = {i: f"thing{i}" for i in range(7)}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    DPTForSemanticSegmentation(cfg).save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert ours.config.class_names == [f"thing{i}" for i in range(7)]
    assert ours.config.use_batch_norm_in_fusion["segmentation"] is True
    assert ours.aux_head is not None


def test_hybrid_numerics_family_matters_and_hf_family_matches_hf(tmp_path):
    """With small ResNet conv weights the standardisation epsilon dominates: the "hf" family
    (sqrt(var + 1e-8)) must match HF while the "official" one ((std + 1e-5)) must not."""
    hf = randomize_(DPTForDepthEstimation(hf_config("hybrid", "depth")), seed=0).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if ".bit." in name and p.ndim == 4:
                p.mul_(1e-4)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    from dpt_perception.model import DPT

    official = DPT(ours.config.replace(numerics="official")).eval()
    official.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(pixel_values=x).predicted_depth
        scale = ref.abs().max().item()
        assert scale > 1e-3
        assert (ours(x)["depth"] - ref).abs().max().item() <= 1e-4 * scale
        assert (official(x)["depth"] - ref).abs().max().item() > 1e-2 * scale


def test_official_weight_standardisation_formula():
    """Independent float64 computation of timm 0.4.5's (w - mean) / (std + 1e-5), population std."""
    from dpt_perception.model.resnet_hybrid import StdConv2dSame

    conv = StdConv2dSame(4, 3, 3, numerics="official")
    with torch.no_grad():
        conv.weight.mul_(1e-3)
    w = conv.weight.detach().double().reshape(3, -1)
    mean = w.mean(dim=1, keepdim=True)
    std = ((w - mean) ** 2).mean(dim=1, keepdim=True).sqrt()
    expected = ((w - mean) / (std + 1e-5)).reshape(conv.weight.shape)
    assert torch.allclose(conv.standardized_weight().double(), expected, atol=1e-6)


def test_same_padding_geometry_of_the_hybrid_stem():
    """TF 'SAME' padding: every stride-2 step gives ceil(size/2), also for sizes not divisible by 32."""
    from dpt_perception.model import DPT, DPTConfig

    enc = DPT(DPTConfig.tiny("vit_hybrid", heads=["depth"])).encoder
    tokens, maps, grid = enc.forward_intermediates(torch.randn(1, 3, 80, 112))
    assert [tuple(m.shape[-2:]) for m in maps] == [(20, 28), (10, 14)]
    assert grid == (5, 7) and tokens[0].shape == (1, 1 + 35, 32)


@pytest.mark.parametrize("kind,task", [("hybrid", "segmentation"), ("large", "depth")])
def test_export_to_hf_reproduces_our_outputs(kind, task):
    """The reverse direction: our weights exported with to_hf_state_dict load strictly into HF."""
    from dpt_perception.model import DPT, DPTConfig
    from dpt_perception.model.checkpoints.hf import to_hf_config_dict, to_hf_state_dict

    cfg = DPTConfig.tiny(f"vit_{kind}", heads=[task], numerics="hf")
    ours = randomize_(DPT(cfg), seed=11).eval()
    cls = DPTForSemanticSegmentation if task == "segmentation" else DPTForDepthEstimation
    hf = cls(HFConfig(**to_hf_config_dict(cfg), attn_implementation="eager")).eval()
    hf.load_state_dict(to_hf_state_dict(ours), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = hf(pixel_values=x)
        ref = ref.logits if task == "segmentation" else ref.predicted_depth
        got = ours(x)[task]
    scale = ref.abs().max().item()
    assert scale > 1e-3 and (got - ref).abs().max().item() <= 1e-4 * scale


def test_published_hybrid_config_shape_is_understood():
    """Fields as published for Intel/dpt-hybrid-midas: 4 BiT widths for 3 stages and reassemble
    factors [1, 1, 1, 0.5] (the first two levels are ResNet maps, so those factors are moot)."""
    from dpt_perception.model.checkpoints import CheckpointError
    from dpt_perception.model.checkpoints.hf import config_from_hf

    hf = {
        "architectures": ["DPTForDepthEstimation"],
        "is_hybrid": True,
        "backbone_out_indices": [2, 5, 8, 11],
        "neck_hidden_sizes": [256, 512, 768, 768],
        "reassemble_factors": [1, 1, 1, 0.5],
        "backbone_featmap_shape": [1, 1024, 24, 24],
        "backbone_config": {
            "depths": [3, 4, 9],
            "hidden_sizes": [256, 512, 1024, 2048],
            "embedding_size": 64,
            "layer_type": "bottleneck",
            "global_padding": "same",
            "num_groups": 32,
        },
    }
    cfg = config_from_hf(hf)
    assert (cfg.variant, cfg.out_indices, cfg.resnet_widths, cfg.numerics) == (
        "vit_hybrid",
        [8, 11],
        [256, 512, 1024],
        "hf",
    )
    with pytest.raises(CheckpointError, match="reassemble_factors"):
        config_from_hf({**hf, "is_hybrid": False, "backbone_config": None})
    with pytest.raises(CheckpointError, match="external backbones"):
        config_from_hf(
            {"architectures": ["DPTForDepthEstimation"], "backbone_config": {"model_type": "dinov2"}}
        )


def test_auxiliary_head_weights_map_to_hf(tmp_path):
    """HF's forward does not return auxiliary logits, so compare the heads on one fused map."""
    hf = randomize_(DPTForSemanticSegmentation(hf_config("base", "segmentation")), seed=4).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    fused = torch.randn(2, 16, 8, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf.auxiliary_head(fused)
        got = ours.aux_head(fused)
    assert got.shape == (2, 7, 8, 12)
    assert (got - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    ours.train()
    assert ours(torch.randn(1, 3, 64, 64))["aux"].shape == (1, 7, 32, 32)
