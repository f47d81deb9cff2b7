"""Unit tests of the node's message builders, depth semantics and parameter validation (no DDS)."""

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")

from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dpt_perception.inference.depth_semantics import CameraDepth, DepthModeError, resolve_depth_mode  # noqa: E402
from dpt_perception.ros import outputs  # noqa: E402
from dpt_perception.ros.image_conversion import ImageConversionError, array_to_image, output_image_to_array  # noqa: E402
from dpt_perception.ros.parameters import validate_value  # noqa: E402


def _info(width, height, fx=100.0, fy=110.0, cx=79.5, cy=59.5, with_p=True):
    info = CameraInfo(width=width, height=height)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0] if with_p else [0.0] * 12
    return info


def test_camera_info_is_scaled_to_the_depth_size_and_takes_the_image_header():
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    out = outputs.scaled_camera_info(_info(640, 480, 400.0, 420.0, 319.5, 239.5), header, (240, 320))
    assert (out.width, out.height, out.header.frame_id, out.header.stamp.nanosec) == (320, 240, "cam", 345)
    k = np.array(out.k).reshape(3, 3)
    np.testing.assert_allclose([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], [200.0, 210.0, 159.75, 119.75])
    np.testing.assert_allclose(np.array(out.p).reshape(3, 4)[:, :3], k)
    same = outputs.scaled_camera_info(_info(0, 0), header, (120, 160))  # no size: describes the image
    np.testing.assert_allclose(same.k, _info(0, 0).k)


def _roi(info, x0, y0, width, height, bx=0, by=0, do_rectify=False):
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = x0, y0, width, height
    info.roi.do_rectify = do_rectify
    info.binning_x, info.binning_y = bx, by
    return info


def test_camera_info_roi_and_binning_reduce_k_and_p_like_image_geometry():
    """Calibrated at 640x480, sent as the ROI at (100, 40) of 400x320 binned 2x4: a 200x80 image.
    For that image K and P are image_geometry's reduced ones: fx/2, (cx-100)/2, fy/4, (cy-40)/4."""
    header = Header(frame_id="cam")
    info = _roi(_info(640, 480, 400.0, 420.0, 319.5, 239.5), 100, 40, 400, 320, 2, 4)
    out = outputs.scaled_camera_info(info, header, (80, 200))
    expected = [200.0, 0, 109.75, 0, 105.0, 49.875, 0, 0, 1]
    np.testing.assert_allclose(out.k, expected)
    np.testing.assert_allclose(np.array(out.p).reshape(3, 4)[:, :3].ravel(), expected)
    assert (out.width, out.height, out.binning_x, out.binning_y, out.roi.width) == (200, 80, 0, 0, 0)
    # The depth image at half that size: the reduced intrinsics scaled by 1/2 on top.
    half = outputs.scaled_camera_info(info, header, (40, 100))
    np.testing.assert_allclose(np.array(half.k)[[0, 2, 4, 5]], [100.0, 54.875, 52.5, 24.9375])
    # Binning alone (no ROI), and an ROI that is the whole image with do_rectify: as the full image.
    binned = outputs.scaled_camera_info(_roi(_info(640, 480), 0, 0, 0, 0, 2, 2), header, (240, 320))
    np.testing.assert_allclose(np.array(binned.k)[[0, 2, 4, 5]], [50.0, 39.75, 55.0, 29.75])
    whole_roi = _roi(_info(640, 480), 0, 0, 640, 480, do_rectify=True)
    whole = outputs.scaled_camera_info(whole_roi, header, (480, 640))
    np.testing.assert_allclose(whole.k, _info(640, 480).k)


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ((600, 0, 100, 100, 1, 1, False), "ROI .* is not inside the calibrated 640x480 image"),
        ((0, 0, 0, 100, 1, 1, False), "not inside"),
        ((10, 10, 100, 100, 1, 1, True), "do_rectify: its rectified ROI depends on the distortion"),
        ((0, 0, 0, 0, 1024, 1, False), "binning 1024x1 leaves no pixels"),
    ],
)
def test_camera_info_roi_that_cannot_be_used_is_refused_with_the_reason(roi, message):
    with pytest.raises(ValueError, match=message):
        outputs.scaled_camera_info(_roi(_info(640, 480), *roi), Header(), (100, 100))


