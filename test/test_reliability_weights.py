"""Bad weights: missing, truncated, wrong family, mismatched shapes, and pickles that try to run code.

Through the loader API (`load_model`) every case must raise `CheckpointError` whose message names
the file and the problem; through the `dpt_node` process start-up must fail with exit status 1 and
that message on stderr. A checkpoint whose pickle would create a marker file when unpickled must
never get that far: the marker must not exist afterwards.
"""

import json
import os
import pickle

import pytest

from conftest import node_start_up_problems

torch = pytest.importorskip("torch")

from dpt_perception.model import DPT, DPTConfig  # noqa: E402
from dpt_perception.model.checkpoints import CheckpointError, load_model, save_model  # noqa: E402
from dpt_perception.model.checkpoints.official import load_official, to_official_state_dict  # noqa: E402


class _WritesMarker:
    """Unpickling this calls os.system / builtins.open: what a malicious checkpoint does."""

    def __init__(self, marker, how="system"):
        self.marker, self.how = str(marker), how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (open, (self.marker, "w"))


def _tiny(heads=("depth", "segmentation"), **overrides):
    torch.manual_seed(0)
    return DPT(DPTConfig.tiny(heads=list(heads), num_classes=3, net_size=[64, 64], **overrides)).eval()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    weights, config = save_model(_tiny(), folder / "model")
    return weights, config


def _malicious_files(folder, marker):
    """Several containers for the same code-running pickle: torch zip, torch legacy, plain pickle,
    a state dict with the payload as a tensor's neighbour, and an HF directory's pytorch_model.bin."""
    files = {}
    files["zip.pt"] = folder / "zip.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "x": _WritesMarker(marker)}, files["zip.pt"])
    files["legacy.pth"] = folder / "legacy.pth"
    torch.save(_WritesMarker(marker, "open"), files["legacy.pth"], _use_new_zipfile_serialization=False)
    files["plain.bin"] = folder / "plain.bin"
    files["plain.bin"].write_bytes(pickle.dumps(_WritesMarker(marker)))
    hf = folder / "hf_dir"
    hf.mkdir()
    (hf / "config.json").write_text(
        json.dumps({"architectures": ["DPTForDepthEstimation"], "model_type": "dpt"})
    )
    torch.save({"dpt.embeddings.cls_token": _WritesMarker(marker)}, hf / "pytorch_model.bin")
    files["hf_dir"] = hf
    return files


def test_pickles_that_run_code_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "PWNED"
    files = _malicious_files(tmp_path, marker)
    # Sanity: the payload really runs when unpickled without protection.
    pickle.loads(files["plain.bin"].read_bytes())
    assert marker.exists()
    marker.unlink()
    for name, path in files.items():
        with pytest.raises(CheckpointError) as info:
            load_model(path)
        message = str(info.value)
        assert str(path) in message or path.name in message, f"{name}: file not named: {message}"
        assert "weights-only" in message or "weights_only" in message or "Unsupported" in message, message
        assert not marker.exists(), f"{name}: unpickling executed code"


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "model.safetensors"
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999])
def test_truncated_safetensors_names_the_file(good, tmp_path, keep):
    weights, config = good
    data = weights.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: int(len(data) * keep)])
    (tmp_path / "cut.json").write_bytes(config.read_bytes())
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "cut.safetensors")
    assert "cut.safetensors" in str(info.value)


def test_truncated_torch_file_names_the_file(tmp_path):
    path = tmp_path / "dpt_hybrid-midas-501f0c75.pt"
    torch.save(to_official_state_dict(_tiny(heads=("depth",))), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", ["model.json"]),
        (
            json.dumps({"format": "dpt_perception", "version": 1, "config": {"variant": "nope"}}),
            ["model.json", "nope"],
        ),
        (
            json.dumps({"format": "dpt_perception", "version": 1, "config": {"bogus": 1}}),
            ["model.json", "bogus"],
        ),
        (json.dumps({"format": "something_else"}), ["model.json"]),
        (json.dumps({"format": "dpt_perception", "version": 99, "config": {}}), ["model.json", "version"]),
    ],
)
def test_broken_config_json_names_the_file(good, tmp_path, text, words):
    weights, _ = good
    (tmp_path / "model.safetensors").write_bytes(weights.read_bytes())
    (tmp_path / "model.json").write_text(text)
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "model.safetensors")
    for word in words:
        assert word in str(info.value)


def test_depth_file_for_a_segmentation_model_is_refused(tmp_path):
    depth = _tiny(heads=("depth",))
    path = tmp_path / "depth_official.pt"
    torch.save(to_official_state_dict(depth), path)
    seg_config = DPTConfig.tiny(heads=["segmentation"], num_classes=3, net_size=[64, 64])
    with pytest.raises(CheckpointError) as info:
        load_official(path, seg_config)
    message = str(info.value)
    assert str(path) in message and "depth" in message and "segmentation" in message
    # Our own format: a segmentation config next to depth-only weights.
    save_model(depth, tmp_path / "mixed")
    meta = json.loads((tmp_path / "mixed.json").read_text())
    meta["config"] = _tiny(heads=("segmentation",)).config.to_dict()
    (tmp_path / "mixed.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "mixed.safetensors")
    message = str(info.value)
    assert "mixed.safetensors" in message and "missing" in message and "heads.segmentation" in message


def test_mismatched_shapes_are_listed(tmp_path):
    save_model(_tiny(), tmp_path / "small")
    meta = json.loads((tmp_path / "small.json").read_text())
    meta["config"]["fusion_channels"] = meta["config"]["fusion_channels"] * 2
    (tmp_path / "small.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "small.safetensors")
    message = str(info.value)
    assert "small.safetensors" in message and "shape mismatch" in message and "vs model" in message


# ---- through the node process ------------------------------------------------------------------


def _node_cases(tmp_path, good):
    weights, config = good
    marker = tmp_path / "NODE_PWNED"
    (tmp_path / "bad").mkdir()
    malicious = _malicious_files(tmp_path / "bad", marker)
    data = weights.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.json").write_bytes(config.read_bytes())
    depth_official = tmp_path / "depth.pt"
    torch.save(to_official_state_dict(_tiny(heads=("depth",))), depth_official)
    save_model(_tiny(), tmp_path / "shapes")
    meta = json.loads((tmp_path / "shapes.json").read_text())
    meta["config"]["fusion_channels"] *= 2
    (tmp_path / "shapes.json").write_text(json.dumps(meta))
    return marker, {
        "missing": ([f"weights:={tmp_path / 'absent.safetensors'}"], ["absent.safetensors"]),
        "truncated": ([f"weights:={tmp_path / 'cut.safetensors'}"], ["cut.safetensors"]),
        "pickle": ([f"weights:={malicious['zip.pt']}"], ["zip.pt", "weights"]),
        "wrong_family": (
            [f"weights:={depth_official}", "model:=dpt_hybrid_ade20k"],
            ["depth.pt", "depth checkpoint", "segmentation"],
        ),
        "shapes": ([f"weights:={tmp_path / 'shapes.safetensors'}"], ["shapes.safetensors", "shape mismatch"]),
    }


@pytest.mark.integration
@pytest.mark.slow
def test_node_start_up_fails_cleanly_on_bad_weights(ros_env, good, tmp_path):
    marker, cases = _node_cases(tmp_path, good)
    problems = node_start_up_problems(cases, ros_env, "w_", timeout=150.0)
    assert not problems, "\n\n".join(problems)
    assert not marker.exists(), "the node executed code from a checkpoint pickle"
