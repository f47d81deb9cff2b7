"""Bad input messages, property-based: Image, CompressedImage and CameraInfo contents.

Contract checked here (the functions the node calls on every incoming message):
  - `message_to_rgb8` either returns the right (H, W, 3) uint8 RGB pixels or raises
    `ImageConversionError`; never another exception type (numpy, OpenCV, MemoryError...).
  - A CameraInfo goes through `scaled_camera_info` -> `projection_matrix` ->
    `PointCloudProjector.project`: either the cloud equals the pinhole formula with the
    intrinsics scaled to the depth size, or a `ValueError` says why there is no cloud.
Well-formed messages are built here byte by byte (independently of the code under test) and the
decoded pixels are compared with what was packed.
"""

import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
cv2 = pytest.importorskip("cv2")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dpt_perception.inference.geometry import PointCloudProjector  # noqa: E402
from dpt_perception.ros.image_conversion import (  # noqa: E402
    SUPPORTED_INPUT_ENCODINGS,
    ImageConversionError,
    compressed_to_rgb8,
    image_to_rgb8,
    message_to_rgb8,
)

pytest.importorskip("dpt_perception.msg", reason="messages not built (run scripts/setup.sh)")
from dpt_perception.ros.outputs import projection_matrix, scaled_camera_info  # noqa: E402

FAST = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
U32_MAX = 2**32 - 1

# Bytes per channel and channels per pixel of every accepted input encoding (from REP / the
# sensor_msgs image_encodings header, written out here rather than read from the code under test).
LAYOUT = {
    "rgb8": (1, 3),
    "bgr8": (1, 3),
    "rgba8": (1, 4),
    "bgra8": (1, 4),
    "mono8": (1, 1),
    "mono16": (2, 1),
    "uyvy": (1, 2),
    "yuv422": (1, 2),
    "yuyv": (1, 2),
    "yuv422_yuy2": (1, 2),
}
YUV = ("uyvy", "yuv422", "yuyv", "yuv422_yuy2")


def test_layout_table_covers_every_accepted_encoding():
    assert set(LAYOUT) == set(SUPPORTED_INPUT_ENCODINGS)


# ---- Image: well-formed messages decode to exactly what was packed -----------------------------


