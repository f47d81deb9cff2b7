"""The one compressed-image decoder: declared sizes of every decoded format checked before decoding,
other formats refused by name, EXIF orientation ignored.

The files here are built byte by byte from the format specifications (independently of the code
under test); a decompression bomb is a real file of that format whose header declares a huge size.
"""

import struct
import types
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpt_perception.inference import image_decoding
from dpt_perception.inference.image_decoding import (
    DECODED_FORMATS,
    MAX_DECODED_PIXELS,
    ImageDecodeError,
    declared_image_size,
    decode_image,
)

RGB = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def _encoded(ext: str, params=(), image=RGB) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def bmp_rle8(width: int, height: int) -> bytes:
    """An 8-bit RLE BMP of any size in ~1 KB: 256-colour palette, then only "end of bitmap"."""
    palette, pixels = bytes(1024), b"\x00\x01"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def bmp_core(width: int, height: int) -> bytes:
    """An OS/2 1.x BMP (12-byte header, 16-bit sizes), 24-bit rows padded to 4 bytes (zeros, only
    when small: a bomb needs none)."""
    row = (width * 3 + 3) // 4 * 4
    pixels = bytes(row * height) if width * height <= 1 << 20 else b""
    offset = 14 + 12
    info = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def png(width: int, height: int) -> bytes:
    """An 8-bit RGB PNG; the pixel data (zeros) only when small, a bomb needs none."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    rows = bytes((1 + 3 * width) * height) if width * height <= 1 << 20 else b""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _patched(data: bytes, pos: int, packed: bytes) -> bytes:
    return data[:pos] + packed + data[pos + len(packed) :]


def jpeg(width: int, height: int) -> bytes:
    """A real baseline JPEG whose SOF0 frame header (FFC0, length, precision, height, width) says
    width x height."""
    data = _encoded(".jpg")
    sof = data.index(b"\xff\xc0")
    return _patched(data, sof + 5, struct.pack(">HH", height, width))


def webp_lossless(width: int, height: int) -> bytes:
    """A real VP8L WebP: after the 0x2f signature, 14 bits width-1 and 14 bits height-1."""
    data = _encoded(".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert data[12:16] == b"VP8L"
    bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
    return _patched(data, 21, (bits | (width - 1) | ((height - 1) << 14)).to_bytes(4, "little"))


def webp_lossy(width: int, height: int) -> bytes:
    """A real VP8 WebP: after the 3-byte frame tag and start code 9d 01 2a, 14-bit width, height."""
    data = _encoded(".webp", [cv2.IMWRITE_WEBP_QUALITY, 80])
    assert data[12:16] == b"VP8 " and data[23:26] == b"\x9d\x01\x2a"
    return _patched(data, 26, struct.pack("<HH", width, height))


def webp_extended(width: int, height: int) -> bytes:
    """A VP8X WebP: canvas width-1 and height-1 in 24 bits each, then the 8x8 VP8L image."""
    inner = _encoded(".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff(width: int, height: int, order: str = "<", big: bool = False, tile: tuple | None = None) -> bytes:
    """An uncompressed 8-bit grey TIFF (classic or BigTIFF, either byte order), one strip; or, with
    `tile`, TileWidth/TileLength tags instead of the strip tags."""
    pixels = bytes(width * height) if width * height <= 1 << 20 else b""
    short, long_ = 3, (16 if big else 4)
    tags = [(256, long_, width), (257, long_, height), (258, short, 8), (259, short, 1), (262, short, 1)]
    if tile is None:
        tags += [(273, long_, 0), (277, short, 1), (278, long_, height), (279, long_, len(pixels))]
    else:
        tags += [(277, short, 1), (322, long_, tile[0]), (323, long_, tile[1])]
    magic = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if big else 42)
    head = magic + (struct.pack(order + "HHQ", 8, 0, 16) if big else struct.pack(order + "I", 8))
    count_fmt, entry_fmt, sizes = ("Q", "HHQ", {3: "H", 16: "Q"}) if big else ("H", "HHI", {3: "H", 4: "I"})
    entry_size = 20 if big else 12
    ifd_size = struct.calcsize(order + count_fmt) + entry_size * len(tags) + (8 if big else 4)
    data_at = len(head) + ifd_size
    ifd = struct.pack(order + count_fmt, len(tags))
    for tag, kind, value in tags:
        value = data_at if tag == 273 else value
        field = struct.pack(order + sizes[kind], value).ljust(8 if big else 4, b"\0")
        ifd += struct.pack(order + entry_fmt[:2], tag, kind) + struct.pack(order + entry_fmt[2], 1) + field
    ifd += bytes(8 if big else 4)
    return head + ifd + pixels


BUILDERS = {
    "BMP (RLE8)": ("BMP", bmp_rle8),
    "BMP (OS/2)": ("BMP", bmp_core),
    "PNG": ("PNG", png),
    "JPEG": ("JPEG", jpeg),
    "WebP (VP8L)": ("WebP", webp_lossless),
    "WebP (VP8)": ("WebP", webp_lossy),
    "WebP (VP8X)": ("WebP", webp_extended),
    "TIFF (II)": ("TIFF", tiff),
    "TIFF (MM)": ("TIFF", lambda w, h: tiff(w, h, ">")),
    "BigTIFF": ("TIFF", lambda w, h: tiff(w, h, "<", big=True)),
}
# Only the patched header fields change: the real 8x8 payloads decode at their own size.
SMALL = {"JPEG": (8, 8), "WebP (VP8L)": (8, 8), "WebP (VP8)": (8, 8), "WebP (VP8X)": (8, 8)}


def test_every_format_opencv_reads_here_is_covered():
    assert {fmt for fmt, _ in BUILDERS.values()} == set(DECODED_FORMATS)


@pytest.mark.parametrize("kind", BUILDERS)
def test_small_files_of_every_accepted_format_decode_at_their_declared_size(kind):
    fmt, build = BUILDERS[kind]
    width, height = SMALL.get(kind, (13, 7))
    data = build(width, height)
    assert declared_image_size(data) == (fmt, width, height)
    assert decode_image(data).shape == (height, width, 3)


# Largest size a format's header fields can hold (WebP VP8: 14 bits; VP8L: 14 bits, minus one).
FIELD_LIMIT = {"WebP (VP8)": 16383, "WebP (VP8L)": 16384}


@pytest.mark.parametrize("size", [(9000, 9000), (16383, 16383), (65535, 65535)])
@pytest.mark.parametrize("kind", BUILDERS)
def test_bombs_of_every_accepted_format_are_refused_before_decoding(kind, size, monkeypatch):
    """9000 x 9000 is 81 Mpx (a 1 KB RLE BMP of it peaks at gigabytes in OpenCV), under OpenCV's own
    2^30 limit; the declared size is refused without calling the decoder at all."""
    fmt, build = BUILDERS[kind]
    width, height = size
    if max(size) > FIELD_LIMIT.get(kind, 65535):
        pytest.skip(f"{kind} cannot declare {width}x{height}")
    data = build(width, height)
    assert len(data) < 20_000
    monkeypatch.setattr(image_decoding.cv2, "imdecode", _must_not_decode)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    message = str(info.value)
    assert f"{fmt} header declares {width}x{height}" in message, message
    assert str(MAX_DECODED_PIXELS) in message, message


def _must_not_decode(*_):
    raise AssertionError("the decoder was called for a payload declaring too many pixels")


def test_tiff_tile_larger_than_the_limit_is_refused(monkeypatch):
    """OpenCV allocates whole tiles (up to 1 GB) even for a 16 x 16 image."""
    monkeypatch.setattr(image_decoding.cv2, "imdecode", _must_not_decode)
    match = f"declares tile 16384x16384 = 268435456 pixels.*{MAX_DECODED_PIXELS}"
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(tiff(16, 16, tile=(16384, 16384)))


def test_the_limit_is_a_parameter():
    with pytest.raises(ImageDecodeError, match="13x7 = 91 pixels, more than the limit of 90"):
        decode_image(png(13, 7), max_pixels=90)
    assert decode_image(png(13, 7), max_pixels=91).shape == (7, 13, 3)


@pytest.mark.parametrize(
    ("ext", "name"),
    [(".gif", "GIF"), (".jp2", "JPEG 2000"), (".ppm", "PNM"), (".pfm", "PFM"), (".ras", "Sun raster"),
     (".hdr", "Radiance HDR"), (".avif", "AVIF")],
)
def test_other_formats_opencv_could_decode_are_refused_by_name(ext, name, monkeypatch):
    try:
        data = _encoded(ext, image=np.repeat(np.repeat(RGB, 8, axis=0), 8, axis=1))  # 64x64
    except cv2.error:
        pytest.skip(f"this OpenCV build cannot write {ext}")
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV would
    monkeypatch.setattr(image_decoding.cv2, "imdecode", _must_not_decode)
    match = f"{name}.* not decoded; accepted formats: JPEG, PNG, BMP, WebP, TIFF"
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "no data"),
        (b"hello world", "not an image in an accepted format .*68 65 6c 6c"),
        (b"BM\0\0", "header ends early"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG has no frame header|header ends early"),
        (b"RIFF\0\0\0\0WEBPABCD", "unknown chunk"),
        (b"II*\0\x08\0\0\0\0\0\0\0\0\0", "no width/height"),
        (png(0, 5), "declares 0x5 pixels"),
    ],
)
def test_broken_headers_say_what_is_wrong(data, match):
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(data)


def _with_exif_orientation(jpeg_bytes: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment (TIFF header, IFD0 with one Orientation entry) after SOI."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    exif = b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd
    return jpeg_bytes[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg_bytes[2:]


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_orientation_is_ignored_pixels_as_stored(orientation):
    """image_transport / cv_bridge decode pixels as stored: a 64x48 frame stays 64x48, matching its
    CameraInfo, whatever the Exif Orientation tag says."""
    rgb = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", rgb)
    plain = buf.tobytes()
    tagged = _with_exif_orientation(plain, orientation)
    rotated = cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_COLOR)
    assert rotated.shape[:2] != (48, 64) or orientation == 3  # OpenCV alone would rotate it
    assert not np.array_equal(rotated, cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR))
    for flags in (cv2.IMREAD_COLOR, cv2.IMREAD_UNCHANGED):
        np.testing.assert_array_equal(
            decode_image(tagged, flags), cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
        )


def test_training_readers_use_the_same_guard(tmp_path, monkeypatch):
    from dpt_perception.training.data.fileio import read_rgb
    from dpt_perception.training.data.ros_image import depth_msg_to_metres, image_msg_to_rgb
    from dpt_perception.training.data.sample import CorruptSampleError

    monkeypatch.setattr(image_decoding.cv2, "imdecode", _must_not_decode)
    with pytest.raises(ValueError, match="BMP header declares 9000x9000"):
        image_msg_to_rgb(types.SimpleNamespace(format="jpeg", data=bmp_rle8(9000, 9000)))
    with pytest.raises(ValueError, match="PNG header declares 30000x30000"):
        depth_msg_to_metres(types.SimpleNamespace(format="16UC1; png", data=png(30000, 30000)))
    path = tmp_path / "bomb.png"
    path.write_bytes(tiff(9000, 9000))
    with pytest.raises(CorruptSampleError, match="TIFF header declares 9000x9000"):
        read_rgb(path)


# ---- the node's decoder (sensor_msgs/CompressedImage, raw and image_transport names alike) -----


@pytest.mark.parametrize("claimed", ["png", "jpeg", "rgb8; jpeg compressed bgr8"])
@pytest.mark.parametrize("kind", BUILDERS)
def test_compressed_image_bombs_of_every_format_are_refused_before_decoding(kind, claimed, monkeypatch):
    pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
    from sensor_msgs.msg import CompressedImage

    from dpt_perception.ros.image_conversion import ImageConversionError, compressed_to_rgb8

    fmt, build = BUILDERS[kind]
    side = min(16383, FIELD_LIMIT.get(kind, 65535))
    msg = CompressedImage(format=claimed)
    msg.data = build(side, side)
    monkeypatch.setattr(image_decoding.cv2, "imdecode", _must_not_decode)
    match = f"{fmt} header declares {side}x{side} = .*{MAX_DECODED_PIXELS}"
    with pytest.raises(ImageConversionError, match=match):
        compressed_to_rgb8(msg)


def test_compressed_image_with_exif_orientation_keeps_its_stored_size():
    pytest.importorskip("rclpy", reason="rclpy is not installed (run scripts/setup.sh)")
    from sensor_msgs.msg import CompressedImage

    from dpt_perception.ros.image_conversion import compressed_to_rgb8

    rgb = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format="jpeg")
    msg.data = buf.tobytes()
    plain = compressed_to_rgb8(msg)
    msg.data = _with_exif_orientation(buf.tobytes(), 6)
    assert compressed_to_rgb8(msg).shape == (48, 64, 3)
    np.testing.assert_array_equal(compressed_to_rgb8(msg), plain)


MAGIC = [
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", b"\xff\xd8\xff", b"BM", b"RIFF\0\0\0\0WEBP", b"RIFF\0\0\0\0WEBPVP8X",
    b"II*\0", b"MM\0*", b"II+\0", b"MM\0+", b"GIF89a", b"",
]


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(MAGIC), st.binary(max_size=120))
def test_any_bytes_after_a_known_signature_decode_or_raise_image_decode_error(magic, tail):
    try:
        image = decode_image(magic + tail)
    except ImageDecodeError as exc:
        assert str(exc)
        return
    fmt, width, height = declared_image_size(magic + tail)
    assert image.shape == (height, width, 3)
