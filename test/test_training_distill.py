"""Distillation end to end, through the user's command (`train --config <distill yaml>`): two
single-task teachers with different encoders -> one shared-encoder student whose labels agree with
the segmentation teacher's on held-out frames (from chance to >= 90 %) while its depth stays with
the depth teacher (AbsRel <= 0.05); the student is installed in the weights cache, and the node
given the teacher pair then runs ONE encoder per frame (counted by hooks, reported on /diagnostics).

Teachers: the bundled demo model, split. The segmentation teacher is its segmentation part; the
depth teacher is its depth part on a perturbed copy of the encoder, so the two encoders differ and
the student's (fresh) segmentation neck and head must learn from the depth teacher's features."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from dpt_perception.inference.weights import distilled_target
from dpt_perception.model.checkpoints import load_model, save_model
from dpt_perception.model.pair import single_task_model
from dpt_perception.model.testing import randomize_
from dpt_perception.ros.demo import DEMO_WEIGHTS
from dpt_perception.training.data.synthetic import write_folder_dataset
from dpt_perception.training.distill import load_distill_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, repo_root):
    root = tmp_path_factory.mktemp("distill")
    demo = load_model(DEMO_WEIGHTS)
    depth = single_task_model(demo, "depth")
    randomize_(depth.encoder, seed=4, scale=0.01)
    seg = single_task_model(demo, "segmentation")
    save_model(depth, root / "depth_teacher")
    save_model(seg, root / "seg_teacher")
    write_folder_dataset(root / "scenes", 100, seed=5, width=160, height=128)
    teachers = [str(root / "seg_teacher.safetensors"), str(root / "depth_teacher.safetensors")]
    config = {
        "distill": {
            "teachers": teachers,
            "data": {"type": "folder", "path": str(root / "scenes" / "rgb")},
            "val_fraction": 0.2,
            "net_size": [64, 96],
            "epochs": 8,
            "batch_size": 4,
            "num_workers": 0,
            "mode": "full",
            "segmentation_init": "fresh",
            "lr_encoder": 3e-4,
            "lr_decoder": 3e-3,
            "output_dir": str(root / "run"),
            "install": True,
        }
    }
    (root / "distill.yaml").write_text(yaml.safe_dump(config))
    env = dict(
        os.environ,
        DPT_PERCEPTION_CACHE=str(root / "cache"),
        PYTHONPATH=os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")]),
    )
    run = subprocess.run(
        [sys.executable, "-m", "dpt_perception.training.train", "--config", str(root / "distill.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return root, teachers, env, run


def test_student_agrees_with_both_teachers(distilled):
    root, teachers, _, run = distilled
    report = json.loads((root / "run" / "report.json").read_text())
    first, last = report["history"][0], report["history"][-1]
    assert first["label_agreement"] < 0.35, first  # fresh seg head: about chance among 5 classes
    assert last["label_agreement"] >= 0.90, report["history"]
    assert last["miou_vs_teacher"] > first["miou_vs_teacher"] + 0.4, report["history"]
    assert first["depth_abs_rel_vs_teacher"] < 1e-6  # starts as the depth teacher
    assert last["depth_abs_rel_vs_teacher"] <= 0.05, report["history"]
    assert report["teachers"] == {"depth": teachers[1], "segmentation": teachers[0]}
    assert (root / "run" / "report.png").stat().st_size > 1000
    assert list((root / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert "label agreement" in run.stdout and "installed as" in run.stdout
    # the written config.yaml is a distill config file: --config OUT/config.yaml repeats the run
    assert load_distill_config(root / "run" / "config.yaml") == load_distill_config(root / "distill.yaml")


def test_student_checkpoint_records_its_teachers_and_is_installed_for_the_pair(distilled):
    root, teachers, _, _ = distilled
    meta = json.loads((root / "run" / "student.json").read_text())
    assert meta["distilled_from"]["teachers"]["depth"] == teachers[1]
    installed = distilled_target(teachers, root / "cache")
    assert installed == distilled_target(teachers[::-1], root / "cache")
    a, b = load_model(installed), load_model(root / "run" / "student.safetensors")
    assert a.config.heads == ["depth", "segmentation"]
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_node_given_the_pair_runs_the_distilled_student_with_one_encoder(distilled, ros_env, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from dpt_perception.ros.probe import OutputProbe, param_args, start_process, status_values, stop_process

    root, teachers, env, _ = distilled
    ros_env = dict(ros_env, DPT_PERCEPTION_CACHE=env["DPT_PERCEPTION_CACHE"])
    node = camera = probe = None
    try:
        probe = OutputProbe(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
        probe.subscribe("/diagnostics", DiagnosticArray, 10)
        for topic in ("/dpt/depth", "/dpt/labels"):
            probe.subscribe(topic, Image, qos_profile_sensor_data)
        node = start_process(
            "dpt_perception.ros.node",
            param_args(weights=teachers, depth_mode="fixed", diagnostics_period=0.5),
            ros_env,
            tmp_path / "node.log",
        )
        camera = start_process(
            "dpt_perception.ros.camera_publisher",
            param_args(rate=5.0, width=96, height=64),
            ros_env,
            tmp_path / "camera.log",
        )
        assert probe.spin_until(
            lambda: probe.count("/dpt/depth") >= 3 and probe.count("/dpt/labels") >= 3, 90.0
        ), (tmp_path / "node.log").read_text()[-3000:]
        assert probe.spin_until(lambda: probe.latest_status(suffix=": camera") is not None, 20.0)
        values = status_values(probe.latest_status(suffix=": camera"))
        assert values["encoder passes per frame"] == "1.00", values
        assert values["model"].startswith("one encoder"), values
        assert "TWO encoders" not in (tmp_path / "node.log").read_text()
    finally:
        stop_process(camera)
        stop_process(node)
        if probe is not None:
            probe.close()
