"""Training under faults: SIGKILL at random moments, a kill in the middle of a checkpoint write, a
full disk while writing a checkpoint, and corrupt samples.

Checked end to end through the trainer (`python -m dpt_perception.training.train` in child
processes where a process has to die):
  - after SIGKILL, checkpoints/last.pt is a complete, weights-only-loadable checkpoint, at most one
    checkpoint interval behind the progress the run had shown, and `--resume auto` finishes with
    exactly the weights of an uninterrupted run;
  - ENOSPC during a checkpoint write raises, leaves the previous checkpoint byte-for-byte intact
    and no temporary file behind;
  - corrupt samples (truncated or garbage image files, unreadable depth) are skipped and counted,
    never reach a batch; with fail_fast the run stops naming the file.
"""

import errno
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from dpt_perception.training import checkpointing  # noqa: E402
from dpt_perception.training.config import TrainConfig  # noqa: E402
from dpt_perception.training.data import CorruptSampleError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_EVERY = 3
MAX_STEPS = 18


def _config(out_dir: Path, data: dict | None = None, **train) -> dict:
    return {
        "model": {"tiny": True, "config": {"heads": ["depth", "segmentation"], "net_size": [64, 64]}},
        "data": {
            "train": data
            or {
                "type": "synthetic",
                "length": 12,
                "seed": 0,
                "width": 64,
                "height": 48,
                "transform": {"net_size": 64},
            },
            "val": None,
            "batch_size": 2,
            "num_workers": 0,
        },
        "train": {
            "max_steps": MAX_STEPS,
            "warmup_steps": 2,
            "lr_encoder": 1e-4,
            "lr_decoder": 1e-3,
            "device": "cpu",
            "threads": 1,
            "seed": 3,
            **train,
        },
        "eval": {"every": 0},
        "output": {
            "dir": str(out_dir),
            "log_every": 1,
            "image_every": 0,
            "checkpoint_every": CHECKPOINT_EVERY,
            "tensorboard": False,
            "progress": True,
            "export": False,
        },
    }


def _write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dpt_perception.training.train", "--config", str(config), *extra]


def _env() -> dict:
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )


def _shown_steps(progress_text: str) -> int:
    """The highest step tqdm had shown ('train:  40%|...| 12/30')."""
    counts = [int(m) for m in re.findall(rf"\|\s*(\d+)/{MAX_STEPS}", progress_text)]
    return max(counts, default=0)