@st.composite
def well_formed_images(draw):
    """(msg, expected_rgb or None for YUV, compact pixels): a valid message with random row
    padding, random byte order for 16-bit data, and random extra bytes after the last row."""
    encoding = draw(st.sampled_from(sorted(LAYOUT)))
    itemsize, channels = LAYOUT[encoding]
    height = draw(st.integers(1, 9))
    width = draw(st.integers(1, 9)) * (2 if encoding in YUV else 1)
    big_endian = draw(st.booleans())
    pad = draw(st.integers(0, 5)) * itemsize
    trailing = draw(st.integers(0, 11))
    unpadded_last_row = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.dtype(f"{'>' if big_endian else '<'}u{itemsize}")
    pixels = rng.integers(0, 2 ** (8 * itemsize), size=(height, width, channels)).astype(dtype)
    row_bytes = width * channels * itemsize
    step = row_bytes + pad
    rows = [pixels[r].tobytes() + rng.integers(0, 256, pad, dtype=np.uint8).tobytes() for r in range(height)]
    data = b"".join(rows)
    if unpadded_last_row and pad:
        data = data[: len(data) - pad]
    data += rng.integers(0, 256, trailing, dtype=np.uint8).tobytes()
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian), step=step)
    msg.data = data
    values = pixels.astype(np.int64)
    expected = {
        "rgb8": lambda v: v,
        "bgr8": lambda v: v[..., ::-1],
        "rgba8": lambda v: v[..., :3],
        "bgra8": lambda v: v[..., 2::-1],
        "mono8": lambda v: np.repeat(v, 3, axis=2),
        "mono16": lambda v: np.repeat(v * 255 // 65535, 3, axis=2),
    }.get(encoding)
    exp = None if expected is None else expected(values).astype(np.uint8)
    return msg, exp, np.ascontiguousarray(pixels.astype(np.uint8 if itemsize == 1 else pixels.dtype))


@FAST
@given(well_formed_images())
def test_well_formed_images_decode_to_the_packed_pixels(case):
    msg, expected, compact = case
    rgb = image_to_rgb8(msg)
    assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8
    if expected is not None:
        np.testing.assert_array_equal(rgb, expected)
    else:  # YUV 4:2:2: padding and trailing bytes must not change the colour conversion
        code = cv2.COLOR_YUV2RGB_UYVY if msg.encoding in ("uyvy", "yuv422") else cv2.COLOR_YUV2RGB_YUYV
        np.testing.assert_array_equal(rgb, cv2.cvtColor(compact, code))


# ---- Image: arbitrary field values -------------------------------------------------------------

LYING_ENCODINGS = ["", "RGB8", "rgb16", "8UC3", "32FC1", "16UC1", "bayer_rggb8", "jpeg", "rgb8 ", "\x00"]
SIZES = st.one_of(st.integers(0, 40), st.sampled_from([2**15, 2**16 + 1, 2**31 - 1, 2**31, U32_MAX]))


@st.composite
def arbitrary_images(draw):
    encoding = draw(st.one_of(st.sampled_from(sorted(LAYOUT) + LYING_ENCODINGS), st.text(max_size=12)))
    height, width = draw(SIZES), draw(SIZES)
    itemsize, channels = LAYOUT.get(encoding, (1, 3))
    natural = width * itemsize * channels
    step = draw(
        st.one_of(
            st.sampled_from([0, 1, natural, natural + 1, natural - 1, U32_MAX]),
            st.integers(0, 400),
        ).filter(lambda s: 0 <= s <= U32_MAX)
    )
    natural_size = min(step * height, 5000) if step * height < 10**7 else 0
    size = draw(
        st.one_of(
            st.integers(0, 600), st.sampled_from([natural_size, natural_size + 7, max(natural_size - 1, 0)])
        )
    )
    msg = Image(
        height=height, width=width, encoding=encoding, step=step, is_bigendian=draw(st.integers(0, 255))
    )
    msg.data = (
        draw(st.binary(min_size=size, max_size=size))
        if size <= 64
        else bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))
    )
    return msg


def _accepted_image(msg: Image) -> bool:
    """Independent statement of when an Image is decodable."""
    if msg.encoding not in LAYOUT or msg.height == 0 or msg.width == 0:
        return False
    itemsize, channels = LAYOUT[msg.encoding]
    row = msg.width * itemsize * channels
    if msg.step < row or msg.step % itemsize:
        return False
    if msg.encoding in YUV and msg.width % 2:
        return False
    return len(msg.data) >= msg.step * (msg.height - 1) + row


@FAST
@given(arbitrary_images())
def test_any_image_is_decoded_or_rejected_with_image_conversion_error(msg):
    try:
        rgb = message_to_rgb8(msg)
    except ImageConversionError as exc:
        assert not _accepted_image(msg), f"valid message rejected: {exc}"
        assert str(exc), "the rejection must say what is wrong"
        return
    assert _accepted_image(msg), "an undecodable message was accepted"
    assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (dict(height=4, width=4, encoding="rgb8", step=11, size=48), ["step 11", "12"]),
        (dict(height=4, width=4, encoding="rgb8", step=12, size=47), ["47 bytes", "48"]),
        (dict(height=0, width=4, encoding="rgb8", step=12, size=0), ["no pixels"]),
        (dict(height=4, width=4, encoding="rgb16", step=24, size=96), ["encoding 'rgb16'"]),
        (dict(height=4, width=3, encoding="mono16", step=7, size=28), ["step 7"]),
        (dict(height=2, width=3, encoding="yuyv", step=6, size=12), ["even"]),
        (dict(height=U32_MAX, width=1, encoding="rgb8", step=3, size=16), ["16 bytes"]),
    ],
)
def test_rejections_name_the_wrong_field(fields, words):
    size = fields.pop("size")
    msg = Image(**fields)
    msg.data = bytes(size)
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb8(msg)
    for word in words:
        assert word in str(info.value)


