"""Distil a depth teacher and a segmentation teacher (two encoders) into ONE shared-encoder student.

    ros2 run dpt_perception train --config config/distill_hybrid.yaml [--set distill.epochs=3 ...]
    python -m dpt_perception.training.distill --config config/distill_hybrid.yaml

The official releases are single-task files with different encoders; serving both costs two
encoder passes per frame (`model.pair.TaskPair`). The student starts from the depth teacher
(encoder, depth neck and head) and the segmentation teacher's neck and head (kept when their shapes
fit the depth encoder's features, else freshly initialised), and learns on unlabelled frames
(`training.data.unlabelled`: image folder, video file or rosbag2 topic) to reproduce:

* the depth teacher in its own space: scale-shift-invariant on inverse depth for a relative
  teacher (`ssi`), SILog (`silog`) or L1 (`l1`) on metres for a metric one;
* the segmentation teacher's logits: KL(teacher || student) at `temperature`, times T^2.

`mode: freeze_encoder` trains only the segmentation neck and head (depth stays exactly the
teacher's); `mode: full` fine-tunes everything with split learning rates (encoder vs the rest).
Before training and after every epoch it measures agreement with each teacher on held-out frames:
depth AbsRel vs the teacher (relative teachers after per-image least-squares alignment in inverse
depth), label agreement (% pixels with the teacher's argmax) and mIoU against the teacher's labels.

Output folder: `student.safetensors` + `student.json` (our checkpoint format, recording the
teachers), `report.json` + `report.png` (agreement per epoch), `tensorboard/`, `config.yaml`.
With `install: true` the student is also copied (atomically) to the weights cache under the
pair's name, where the node finds it: `weights: [DEPTH, SEG]` then runs ONE encoder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset

from dpt_perception.model.checkpoints import CheckpointError, save_model
from dpt_perception.model.checkpoints.compose import composed_config
from dpt_perception.model.depth_units import depth_from_inverse
from dpt_perception.model.dpt import DPT
from dpt_perception.model.pair import TaskPair, make_pair
from dpt_perception.training.alignment import apply_scale_shift, fit_scale_shift
from dpt_perception.training.config import Config, check_all, describe_options, load_config, option
from dpt_perception.training.data.unlabelled import crop_to_size, open_frames
from dpt_perception.training.losses import median_normalised_loss, silog_loss
from dpt_perception.training.metrics import ConfusionMatrix
from dpt_perception.training.optim import build_scheduler

DEPTH_LOSSES = ("auto", "ssi", "silog", "l1")
MODES = ("full", "freeze_encoder")
# Inverse depths below this fraction of the image's median are left out of AbsRel vs the teacher
# (the far background, where a relative teacher's inverse depth approaches 0 and ratios explode).
AGREEMENT_MIN_INVERSE = 0.05


@dataclass
class DistillConfig:
    teachers: list = option(
        ["dpt_hybrid_nyu", "dpt_hybrid_ade20k"],
        "[DEPTH, SEGMENTATION] teacher checkpoints in either order (official names or paths, any "
        "format the node reads)",
    )
    data: dict = option(
        {"type": "folder", "path": "images"},
        "unlabelled frames: {type: folder, path} | {type: video, path} | {type: rosbag2, path, topic}; "
        "optional stride (every n-th frame) and max_frames",
    )
    val_fraction: float = option(
        0.1, "fraction of the frames held out to measure agreement (every n-th frame)"
    )
    net_size: list = option([], "training crop [height, width], multiples of 32 ([] = the depth teacher's)")
    epochs: int = option(10, "passes over the training frames")
    batch_size: int = option(4, "frames per optimizer step")
    num_workers: int = option(2, "DataLoader worker processes")
    mode: str = option("full", "full (fine-tune everything) | freeze_encoder (train only the seg neck/head)")
    lr_encoder: float = option(1e-5, "peak learning rate of the encoder and the depth neck/head (mode full)")
    lr_decoder: float = option(1e-4, "peak learning rate of the segmentation neck/head")
    weight_decay: float = option(0.0, "Adam L2 weight decay")
    warmup_steps: int = option(0, "linear warm-up steps, then cosine decay to 0")
    segmentation_init: str = option(
        "teacher",
        "teacher (the seg teacher's neck/head where their shapes fit) | fresh (random: when the seg "
        "teacher's features differ too much from the depth encoder's to be a useful start)",
    )
    share_neck: bool = option(
        False,
        "student with ONE neck (the depth teacher's) under both heads: cheaper per frame than two "
        "necks; the segmentation head then learns on the depth neck's features",
    )
    temperature: float = option(1.0, "softmax temperature of the segmentation KL")
    depth_loss: str = option("auto", "auto (ssi for relative teachers, silog for metric) | ssi | silog | l1")
    depth_weight: float = option(1.0, "weight of the depth agreement loss")
    segmentation_weight: float = option(1.0, "weight of the segmentation KL")
    amp: str = option("none", "none | bf16 (autocast for teachers and student)")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    seed: int = option(0, "seed of data order, crops and any fresh initialisation")
    threads: int = option(0, "torch.set_num_threads (0 = torch's default)")
    output_dir: str = option("runs/distill", "output folder (student checkpoint, report, tensorboard)")
    install: bool = option(
        True, "also copy the student to the weights cache under the pair's name (the node uses it)"
    )
    tensorboard: bool = option(True, "write TensorBoard event files")
    progress: bool = option(True, "show a tqdm progress bar")

    def validate(self) -> None:
        check_all([
            (
                isinstance(self.teachers, list) and len(self.teachers) == 2,
                f"distill.teachers must be [DEPTH, SEGMENTATION], got {self.teachers!r}",
            ),
            (self.mode in MODES, f"distill.mode must be one of {MODES}, got {self.mode!r}"),
            (
                self.segmentation_init in ("teacher", "fresh"),
                f"distill.segmentation_init must be teacher or fresh, got {self.segmentation_init!r}",
            ),
            (
                self.depth_loss in DEPTH_LOSSES,
                f"distill.depth_loss must be one of {DEPTH_LOSSES}, got {self.depth_loss!r}",
            ),
            (self.amp in ("none", "bf16"), f"distill.amp must be none or bf16, got {self.amp!r}"),
            (self.epochs >= 1 and self.batch_size >= 1, "distill.epochs and distill.batch_size must be >= 1"),
            (
                0.0 < self.val_fraction < 1.0,
                f"distill.val_fraction must be in (0, 1), got {self.val_fraction}",
            ),
            (self.temperature > 0, f"distill.temperature must be > 0, got {self.temperature}"),
            (
                not self.net_size
                or (len(self.net_size) == 2 and all(int(s) % 32 == 0 and s > 0 for s in self.net_size)),
                f"distill.net_size must be [] or [height, width] in multiples of 32, got {self.net_size}",
            ),
        ])


@dataclass
class DistillFile(Config):
    """A distillation config file: one `distill:` mapping (which is how `train` tells it apart)."""

    distill: DistillConfig = field(default_factory=DistillConfig)


def load_distill_config(path: str | Path | None, overrides=()) -> DistillConfig:
    """Defaults, then the `distill:` mapping of the YAML file, then `distill.key=value` overrides."""
    from dpt_perception.command_line import package_file

    return load_config(DistillFile, package_file(path) if path is not None else None, overrides).distill


def is_distill_config(path: str | Path | None) -> bool:
    """Whether a --config file is a distillation config (the `train` command dispatches on it)."""
    if path is None or not Path(path).is_file():
        return False
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError:
        return False
    return isinstance(loaded, dict) and "distill" in loaded


# ---- student -----------------------------------------------------------------------------------
@torch.no_grad()
def init_student(
    pair: TaskPair, seed: int = 0, segmentation_init: str = "teacher", share_neck: bool = False
) -> tuple[DPT, list[str]]:
    """The one-encoder student and what it took from where: encoder + depth neck/head from the
    depth teacher, seg neck/head from the segmentation teacher where their shapes fit. With
    `share_neck` both heads sit on the depth teacher's neck (one neck per frame, not two)."""
    depth, seg = pair.depth_model, pair.segmentation_model
    torch.manual_seed(seed)
    config = composed_config(depth.config, seg.config, encoder_from="depth", same_architecture=False)
    if share_neck:
        depth_bn = depth.config.use_batch_norm_in_fusion[depth.config.neck_for("depth")]
        config = config.replace(
            share_neck=True, use_batch_norm_in_fusion={**config.use_batch_norm_in_fusion, "shared": depth_bn}
        )
    student = DPT(config)
    student.encoder.load_state_dict(depth.encoder.state_dict())
    student.necks[config.neck_for("depth")].load_state_dict(
        depth.necks[depth.config.neck_for("depth")].state_dict()
    )
    student.heads["depth"].load_state_dict(depth.heads["depth"].state_dict())
    notes = [f"encoder, {'shared' if share_neck else 'depth'} neck and depth head: depth teacher"]
    parts = [("segmentation head", student.heads["segmentation"], seg.heads["segmentation"])]
    if not share_neck:
        parts.insert(
            0,
            (
                "segmentation neck",
                student.necks["segmentation"],
                seg.necks[seg.config.neck_for("segmentation")],
            ),
        )
    if student.aux_head is not None and seg.aux_head is not None:
        parts.append(("auxiliary head", student.aux_head, seg.aux_head))
    for name, target, source in parts:
        if segmentation_init == "fresh":
            notes.append(f"{name}: fresh (segmentation_init: fresh)")
            continue
        try:
            target.load_state_dict(source.state_dict())
            notes.append(f"{name}: segmentation teacher")
        except RuntimeError:  # shapes differ: the teachers' encoders have different widths
            notes.append(f"{name}: fresh (the segmentation teacher's does not fit the depth encoder)")
    return student.eval(), notes