def _state(path: Path) -> dict:
    return checkpointing.load_checkpoint(path)["model"]


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng = random.Random(seed)
    reference_cfg = _write_config(tmp_path / "ref.yaml", _config(tmp_path / "ref"))
    killed_cfg = _write_config(tmp_path / "killed.yaml", _config(tmp_path / "killed"))
    reference = subprocess.Popen(
        _train_cmd(reference_cfg), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    kills, stray = [], []
    try:
        for attempt in range(2):
            log_path = tmp_path / f"killed_{attempt}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    _train_cmd(killed_cfg, "--resume", "auto"),
                    env=_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                start_step = checkpointing.load_checkpoint(last)["step"] if last.exists() else 0
                # A random moment once training is under way (after the first step is shown).
                deadline = time.monotonic() + 120
                while (
                    _shown_steps(log_path.read_text(errors="replace")) <= start_step and proc.poll() is None
                ):
                    assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 1.5))
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
            shown = _shown_steps(log_path.read_text(errors="replace"))
            # A torn file would fail to load here; no file at all is fine before the first checkpoint.
            step = checkpointing.load_checkpoint(last)["step"] if last.exists() else 0
            kills.append((shown, step))
            assert step % CHECKPOINT_EVERY == 0 or step == MAX_STEPS
            assert shown - step <= CHECKPOINT_EVERY, (
                f"(seed {seed}) progress showed {shown} steps but the checkpoint is at {step}"
            )
            leftovers = [p.name for p in last.parent.glob("*.tmp")] if last.parent.exists() else []
            stray.extend(leftovers)
            if step >= MAX_STEPS:
                break
        done = subprocess.run(
            _train_cmd(killed_cfg, "--resume", "auto"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert reference.wait(300) == 0
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
    ref_state = checkpointing.load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    got_state = checkpointing.load_checkpoint(last)
    assert got_state["step"] == ref_state["step"] == MAX_STEPS
    for key, value in ref_state["model"].items():
        assert torch.equal(value, got_state["model"][key]), f"(seed {seed}, kills {kills}) {key} differs"
    print(f"killed at (shown step, checkpoint step) = {kills}, seed {seed}, stray temp files {stray}")


_KILL_DURING_WRITE = r"""
import os, signal, sys, torch
sys.path.insert(0, {repo!r})
from dpt_perception.training.config import TrainConfig, load_config
from dpt_perception.training.train_loop import Trainer
from dpt_perception.training import checkpointing

trainer = Trainer(load_config(TrainConfig, {config!r}))
trainer.fit(stop_at_step={first})          # writes last.pt at step {first}
real_save = torch.save

def dying_save(obj, f, *a, **k):
    # Write part of the checkpoint, then die as a power cut / OOM killer would.
    real_save(obj, f, *a, **k)
    f.flush()
    os.ftruncate(f.fileno(), f.tell() // 2)
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dying_save
trainer.fit(stop_at_step={second})
"""


@pytest.mark.integration
def test_sigkill_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    cfg = _write_config(tmp_path / "c.yaml", _config(tmp_path / "run", max_steps=8))
    script = _KILL_DURING_WRITE.format(repo=str(REPO), config=str(cfg), first=2, second=4)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = checkpointing.load_checkpoint(last)
    assert state["step"] == 2, "the checkpoint being written when the process died replaced the old one"
    assert list(last.parent.glob(".last.pt.*.tmp")), "expected the dead writer's temp file"
    done = subprocess.run(
        _train_cmd(cfg, "--resume", "auto"), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpointing.load_checkpoint(last)["step"] == 8
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"], "stale temp files left behind"


class _DiskFullFile:
    """A writable file that accepts `capacity` bytes, then fails like a full disk."""

    def __init__(self, raw, capacity: int):
        self._raw, self._left = raw, capacity

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if len(view) > self._left:
            self._raw.write(view[: self._left])
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(view)
        return self._raw.write(view)

    def __getattr__(self, name):
        return getattr(self._raw, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._raw.close()


def test_full_disk_during_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    from dpt_perception.training.train_loop import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(TrainConfig.from_dict(_config(tmp_path / "run", max_steps=6)))
    trainer.fit(stop_at_step=2)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    real_fdopen = os.fdopen
    for capacity in (0, 100, len(before) // 2):
        monkeypatch.setattr(
            os, "fdopen", lambda fd, *a, cap=capacity, **k: _DiskFullFile(real_fdopen(fd, *a, **k), cap)
        )
        with pytest.raises(OSError) as info:
            trainer.save_checkpoint("last.pt")
        monkeypatch.setattr(os, "fdopen", real_fdopen)
        assert info.value.errno == errno.ENOSPC
        assert last.read_bytes() == before
        assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"], "temporary file left behind"
    assert checkpointing.load_checkpoint(last)["step"] == 2
    # The run goes on (and checkpoints again) once there is space.
    trainer.fit(stop_at_step=4)
    assert checkpointing.load_checkpoint(last)["step"] == 4
    trainer.close()


# ---- corrupt samples ----------------------------------------------------------------------------


def _corrupt_folder(root: Path) -> set[str]:
    """A folder dataset of 8 synthetic frames, 4 of them made unreadable in different ways."""
    import cv2

    from dpt_perception.training.data.synthetic import write_folder_dataset

    names = write_folder_dataset(root, 8, seed=5, width=64, height=48)
    png = (root / "rgb" / f"{names[1]}.png").read_bytes()
    (root / "rgb" / f"{names[1]}.png").write_bytes(png[: len(png) // 2])  # truncated PNG
    (root / "rgb" / f"{names[3]}.png").write_bytes(os.urandom(300))  # garbage
    (root / "depth" / f"{names[5]}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(50))  # broken depth
    # Truncated JPEG: libjpeg "decodes" it with the missing part grey unless the reader refuses it.
    image = cv2.imread(str(root / "rgb" / f"{names[6]}.png"))
    ok, jpeg = cv2.imencode(".jpg", image)
    (root / "rgb" / f"{names[6]}.png").unlink()
    (root / "rgb" / f"{names[6]}.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    return {names[1], names[3], names[5], names[6]}


def _recording_trainer(cfg_dict):
    from dpt_perception.training.train_loop import Trainer

    trainer = Trainer(TrainConfig.from_dict(cfg_dict))
    seen: list[str] = []
    original = trainer._next_batch

    def next_batch():
        batch = original()
        seen.extend(str(n) for n in batch["name"])
        return batch

    trainer._next_batch = next_batch
    return trainer, seen


def test_corrupt_samples_are_skipped_counted_and_never_trained_on(tmp_path):
    torch.set_num_threads(1)
    bad = _corrupt_folder(tmp_path / "data")
    data = {"type": "folder", "root": str(tmp_path / "data"), "transform": {"net_size": 64}}
    trainer, seen = _recording_trainer(_config(tmp_path / "run", data=data, max_steps=8))
    summary = trainer.fit()
    trainer.close()
    assert summary["step"] == 8 and len(seen) == 16
    assert summary["corrupt_samples_skipped"] == len(bad), summary
    assert not bad & set(seen), f"corrupt samples reached a batch: {sorted(bad & set(seen))}"
    assert trainer.train_set.num_corrupt == len(bad), trainer.train_set.corrupt
    assert {
        Path(str(reason).split(":")[0].split()[-1]).stem for reason in trainer.train_set.corrupt.values()
    } == bad, trainer.train_set.corrupt


def test_corrupt_sample_with_fail_fast_stops_naming_the_file(tmp_path):
    torch.set_num_threads(1)
    bad = _corrupt_folder(tmp_path / "data")
    data = {
        "type": "folder",
        "root": str(tmp_path / "data"),
        "fail_fast": True,
        "transform": {"net_size": 64},
    }
    trainer, _ = _recording_trainer(_config(tmp_path / "run", data=data, max_steps=8))
    with pytest.raises(CorruptSampleError) as info:
        trainer.fit()
    trainer.close()
    assert any(name in str(info.value) for name in bad), str(info.value)


def test_resume_from_a_corrupt_checkpoint_fails_with_the_file_name(tmp_path):
    from dpt_perception.training.train_loop import Trainer

    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict(_config(tmp_path / "run", max_steps=4))
    trainer = Trainer(cfg)
    trainer.fit(stop_at_step=2)
    trainer.close()
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception) as info:
        Trainer(cfg, resume=last)
    assert str(last) in str(info.value), f"{type(info.value).__name__}: {info.value}"
