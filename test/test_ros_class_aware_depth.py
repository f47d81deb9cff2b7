"""Class-aware depth in the node over real DDS: too-far classes are +Inf in `depth` and absent from
`points`, excluded classes absent from `points` and NaN in `depth/static`, all checked pixel by
pixel against the published label image and relative depth; class names validated against the
model at start-up and at runtime."""

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")

from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from dpt_perception.model.checkpoints import load_model  # noqa: E402
from dpt_perception.ros.demo import DEMO_WEIGHTS  # noqa: E402
from dpt_perception.ros.image_conversion import output_image_to_array  # noqa: E402
from dpt_perception.ros.pointcloud2 import cloud_to_arrays  # noqa: E402

from conftest import node_start_up_problems  # noqa: E402
from helpers.ros_session import BEST_EFFORT, RosSession, stamp_key  # noqa: E402

pytestmark = pytest.mark.integration

TOPICS = {
    "/dpt/depth": Image,
    "/dpt/depth/static": Image,
    "/dpt/depth/relative_inverse": Image,
    "/dpt/labels": Image,
    "/dpt/points": PointCloud2,
    "/camera/camera_info": CameraInfo,
}


WIDTH, HEIGHT = 96, 64


@pytest.fixture
def weights():
    """The bundled demo model: trained on synthetic scenes like the camera's frames, it has a class
    named sky (frame 0 shows sky and floor, frame 1 floor, wall and box)."""
    names = list(load_model(DEMO_WEIGHTS).config.class_names)
    assert "sky" in names and "floor" in names, names
    return DEMO_WEIGHTS, names


def _frames(probe, after=None):
    """(images by topic, cloud fields) of every stamp all topics share, among the messages received
    after `after` (topic -> count)."""
    after = after or {}
    by = {
        t: {stamp_key(m.header): m for _, m in probe.messages[t][after.get(t, 0):]}
        for t in TOPICS
        if t != "/camera/camera_info"
    }
    common = set.intersection(*(set(v) for v in by.values()))
    assert common, {t: len(v) for t, v in by.items()}
    return [
        (
            {t: output_image_to_array(by[t][s]) for t in by if t != "/dpt/points"},
            cloud_to_arrays(by["/dpt/points"][s]),
        )
        for s in sorted(common)
    ]


def _check(arrays, cloud, names, too_far, excluded):
    labels = arrays["/dpt/labels"]
    far = np.isin(labels, [names.index(n) for n in too_far])
    out = np.isin(labels, [names.index(n) for n in excluded])
    # fixed mode: 1/z = 1.0 * x + 0.5 from the published relative inverse depth
    metric = (1.0 / np.maximum(arrays["/dpt/depth/relative_inverse"].astype(np.float64) + 0.5, 1e-8)).astype(
        np.float32
    )
    expected_depth = np.where(far, np.float32(np.inf), metric)
    np.testing.assert_allclose(arrays["/dpt/depth"], expected_depth, rtol=1e-5)
    expected_static = np.where(out, np.float32(np.nan), expected_depth)
    np.testing.assert_allclose(arrays["/dpt/depth/static"], expected_static, rtol=1e-5, equal_nan=True)
    z = cloud["z"]
    assert np.isnan(z[far | out]).all(), "too-far or excluded pixels produced points"
    np.testing.assert_allclose(z[~(far | out)], metric[~(far | out)], rtol=1e-5)
    return far.sum(), out.sum()


def test_too_far_and_excluded_classes_over_dds(ros_env, weights, tmp_path):
    weights, names = weights
    with RosSession(ros_env, tmp_path) as s:
        probe = s.probe
        node = s.start_node(
            "dpt_class_node", weights=weights, depth_mode="fixed", depth_shift=0.5,
            points_exclude_classes=["floor"],
        )
        s.start_camera(rate=6.0, width=WIDTH, height=HEIGHT, distinct_frames=2)
        for topic, msg_type in TOPICS.items():
            probe.subscribe(topic, msg_type, BEST_EFFORT)
        s.wait_for(lambda: all(probe.count(t) >= 4 for t in TOPICS), 90.0, "4 messages on every topic")
        counts = np.array(
            [_check(a, c, names, too_far=["sky"], excluded=["floor"]) for a, c in _frames(probe)]
        )
        assert (counts > 0).any(axis=0).all(), f"sky and floor pixels must both occur: {counts}"

        # Runtime: sky no longer too far but excluded like box; unknown names refused with the valid list.
        results = s.set_parameters("dpt_class_node", points_exclude_classes=["pedestrian"])
        assert not results[0].successful
        assert names[0] in results[0].reason and "pedestrian" in results[0].reason
        results = s.set_parameters("dpt_class_node", too_far_classes=["auto", "box"])
        assert not results[0].successful and "stand alone" in results[0].reason
        results = s.set_parameters(
            "dpt_class_node", points_exclude_classes=["box", "sky"], too_far_classes=["none"]
        )
        assert all(r.successful for r in results), [r.reason for r in results]
        marks = {t: probe.count(t) for t in TOPICS}
        s.wait_for(lambda: all(probe.count(t) >= marks[t] + 3 for t in TOPICS), 60.0, "3 more on every topic")
        for arrays, cloud in _frames(probe, after={t: n + 1 for t, n in marks.items()}):
            _check(arrays, cloud, names, too_far=[], excluded=["box", "sky"])
        assert node.poll() is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["points_exclude_classes:=[pedestrian]"], "unknown class name(s) ['pedestrian']"),
        (["too_far_classes:=[sky, none]"], "stand alone"),
        (["too_far_classes:=[cloud]"], "unknown class name(s) ['cloud']"),
    ],
)
def test_bad_class_names_fail_start_up_with_the_valid_list(ros_env, weights, tmp_path, params, message):
    weights, names = weights
    words = [message, str(names)[1:-1]] if "unknown" in message else [message]
    cases = {"bad_names": (params, words)}
    problems = node_start_up_problems(cases, ros_env, "dpt_", common=[f"weights:={weights}"])
    assert not problems, "\n".join(problems)