def test_projection_matrix_falls_back_to_k_and_rejects_uncalibrated():
    p = outputs.projection_matrix(_info(160, 120, with_p=False))
    np.testing.assert_allclose(p[:, :3], np.array(_info(160, 120).k).reshape(3, 3))
    empty = CameraInfo(width=160, height=120)
    with pytest.raises(ValueError, match="calibrated"):
        outputs.projection_matrix(empty)


def test_metric_depth_image_marks_too_far_as_inf_and_keeps_nan():
    depth = np.array([[1.0, np.nan], [50.0, 9.0]], np.float32)
    img = output_image_to_array(outputs.metric_depth_image(depth, Header(), max_depth=10.0))
    assert img[0, 0] == 1.0 and np.isnan(img[0, 1]) and img[1, 0] == np.inf and img[1, 1] == 9.0
    assert outputs.metric_depth_image(depth, Header(), 0.0).encoding == "32FC1"


def test_labels_use_mono8_up_to_256_classes_and_16uc1_beyond():
    small = outputs.labels_image(np.array([[0, 255]], np.uint8), Header())
    assert small.encoding == "mono8"
    big_ids = np.array([[0, 300], [65534, 7]], np.uint16)
    big = outputs.labels_image(big_ids, Header())
    assert big.encoding == "16UC1"
    np.testing.assert_array_equal(output_image_to_array(big), big_ids)


def test_labels_color_blends_with_the_image_weight():
    palette = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)
    labels = np.array([[0, 1]], np.uint8)
    rgb = np.array([[[0, 200, 0], [100, 100, 100]]], np.uint8)
    pure = output_image_to_array(outputs.labels_color_image(labels, palette, rgb, 0.0, Header()))
    np.testing.assert_array_equal(pure, palette[labels])
    half = output_image_to_array(outputs.labels_color_image(labels, palette, rgb, 0.5, Header())).astype(int)
    expected = 0.5 * palette[labels].astype(float) + 0.5 * rgb.astype(float)
    assert np.abs(half - expected).max() <= 1


def test_class_table_lists_every_class_with_its_colour():
    table = outputs.class_table(["a", "b"], [[255, 0, 0], [0, 51, 255]], "w.safetensors", Header().stamp)
    assert [(c.id, c.name) for c in table.classes] == [(0, "a"), (1, "b")]
    assert table.classes[1].color.g == pytest.approx(0.2) and table.ignore_id == 65535


def test_sparse_depth_accepts_metres_and_millimetres_only():
    mm = np.array([[0, 1500]], np.uint16)
    np.testing.assert_array_equal(outputs.sparse_depth_array(array_to_image(mm, "16UC1")), mm)
    with pytest.raises(ImageConversionError, match="32FC1"):
        outputs.sparse_depth_array(array_to_image(np.zeros((1, 1, 3), np.uint8), "rgb8"))


@pytest.mark.parametrize(
    ("requested", "metric", "sparse", "expected"),
    [
        ("auto", True, "", "model"),
        ("auto", False, "lidar/depth", "fit"),
        ("auto", False, "", "fixed"),
        ("fixed", False, "", "fixed"),
        ("fit", False, "d", "fit"),
        ("model", True, "", "model"),
    ],
)
def test_depth_mode_resolution(requested, metric, sparse, expected):
    mode, warnings = resolve_depth_mode(requested, metric, True, sparse)
    assert mode == expected
    assert bool(warnings) == (requested == "auto" and expected == "fixed")  # uncalibrated metres are flagged


@pytest.mark.parametrize(
    ("requested", "metric", "sparse", "message"),
    [
        ("model", False, "", "needs a metric model"),
        ("fixed", True, "", "metric already"),
        ("fit", False, "", "needs sparse_depth_topic"),
    ],
)
def test_impossible_depth_modes_are_rejected(requested, metric, sparse, message):
    with pytest.raises(DepthModeError, match=message):
        resolve_depth_mode(requested, metric, True, sparse)


