"""Checkpoint formats: our own (safetensors + JSON), the reference release layout, timm ImageNet
encoder init, composing depth + segmentation, and the error messages of strict loading."""

import json

import pytest
import torch

from dpt_perception.model import DPT, DPTConfig
from dpt_perception.model.checkpoints import CheckpointError, guess_family, load_model, save_model
from dpt_perception.model.checkpoints.compose import compose_models
from dpt_perception.model.checkpoints.official import load_official, to_official_state_dict
from dpt_perception.model.checkpoints.timm_init import init_encoder_from_timm
from dpt_perception.model.testing import randomize_

torch.set_num_threads(2)


def _input(seed=0, size=(64, 96)):
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))


def _outputs(model, x):
    with torch.no_grad():
        return model.eval()(x)


# ---- our format ---------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["vit_base", "vit_hybrid"])
def test_native_round_trip_is_exact(tmp_path, variant):
    cfg = DPTConfig.tiny(
        variant,
        share_neck=(variant == "vit_hybrid"),
        class_names=list("abcde"),
        class_colors=[[i, 2 * i, 3 * i] for i in range(5)],
        depth_kind="metric",
        depth_scale=0.5,
        depth_shift=0.25,
        numerics="hf",
    )
    model = randomize_(DPT(cfg), seed=4).eval()
    weights, config_path = save_model(model, tmp_path / "m")
    assert weights.name == "m.safetensors" and config_path.name == "m.json"
    assert json.loads(config_path.read_text())["config"]["class_names"] == list("abcde")
    loaded = load_model(tmp_path / "m")
    assert not loaded.training
    assert loaded.config == model.config
    x = _input()
    a, b = _outputs(model, x), _outputs(loaded, x)
    for key in a:
        assert torch.equal(a[key], b[key])
    # Either file name works as the path.
    assert load_model(weights).config == model.config


def test_config_json_round_trip_and_validation():
    cfg = DPTConfig.preset("dpt_hybrid_kitti")
    again = DPTConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.depth_kind == "metric" and again.net_size == [352, 1216]
    # files written before `depth_mode` was renamed `depth_kind` load with the same meaning
    legacy = {("depth_mode" if k == "depth_kind" else k): v for k, v in cfg.to_dict().items()}
    assert DPTConfig.from_dict(legacy) == cfg
    with pytest.raises(ValueError, match="unknown DPTConfig fields"):
        DPTConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="readout must be one of"):
        DPTConfig.tiny("vit_base", readout="mean")
    with pytest.raises(ValueError, match="heads must be"):
        DPTConfig.tiny("vit_base", heads=["normals"])
    ade = DPTConfig.preset("dpt_large_ade20k")
    assert ade.num_classes == 150 and ade.class_names[:3] == ["wall", "building", "sky"]
    assert len({tuple(c) for c in ade.class_colors}) == 150, "class colours must be distinct"


def test_paper_taps_and_widths_in_presets():
    large = DPTConfig.preset("dpt_large_midas")
    assert (large.hidden_size, large.num_layers, large.out_indices) == (1024, 24, [5, 11, 17, 23])
    assert large.reassemble_channels == [256, 512, 1024, 1024] and large.layer_norm_eps == 1e-6
    hybrid = DPTConfig.preset("dpt_hybrid_midas")
    assert hybrid.out_indices == [8, 11] and hybrid.reassemble_channels == [256, 512, 768, 768]
    base = DPTConfig(variant="vit_base")
    assert base.out_indices == [2, 5, 8, 11] and base.reassemble_channels == [96, 192, 384, 768]


