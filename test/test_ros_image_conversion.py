"""Our Image/CompressedImage/PointCloud2 conversions against independent implementations.

The oracle for images is rosbags-image (`rosbags.image.message_to_cvimage`), fed rosbags
message objects built from the very same bytes as the rclpy messages.
"""

import array

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
cv2 = pytest.importorskip("cv2")
rosbags_image = pytest.importorskip("rosbags.image", reason="rosbags-image is the test oracle")

from rosbags.typesys import Stores, get_typestore  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField  # noqa: E402

from dpt_perception.ros.image_conversion import (  # noqa: E402
    SUPPORTED_INPUT_ENCODINGS,
    ImageConversionError,
    array_to_image,
    compressed_to_rgb8,
    image_to_array,
    image_to_rgb8,
    output_image_to_array,
    rgb8_to_compressed,
    rgb8_to_image,
)
from dpt_perception.ros.pointcloud2 import PointCloudConversionError, cloud_to_arrays, make_cloud  # noqa: E402

_STORE = get_typestore(Stores.LATEST)
_RImage = _STORE.types["sensor_msgs/msg/Image"]
_RCompressed = _STORE.types["sensor_msgs/msg/CompressedImage"]
_RHeader = _STORE.types["std_msgs/msg/Header"]
_RTime = _STORE.types["builtin_interfaces/msg/Time"]

_BYTES_PER_PIXEL = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "mono16": 2,
    "uyvy": 2,
    "yuv422": 2,
    "yuyv": 2,
    "yuv422_yuy2": 2,
}


def _rclpy_image(raw: bytes, encoding, height, width, step, big_endian=False) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian), step=step)
    msg.data = array.array("B", raw)
    return msg


def _oracle_rgb(raw: bytes, encoding, height, width, step, big_endian=False) -> np.ndarray:
    msg = _RImage(
        header=_RHeader(stamp=_RTime(sec=0, nanosec=0), frame_id=""),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=step,
        data=np.frombuffer(raw, np.uint8),
    )
    return rosbags_image.message_to_cvimage(msg, "rgb8")


def test_every_input_encoding_is_covered():
    assert set(SUPPORTED_INPUT_ENCODINGS) == set(_BYTES_PER_PIXEL)


@pytest.mark.parametrize("encoding", sorted(_BYTES_PER_PIXEL))
@pytest.mark.parametrize("big_endian", [False, True])
def test_image_decodes_like_rosbags(encoding, big_endian):
    height, width = 7, 10
    step = width * _BYTES_PER_PIXEL[encoding]
    raw = np.random.default_rng(len(encoding)).integers(0, 256, height * step, dtype=np.uint8).tobytes()
    ours = image_to_rgb8(_rclpy_image(raw, encoding, height, width, step, big_endian))
    expected = _oracle_rgb(raw, encoding, height, width, step, big_endian)
    assert ours.shape == (height, width, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono16", "uyvy"])
def test_row_padding_is_skipped(encoding):
    # rosbags ignores `step`, so the oracle gets the same pixels without the padding bytes.
    height, width, pad = 5, 6, 6
    row = width * _BYTES_PER_PIXEL[encoding]
    rng = np.random.default_rng(3)
    padded = rng.integers(0, 256, (height, row + pad), dtype=np.uint8)
    ours = image_to_rgb8(_rclpy_image(padded.tobytes(), encoding, height, width, row + pad))
    expected = _oracle_rgb(padded[:, :row].tobytes(), encoding, height, width, row)
    np.testing.assert_array_equal(ours, expected)


def test_rgb8_is_a_view_of_the_message_buffer():
    msg = _rclpy_image(bytes(range(24)), "rgb8", 2, 4, 12)
    rgb = image_to_rgb8(msg)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))
    padded = _rclpy_image(bytes(range(32)), "rgb8", 2, 4, 16)
    assert np.shares_memory(image_to_array(padded), np.frombuffer(padded.data, np.uint8))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_decodes_like_rosbags(fmt):
    rgb = np.random.default_rng(5).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    msg = rgb8_to_compressed(rgb, fmt)
    expected = rosbags_image.message_to_cvimage(
        _RCompressed(
            header=_RHeader(stamp=_RTime(sec=0, nanosec=0), frame_id=""),
            format=fmt,
            data=np.frombuffer(msg.data, np.uint8),
        ),
        "rgb8",
    )
    np.testing.assert_array_equal(compressed_to_rgb8(msg), expected)
    if fmt == "png":  # lossless: the original pixels come back
        np.testing.assert_array_equal(compressed_to_rgb8(msg), rgb)


def test_grey_png_becomes_three_equal_channels():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    ok, encoded = cv2.imencode(".png", grey)
    assert ok
    msg = CompressedImage(format="png")
    msg.data = array.array("B", encoded.tobytes())
    rgb = compressed_to_rgb8(msg)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], grey)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_camera_encoder_round_trips_through_the_oracle(encoding):
    rgb = np.random.default_rng(9).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    msg = rgb8_to_image(rgb, encoding)
    expected = _oracle_rgb(bytes(msg.data), encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian))
    np.testing.assert_array_equal(image_to_rgb8(msg), expected)
    if encoding in ("rgb8", "bgr8", "rgba8", "bgra8"):
        np.testing.assert_array_equal(image_to_rgb8(msg), rgb)


