"""Start-up choice of the inference engine: `precision: auto` / `backend: auto`.

`choose()` measures a short, explicit list of candidate engines on one check frame and keeps the
fastest one whose outputs agree with eager fp32 within the tolerances of
`backends/agreement.py` (fp32 variants: depth <= 1e-4, labels >= 99.9 %; low precisions:
depth <= 5e-2, labels >= 95 %). Candidates (`candidates()`), in this order:

- eager fp32 (the reference; always kept when nothing else is both faster and close enough);
- eager bf16 (autocast) on CPU only when the CPU has native bf16 (`avx512_bf16` or `amx_bf16`
  in /proc/cpuinfo; without them bf16 is emulated and slower), on CUDA where the GPU supports it;
- eager fp16 (autocast), CUDA only;
- compiled (torch.compile) on CUDA: only at the precision of the fastest accepted eager
  candidate (one compile, not one per precision). On CPU compiled is tried only when asked for
  (`backend: compiled` with `precision: auto`): compiling a full model takes minutes there for a
  ~5-10 % gain.
An explicit backend or precision restricts the list to candidates with that value (e.g.
`backend: onnxruntime`, `precision: auto` only tries onnxruntime's precisions for the device).
The environment variable `DPT_PERCEPTION_ENGINE_CANDIDATES` (comma-separated `backend/precision`,
e.g. `eager/fp32,compiled/fp32`) replaces the list outright (the node tests pin `eager/fp32` so
their outputs do not depend on the machine).

A candidate replaces the best so far only when it is at least `MIN_GAIN` faster (timing noise
must not pick a lower precision for nothing). Measuring stops after `max_seconds` (the rest is
reported as skipped). The choice is cached in a small JSON file under the weights cache
(`<cache>/autotune.json`), keyed by machine (CPU model or GPU name), torch version, device,
model identity (hash of its config and weight sources), network input size and the requested
values, so the next start with the same set-up is immediate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dpt_perception.inference.backends import make_engine
from dpt_perception.inference.backends.agreement import Agreement, compare_outputs, tolerance_for

log = logging.getLogger(__name__)

AUTO = "auto"
CANDIDATES_ENV = "DPT_PERCEPTION_ENGINE_CANDIDATES"
CACHE_FILE = "autotune.json"
MIN_GAIN = 0.05  # a candidate must be >= 5 % faster than the best so far to replace it
REFERENCE = ("eager", "fp32")


@dataclass(frozen=True)
class Candidate:
    backend: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.precision}"


# ---- the machine ---------------------------------------------------------------------------------
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name ("model name" of /proc/cpuinfo), else platform.processor()."""
    for line in (cpuinfo if cpuinfo is not None else _cpuinfo()).splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 flags)."""
    for line in (cpuinfo if cpuinfo is not None else _cpuinfo()).splitlines():
        if line.lower().startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def machine_id(device: torch.device) -> str:
    """What the timing depends on: the CPU model (and thread count) or the GPU's name."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda {torch.version.cuda})"
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


def model_identity(config, sources: Sequence[str] = ()) -> str:
    """A short hash of the model's config (architecture, heads, classes) and its weight sources."""
    to_dict = getattr(config, "to_dict", None)
    text = json.dumps(to_dict() if to_dict else repr(config), sort_keys=True, default=str)
    return hashlib.sha256((text + "|" + "|".join(map(str, sources))).encode()).hexdigest()[:16]


