"""TaskPair: two single-task models with their own encoders behind the DPT forward contract;
pair loading (names or paths, either order) and the distilled-checkpoint cache it defers to."""

import pytest
import torch

from dpt_perception.inference.pipeline import PerceptionPipeline, forward_for_class_ids
from dpt_perception.inference.weights import distilled_path, distilled_target, pair_key
from dpt_perception.model.checkpoints import CheckpointError, save_model
from dpt_perception.model.checkpoints.compose import compose_models
from dpt_perception.model.pair import TaskPair, make_pair
from dpt_perception.model.testing import tiny_model


@pytest.fixture
def teachers():
    """A depth-only hybrid and a segmentation-only ViT-B: different encoders, as the releases."""
    depth = tiny_model("vit_hybrid", heads=["depth"], seed=1, net_size=[64, 96])
    seg = tiny_model("vit_base", heads=["segmentation"], seed=2, num_classes=7)
    return depth, seg


def count_encoder_passes(model) -> list[int]:
    """A counter incremented by every forward of any encoder inside `model`."""
    calls = [0]
    for module in model.modules():
        if type(module).__name__ == "VisionTransformer":
            module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_pair_outputs_are_each_teacher_alone_in_either_order(teachers):
    depth, seg = teachers
    x = torch.randn(2, 3, 64, 96)
    for pair in (make_pair(depth, seg), make_pair(seg, depth)):
        out = pair(x)
        assert torch.equal(out["depth"], depth(x)["depth"])
        assert torch.equal(out["segmentation"], seg(x)["segmentation"])
        lowres = forward_for_class_ids(pair, x)["segmentation"]
        assert lowres.shape == (2, 7, 32, 48)
        assert pair.config.heads == ["depth", "segmentation"]
        assert pair.config.num_classes == 7 and pair.config.net_size == [64, 96]
        assert pair.config.depth_kind == depth.config.depth_kind


def test_pair_runs_only_the_model_of_each_requested_task(teachers):
    pair = make_pair(*teachers)
    calls = count_encoder_passes(pair)
    x = torch.randn(1, 3, 64, 96)
    assert set(pair(x)) == {"depth", "segmentation"} and calls[0] == 2
    assert set(pair(x, heads=["depth"])) == {"depth"} and calls[0] == 3
    assert set(pair(x, heads=["segmentation"])) == {"segmentation"} and calls[0] == 4
    with pytest.raises(ValueError, match="lacks"):
        pair(x, heads=["normals"])


def test_pair_through_the_predictor_matches_each_teacher(teachers):
    depth, seg = teachers
    rgb = (torch.rand(48, 80, 3) * 255).to(torch.uint8).numpy()
    got = PerceptionPipeline(make_pair(depth, seg), device="cpu").infer_image(rgb)
    want_depth = PerceptionPipeline(depth, device="cpu", net_size=(64, 96)).infer_image(rgb)
    want_labels = PerceptionPipeline(seg, device="cpu", net_size=(64, 96)).infer_image(rgb)
    assert torch.equal(torch.from_numpy(got.depth), torch.from_numpy(want_depth.depth))
    assert (got.labels == want_labels.labels).all()


def test_measured_pair_records_each_models_time(teachers):
    pair = make_pair(*teachers)
    pair(torch.randn(1, 3, 64, 96))
    assert pair.last_ms == {}
    pair.measure = True
    pair(torch.randn(1, 3, 64, 96))
    assert set(pair.last_ms) == {"depth", "segmentation"} and all(v > 0 for v in pair.last_ms.values())


def test_bad_pairs_are_refused_naming_the_tasks(teachers):
    depth, seg = teachers
    with pytest.raises(CheckpointError, match="got a depth model and a depth model"):
        make_pair(depth, tiny_model("vit_base", heads=["depth"]))
    with pytest.raises(CheckpointError, match="segmentation model and a segmentation model"):
        make_pair(seg, seg)
    both = tiny_model("vit_base")
    with pytest.raises(CheckpointError, match="got a both model"):
        make_pair(both, seg)
    other_norm = tiny_model("vit_base", heads=["segmentation"], mean=[0.485, 0.456, 0.406])
    with pytest.raises(CheckpointError, match="normalisation"):
        TaskPair(depth, other_norm)


def test_node_loader_builds_the_pair_or_the_cached_distilled_model(teachers, tmp_path, monkeypatch):
    from dpt_perception.inference.loading import load_dpt_model

    monkeypatch.setenv("DPT_PERCEPTION_CACHE", str(tmp_path / "cache"))
    depth, seg = teachers
    save_model(depth, tmp_path / "d")
    save_model(seg, tmp_path / "s")
    sources = [str(tmp_path / "s.safetensors"), str(tmp_path / "d.safetensors")]
    assert pair_key(sources) == pair_key(sources[::-1])
    assert distilled_path(sources) is None
    model = load_dpt_model(sources, "")
    assert isinstance(model, TaskPair) and model.encoder_passes == 2
    with pytest.raises(ValueError, match="each checkpoint of a pair must identify itself"):
        load_dpt_model(sources, "dpt_hybrid_nyu")
    with pytest.raises(CheckpointError, match="a depth model and a depth model"):
        load_dpt_model([str(tmp_path / "d.safetensors")] * 2, "")

    # Once a one-encoder student for the pair is cached (as distillation writes it), it is used.
    student = compose_models(depth, tiny_model("vit_hybrid", heads=["segmentation"], num_classes=7))
    save_model(student, distilled_target(sources[::-1]))
    shared = load_dpt_model(sources, "")
    assert not isinstance(shared, TaskPair) and shared.config.heads == ["depth", "segmentation"]
    calls = count_encoder_passes(shared)
    shared(torch.randn(1, 3, 64, 96))
    assert calls[0] == 1


def test_encoder_pass_counter_counts_images_per_frame_and_whole_forwards_only(teachers):
    from dpt_perception.model.pair import EncoderPassCounter

    pair = make_pair(*teachers)
    counter = EncoderPassCounter(pair)
    assert counter.per_frame() is None
    pair(torch.randn(3, 3, 64, 96))
    assert counter.per_frame() == 2.0 and counter.totals == (3, 6)
    seen = []  # a reader during a forward sees only finished forwards
    pair.depth_model.register_forward_hook(lambda *_: seen.append(counter.per_frame()))
    pair(torch.randn(1, 3, 64, 96), heads=["depth"])
    assert seen == [2.0] and counter.totals == (4, 7)
