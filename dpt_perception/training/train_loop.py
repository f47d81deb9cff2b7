"""The training loop: multi-task DPT training with DDP, AMP, accumulation, evaluation, exact resume.

One optimizer step = ``grad_accum`` micro-batches of ``data.batch_size`` samples (global,
split over DDP ranks). Rank 0 logs (tqdm, TensorBoard), evaluates, writes checkpoints and
exports; the other ranks wait at barriers. Output folder layout::

    checkpoints/last.pt            resumable training state (torch.load(weights_only=True))
    tensorboard/                   scalars (losses, lr, img/s, eval metrics) + image panels
    metrics/eval_step_XXXXXXX.json one JSON per evaluation; metrics/history.jsonl all of them
    export/model_final.*, model_best.*   save_model format (.safetensors + .json) for the node;
                                   model_best is rewritten whenever eval.best_metric improves
    report/                        final evaluation report (JSON, Markdown, PNG plots)
    config.yaml                    the resolved configuration
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dpt_perception.training import distributed as dist_utils
from dpt_perception.training.checkpointing import (
    atomic_torch_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from dpt_perception.training.config import TrainConfig
from dpt_perception.training.data_order import ResumableBatchSampler, SeededDataset
from dpt_perception.training.datasets import (
    build_eval_loader,
    build_split,
    count_corrupt,
    dataset_class_names,
)
from dpt_perception.training.eval_loop import autocast_context, evaluate_model, flat_metrics
from dpt_perception.training.losses import MultiTaskLoss
from dpt_perception.training.metrics import HIGHER_IS_BETTER
from dpt_perception.training.optim import build_optimizer, build_scheduler
from dpt_perception.training.report import write_json, write_report
from dpt_perception.training.visualize import sample_panel

CHECKPOINT_FORMAT = "dpt_perception.training/1"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, dataset=None) -> nn.Module:
    """The DPT described by ``cfg.model``; class names/colours come from the dataset when the
    config does not set them, and ``init_weights`` (if any) is loaded non-strictly (tensors
    whose name and shape match), so e.g. a depth checkpoint can seed a multi-task model."""
    from dpt_perception.model import DPT, DPTConfig

    options = dict(cfg.model.config)
    heads = options.get("heads", ["depth", "segmentation"])
    names, colors = dataset_class_names(dataset) if dataset is not None else (None, None)
    if "segmentation" in heads and names and "class_names" not in options:
        if options.get("num_classes", len(names)) == len(names):
            options["num_classes"] = len(names)
            options["class_names"] = list(names)
            if colors and "class_colors" not in options:
                options["class_colors"] = [list(c) for c in colors]
    config = DPTConfig.tiny(**options) if cfg.model.tiny else DPTConfig(**options)
    model = DPT(config)
    loaded: set[str] = set()
    if cfg.model.init_weights:
        from dpt_perception.model.checkpoints import load_model

        source = load_model(cfg.model.init_weights).state_dict()
        own = model.state_dict()
        matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        if not any(k.startswith("encoder.") for k in matched):
            raise ValueError(
                f"init_weights {cfg.model.init_weights} shares no encoder tensor with the configured model "
                "(different variant or size?)"
            )
        model.load_state_dict(matched, strict=False)
        loaded = set(matched)
    if cfg.model.depth_output_bias is not None and "depth" in model.heads:
        # The depth head ends in conv -> ReLU. From a random init many outputs start negative
        # and a few steps can push all of them below zero, after which no gradient flows ("dead
        # ReLU", observed with the tiny multi-task models). A positive bias avoids that; the
        # scale-and-shift-invariant losses give the bias zero gradient, so it stays there.
        last = model.heads["depth"].output_conv
        if last.bias is not None and "heads.depth.head.4.bias" not in loaded:
            with torch.no_grad():
                last.bias.fill_(cfg.model.depth_output_bias)
    return model


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None):
        self.cfg = cfg
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.dist, self.device = dist_utils.init_distributed(cfg.train.device)
        self.out_dir = Path(cfg.output.dir)
        seed_everything(cfg.train.seed)

        self.train_set = build_split(cfg.data.train, train=True, model_options=cfg.model.config)
        self.model = build_model(cfg, self.train_set).to(self.device)
        self.model_config = self.model.config
        self.val_loader = None
        if cfg.data.val is not None and self.dist.is_main:
            val_set = build_split(cfg.data.val, train=False, model_options=cfg.model.config)
            self.val_loader = build_eval_loader(val_set, cfg.data.eval_batch_size, cfg.data.num_workers)

        self.optimizer = build_optimizer(
            self.model,
            cfg.train.lr_encoder,
            cfg.train.lr_decoder,
            cfg.train.weight_decay,
            cfg.train.betas,
            cfg.train.freeze_encoder,
            cfg.train.adam_eps,
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            cfg.train.max_steps,
            cfg.train.warmup_steps,
            cfg.train.schedule,
            cfg.train.warmup_start_factor,
            cfg.train.poly_power,
            cfg.train.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.loss_fn = MultiTaskLoss(
            depth_loss=cfg.loss.depth,
            depth_weight=cfg.loss.depth_weight,
            gradient_weight=cfg.loss.gradient_weight,
            gradient_scales=cfg.loss.gradient_scales,
            trim=cfg.loss.trim,
            silog_variance_focus=cfg.loss.silog_variance_focus,
            segmentation_weight=cfg.loss.segmentation_weight,
            aux_weight=cfg.loss.aux_weight,
            ignore_index=cfg.loss.ignore_index,
            depth_to_metric=self.model.depth_to_metric,
        )
        self.sampler = ResumableBatchSampler(
            len(self.train_set), cfg.data.batch_size, cfg.train.seed, self.dist.rank, self.dist.world_size
        )
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Some parameters never receive a gradient in some configurations (e.g. the encoder's
            # final LayerNorm when the last tapped block comes before it, or heads whose loss
            # weight is 0), so DDP must look for unused parameters.
            self.ddp_model: nn.Module = DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=True
            )
        else:
            self.ddp_model = self.model

        self.step = 0
        self.best = {"metric": self._best_metric_name(), "value": None, "step": None}
        self.last_eval_step = None
        self._iterator = None
        self.writer = None
        if resume is not None:
            self._load(resume)

    # ---- helpers ---------------------------------------------------------------------------------
    def _best_metric_name(self) -> str:
        name = self.cfg.eval.best_metric
        if name == "auto":
            return "miou" if "segmentation" in self.model_config.heads else "abs_rel"
        return name

    def _depth_kind(self) -> str:
        mode = self.cfg.eval.depth_kind
        return self.model_config.depth_kind if mode == "auto" else mode

    def _loader(self) -> DataLoader:
        # An explicit generator keeps DataLoader start-up from drawing on the global torch RNG
        # (which would shift dropout streams between an uninterrupted and a resumed run).
        from dpt_perception.training.datasets import collate_fn

        return DataLoader(
            SeededDataset(self.train_set),
            batch_sampler=self.sampler,
            num_workers=self.cfg.data.num_workers,
            collate_fn=collate_fn(),
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    def _next_batch(self) -> dict:
        if self._iterator is None:
            self._iterator = iter(self._loader())
        batch = next(self._iterator)
        if self.sampler.advance():
            self.sampler.start_epoch(self.sampler.epoch + 1)
            self._iterator = None
        return batch

    def _open_writer(self):
        if self.writer is None and self.dist.is_main and self.cfg.output.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=self.step + 1)
        return self.writer

    # ---- checkpoints -------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """Everything needed to continue exactly (collective call under DDP: RNG states of all ranks)."""
        rng_states = dist_utils.gather_objects(self.dist, capture_rng_state())
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "model_config": self.model_config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "data_order": self.sampler.state_dict(),
            "best": dict(self.best),
            "last_eval_step": self.last_eval_step,
            "world_size": self.dist.world_size,
            "rng": rng_states,
        }

    def save_checkpoint(self, name: str = "last.pt") -> Path | None:
        state = self.checkpoint_state()
        path = None
        if self.dist.is_main:
            path = atomic_torch_save(state, self.out_dir / "checkpoints" / name)
        dist_utils.barrier(self.dist)
        return path

    def _load(self, path: str | Path) -> None:
        state = load_checkpoint(path, map_location="cpu")
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{path}: checkpoint format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["data_order"])
        self.step = int(state["step"])
        self.best = dict(state["best"])
        self.last_eval_step = state.get("last_eval_step")
        rng = state["rng"]
        restore_rng_state(rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0])

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, final: bool = False) -> dict | None:
        """Rank 0 evaluates on the validation set, logs, writes JSON and keeps the best model."""
        results = None
        if self.dist.is_main and self.val_loader is not None:
            results, extras = evaluate_model(
                self.model,
                self.val_loader,
                self.device,
                depth_kind=self._depth_kind(),
                min_depth=self.cfg.eval.min_depth,
                max_depth=self.cfg.eval.max_depth,
                ignore_index=self.cfg.loss.ignore_index,
                max_batches=self.cfg.eval.max_batches,
                amp=self.cfg.train.amp,
                num_examples=4 if final else 0,
            )
            results["step"] = self.step
            flat = flat_metrics(results)
            write_json(results, self.out_dir / "metrics" / f"eval_step_{self.step:07d}.json")
            with open(self.out_dir / "metrics" / "history.jsonl", "a") as f:
                f.write(
                    json.dumps({"step": self.step, **{k: v for k, v in flat.items() if math.isfinite(v)}})
                    + "\n"
                )
            writer = self._open_writer()
            if writer is not None:
                for key, value in flat.items():
                    if math.isfinite(value):
                        writer.add_scalar(f"eval/{key}", value, self.step)
            self._update_best(flat)
            if final:
                write_report(
                    {**results, "meta": {"step": self.step, "output": str(self.out_dir)}},
                    extras,
                    self.out_dir / "report",
                    title=f"Evaluation at step {self.step}",
                    mean=self.model_config.mean,
                    std=self.model_config.std,
                    class_colors=self.model_config.class_colors,
                )
        self.last_eval_step = self.step
        return results

    def _update_best(self, flat: dict[str, float]) -> None:
        name = self.best["metric"]
        value = flat.get(name)
        if value is None or not math.isfinite(value):
            return
        old = self.best["value"]
        better = old is None or (value > old if name in HIGHER_IS_BETTER else value < old)
        if better:
            self.best.update(value=value, step=self.step)
            if self.cfg.output.export:
                from dpt_perception.model.checkpoints import save_model

                save_model(self.model, self.out_dir / "export" / "model_best")

    # ---- training ---------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns averaged loss parts."""
        cfg = self.cfg.train
        self.ddp_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch = self._next_batch()
            images = batch["image"].to(self.device, non_blocking=True)
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.ddp_model.no_sync()
            with sync:
                with autocast_context(self.device, cfg.amp):
                    outputs = self.ddp_model(images)
                loss, parts = self.loss_fn(outputs, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {loss.item()} at step {self.step} (parts: "
                        f"{ {k: float(v) for k, v in parts.items()} }); lower the learning rate or use "
                        "amp=bf16/none"
                    )
                self.scaler.scale(loss / cfg.grad_accum).backward()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value) / cfg.grad_accum
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self._last_batch, self._last_outputs = batch, outputs
        return sums

    def _log_images(self) -> None:
        writer = self._open_writer()
        if writer is None:
            return
        batch, outputs = self._last_batch, self._last_outputs
        count = min(2, batch["image"].shape[0])
        rows = [
            sample_panel(
                batch,
                outputs,
                i,
                self.model_config.mean,
                self.model_config.std,
                self.model_config.class_colors or [[255, 255, 255]],
                self.cfg.loss.ignore_index,
            )
            for i in range(count)
        ]
        panel = np.concatenate(rows, axis=0)
        writer.add_image(
            "train/input|pred_depth|true_depth|pred_labels|true_labels", panel, self.step, dataformats="HWC"
        )

    def fit(self, stop_at_step: int | None = None) -> dict:
        """Train until ``train.max_steps`` (or ``stop_at_step``, simulating an interruption:
        the state is checkpointed there and the run can be resumed). Returns a summary."""
        cfg = self.cfg
        target = cfg.train.max_steps if stop_at_step is None else min(stop_at_step, cfg.train.max_steps)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        writer = self._open_writer()
        progress = None
        if self.dist.is_main and cfg.output.progress:
            from tqdm import tqdm

            progress = tqdm(total=cfg.train.max_steps, initial=self.step, desc="train", dynamic_ncols=True)
        images_per_step = cfg.data.batch_size * cfg.train.grad_accum
        window_start, window_steps = time.perf_counter(), 0
        last_parts: dict[str, float] = {}
        while self.step < target:
            last_parts = self.train_step()
            window_steps += 1
            if self.dist.is_main:
                if progress is not None:
                    progress.update(1)
                if self.step % cfg.output.log_every == 0 or self.step == target:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    throughput = window_steps * images_per_step / elapsed
                    window_start, window_steps = time.perf_counter(), 0
                    if progress is not None:
                        progress.set_postfix(loss=f"{last_parts['total']:.4f}", img_s=f"{throughput:.1f}")
                    if writer is not None:
                        for key, value in last_parts.items():
                            writer.add_scalar(f"train/{key}", value, self.step)
                        for group in self.optimizer.param_groups:
                            writer.add_scalar(f"lr/{group.get('name', 'group')}", group["lr"], self.step)
                        writer.add_scalar("train/images_per_second", throughput, self.step)
                        writer.add_scalar(
                            "data/corrupt_samples_skipped", count_corrupt(self.train_set), self.step
                        )
                if cfg.output.image_every and self.step % cfg.output.image_every == 0:
                    self._log_images()
            if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.train.max_steps:
                self.evaluate()
                dist_utils.barrier(self.dist)
            if self.step % cfg.output.checkpoint_every == 0 and self.step < target:
                self.save_checkpoint("last.pt")
        if progress is not None:
            progress.close()
        summary: dict = {
            "step": self.step,
            "last_loss": last_parts,
            "output": str(self.out_dir),
            "corrupt_samples_skipped": count_corrupt(self.train_set),
        }
        if self.step >= cfg.train.max_steps:
            summary["final_eval"] = self.evaluate(final=True)
            dist_utils.barrier(self.dist)
            if self.dist.is_main and cfg.output.export:
                from dpt_perception.model.checkpoints import save_model

                weights, _ = save_model(self.model, self.out_dir / "export" / "model_final")
                summary["exported"] = str(weights)
        self.save_checkpoint("last.pt")
        summary["best"] = dict(self.best)
        if writer is not None:
            writer.flush()
        if self.dist.is_main:
            write_json(summary, self.out_dir / "summary.json")
        return summary

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        dist_utils.shutdown(self.dist)