# ---- candidates ------------------------------------------------------------------------------------
def _precisions_for(device: torch.device, backend: str, cpu_bf16: bool) -> list[str]:
    if device.type == "cuda":
        low = ["fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
        return (["fp16", "fp32"] if backend == "tensorrt" else ["fp32", *low])
    if backend in ("onnxruntime", "tensorrt"):
        return ["fp32"] if backend == "onnxruntime" else []
    return ["fp32"] + (["bf16"] if cpu_bf16 else [])


def candidates(
    device: torch.device, backend: str = AUTO, precision: str = AUTO, *, cpu_bf16: bool | None = None
) -> list[Candidate]:
    """The candidate engines for `device`, restricted by an explicit backend and/or precision
    (see the module docstring). Raises ValueError when nothing is left."""
    cpu_bf16 = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
    pinned = os.environ.get(CANDIDATES_ENV, "").strip()
    if pinned:
        listed = [Candidate(*item.strip().split("/", 1)) for item in pinned.split(",") if "/" in item]
        found = [c for c in listed if backend in (AUTO, c.backend) and precision in (AUTO, c.precision)]
        if not found:
            raise ValueError(f"{CANDIDATES_ENV}={pinned!r} names no backend/precision matching "
                             f"backend {backend!r}, precision {precision!r}")
        return found
    if backend == AUTO:
        backends = ["eager"] + (["compiled"] if device.type == "cuda" else [])
    else:
        backends = [backend]
    # An explicit bf16 is honoured on any CPU (emulated there without native bf16: slower).
    bf16_ok = cpu_bf16 or precision == "bf16"
    found = [
        Candidate(b, p)
        for b in backends
        for p in _precisions_for(device, b, bf16_ok)
        if precision in (AUTO, p)
    ]
    if not found:
        hint = ("; fp16 needs a CUDA device (on CPU use 'auto', 'fp32' or 'bf16')"
                if precision == "fp16" and device.type == "cpu" else "")
        raise ValueError(f"no engine for backend {backend!r} with precision {precision!r} on {device}{hint}")
    return found


# ---- measuring -------------------------------------------------------------------------------------
def check_input(net_shape: tuple[int, int], device: torch.device, seed: int = 0) -> torch.Tensor:
    """The check frame: a smooth gradient scene plus noise, normalised to [-1, 1], (1, 3, H, W)."""
    h, w = net_shape
    gen = torch.Generator().manual_seed(seed)
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)
    base = torch.cat([ys.expand(1, h, w), xs.expand(1, h, w), (ys * xs).expand(1, h, w)])
    x = 0.7 * base + 0.3 * (torch.rand((3, h, w), generator=gen) * 2 - 1)
    return x.unsqueeze(0).to(device)


def time_engine(engine, x: torch.Tensor, repeats: int = 3) -> float:
    """Median milliseconds of `repeats` forwards (after the agreement run, which warmed it up)."""
    times = []
    for _ in range(repeats):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        engine(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@dataclass
class Trial:
    candidate: Candidate
    ms: float | None = None
    agreement: Agreement | None = None
    status: str = "skipped"  # "accepted", "rejected: ...", "failed: ...", "skipped: ..."

    def line(self) -> str:
        timing = f"{self.ms:.1f} ms" if self.ms is not None else "not timed"
        if self.agreement is None:
            agree = ""
        else:
            parts = []
            if self.agreement.depth_error is not None:
                parts.append(f"depth rel. diff {self.agreement.depth_error:.2e}")
            if self.agreement.label_agreement is not None:
                parts.append(f"labels {self.agreement.label_agreement:.2f} % agree")
            agree = ", " + ", ".join(parts) if parts else ""
        return f"{self.candidate.name}: {timing}{agree} ({self.status})"

    def to_json(self) -> dict:
        a = self.agreement
        return {
            "candidate": self.candidate.name,
            "ms": self.ms,
            "depth_error": None if a is None else a.depth_error,
            "label_agreement": None if a is None else a.label_agreement,
            "status": self.status,
        }


@dataclass
class Choice:
    backend: str
    precision: str
    cached: bool = False
    key: str = ""
    trials: list = field(default_factory=list)  # Trial objects, or their JSON dicts when cached

    def summary(self) -> str:
        if len(self.trials) == 1 and getattr(self.trials[0], "status", "") == "the only candidate":
            return f"engine {self.backend}/{self.precision} (the only candidate here, not measured)"
        how = "cached choice" if self.cached else "measured"
        lines = [t.line() if isinstance(t, Trial) else _cached_line(t) for t in self.trials]
        return f"engine {self.backend}/{self.precision} ({how}): " + "; ".join(lines)


def _cached_line(t: dict) -> str:
    timing = f"{t['ms']:.1f} ms" if t.get("ms") is not None else "not timed"
    extra = ""
    if t.get("depth_error") is not None:
        extra += f", depth rel. diff {t['depth_error']:.2e}"
    if t.get("label_agreement") is not None:
        extra += f", labels {t['label_agreement']:.2f} % agree"
    return f"{t['candidate']}: {timing}{extra} ({t['status']})"


# ---- the cache ---------------------------------------------------------------------------------------
def default_cache_path() -> Path:
    from dpt_perception.model.checkpoints.dispatch import weights_dir

    return weights_dir() / CACHE_FILE


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning(f"ignoring unreadable engine choice cache {path}: {exc}")
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, entry: dict) -> None:
    data = _read_cache(path)
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)  # atomic: a concurrent reader sees the old or the new file
    except OSError as exc:  # a read-only cache only costs the measurement next time
        log.warning(f"could not store the engine choice in {path}: {exc}")