def test_big_endian_flag_is_honoured_for_16_bit_and_ignored_for_8_bit():
    values = np.array([[0, 257, 65535, 4660]], dtype=np.uint16)
    for big in (0, 1):
        msg = Image(height=1, width=4, encoding="mono16", is_bigendian=big, step=8)
        msg.data = values.astype(">u2" if big else "<u2").tobytes()
        np.testing.assert_array_equal(image_to_rgb8(msg)[0, :, 0], values[0].astype(np.int64) * 255 // 65535)
        rgb = Image(height=1, width=1, encoding="rgb8", is_bigendian=big, step=3)
        rgb.data = bytes([1, 2, 3])
        np.testing.assert_array_equal(image_to_rgb8(rgb)[0, 0], [1, 2, 3])


# ---- CompressedImage ---------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny IDAT: what a decompression bomb or a
    lying sender looks like before any pixel is decoded."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _encode(rgb: np.ndarray, fmt: str) -> bytes:
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@st.composite
def compressed_images(draw):
    """(msg, expected_rgb or None, exact): valid, truncated, bit-flipped, foreign or lying payloads."""
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    fmt = draw(st.sampled_from(["png", "jpeg"]))
    payload = _encode(rgb, fmt)
    kind = draw(st.sampled_from(["valid", "truncate", "flip", "random", "empty", "bomb", "bomb_small"]))
    expected, exact = (rgb, fmt == "png") if kind == "valid" else (None, False)
    if kind == "truncate":
        payload = payload[: draw(st.integers(0, len(payload) - 1))]
    elif kind == "flip":
        data = bytearray(payload)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        payload = bytes(data)
    elif kind == "random":
        payload = draw(st.binary(max_size=200))
    elif kind == "empty":
        payload = b""
    elif kind == "bomb":  # dimensions beyond what any decoder should allocate
        payload = _png_header_only(
            draw(st.sampled_from([70000, 2**31 - 1])), draw(st.sampled_from([70000, 2**31 - 1]))
        )
    elif kind == "bomb_small":
        payload = _png_header_only(draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    claimed = draw(st.sampled_from([fmt, "png", "jpeg", "rgb8; jpeg compressed bgr8", "", "tiff", "PNG"]))
    msg = CompressedImage(format=claimed)
    msg.data = payload
    return msg, expected, exact


@FAST
@given(compressed_images())
def test_any_compressed_image_is_decoded_or_rejected_with_image_conversion_error(case):
    msg, expected, exact = case
    try:
        rgb = compressed_to_rgb8(msg)
    except ImageConversionError as exc:
        assert str(exc)
        if expected is not None:
            # Only the declared format may make a valid payload unacceptable.
            assert not any(name in msg.format.lower() for name in ("jpeg", "jpg", "png")), exc
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    if expected is not None:
        assert rgb.shape == expected.shape
        if exact:
            np.testing.assert_array_equal(rgb, expected)
        else:  # JPEG of random noise: lossy, but unbiased on average
            assert abs(rgb.astype(float).mean() - expected.astype(float).mean()) < 12


@pytest.mark.parametrize(("width", "height"), [(70000, 70000), (20000, 20000), (2**31 - 1, 1)])
def test_decompression_bomb_header_is_rejected_before_decoding(width, height):
    """A PNG declaring 20000 x 20000 pixels is under OpenCV's own limit (2^30) but would make it
    allocate 1.2 GB for the decoded frame: the declared size is checked first."""
    msg = CompressedImage(format="png")
    msg.data = _png_header_only(width, height)
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb8(msg)
    assert f"{width}x{height}" in str(info.value), str(info.value)


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.99])
def test_truncated_jpeg_is_rejected_not_half_grey(keep):
    """libjpeg fills a truncated JPEG's missing rows with grey and only prints a warning; such a
    frame would be processed as if the scene had a grey band, so it must be rejected."""
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    payload = _encode(rgb, "jpeg")
    msg = CompressedImage(format="jpeg")
    msg.data = payload[: int(len(payload) * keep)]
    with pytest.raises(ImageConversionError):
        compressed_to_rgb8(msg)
    msg.data = payload + b"\0" * 7  # padding after the end marker is harmless
    assert compressed_to_rgb8(msg).shape == (48, 64, 3)


