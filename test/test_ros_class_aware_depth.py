"""Class-aware depth in the node over real DDS: too-far classes are +Inf in `depth` and absent from
`points`, excluded classes absent from `points` and NaN in `depth/static`, all checked pixel by
pixel against the published label image and relative depth; class names validated against the
model at start-up and at runtime."""

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
torch = pytest.importorskip("torch")

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402

from dpt_perception.model.checkpoints import load_model  # noqa: E402
from dpt_perception.ros.demo import DEMO_WEIGHTS  # noqa: E402
from dpt_perception.ros.image_conversion import output_image_to_array  # noqa: E402
from dpt_perception.ros.pointcloud2 import cloud_to_arrays  # noqa: E402
from dpt_perception.ros.probe import OutputProbe, param_args, start_process, stop_process  # noqa: E402

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


def _key(header):
    return (header.stamp.sec, header.stamp.nanosec)


def _set_strings(probe, node_name, **values):
    client = probe.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert probe.spin_until(lambda: client.service_is_ready(), 15.0), "parameter service never appeared"
    request = SetParameters.Request()
    for name, value in values.items():
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=value)
        request.parameters.append(Parameter(name=name, value=pv))
    response = probe.call(client, request, timeout=30.0)
    assert response is not None, "SetParameters call timed out"
    return response.results


def _frames(probe, after=None):
    """(images by topic, cloud fields) of every stamp all topics share, among the messages received
    after `after` (topic -> count)."""
    after = after or {}
    by = {
        t: {_key(m.header): m for _, m in probe.messages[t][after.get(t, 0):]}
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
    node = camera = probe = None
    try:
        probe = OutputProbe(domain_id=int(ros_env["ROS_DOMAIN_ID"]))
        node = start_process(
            "dpt_perception.ros.node",
            [
                "-r",
                "__node:=dpt_class_node",
                *param_args(
                    weights=weights, depth_mode="fixed", depth_shift=0.5, points_exclude_classes=["floor"]
                ),
            ],
            ros_env,
            tmp_path / "node.log",
        )
        camera = start_process(
            "dpt_perception.ros.camera_publisher",
            param_args(rate=6.0, width=WIDTH, height=HEIGHT, distinct_frames=2),
            ros_env,
            tmp_path / "camera.log",
        )
        for topic, msg_type in TOPICS.items():
            probe.subscribe(topic, msg_type, qos_profile_sensor_data)
        assert probe.spin_until(lambda: all(probe.count(t) >= 4 for t in TOPICS), 90.0), (
            {t: probe.count(t) for t in TOPICS}, (tmp_path / "node.log").read_text()[-3000:])
        counts = np.array(
            [_check(a, c, names, too_far=["sky"], excluded=["floor"]) for a, c in _frames(probe)]
        )
        assert (counts > 0).any(axis=0).all(), f"sky and floor pixels must both occur: {counts}"

        # Runtime: sky no longer too far but excluded like box; unknown names refused with the valid list.
        results = _set_strings(probe, "dpt_class_node", points_exclude_classes=["pedestrian"])
        assert not results[0].successful
        assert names[0] in results[0].reason and "pedestrian" in results[0].reason
        results = _set_strings(probe, "dpt_class_node", too_far_classes=["auto", "box"])
        assert not results[0].successful and "stand alone" in results[0].reason
        results = _set_strings(
            probe, "dpt_class_node", points_exclude_classes=["box", "sky"], too_far_classes=["none"]
        )
        assert all(r.successful for r in results), [r.reason for r in results]
        marks = {t: probe.count(t) for t in TOPICS}
        assert probe.spin_until(lambda: all(probe.count(t) >= marks[t] + 3 for t in TOPICS), 60.0)
        for arrays, cloud in _frames(probe, after={t: n + 1 for t, n in marks.items()}):
            _check(arrays, cloud, names, too_far=[], excluded=["box", "sky"])
        assert node.poll() is None
    finally:
        stop_process(camera)
        stop_process(node)
        if probe is not None:
            probe.close()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["-p", "points_exclude_classes:=[pedestrian]"], "unknown class name(s) ['pedestrian']"),
        (["-p", "too_far_classes:=[sky, none]"], "stand alone"),
        (["-p", "too_far_classes:=[cloud]"], "unknown class name(s) ['cloud']"),
    ],
)
def test_bad_class_names_fail_start_up_with_the_valid_list(ros_env, weights, tmp_path, params, message):
    weights, names = weights
    proc = start_process(
        "dpt_perception.ros.node", ["-p", f"weights:={weights}", *params], ros_env, tmp_path / "node.log"
    )
    try:
        code = proc.wait(90)
    finally:
        stop_process(proc)
    log = (tmp_path / "node.log").read_text(errors="replace")
    assert code == 1 and message in log, log
    if "unknown" in message:
        assert str(names)[1:-1] in log, log
