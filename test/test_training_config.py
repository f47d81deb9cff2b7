"""Config loading/overrides, lr schedule, data order and atomic checkpoints."""

import os
import random

import numpy as np
import pytest
import torch

from dpt_perception.training import checkpointing
from dpt_perception.training.config import TrainConfig, apply_override, describe_options, load_config
from dpt_perception.training.data_order import ResumableBatchSampler, SeededDataset
from dpt_perception.training.optim import build_optimizer, lr_factor


def test_yaml_then_overrides_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "train:\n  lr_encoder: 2.0e-5\n  max_steps: 50\ndata:\n  train: {type: folder, root: /x}\n"
    )
    overrides = ["train.lr_encoder=1e-6", "model.config.heads=[depth]", "train.amp=bf16"]
    cfg = load_config(TrainConfig, path, overrides)
    assert cfg.train.lr_encoder == 1e-6 and isinstance(cfg.train.lr_encoder, float)
    assert cfg.train.max_steps == 50
    assert cfg.data.train == {"type": "folder", "root": "/x"}  # replaced, not merged with the default
    assert cfg.model.config == {"heads": ["depth"], "variant": "vit_base"}
    assert cfg.train.lr_decoder == 1e-4  # default kept


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"train\.lr_enc"):
        load_config(TrainConfig, None, ["train.lr_enc=1"])
    with pytest.raises(ValueError, match="unknown config section"):
        TrainConfig.from_dict({"trian": {}})
    with pytest.raises(ValueError, match="train.max_steps must be an integer"):
        load_config(TrainConfig, None, ["train.max_steps=ten"])
    with pytest.raises(ValueError, match="train.amp"):
        load_config(TrainConfig, None, ["train.amp=fp8"])
    with pytest.raises(ValueError, match="section.key=value"):
        apply_override({}, "train.lr")