def cache_key(device: torch.device, model_id: str, net_shape, backend: str, precision: str) -> str:
    return " | ".join(
        [machine_id(device), f"torch {torch.__version__}", device.type, model_id,
         "x".join(map(str, net_shape)), f"{backend}/{precision}"]
    )


def resolve(model, device, backend: str, precision: str, net_shape, sources: Sequence[str] = (),
            **options) -> Choice:
    """The node's entry: explicit values as they are (no trials), else `choose()` for the `auto`
    ones, the model identified by its config and `sources` (weight names / paths)."""
    if AUTO not in (backend, precision):
        return Choice(backend, precision)
    from dpt_perception.model.devices import resolve_device

    return choose(model, resolve_device(device), tuple(net_shape), backend, precision,
                  model_id=model_identity(model.config, sources), **options)


# ---- the choice --------------------------------------------------------------------------------------
def choose(
    model,
    device: torch.device,
    net_shape: tuple[int, int],
    backend: str = AUTO,
    precision: str = AUTO,
    *,
    model_id: str,
    cache_path: Path | None = None,
    build: Callable = make_engine,
    measure: Callable = time_engine,
    max_seconds: float = 300.0,
    cpu_bf16: bool | None = None,
) -> Choice:
    """The fastest agreeing engine for `model` on `device` at network input `net_shape` (H, W),
    from the cache when this set-up was measured before. `build(model, backend, device=...,
    precision=...)` makes an engine, `measure(engine, x)` returns its milliseconds (both
    replaceable for tests)."""
    device = torch.device(device)
    found = candidates(device, backend, precision, cpu_bf16=cpu_bf16)
    if len(found) == 1:
        only = found[0]
        return Choice(only.backend, only.precision, trials=[Trial(only, status="the only candidate")])
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    key = cache_key(device, model_id, net_shape, backend, precision)
    entry = _read_cache(path).get(key)
    if isinstance(entry, dict) and Candidate(entry.get("backend"), entry.get("precision")) in found:
        return Choice(entry["backend"], entry["precision"], cached=True, key=key,
                      trials=list(entry.get("trials", [])))

    started = time.monotonic()
    model = model.to(device) if hasattr(model, "to") else model  # the pipeline moves it there anyway
    x = check_input(net_shape, device)
    reference_engine = build(model, REFERENCE[0], device=device, precision=REFERENCE[1])
    with torch.inference_mode():
        reference = reference_engine(x)
    trials: list[Trial] = []
    best: Trial | None = None
    # Eager candidates first; compiled ones only at the fastest accepted eager precision (on CPU
    # compiled is a candidate only when asked for, and then every precision is tried).
    for cand in sorted(found, key=lambda c: c.backend == "compiled"):
        trial = Trial(cand)
        trials.append(trial)
        if best is not None and time.monotonic() - started > max_seconds:
            trial.status = f"skipped: the {max_seconds:g} s cap on choosing was reached"
            continue
        if cand.backend == "compiled" and backend == AUTO and best is not None \
                and best.candidate.precision != cand.precision:
            trial.status = ("skipped: compiled is tried only at the best eager precision "
                            f"({best.candidate.precision})")
            continue
        try:
            is_reference = (cand.backend, cand.precision) == REFERENCE
            engine = reference_engine if is_reference else build(
                model, cand.backend, device=device, precision=cand.precision)
            with torch.inference_mode():
                trial.agreement = compare_outputs(reference if is_reference else engine(x), reference)
                max_depth, min_labels = tolerance_for(cand.precision)
                if not trial.agreement.within(max_depth, min_labels):
                    trial.status = (f"rejected: outside the {cand.precision} tolerance "
                                    f"(depth <= {max_depth:g}, labels >= {min_labels:g} %)")
                    continue
                trial.ms = float(measure(engine, x))
        except Exception as exc:  # a candidate that cannot run is reported, not fatal
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            trial.status = f"failed: {type(exc).__name__}: {reason}"
            continue
        finally:
            engine = None  # release a candidate's copy before building the next
        trial.status = "accepted"
        if best is None or trial.ms < best.ms * (1.0 - MIN_GAIN):
            best = trial
    if best is None:
        raise RuntimeError(
            "no engine candidate agreed with eager fp32: " + "; ".join(t.line() for t in trials))
    for t in trials:
        if t is best:
            t.status = "chosen"
    choice = Choice(best.candidate.backend, best.candidate.precision, key=key, trials=trials)
    _write_cache(path, key, {
        "backend": choice.backend, "precision": choice.precision,
        "trials": [t.to_json() for t in trials],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return choice
