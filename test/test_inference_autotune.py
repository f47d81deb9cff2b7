"""Start-up engine choice (inference/autotune.py): candidates per device, the fastest agreeing one
wins (timing mocked, so the choice is deterministic), rejection of a candidate whose outputs are
off, and the per-machine JSON cache (hit, miss, invalidation)."""
import json

import pytest
import torch

from dpt_perception.inference import autotune
from dpt_perception.inference.autotune import Candidate, candidates, choose
from dpt_perception.inference.backends import make_engine
from dpt_perception.model.testing import tiny_model

CPU = torch.device("cpu")
NET = (64, 96)


@pytest.fixture(scope="module")
def model():
    return tiny_model("vit_base", seed=0, depth_bias=0.05, depth_weight_scale=10.0)


@pytest.fixture(autouse=True)
def no_pinned_candidates(monkeypatch):
    monkeypatch.delenv(autotune.CANDIDATES_ENV, raising=False)


def fake_times(ms: dict[str, float], calls: list | None = None):
    """measure() that returns a fixed time per engine ("backend/precision") and records the calls."""
    def measure(engine, x):
        name = f"{engine.name}/{engine.precision}"
        if calls is not None:
            calls.append(name)
        return ms[name]
    return measure


class OffEngine:
    """Wraps a real engine; its depth is distorted (not an affine change), its labels become the arg-min."""

    def __init__(self, engine):
        self.inner, self.name, self.precision = engine, engine.name, engine.precision

    def __call__(self, x):
        out = self.inner(x)
        return {"depth": out["depth"] ** 3 + torch.rand_like(out["depth"]),
                "segmentation": -out["segmentation"]}


def test_cpu_info_parsing():
    info = "processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
    assert autotune.cpu_model(info) == "AMD EPYC 9654"
    assert autotune.cpu_has_native_bf16(info)
    assert autotune.cpu_has_native_bf16(info.replace("avx512_bf16", "amx_bf16"))
    assert not autotune.cpu_has_native_bf16(info.replace(" avx512_bf16", ""))  # AVX-512 alone is not enough
    assert not autotune.cpu_has_native_bf16("")


def test_candidates_per_device_and_explicit_values():
    names = lambda found: [c.name for c in found]  # noqa: E731
    assert names(candidates(CPU, cpu_bf16=False)) == ["eager/fp32"]
    assert names(candidates(CPU, cpu_bf16=True)) == ["eager/fp32", "eager/bf16"]
    # compiled on CPU only when asked for; an explicit precision filters
    assert names(candidates(CPU, "compiled", cpu_bf16=True)) == ["compiled/fp32", "compiled/bf16"]
    assert names(candidates(CPU, precision="bf16", cpu_bf16=True)) == ["eager/bf16"]
    assert names(candidates(CPU, "onnxruntime", cpu_bf16=True)) == ["onnxruntime/fp32"]
    with pytest.raises(ValueError, match="no engine for backend 'auto' with precision 'fp16' on cpu"):
        candidates(CPU, precision="fp16", cpu_bf16=True)
    assert names(candidates(CPU, precision="bf16", cpu_bf16=False)) == ["eager/bf16"]  # explicit: honoured
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        candidates(CPU, "compiled", "fp16", cpu_bf16=True)


def test_candidates_pinned_by_the_environment(monkeypatch):
    monkeypatch.setenv(autotune.CANDIDATES_ENV, "eager/fp32, compiled/fp32")
    assert [c.name for c in candidates(CPU, cpu_bf16=True)] == ["eager/fp32", "compiled/fp32"]
    assert [c.name for c in candidates(CPU, "compiled", cpu_bf16=True)] == ["compiled/fp32"]
    with pytest.raises(ValueError, match="names no backend/precision matching"):
        candidates(CPU, precision="bf16")