def trainable_groups(student: DPT, cfg: DistillConfig) -> list[dict]:
    """Adam parameter groups. The parts already trained for these features (encoder, depth neck and
    head, all from the depth teacher) get `lr_encoder`; the segmentation neck/head, which must adapt
    to a new encoder, get `lr_decoder`. freeze_encoder: only the segmentation parts train."""
    seg_parts = [student.heads["segmentation"]]
    if not student.config.share_neck:  # a shared neck is the depth teacher's: pretrained
        seg_parts.append(student.necks["segmentation"])
    if student.aux_head is not None:
        seg_parts.append(student.aux_head)
    seg_ids = {id(p) for part in seg_parts for p in part.parameters()}
    for p in student.parameters():
        p.requires_grad_(cfg.mode == "full" or id(p) in seg_ids)
    pretrained = [p for p in student.parameters() if p.requires_grad and id(p) not in seg_ids]
    groups = [
        {
            "params": [p for p in student.parameters() if id(p) in seg_ids],
            "lr": cfg.lr_decoder,
            "name": "segmentation decoder",
        }
    ]
    if pretrained:
        groups.insert(0, {"params": pretrained, "lr": cfg.lr_encoder, "name": "encoder + depth decoder"})
    return groups


# ---- losses and agreement -----------------------------------------------------------------------
def depth_agreement_loss(student_inv, teacher_inv, kind: str, config) -> torch.Tensor:
    """Depth loss in the teacher's own space (inverse relative depth, or metres via the config)."""
    mask = torch.ones_like(teacher_inv, dtype=torch.bool)
    if kind == "ssi":  # both normalised per image by median and MAD: dimensionless, scale-shift-invariant
        return median_normalised_loss(student_inv, teacher_inv, mask, trim=0.0)
    student_m = depth_from_inverse(student_inv.float(), config.depth_scale, config.depth_shift)
    teacher_m = depth_from_inverse(teacher_inv.float(), config.depth_scale, config.depth_shift)
    if kind == "silog":
        return silog_loss(student_m, teacher_m, mask)
    return (student_m - teacher_m).abs().mean()