def test_round_trip_and_help_lists_every_option():
    cfg = load_config(TrainConfig, None, ["train.seed=3"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    text = describe_options(TrainConfig)
    for section in ("model", "data", "train", "loss", "eval", "output"):
        for name in getattr(cfg, section).__dataclass_fields__:
            assert f"{section}.{name} " in text


def test_lr_schedule_warmup_cosine_poly():
    assert lr_factor(0, 100, 10, "cosine", 0.0) == 0.0
    assert lr_factor(5, 100, 10, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine", min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "poly", poly_power=1.0) == pytest.approx(0.5)
    assert lr_factor(70, 100, 10, "constant") == 1.0


def test_optimizer_groups_split_encoder_and_freeze():
    from dpt_perception.model import DPT, DPTConfig

    model = DPT(DPTConfig.tiny(heads=["depth"]))
    opt = build_optimizer(model, 1e-5, 1e-4)
    names = {g["name"]: g for g in opt.param_groups}
    assert names["encoder"]["lr"] == 1e-5 and names["decoder"]["lr"] == 1e-4
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    assert sum(p.numel() for p in names["encoder"]["params"]) == n_enc
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )
    frozen = build_optimizer(model, 1e-5, 1e-4, freeze_encoder=True)
    assert [g["name"] for g in frozen.param_groups] == ["decoder"]
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_data_order_is_a_permutation_split_over_ranks_and_resumable():
    one = ResumableBatchSampler(10, 4, seed=1)
    batches = list(one)
    assert len(batches) == 2  # 10 // 4, incomplete batch dropped
    flat = [i for b in batches for i, _ in b]
    assert len(set(flat)) == 8 and all(0 <= i < 10 for i in flat)
    ranks = [list(ResumableBatchSampler(10, 4, seed=1, rank=r, world_size=2)) for r in range(2)]
    for p in range(2):
        assert ranks[0][p] + ranks[1][p] == batches[p]
    one.advance()
    state = one.state_dict()
    resumed = ResumableBatchSampler(10, 4, seed=1)
    resumed.load_state_dict(state)
    assert list(resumed) == batches[1:]
    one.start_epoch(1)
    assert list(one) != batches  # a new epoch draws a new order
    with pytest.raises(ValueError, match="global batch"):
        ResumableBatchSampler(10, 4, seed=2).load_state_dict(state)


def test_seeded_dataset_is_deterministic_and_leaves_global_rng_alone():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return (random.random(), float(np.random.rand()), float(torch.rand(())))

    ds = SeededDataset(Noisy())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b = ds[(0, 123)], ds[(1, 123)]
    assert a == b  # same seed -> same augmentation whatever the index
    assert ds[(0, 124)] != a
    assert torch.equal(before, torch.get_rng_state())


def test_atomic_save_survives_failure_during_write(tmp_path, monkeypatch):
    path = tmp_path / "ckpt" / "last.pt"
    checkpointing.atomic_torch_save({"model": {"w": torch.ones(3)}, "step": 1}, path)

    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated"):
        checkpointing.atomic_torch_save({"model": {"w": torch.zeros(1000)}, "step": 2}, path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    state = checkpointing.load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    state = checkpointing.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    checkpointing.atomic_torch_save({"rng": state, "model": {}, "step": 0}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)
    random.random(), np.random.rand(), torch.rand(())
    checkpointing.restore_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected


# ---- the same loader behind eval (EvalConfig) and distill ----------------------------------------
def _eval_options(argv):
    from dpt_perception.training import evaluate

    return evaluate.resolve_options(evaluate.build_parser().parse_args(["--weights", "w"] + argv))


def test_eval_config_unknown_key_names_every_valid_one_and_values_are_typed(tmp_path):
    from dpt_perception.training.evaluate import EvalConfig

    path = tmp_path / "e.yaml"
    path.write_text("data: {type: synthetic}\nmax_dpeth: 10\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_dpeth'\]") as err:
        load_config(EvalConfig, path)
    for name in EvalConfig.__dataclass_fields__:
        assert f"'{name}'" in str(err.value)
    with pytest.raises(ValueError, match="batch_size must be an integer, got 'four'"):
        load_config(EvalConfig, None, ["batch_size=four"])
    with pytest.raises(ValueError, match="data must be a dict or a string, got 3"):
        load_config(EvalConfig, None, ["data=3"])
    with pytest.raises(ValueError, match="unknown protocol 'eigen'"):
        load_config(EvalConfig, None, ["protocol=eigen"])
    assert load_config(EvalConfig, None, ["max_depth=10"]).max_depth == 10.0  # an int read as a float


def test_eval_dotted_override_edits_the_dataset_spec_of_the_shipped_config(repo_root):
    config = str(repo_root / "config" / "eval_synthetic.yaml")
    options = _eval_options(["--config", config, "--set", "data.length=8", "--set", "max_depth=20"])
    assert options.data == {"type": "synthetic", "length": 8, "seed": 100000, "width": 128, "height": 128}
    assert (options.max_depth, options.min_depth, options.batch_size) == (20.0, 0.001, 8)
    assert options.out == "runs/eval_synthetic"
    # a dotted --set builds the spec when nothing gave one; --data as a folder is a folder spec
    assert _eval_options(["--set", "data.type=synthetic", "--set", "data.length=2"]).data == {
        "type": "synthetic", "length": 2}
    assert _eval_options(["--data", str(repo_root)]).data == {"type": "folder", "root": str(repo_root)}
    with pytest.raises(ValueError, match="no dataset"):
        _eval_options([])


def test_eval_help_lists_every_option_with_its_default():
    from dpt_perception.training.evaluate import EvalConfig, build_parser

    text = build_parser().format_help()
    for name, f in EvalConfig.__dataclass_fields__.items():
        assert f"  {name} (default: {f.default!r})\n      {f.metadata['help']}" in text, name
        assert f"--{name.replace('_', '-')}" in text  # and a flag of its own


def test_eval_flags_are_the_same_as_set_and_come_after_the_config_file(repo_root):
    config = str(repo_root / "config" / "eval_synthetic.yaml")
    pairs = [
        (["--max-depth", "10"], ["--set", "max_depth=10"]),
        (["--png-quantize"], ["--set", "png_quantize=true"]),
        (["--protocol", "nyu", "--batch-size", "2"], ["--set", "protocol=nyu", "--set", "batch_size=2"]),
        (["--data", "{type: synthetic, length: 3}"], ["--set", "data={type: synthetic, length: 3}"]),
        (["--out", "runs/x", "--device", "cpu"], ["--set", "out=runs/x", "--set", "device=cpu"]),
    ]
    base = ["--data", "{type: synthetic}"]
    for flags, sets in pairs:
        by_flag, by_set = _eval_options(base + flags), _eval_options(base + sets)
        assert by_flag == by_set, flags
        assert by_flag != _eval_options(base), flags
    assert _eval_options(["--config", config, "--max-depth", "10"]).max_depth == 10.0  # flag over file
    assert _eval_options(["--config", config, "--max-depth", "10", "--set", "max_depth=5"]).max_depth == 5.0


def test_a_depth_range_given_with_a_protocol_that_fixes_it_is_an_error(repo_root, tmp_path):
    from dpt_perception.training.evaluate import EvalConfig

    config = str(repo_root / "config" / "eval_synthetic.yaml")  # sets min_depth and max_depth
    with pytest.raises(ValueError, match=r"min_depth is fixed by protocol 'nyu' \(0.001 m\)"):
        _eval_options(["--config", config, "--protocol", "nyu"])
    with pytest.raises(ValueError, match=r"max_depth is fixed by protocol 'kitti' \(80 m\)"):
        _eval_options(["--data", "{type: x}", "--protocol", "kitti", "--set", "max_depth=80"])  # even equal
    with pytest.raises(ValueError, match="min_depth is fixed by protocol 'kitti'"):
        EvalConfig(protocol="kitti", min_depth=0.1, data={"type": "x"}).validate()  # built in code too
    fixed = _eval_options(["--data", "{type: x}", "--protocol", "kitti"])
    assert (fixed.min_depth, fixed.max_depth) == (None, None)  # the protocol's
    ade = _eval_options(["--data", "{type: x}", "--protocol", "ade20k", "--max-depth", "10"])
    assert ade.max_depth == 10.0  # ade20k fixes no depth range


def test_distill_config_is_the_distill_section_of_the_same_loader(tmp_path):
    from dpt_perception.training.distill import DistillFile, load_distill_config

    path = tmp_path / "d.yaml"
    path.write_text("distill:\n  epochs: 3\n  data: {type: video, path: a.mp4}\n")
    cfg = load_distill_config(path, ["distill.data.stride=2"])
    assert cfg.epochs == 3 and cfg.data == {"type": "video", "path": "a.mp4", "stride": 2}  # not merged
    with pytest.raises(ValueError, match=r"section\(s\) \['train'\]; valid sections: \['distill'\]"):
        load_distill_config(None, ["train.max_steps=3"])
    text = describe_options(DistillFile)
    for name in cfg.__dataclass_fields__:
        assert f"    distill.{name} (default: " in text
    assert DistillFile.from_dict(DistillFile(cfg).to_dict()).distill == cfg