def test_full_size_hybrid_matches_the_release_layout():
    """The full-size hybrid exported in the reference layout has the release's key shapes."""
    model = DPT(DPTConfig.preset("dpt_hybrid_midas"))
    sd = to_official_state_dict(model)
    assert sd["pretrained.model.pos_embed"].shape == (1, 577, 768)
    assert sd["pretrained.model.patch_embed.proj.weight"].shape == (768, 1024, 1, 1)
    assert sd["pretrained.model.patch_embed.backbone.stem.conv.weight"].shape == (64, 3, 7, 7)
    assert sd["pretrained.model.patch_embed.backbone.stages.2.blocks.8.conv3.weight"].shape == (
        1024,
        256,
        1,
        1,
    )
    assert sd["pretrained.act_postprocess3.0.project.0.weight"].shape == (768, 1536)
    assert sd["pretrained.act_postprocess4.4.weight"].shape == (768, 768, 3, 3)
    assert "pretrained.act_postprocess1.3.weight" not in sd  # hybrid R0/R1 are not reassembled
    assert sd["scratch.layer1_rn.weight"].shape == (256, 256, 3, 3)
    assert sd["scratch.output_conv.4.weight"].shape == (1, 32, 1, 1)
    assert "scratch.refinenet4.resConfUnit1.conv1.bias" in sd
    n_params = sum(p.numel() for p in model.parameters())
    assert 120e6 < n_params < 125e6, n_params  # ~122 M like the published model


# ---- reference (official) layout ----------------------------------------------------------------
@pytest.mark.parametrize(
    "variant,task", [("vit_hybrid", "depth"), ("vit_large", "segmentation"), ("vit_base", "depth")]
)
def test_official_layout_round_trip_is_exact(tmp_path, variant, task):
    cfg = DPTConfig.tiny(variant, heads=[task], use_batch_norm_in_fusion={task: task == "segmentation"})
    model = randomize_(DPT(cfg), seed=5).eval()
    sd = to_official_state_dict(model)
    assert guess_family(sd) == f"official_{task}"
    sd["pretrained.model.head.weight"] = torch.zeros(10, cfg.hidden_size)  # ImageNet classifier: ignored
    path = tmp_path / "release.pt"
    torch.save({"model": sd, "optimizer": {"lr": torch.tensor(1.0)}}, path)
    loaded = load_official(path, cfg)
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original), "weights changed in the round trip"
    x = _input(1)
    a, b = _outputs(model, x), _outputs(loaded, x)
    assert set(a) == set(b) == {task}
    assert torch.equal(a[task], b[task])


def test_official_depth_file_loaded_as_segmentation_fails_clearly(tmp_path):
    depth = DPT(DPTConfig.tiny("vit_hybrid", heads=["depth"]))
    path = tmp_path / "dpt_hybrid-midas-501f0c75.pt"
    torch.save(to_official_state_dict(depth), path)
    seg_cfg = DPTConfig.tiny("vit_hybrid", heads=["segmentation"])
    with pytest.raises(CheckpointError, match="official depth checkpoint.*expects a segmentation"):
        load_official(path, seg_cfg)
    with pytest.raises(CheckpointError, match="official depth checkpoint.*dpt_hybrid_ade20k expects"):
        load_official(path, "dpt_hybrid_ade20k")


def test_release_file_name_selects_the_preset(tmp_path):
    """A file named like a release file is matched to its preset; the tiny weights then mismatch,
    and the error names the family and the mismatching shapes."""
    path = tmp_path / "dpt_hybrid-midas-501f0c75.pt"
    torch.save(to_official_state_dict(DPT(DPTConfig.tiny("vit_hybrid", heads=["depth"]))), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert "official DPT depth checkpoint" in msg and "shape-mismatched" in msg
    assert msg.startswith(str(path))
    assert "encoder.blocks.0.attn.proj.bias: checkpoint (32,) vs model (768,)" in msg


# ---- strict loading errors --------------------------------------------------------------------
def test_strict_load_lists_missing_unexpected_and_mismatched_keys(tmp_path):
    model = DPT(DPTConfig.tiny("vit_base", heads=["depth"]))
    sd = dict(model.state_dict())
    del sd["encoder.blocks.0.attn.qkv.weight"]
    sd["encoder.blocks.0.extra"] = torch.zeros(1)
    sd["heads.depth.head.4.weight"] = torch.zeros(2, 32, 1, 1)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(
        json.dumps({"format": "dpt_perception", "version": 1, "config": model.config.to_dict()})
    )
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "m")
    msg = str(info.value)
    assert "1 missing, 1 unexpected, 1 shape-mismatched" in msg
    assert "encoder.blocks.0.attn.qkv.weight" in msg and "encoder.blocks.0.extra" in msg
    assert "heads.depth.head.4.weight: checkpoint (2, 32, 1, 1) vs model (1, 32, 1, 1)" in msg
    assert "dpt_perception native format" in msg