def segmentation_kl(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """Per-pixel KL(teacher || student) of the tempered class distributions, times T^2 (so the
    gradient scale does not depend on T)."""
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return kl.mean() * t * t


def depth_abs_rel_vs_teacher(student_inv, teacher_inv, relative: bool, config) -> torch.Tensor:
    """(B,) AbsRel of the student against the teacher: relative teachers in inverse depth after
    per-image least-squares alignment (pixels above AGREEMENT_MIN_INVERSE x the median), metric
    ones in metres."""
    if relative:
        floor = AGREEMENT_MIN_INVERSE * teacher_inv.flatten(1).median(dim=1).values.view(-1, 1, 1)
        mask = teacher_inv > floor
        scale, shift = fit_scale_shift(student_inv.double(), teacher_inv.double(), mask)
        pred, ref = apply_scale_shift(student_inv.double(), scale, shift), teacher_inv.double()
    else:
        pred = depth_from_inverse(student_inv.double(), config.depth_scale, config.depth_shift)
        ref = depth_from_inverse(teacher_inv.double(), config.depth_scale, config.depth_shift)
        mask = ref > 0
    err = torch.where(mask, (pred - ref).abs() / ref.clamp(min=1e-12), torch.zeros_like(ref))
    return err.sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)


class FrameDataset(Dataset):
    """Normalised (3, H, W) crops of a frame source; random crops + flips for training."""

    def __init__(self, source, indices, size, mean, std, train: bool, seed: int):
        self.source, self.indices, self.size, self.train, self.seed = (
            source,
            list(indices),
            tuple(size),
            train,
            seed,
        )
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.train else None
        rgb = crop_to_size(self.source.read(self.indices[i]), self.size, rng)
        if rng is not None and rng.random() < 0.5:
            rgb = rgb[:, ::-1]
        x = (rgb.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


# ---- the run ------------------------------------------------------------------------------------
class Distiller:
    def __init__(self, cfg: DistillConfig, teachers: TaskPair | None = None):
        from dpt_perception.model.devices import resolve_device

        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.teacher_sources = {"depth": "given", "segmentation": "given"}
        if teachers is None:
            # Each teacher alone (never the cached student of the pair, which the node would pick).
            models = [_load_single(source) for source in cfg.teachers]
            teachers = make_pair(*models)
            depth_index = 0 if teachers.depth_model is models[0] else 1
            self.teacher_sources = {
                "depth": str(cfg.teachers[depth_index]),
                "segmentation": str(cfg.teachers[1 - depth_index]),
            }
        self.teachers = teachers.eval().to(self.device)
        for p in self.teachers.parameters():
            p.requires_grad_(False)
        self.student, self.init_notes = init_student(
            self.teachers, cfg.seed, cfg.segmentation_init, cfg.share_neck
        )
        self.student.to(self.device)
        dcfg = self.teachers.depth_model.config
        self.relative = dcfg.depth_kind == "relative"
        self.depth_loss = (
            cfg.depth_loss if cfg.depth_loss != "auto" else ("ssi" if self.relative else "silog")
        )
        if self.relative and self.depth_loss != "ssi":
            raise ValueError(
                f"depth_loss {self.depth_loss!r} needs a metric depth teacher; this one is relative"
            )
        self.size = tuple(int(s) for s in (cfg.net_size or dcfg.net_size))
        source = open_frames(cfg.data)
        every = max(2, round(1.0 / cfg.val_fraction))
        val_idx = list(range(0, len(source), every))
        train_idx = [i for i in range(len(source)) if i % every]
        if not train_idx or not val_idx:
            raise ValueError(f"{source.describe()}: too few frames for a training and a held-out split")
        mean, std = dcfg.mean, dcfg.std
        self.train_set = FrameDataset(source, train_idx, self.size, mean, std, train=True, seed=cfg.seed)
        self.val_set = FrameDataset(source, val_idx, self.size, mean, std, train=False, seed=cfg.seed)
        self.source_text = source.describe()
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)

    def _autocast(self):
        if self.cfg.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    @torch.no_grad()
    def agreement(self) -> dict:
        self.student.eval()
        loader = DataLoader(self.val_set, batch_size=self.cfg.batch_size, num_workers=0)
        seg_cfg = self.teachers.segmentation_model.config
        confusion = ConfusionMatrix(seg_cfg.num_classes, ignore_index=-1, class_names=seg_cfg.class_names)
        abs_rel = []
        for x in loader:
            x = x.to(self.device)
            with self._autocast():
                teacher, student = self.teachers(x), self.student(x)
            abs_rel.append(
                depth_abs_rel_vs_teacher(
                    student["depth"].float(), teacher["depth"].float(), self.relative, self.teachers.config
                )
            )
            confusion.update(student["segmentation"].argmax(1), teacher["segmentation"].argmax(1))
        seg = confusion.compute()
        return {
            "depth_abs_rel_vs_teacher": float(torch.cat(abs_rel).mean()),
            "label_agreement": seg["pixel_accuracy"],  # teacher labels as ground truth, none ignored
            "miou_vs_teacher": seg["miou"],
        }

    def fit(self) -> dict:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        groups = trainable_groups(self.student, cfg)
        optimizer = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(self.train_set) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        scheduler = build_scheduler(optimizer, total, cfg.warmup_steps, "cosine")
        writer = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(self.out / "tensorboard"))
        history = [{"epoch": 0, **self.agreement()}]
        print(f"[distill] {self.source_text}; student: {'; '.join(self.init_notes)}", flush=True)
        print(f"[distill] epoch 0 (before training): {_summary(history[-1])}", flush=True)
        progress = None
        if cfg.progress:
            from tqdm import tqdm

            progress = tqdm(total=total, desc="distill", dynamic_ncols=True)
        step, started = 0, time.perf_counter()
        dcfg = self.teachers.config
        for epoch in range(1, cfg.epochs + 1):
            self.train_set.epoch = epoch
            generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            loader = DataLoader(
                self.train_set,
                batch_size=cfg.batch_size,
                shuffle=True,
                generator=generator,
                num_workers=cfg.num_workers,
                persistent_workers=False,
                drop_last=False,
            )
            self.student.train()
            for x in loader:
                x = x.to(self.device, non_blocking=True)
                with torch.no_grad(), self._autocast():
                    teacher = self.teachers(x)
                with self._autocast():
                    student = self.student(x)
                depth_loss = depth_agreement_loss(
                    student["depth"].float(), teacher["depth"].float(), self.depth_loss, dcfg
                )
                seg_loss = segmentation_kl(student["segmentation"], teacher["segmentation"], cfg.temperature)
                loss = cfg.depth_weight * depth_loss + cfg.segmentation_weight * seg_loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite distillation loss at step {step}: {float(loss)}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                if writer is not None:
                    writer.add_scalar("loss/depth", float(depth_loss), step)
                    writer.add_scalar("loss/segmentation_kl", float(seg_loss), step)
                    writer.add_scalar("lr/decoder", optimizer.param_groups[-1]["lr"], step)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(depth=f"{float(depth_loss):.4f}", kl=f"{float(seg_loss):.4f}")
            history.append({"epoch": epoch, **self.agreement()})
            if writer is not None:
                for key, value in history[-1].items():
                    if key != "epoch":
                        writer.add_scalar(f"agreement/{key}", value, epoch)
            message = f"[distill] epoch {epoch}: {_summary(history[-1])}"
            (progress.write if progress is not None else print)(message)
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        return self._finish(history, time.perf_counter() - started)

    def _finish(self, history: list[dict], seconds: float) -> dict:
        cfg = self.cfg
        provenance = {
            "distilled_from": {
                "teachers": self.teacher_sources,
                "mode": cfg.mode,
                "epochs": cfg.epochs,
                "frames": self.source_text,
                "agreement": history[-1],
            },
        }
        weights, config_json = save_model(self.student.eval().cpu(), self.out / "student", extra=provenance)
        installed = None
        if cfg.install:
            installed = install_student(weights, config_json, cfg.teachers)
        report = {
            "teachers": self.teacher_sources,
            "student_init": self.init_notes,
            "depth_loss": self.depth_loss,
            "mode": cfg.mode,
            "frames": {
                "train": len(self.train_set),
                "held_out": len(self.val_set),
                "source": self.source_text,
            },
            "seconds": round(seconds, 2),
            "history": history,
            "student": str(weights),
            "installed": None if installed is None else str(installed),
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2))
        # the `distill:` file form, so the run can be repeated with --config OUT/config.yaml
        (self.out / "config.yaml").write_text(yaml.safe_dump(DistillFile(cfg).to_dict(), sort_keys=False))
        plot_history(history, self.out / "report.png")
        return report