@pytest.mark.parametrize(
    ("encoding", "array"),
    [
        ("32FC1", np.array([[0.5, np.nan], [np.inf, 3.25]], np.float32)),
        ("16UC1", np.array([[0, 65535], [300, 7]], np.uint16)),
        ("mono8", np.array([[0, 255], [17, 3]], np.uint8)),
    ],
)
def test_output_images_decode_like_rosbags(encoding, array):
    msg = array_to_image(array, encoding)
    assert msg.step == array.shape[1] * array.itemsize
    oracle = rosbags_image.message_to_cvimage(
        _RImage(
            header=_RHeader(stamp=_RTime(sec=0, nanosec=0), frame_id=""),
            height=msg.height,
            width=msg.width,
            encoding=encoding,
            is_bigendian=msg.is_bigendian,
            step=msg.step,
            data=np.frombuffer(msg.data, np.uint8),
        )
    )
    np.testing.assert_array_equal(output_image_to_array(msg), oracle)
    np.testing.assert_array_equal(output_image_to_array(msg), array)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(encoding="rgb8", height=4, width=4, step=10, size=48), "step 10 is smaller"),
        (dict(encoding="rgb8", height=4, width=4, step=12, size=40), "need at least 48"),
        (dict(encoding="bayer_rggb8", height=2, width=2, step=2, size=4), "unsupported image encoding"),
        (dict(encoding="uyvy", height=2, width=3, step=6, size=12), "width must be even"),
        (dict(encoding="mono16", height=2, width=2, step=5, size=10), "not a multiple"),
        (dict(encoding="rgb8", height=0, width=4, step=12, size=0), "no pixels"),
    ],
)
def test_bad_images_raise_clear_errors(kwargs, message):
    msg = _rclpy_image(
        bytes(kwargs["size"]), kwargs["encoding"], kwargs["height"], kwargs["width"], kwargs["step"]
    )
    with pytest.raises(ImageConversionError, match=message):
        image_to_rgb8(msg)


def test_bad_compressed_images_raise_clear_errors():
    msg = CompressedImage(format="jpeg")
    msg.data = array.array("B", b"not a jpeg at all")
    with pytest.raises(ImageConversionError, match="not an image in an accepted format .JPEG, PNG, BMP"):
        compressed_to_rgb8(msg)
    msg.format = "tiff"
    with pytest.raises(ImageConversionError, match="unsupported CompressedImage format"):
        compressed_to_rgb8(msg)


def test_array_to_image_rejects_mismatched_dtype():
    with pytest.raises(ImageConversionError, match="needs dtype float32"):
        array_to_image(np.zeros((2, 2), np.float64), "32FC1")


def test_cloud_round_trip_and_layout():
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(3, 5, 3)).astype(np.float32)
    xyz[1, 2] = np.nan
    rgb = rng.normal(size=(3, 5)).astype(np.float32)
    label = rng.integers(0, 300, (3, 5)).astype(np.uint16)
    msg = make_cloud(xyz, rgb=rgb, label=label)
    assert (msg.height, msg.width, msg.is_dense) == (3, 5, False)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "label"]
    assert msg.point_step % 4 == 0 and msg.row_step == msg.point_step * 5
    assert len(msg.data) == msg.row_step * msg.height
    # Independent decoding straight from the documented offsets.
    raw = np.frombuffer(msg.data, np.uint8).reshape(3, 5, msg.point_step)
    offsets = {f.name: f.offset for f in msg.fields}
    np.testing.assert_array_equal(
        raw[..., offsets["z"] : offsets["z"] + 4].copy().view(np.float32)[..., 0], xyz[..., 2]
    )
    np.testing.assert_array_equal(
        raw[..., offsets["label"] : offsets["label"] + 2].copy().view(np.uint16)[..., 0], label
    )
    fields = cloud_to_arrays(msg)
    np.testing.assert_array_equal(np.stack([fields["x"], fields["y"], fields["z"]], -1), xyz)
    np.testing.assert_array_equal(fields["rgb"].view(np.uint32), rgb.view(np.uint32))
    np.testing.assert_array_equal(fields["label"], label)


def test_big_endian_cloud_is_read_correctly():
    values = np.array([[1.5, -2.0, 3.0], [4.0, 5.0, np.nan]], np.float32)
    msg = PointCloud2(height=1, width=2, is_bigendian=True, point_step=12, row_step=24, is_dense=False)
    msg.fields = [
        PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")
    ]
    msg.data = array.array("B", values.astype(">f4").tobytes())
    fields = cloud_to_arrays(msg)
    np.testing.assert_array_equal(np.stack([fields["x"][0], fields["y"][0], fields["z"][0]], -1), values)


def test_short_cloud_raises():
    msg = make_cloud(np.zeros((2, 2, 3), np.float32))
    msg.data = msg.data[:-1]
    with pytest.raises(PointCloudConversionError, match="expected row_step"):
        cloud_to_arrays(msg)