# ---- CameraInfo --------------------------------------------------------------------------------

FLOATS = st.one_of(
    st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-300, 1e300]),
    st.floats(1.0, 2000.0),
)


@st.composite
def camera_infos(draw):
    """(info, image shape): random intrinsics (some NaN, zero, negative, huge), random declared size
    (missing, the image's, a multiple, unrelated), P possibly empty (then K is used)."""
    shape = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    fx, fy, cx, cy = (draw(FLOATS) for _ in range(4))
    k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    p = [0.0] * 12 if draw(st.booleans()) else [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    size = draw(st.sampled_from(["missing", "same", "double", "half", "other", "huge"]))
    h, w = {
        "missing": (0, 0),
        "same": shape,
        "double": (2 * shape[0], 2 * shape[1]),
        "half": (max(1, shape[0] // 2), max(1, shape[1] // 2)),
        "other": (draw(st.integers(1, 5000)), draw(st.integers(1, 5000))),
        "huge": (U32_MAX, U32_MAX),
    }[size]
    info = CameraInfo(height=h, width=w, distortion_model=draw(st.sampled_from(["plumb_bob", "", "??"])))
    info.k, info.p = k, p
    info.d = draw(st.lists(st.floats(-1, 1), max_size=8))
    return info, shape


@FAST
@given(camera_infos(), st.integers(1, 3))
def test_camera_info_gives_a_correct_cloud_or_a_value_error(case, decimation):
    info, (h, w) = case
    header = Header(frame_id="cam")
    depth = np.random.default_rng(h * 100 + w).uniform(0.5, 5.0, (h, w)).astype(np.float32)
    projector = PointCloudProjector(None, decimation)
    try:
        scaled = scaled_camera_info(info, header, (h, w))
        xyz = projector.project(depth, projection_matrix(scaled))
    except ValueError as exc:
        assert str(exc)
        # Rejected only when no usable positive, finite focal lengths / centre remain.
        src_h, src_w = (info.height or h), (info.width or w)
        fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
        usable = all(np.isfinite([fx, fy, cx, cy])) and fx > 0 and fy > 0
        scaled_ok = usable and np.isfinite(fx * w / src_w) and fx * w / src_w > 0 and fy * h / src_h > 0
        assert not scaled_ok, f"usable intrinsics rejected: {exc}"
        return
    assert scaled.height == h and scaled.width == w and scaled.header.frame_id == "cam"
    # Accepted: the intrinsics must have been finite and positive, and the cloud must be the
    # pinhole formula with them scaled by the size ratio (image_proc's resize convention).
    src_h, src_w = (info.height or h), (info.width or w)
    fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
    sx, sy = w / src_w, h / src_h
    fx, cx, fy, cy = fx * sx, cx * sx, fy * sy, cy * sy
    assert all(np.isfinite([fx, fy, cx, cy])) and fx > 0 and fy > 0, "a cloud from unusable intrinsics"
    v, u = np.mgrid[0:h:decimation, 0:w:decimation]
    z = depth[::decimation, ::decimation].astype(np.float64)
    # The cloud is float32: coordinates beyond its range (focal lengths like 1e-300) become +-Inf.
    with np.errstate(over="ignore"):
        expect_x = ((u - cx) / fx * z).astype(np.float32)
        expect_y = ((v - cy) / fy * z).astype(np.float32)
    np.testing.assert_allclose(xyz[..., 2], z, rtol=1e-6)
    scale_x = np.abs(expect_x[np.isfinite(expect_x)]).max(initial=0)
    scale_y = np.abs(expect_y[np.isfinite(expect_y)]).max(initial=0)
    np.testing.assert_allclose(xyz[..., 0], expect_x, rtol=1e-4, atol=1e-6 * (1 + scale_x))
    np.testing.assert_allclose(xyz[..., 1], expect_y, rtol=1e-4, atol=1e-6 * (1 + scale_y))