def test_training_checkpoints_load_through_the_one_loader(tmp_path):
    torch.manual_seed(0)
    cfg = DPTConfig.tiny(num_classes=3, net_size=[64, 64])
    model = randomize_(DPT(cfg))
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "model_config": cfg.to_dict(), "epoch": 3,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}}, path)
    loaded = load_model(path)
    assert not loaded.training and loaded.config == cfg
    x = _input(size=(64, 64))
    for key, value in _outputs(model, x).items():
        assert torch.equal(_outputs(loaded, x)[key], value), key
    wrong = dict(cfg.to_dict(), fusion_channels=cfg.fusion_channels * 2)
    torch.save({"model": model.state_dict(), "model_config": wrong}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"(?s)wrong\.pt does not match.*shape mismatch"):
        load_model(tmp_path / "wrong.pt")


def test_names_and_half_written_models_fail_with_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("DPT_PERCEPTION_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="no-such-model: no such checkpoint.*dpt_hybrid_nyu"):
        load_model("no-such-model")
    with pytest.raises(CheckpointError, match="preset 'dpt_hybrid_kitti'.*not in .*cache.*download"):
        load_model("dpt_hybrid_kitti")  # an official name, not cached, and no download asked for
    weights, _config = save_model(DPT(DPTConfig.tiny(net_size=[64, 64])), tmp_path / "half")
    weights.unlink()
    with pytest.raises(CheckpointError, match="our format needs both"):
        load_model(tmp_path / "half")


def test_family_guess():
    tiny = DPT(DPTConfig.tiny("vit_hybrid", heads=["segmentation"]))
    assert guess_family(tiny.state_dict()) == "ours"
    assert guess_family(to_official_state_dict(tiny)) == "official_segmentation"
    enc = {k: v for k, v in tiny.encoder.state_dict().items()}
    assert guess_family(enc) == "timm_vit_hybrid"
    assert guess_family(DPT(DPTConfig.tiny("vit_base")).encoder.state_dict()) == "timm_vit"
    assert (
        guess_family({"dpt.embeddings.cls_token": 0, "auxiliary_head.head.0.weight": 0}) == "hf_segmentation"
    )
    assert guess_family({"dpt.embeddings.cls_token": 0, "head.head.0.weight": 0}) == "hf_depth"
    assert guess_family({"foo": 0}) == "unknown"


def test_timm_weights_are_not_a_full_model(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(DPT(DPTConfig.tiny("vit_base")).encoder.state_dict(), path)
    with pytest.raises(CheckpointError, match="timm ImageNet ViT"):
        load_model(path)


class ArbitraryObject:
    """Stands for any pickled object a weights-only load must refuse."""


def test_torch_files_are_read_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": ArbitraryObject()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_model(path)


# ---- timm ImageNet init -----------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["vit_base", "vit_hybrid"])
def test_timm_naming_initialises_the_encoder(variant):
    """A timm-named ImageNet state dict (other pre-training grid, classifier head) loads strictly;
    the position grid is resampled to the config's grid."""
    src_cfg = DPTConfig.tiny(variant, image_size=32)  # 2x2 pre-training grid
    src = randomize_(DPT(src_cfg), seed=6).encoder
    timm_sd = dict(src.state_dict())
    timm_sd["head.weight"] = torch.randn(1000, 32)
    timm_sd["head.bias"] = torch.randn(1000)
    model = DPT(DPTConfig.tiny(variant))  # 4x4 grid
    init_encoder_from_timm(model, timm_sd)
    assert torch.equal(model.encoder.blocks[1].attn.qkv.weight, timm_sd["blocks.1.attn.qkv.weight"])
    pos = model.encoder.pos_embed
    assert pos.shape == (1, 17, 32)
    assert torch.equal(pos[0, 0], timm_sd["pos_embed"][0, 0])
    src_grid = timm_sd["pos_embed"][0, 1:].reshape(2, 2, 32)
    # The 4x4 corner samples sit at source coordinate -0.25 -> clamped to the source corners.
    assert torch.allclose(pos[0, 1], src_grid[0, 0]) and torch.allclose(pos[0, 16], src_grid[1, 1])
    bad = dict(timm_sd)
    del bad["blocks.0.norm1.weight"]
    with pytest.raises(CheckpointError, match="blocks.0.norm1.weight"):
        init_encoder_from_timm(model, bad)


# ---- compose ------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoder_from", ["depth", "segmentation"])
def test_compose_depth_and_segmentation(tmp_path, encoder_from):
    depth = randomize_(DPT(DPTConfig.tiny("vit_hybrid", heads=["depth"])), seed=7).eval()
    seg_cfg = DPTConfig.tiny("vit_hybrid", heads=["segmentation"], num_classes=3)
    seg = randomize_(DPT(seg_cfg), seed=8).eval()
    both = compose_models(depth, seg, encoder_from=encoder_from)
    assert both.config.heads == ["depth", "segmentation"] and both.config.num_classes == 3
    assert (
        both.config.use_batch_norm_in_fusion["segmentation"]
        and not both.config.use_batch_norm_in_fusion["depth"]
    )
    x = _input(2)
    out = _outputs(both, x)
    # The task whose encoder was kept reproduces its source model exactly.
    kept, source = ("depth", depth) if encoder_from == "depth" else ("segmentation", seg)
    assert torch.equal(out[kept], _outputs(source, x)[kept])
    other, other_src = ("segmentation", seg) if encoder_from == "depth" else ("depth", depth)
    assert out[other].shape == _outputs(other_src, x)[other].shape
    # Its neck/head weights came from the other model.
    assert torch.equal(both.necks[other].projections[0].weight, other_src.necks[other].projections[0].weight)
    # And it survives our format.
    save_model(both, tmp_path / "both")
    assert torch.equal(_outputs(load_model(tmp_path / "both"), x)[kept], out[kept])


def test_compose_rejects_different_architectures():
    depth = DPT(DPTConfig.tiny("vit_hybrid", heads=["depth"]))
    seg = DPT(DPTConfig.tiny("vit_base", heads=["segmentation"]))
    with pytest.raises(CheckpointError, match="different architectures: variant"):
        compose_models(depth, seg)


def test_convert_cli_composes_into_our_format(tmp_path, capsys):
    from dpt_perception.model.convert import main

    depth = randomize_(DPT(DPTConfig.tiny("vit_base", heads=["depth"])), seed=1)
    torch.save(to_official_state_dict(depth), tmp_path / "depth.pt")
    save_model(DPT(DPTConfig.tiny("vit_base", heads=["segmentation"])), tmp_path / "seg")
    with pytest.raises(CheckpointError, match="pass preset="):
        main([str(tmp_path / "depth.pt"), str(tmp_path / "out")])
    save_model(depth, tmp_path / "depth")
    assert (
        main([str(tmp_path / "depth"), str(tmp_path / "both"), "--compose-with", str(tmp_path / "seg")]) == 0
    )
    assert "heads ['depth', 'segmentation']" in capsys.readouterr().out
    both = load_model(tmp_path / "both")
    x = _input(3)
    assert torch.equal(_outputs(both, x)["depth"], _outputs(depth, x)["depth"])


def test_demo_name_loads_the_bundled_demo_model_from_any_directory(tmp_path, monkeypatch):
    """`load_model("demo")` (the README's snippet, the node's `weights: demo`) needs no source tree path."""
    from dpt_perception.model.checkpoints import load_model
    from dpt_perception.model.checkpoints.dispatch import DEMO_WEIGHTS

    monkeypatch.chdir(tmp_path)
    model = load_model("demo")
    reference = load_model(DEMO_WEIGHTS)
    assert model.config.to_dict() == reference.config.to_dict()
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
