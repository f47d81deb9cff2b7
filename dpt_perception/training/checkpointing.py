"""Atomic, pickle-free training checkpoints and RNG state capture.

Checkpoints hold only tensors and plain containers (dict, list, tuple, str, int, float, bool,
None) so ``torch.load(path, weights_only=True)`` reads them back. They are written to a
temporary file in the destination folder, flushed and fsync'ed, then moved over the old file
with ``os.replace`` (atomic on POSIX), and the folder is fsync'ed: a crash at any point leaves
either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (temp file + fsync + os.replace + dir fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temp files of a process killed while writing (SIGKILL, power loss) would pile up: drop them.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        # Leave the previous checkpoint untouched and no stray temp file behind.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        # torch.save's zip writer answers a failed write (e.g. ENOSPC) with its own RuntimeError
        # while closing; report the underlying OS error, which says what actually went wrong.
        if isinstance(exc, RuntimeError) and isinstance(exc.__context__, OSError):
            raise exc.__context__ from exc
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a training checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise ValueError(f"checkpoint {path} is unreadable (truncated or corrupt?): {exc}") from exc
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise ValueError(
            f"{path} is not a dpt_perception training checkpoint (needs 'model' and 'step' keys)"
        )
    return state


def capture_rng_state() -> dict:
    """Python, NumPy (global) and torch (CPU + every CUDA device) RNG states as plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
