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