def _load_single(source: str):
    from dpt_perception.inference.loading import load_dpt_model

    return load_dpt_model(source, "")


def _summary(row: dict) -> str:
    return (
        f"depth AbsRel vs teacher {row['depth_abs_rel_vs_teacher']:.4f}, label agreement "
        f"{100 * row['label_agreement']:.1f} %, mIoU vs teacher {row['miou_vs_teacher']:.3f}"
    )


def install_student(weights: Path, config_json: Path, teachers) -> Path:
    """Copy the student into the weights cache under the pair's name; the JSON lands last and each
    file by rename, so a node starting meanwhile sees the old checkpoint or the new one, whole."""
    from dpt_perception.inference.weights import distilled_target

    target = distilled_target(teachers)
    target.parent.mkdir(parents=True, exist_ok=True)
    for source, dest in ((weights, target), (config_json, target.with_suffix(".json"))):
        partial = dest.with_name(dest.name + ".partial")
        shutil.copyfile(source, partial)
        os.replace(partial, dest)
    return target


def plot_history(history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [100 * r["label_agreement"] for r in history], "o-", label="label agreement %")
    left.plot(epochs, [100 * r["miou_vs_teacher"] for r in history], "s-", label="mIoU vs teacher %")
    left.set_xlabel("epoch")
    left.set_ylim(0, 100)
    left.legend()
    left.set_title("segmentation vs its teacher")
    right.plot(epochs, [r["depth_abs_rel_vs_teacher"] for r in history], "o-", color="tab:red")
    right.set_xlabel("epoch")
    right.set_title("depth AbsRel vs its teacher")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ros2 run dpt_perception train --config config/distill_hybrid.yaml",
        description="Distil a depth + segmentation teacher pair into one shared-encoder student "
        "(no labels needed). Settings: the defaults, then the --config file's 'distill' mapping, then "
        "each --set in order.",
        epilog=describe_options(DistillFile),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML file with a 'distill' mapping")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="distill.OPTION=VALUE",
        help="override one option, value parsed as YAML (repeatable)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_distill_config(args.config, args.overrides)
    except (ValueError, FileNotFoundError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(DistillFile(cfg).to_dict(), sort_keys=False), end="")
        return 0
    try:
        report = Distiller(cfg).fit()
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    last = report["history"][-1]
    print(
        f"[distill] done in {report['seconds']:.0f} s: {_summary(last)}; student {report['student']}"
        + (f"; installed as {report['installed']}" if report["installed"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