def test_fit_mode_recovers_metres_from_sparse_depth_and_waits_until_then():
    rng = np.random.default_rng(0)
    true_depth = rng.uniform(1.0, 8.0, (60, 80)).astype(np.float32)
    relative = ((1.0 / true_depth - 0.05) / 0.4).astype(np.float32)  # 1/z = 0.4 x + 0.05
    depth = CameraDepth("fit")
    metric, rel = depth.convert(relative, "relative")
    assert metric is None and rel is relative  # no metres before a fit: never guessed
    sparse = np.where(rng.random(true_depth.shape) < 0.1, true_depth, np.nan).astype(np.float32)
    depth.observe_sparse(relative, sparse)
    metric, _ = depth.convert(relative, "relative")
    np.testing.assert_allclose(metric, true_depth, rtol=1e-3)


def test_fixed_and_metric_conversions():
    x = np.array([[1.0, 3.0]], np.float32)
    metric, rel = CameraDepth("fixed", 0.5, 0.5).convert(x, "relative")
    np.testing.assert_allclose(metric, [[1.0, 0.5]])
    assert rel is x
    far = CameraDepth("fixed", 1.0, 0.0).convert(np.array([[0.0, 2.0]], np.float32), "relative")[0]
    assert far[0, 0] == np.inf and far[0, 1] == 0.5  # zero inverse depth is infinitely far, not 1e8 m
    metres = np.array([[2.0, 4.0]], np.float32)
    metric, inverse = CameraDepth("model").convert(metres, "metric")
    assert metric is metres
    np.testing.assert_allclose(inverse, [[0.5, 0.25]])


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("net_size", [384, 512], True),
        ("net_size", [0, 0], True),
        ("net_size", [], False),
        ("net_size", [100, 64], False),
        ("net_size", [384], False),
        ("net_size", [0, 32], False),
        ("precision", "fp8", False),
        ("device", "cuda:1", True),
        ("device", "tpu", False),
        ("depth_mode", "guess", False),
        ("depth_scale", 0.0, False),
        ("points_color", "labels", True),
        ("cameras", ["/a", "/a"], False),
    ],
)
def test_parameter_validation(name, value, ok):
    reason = validate_value(name, value)
    assert (reason is None) == ok, reason


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip_skips_invalid_points(tmp_path, binary):
    from dpt_perception.inference.ply import read_ply, write_ply

    xyz = np.array(
        [[[0.5, -1.0, 2.0], [np.nan, np.nan, np.nan]], [[1.0, 2.0, 3.0], [0.0, 0.0, 9.5]]], np.float32
    )
    rgb = np.array([[[255, 0, 1], [9, 9, 9]], [[3, 4, 5], [6, 7, 8]]], np.uint8)
    labels = np.array([[2, 0], [300, 4]])
    assert write_ply(tmp_path / "p.ply", xyz, rgb, labels, binary=binary) == 3
    text = (tmp_path / "p.ply").read_bytes()
    assert text.startswith(b"ply\nformat " + (b"binary_little_endian" if binary else b"ascii"))
    points = read_ply(tmp_path / "p.ply")
    keep = [0, 2, 3]
    np.testing.assert_array_equal(
        np.stack([points["x"], points["y"], points["z"]], -1), xyz.reshape(-1, 3)[keep]
    )
    np.testing.assert_array_equal(
        np.stack([points["red"], points["green"], points["blue"]], -1), rgb.reshape(-1, 3)[keep]
    )
    np.testing.assert_array_equal(points["label"], labels.reshape(-1)[keep])


def test_sample_frames_are_distinct_and_consistent():
    from dpt_perception.inference.sample_frames import sample_frames

    frames = sample_frames(2, height=24, width=32)
    (rgb0, k0, depth0), (rgb1, _, _) = frames
    assert rgb0.shape == (24, 32, 3) and rgb0.dtype == np.uint8 and k0.shape == (3, 3)
    assert depth0.shape == (24, 32) and np.nanmin(depth0) > 0
    assert not np.array_equal(rgb0, rgb1)