def test_fastest_agreeing_candidate_wins_and_is_cached(model, tmp_path):
    cache = tmp_path / "autotune.json"
    calls = []
    choice = choose(model, CPU, NET, model_id="m1", cache_path=cache, cpu_bf16=True,
                    measure=fake_times({"eager/fp32": 100.0, "eager/bf16": 60.0}, calls))
    assert (choice.backend, choice.precision, choice.cached) == ("eager", "bf16", False)
    assert calls == ["eager/fp32", "eager/bf16"]
    summary = choice.summary()
    assert "eager/fp32: 100.0 ms" in summary and "eager/bf16: 60.0 ms" in summary
    assert "depth rel. diff" in summary and "% agree" in summary
    bf16 = choice.trials[1]
    assert bf16.status == "chosen" and 0 < bf16.agreement.depth_error <= 5e-2
    stored = json.loads(cache.read_text())
    assert [e["precision"] for e in stored.values()] == ["bf16"]

    # hit: nothing is measured again (a measure that fails proves it)
    def never(engine, x):
        raise AssertionError("measured although the choice was cached")
    again = choose(model, CPU, NET, model_id="m1", cache_path=cache, cpu_bf16=True, measure=never)
    assert (again.backend, again.precision, again.cached) == ("eager", "bf16", True)
    assert "cached choice" in again.summary() and "eager/bf16: 60.0 ms" in again.summary()

    # miss: another net size or another model is measured and stored next to the first entry
    calls.clear()
    other = choose(model, CPU, (32, 64), model_id="m1", cache_path=cache, cpu_bf16=True,
                   measure=fake_times({"eager/fp32": 50.0, "eager/bf16": 49.0}, calls))
    assert (other.precision, other.cached) == ("fp32", False)  # 2 % faster is below MIN_GAIN: fp32 stays
    assert calls == ["eager/fp32", "eager/bf16"]
    choose(model, CPU, NET, model_id="m2", cache_path=cache, cpu_bf16=True,
           measure=fake_times({"eager/fp32": 10.0, "eager/bf16": 20.0}, calls))
    assert len(json.loads(cache.read_text())) == 3


def test_candidate_whose_outputs_are_off_is_rejected(model, tmp_path):
    def build(m, backend, device, precision):
        engine = make_engine(m, backend, device=device, precision=precision)
        return OffEngine(engine) if precision == "bf16" else engine
    calls = []
    choice = choose(model, CPU, NET, model_id="m", cache_path=tmp_path / "c.json", cpu_bf16=True, build=build,
                    measure=fake_times({"eager/fp32": 100.0, "eager/bf16": 10.0}, calls))
    assert (choice.backend, choice.precision) == ("eager", "fp32")
    assert calls == ["eager/fp32"]  # a rejected candidate is not even timed
    rejected = choice.trials[1]
    assert rejected.status.startswith("rejected: outside the bf16 tolerance")
    assert rejected.agreement.depth_error > 5e-2 and rejected.agreement.label_agreement < 95
    assert "eager/bf16: not timed" in choice.summary()


def test_failing_candidate_is_reported_not_fatal(model, tmp_path):
    def build(m, backend, device, precision):
        if precision == "bf16":
            raise RuntimeError("no bf16 kernel for this op")
        return make_engine(m, backend, device=device, precision=precision)
    choice = choose(model, CPU, NET, model_id="m", cache_path=tmp_path / "c.json", cpu_bf16=True, build=build,
                    measure=fake_times({"eager/fp32": 100.0}))
    assert choice.precision == "fp32"
    assert choice.trials[1].status == "failed: RuntimeError: no bf16 kernel for this op"


def test_cache_invalidation(model, tmp_path):
    cache = tmp_path / "autotune.json"
    times = {"eager/fp32": 100.0, "eager/bf16": 60.0}
    first = choose(model, CPU, NET, model_id="m", cache_path=cache, cpu_bf16=True, measure=fake_times(times))
    # an entry naming an engine that is no longer a candidate (e.g. edited by hand) is re-measured
    data = json.loads(cache.read_text())
    data[first.key]["backend"] = "tensorrt"
    cache.write_text(json.dumps(data))
    calls = []
    again = choose(model, CPU, NET, model_id="m", cache_path=cache, cpu_bf16=True,
                   measure=fake_times(times, calls))
    assert not again.cached and calls and again.precision == "bf16"
    assert json.loads(cache.read_text())[first.key]["backend"] == "eager"
    # a corrupt file is ignored (warned about) and replaced
    cache.write_text("{not json")
    calls.clear()
    third = choose(model, CPU, NET, model_id="m", cache_path=cache, cpu_bf16=True,
                   measure=fake_times(times, calls))
    assert not third.cached and calls
    assert json.loads(cache.read_text())[first.key]["precision"] == "bf16"
    # the key holds the machine, torch version, model, size and request
    for part in (autotune.cpu_model(), torch.__version__, "m", "64x96", "auto/auto"):
        assert part in first.key


