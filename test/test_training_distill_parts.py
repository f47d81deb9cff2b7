"""Distillation parts: unlabelled frame sources (image folder, video file, rosbag2 topic), the
student initialisation, the losses against independent formulas, and the config's errors."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from dpt_perception.model.pair import make_pair, single_task_model
from dpt_perception.model.testing import tiny_model
from dpt_perception.training.data.unlabelled import crop_to_size, open_frames
from dpt_perception.training.distill import (
    depth_agreement_loss,
    init_student,
    load_distill_config,
    segmentation_kl,
)


def _frames(n, h=24, w=32):
    return [np.full((h, w, 3), (10 * i, 2 * i, 255 - 5 * i), np.uint8) for i in range(n)]


def test_folder_source_reads_every_image_recursively_with_stride(tmp_path):
    for i, frame in enumerate(_frames(6)):
        sub = tmp_path / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_frames({"type": "folder", "path": str(tmp_path), "stride": 2})
    assert len(source) == 3
    first = source.read(0)  # sorted: a/1, a/3, a/5, b/0, ... -> stride 2 keeps a/1, a/5, b/2
    assert first.shape == (24, 32, 3) and tuple(first[0, 0]) == (10, 2, 250)


def test_video_source_decodes_frames_in_order_and_by_seek(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    frames = _frames(7)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    source = open_frames({"type": "video", "path": str(path), "max_frames": 5})
    assert len(source) == 5
    for i in (0, 1, 4, 2):  # sequential, then seeks backwards
        np.testing.assert_allclose(source.read(i).mean(axis=(0, 1)), frames[i][0, 0], atol=6)


def test_rosbag_source_reads_one_image_topic(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image, Header, Time = (
        ts.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        other = writer.add_connection("/other", "sensor_msgs/msg/Image", typestore=ts)
        for i, frame in enumerate(_frames(4)):
            msg = Image(
                header=Header(stamp=Time(sec=i, nanosec=0), frame_id="c"),
                height=24,
                width=32,
                encoding="rgb8",
                is_bigendian=0,
                step=96,
                data=frame.ravel(),
            )
            writer.write(conn, 10**9 * (i + 1), ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            writer.write(other, 10**9 * (i + 1) + 1, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    source = open_frames({"type": "rosbag2", "path": str(bag), "topic": "/cam/image"})
    assert len(source) == 4
    np.testing.assert_array_equal(source.read(2), _frames(4)[2])
    with pytest.raises(ValueError, match="topics:"):
        open_frames({"type": "rosbag2", "path": str(bag), "topic": "/missing"})


def test_bad_source_specs_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="folder', 'video', 'rosbag2"):
        open_frames({"type": "webcam", "path": "x"})
    with pytest.raises(ValueError, match="needs the image 'topic'"):
        open_frames({"type": "rosbag2", "path": "x"})
    with pytest.raises(ValueError, match="no images"):
        open_frames({"type": "folder", "path": str(tmp_path)})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['fps'\]"):
        (tmp_path / "a.png").write_bytes(cv2.imencode(".png", _frames(1)[0])[1].tobytes())
        open_frames({"type": "folder", "path": str(tmp_path), "fps": 3})


def test_crop_covers_the_size_keeping_aspect():
    rgb = np.arange(40 * 100 * 3, dtype=np.uint8).reshape(40, 100, 3)
    out = crop_to_size(rgb, (64, 96), None)
    assert out.shape == (64, 96, 3)
    out = crop_to_size(rgb, (32, 32), np.random.default_rng(0))
    assert out.shape == (32, 32, 3)


def test_student_takes_each_part_from_its_teacher():
    depth = tiny_model("vit_base", heads=["depth"], seed=1)
    seg = tiny_model("vit_base", heads=["segmentation"], seed=2)
    student, notes = init_student(make_pair(depth, seg))
    assert student.config.heads == ["depth", "segmentation"]
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(student(x)["depth"], depth(x)["depth"])
    for part in ("necks.segmentation", "heads.segmentation"):
        ours = {k: v for k, v in student.state_dict().items() if k.startswith(part)}
        theirs = {k: v for k, v in seg.state_dict().items() if k.startswith(part)}
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert any("segmentation teacher" in n for n in notes)
    # A segmentation teacher whose features do not fit (a wider encoder): fresh seg parts, said so.
    wide = tiny_model("vit_large", heads=["segmentation"], seed=3)
    _, notes = init_student(make_pair(depth, wide))
    assert any("fresh (the segmentation teacher's does not fit" in n for n in notes)


def test_single_task_model_is_that_part_of_a_two_task_model():
    both = tiny_model("vit_base", seed=4)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(single_task_model(both, "depth")(x)["depth"], both(x)["depth"])
    assert torch.equal(single_task_model(both, "segmentation")(x)["segmentation"], both(x)["segmentation"])


def test_segmentation_kl_matches_the_formula_and_is_zero_on_agreement():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 4, 6), torch.randn(2, 5, 4, 6)
    temp = 2.0
    p = np.exp(t.numpy() / temp)
    p /= p.sum(1, keepdims=True)
    q = np.exp(s.numpy() / temp)
    q /= q.sum(1, keepdims=True)
    expected = (p * (np.log(p) - np.log(q))).sum(1).mean() * temp**2
    assert segmentation_kl(s, t, temp).item() == pytest.approx(expected, rel=1e-5)
    assert segmentation_kl(t, t, temp).item() == pytest.approx(0.0, abs=1e-6)


def test_depth_agreement_is_invariant_where_the_teacher_space_is():
    from dpt_perception.model.config import DPTConfig

    teacher = torch.rand(2, 8, 8) + 0.1
    relative = DPTConfig.tiny(heads=["depth"])
    # Relative: any positive scale and any shift of the student's inverse depth agree perfectly.
    assert depth_agreement_loss(3.0 * teacher + 0.7, teacher, "ssi", relative).item() == pytest.approx(
        0, abs=1e-5
    )
    assert depth_agreement_loss(teacher.flip(-1), teacher, "ssi", relative).item() > 0.1
    metric = DPTConfig.tiny(heads=["depth"], depth_kind="metric", depth_scale=0.5, depth_shift=0.1)
    # Metric: the same metres are zero, a scaled output is not (metres are absolute).
    assert depth_agreement_loss(teacher, teacher, "l1", metric).item() == 0.0
    assert depth_agreement_loss(2 * teacher, teacher, "l1", metric).item() > 0.01


def test_config_errors_name_the_option(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("distill:\n  mode: everything\n")
    with pytest.raises(ValueError, match="distill.mode must be one of"):
        load_distill_config(path)
    path.write_text("distill:\n  epoch: 3\n")
    with pytest.raises(ValueError, match=r"distill.epoch"):
        load_distill_config(path)
    with pytest.raises(ValueError, match="teachers must be"):
        load_distill_config(None, ["distill.teachers=[a]"])
    cfg = load_distill_config(None, ["distill.epochs=2", "distill.net_size=[64, 96]"])
    assert cfg.epochs == 2 and cfg.net_size == [64, 96]


def test_train_command_dispatches_distill_configs_and_documents_them(tmp_path, repo_root):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dpt_perception.training.train",
            "--config",
            str(repo_root / "config" / "distill_hybrid.yaml"),
            "--print-config",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "teachers:" in out.stdout and "dpt_hybrid_ade20k" in out.stdout
    # The README form, from any directory: the relative config is found where train finds its own.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")]))
    elsewhere = subprocess.run(
        [
            sys.executable,
            "-m",
            "dpt_perception.training.train",
            "--config=config/distill_hybrid.yaml",
            "--print-config",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert elsewhere.returncode == 0 and elsewhere.stdout == out.stdout, elsewhere.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "dpt_perception.training.distill", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "distill.segmentation_init" in help_text and "distill.mode" in help_text
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        json.dumps({"distill": {"teachers": ["a", "b"], "data": {"type": "folder", "path": "/nope"}}})
    )
    out = subprocess.run(
        [sys.executable, "-m", "dpt_perception.training.train", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_shared_neck_student_puts_both_heads_on_the_depth_teachers_neck():
    depth = tiny_model("vit_base", heads=["depth"], seed=1)
    seg = tiny_model("vit_base", heads=["segmentation"], seed=2)
    student, notes = init_student(make_pair(depth, seg), share_neck=True)
    assert student.config.neck_names == ["shared"] and "shared neck" in notes[0]
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(student(x)["depth"], depth(x)["depth"])  # the depth path is the teacher's
    theirs = {k: v for k, v in seg.state_dict().items() if k.startswith("heads.segmentation")}
    assert all(torch.equal(student.state_dict()[k], v) for k, v in theirs.items())