def test_single_candidate_needs_no_measurement(model, tmp_path):
    def never(engine, x):
        raise AssertionError("measured a single candidate")
    choice = choose(model, CPU, NET, model_id="m", cache_path=tmp_path / "c.json", cpu_bf16=False,
                    measure=never)
    assert (choice.backend, choice.precision) == ("eager", "fp32")
    assert "the only candidate" in choice.summary()
    assert not (tmp_path / "c.json").exists()
    explicit = autotune.resolve(model, "cpu", "eager", "bf16", NET)
    assert (explicit.backend, explicit.precision, explicit.trials) == ("eager", "bf16", [])


def test_time_cap_skips_the_rest_but_keeps_the_reference(model, tmp_path):
    choice = choose(model, CPU, NET, model_id="m", cache_path=tmp_path / "c.json", cpu_bf16=True,
                    measure=fake_times({"eager/fp32": 100.0, "eager/bf16": 1.0}), max_seconds=0.0)
    assert choice.precision == "fp32"
    assert choice.trials[1].status.startswith("skipped: the 0 s cap")


def test_real_timing_and_identity(model):
    engine = make_engine(model, "eager")
    x = autotune.check_input(NET, CPU)
    assert x.shape == (1, 3, *NET) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert autotune.time_engine(engine, x, repeats=2) > 0
    ident = autotune.model_identity(model.config, ["a.safetensors"])
    assert ident == autotune.model_identity(model.config, ["a.safetensors"])
    assert ident != autotune.model_identity(model.config, ["b.safetensors"])
    assert Candidate("eager", "bf16").name == "eager/bf16"


def test_gpu_candidates(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = torch.device("cuda")
    assert [c.name for c in candidates(gpu)] == [
        "eager/fp32", "eager/fp16", "eager/bf16", "compiled/fp32", "compiled/fp16", "compiled/bf16"]
    assert [c.name for c in candidates(gpu, "tensorrt")] == ["tensorrt/fp16", "tensorrt/fp32"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert [c.name for c in candidates(gpu, precision="fp16")] == ["eager/fp16", "compiled/fp16"]


class Renamed:
    """A real engine reported under another backend name (a stand-in for a compiled one)."""

    def __init__(self, engine, name):
        self.inner, self.name, self.precision = engine, name, engine.precision

    def __call__(self, x):
        return self.inner(x)


def test_compiled_is_tried_only_at_the_best_eager_precision(model, tmp_path, monkeypatch):
    monkeypatch.setenv(autotune.CANDIDATES_ENV, "eager/fp32,compiled/fp32,eager/bf16,compiled/bf16")
    built = []

    def build(m, backend, device, precision):
        built.append(f"{backend}/{precision}")
        return Renamed(make_engine(m, "eager", device=device, precision=precision), backend)
    calls = []
    times = {"eager/fp32": 100.0, "eager/bf16": 60.0, "compiled/bf16": 40.0, "compiled/fp32": 1.0}
    choice = choose(model, CPU, NET, model_id="m", cache_path=tmp_path / "c.json", build=build,
                    measure=fake_times(times, calls))
    assert calls == ["eager/fp32", "eager/bf16", "compiled/bf16"]  # eager first, one compile
    assert "compiled/fp32" not in built
    assert (choice.backend, choice.precision) == ("compiled", "bf16")
    skipped = [t for t in choice.trials if t.candidate.name == "compiled/fp32"][0]
    assert skipped.status == "skipped: compiled is tried only at the best eager precision (bf16)"
