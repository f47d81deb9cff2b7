"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Incoming images become numpy *views* of the message buffer wherever the layout allows it
(row padding is expressed with strides, not copied away); a copy happens only where the
pixels really change (colour conversion, byte swapping of big-endian data).
Every problem with a message raises `ImageConversionError` naming the field that is wrong
and what was expected, so the node can log it and keep serving.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from dpt_perception.inference.image_decoding import ImageDecodeError, decode_image

_HOST_IS_BIGENDIAN = sys.byteorder == "big"


class ImageConversionError(ValueError):
    """A message that cannot be converted (bad encoding, size, step or payload)."""


@dataclass(frozen=True)
class _Layout:
    dtype: str  # numpy scalar type of one channel
    channels: int  # numpy channels per pixel (yuv422: 2 bytes per pixel, seen as 2 channels)


# Input encodings we accept, by their sensor_msgs/image_encodings names.
_INPUT_LAYOUTS = {
    "rgb8": _Layout("u1", 3),
    "bgr8": _Layout("u1", 3),
    "rgba8": _Layout("u1", 4),
    "bgra8": _Layout("u1", 4),
    "mono8": _Layout("u1", 1),
    "mono16": _Layout("u2", 1),
    # YUV 4:2:2, two bytes per pixel. "yuv422" is ROS's historical name for UYVY byte order,
    # "yuv422_yuy2" the name for YUYV; both spellings are accepted.
    "uyvy": _Layout("u1", 2),
    "yuv422": _Layout("u1", 2),
    "yuyv": _Layout("u1", 2),
    "yuv422_yuy2": _Layout("u1", 2),
}

# Output encodings the node publishes.
_OUTPUT_LAYOUTS = {
    "32FC1": _Layout("f4", 1),
    "mono8": _Layout("u1", 1),
    "16UC1": _Layout("u2", 1),
    "rgb8": _Layout("u1", 3),
    "bgr8": _Layout("u1", 3),
    "rgba8": _Layout("u1", 4),
    "bgra8": _Layout("u1", 4),
    "mono16": _Layout("u2", 1),
    "uyvy": _Layout("u1", 2),
    "yuv422": _Layout("u1", 2),
    "yuyv": _Layout("u1", 2),
    "yuv422_yuy2": _Layout("u1", 2),
}

SUPPORTED_INPUT_ENCODINGS = tuple(_INPUT_LAYOUTS)
_UYVY = ("uyvy", "yuv422")
_YUYV = ("yuyv", "yuv422_yuy2")


def image_to_array(msg: Image, layouts: dict[str, _Layout] | None = None) -> np.ndarray:
    """The pixels of `msg` as an (H, W) or (H, W, C) array in host byte order.

    A view of `msg.data` (no copy) unless the message is in the non-host byte order of a
    multi-byte type, which needs one byte-swapping copy. Row padding (step > width * pixel
    size) is skipped through strides.
    """
    layouts = _INPUT_LAYOUTS if layouts is None else layouts
    layout = layouts.get(msg.encoding)
    if layout is None:
        raise ImageConversionError(
            f"unsupported image encoding {msg.encoding!r}; expected one of {sorted(layouts)}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image has no pixels: height={height}, width={width}")
    itemsize = np.dtype(layout.dtype).itemsize
    row_bytes = width * layout.channels * itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*bytes_per_pixel = {width}*{layout.channels * itemsize}"
            f" = {row_bytes} for encoding {msg.encoding!r}"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    # The last row needs only its pixels; a sender may or may not pad it (ROS sends step*height).
    needed = step * (height - 1) + row_bytes
    if buffer.size < needed:
        raise ImageConversionError(
            f"data holds {buffer.size} bytes, but {height} rows of step {step} need at least {needed}"
            f" (expected step*height = {step * height})"
        )
    if itemsize > 1 and (step % itemsize):
        raise ImageConversionError(f"step {step} is not a multiple of the {itemsize}-byte channel size")
    if msg.encoding in _UYVY + _YUYV and width % 2:
        raise ImageConversionError(f"YUV 4:2:2 image width must be even, got {width}")
    big_endian = bool(msg.is_bigendian)
    dtype = np.dtype(layout.dtype).newbyteorder(">" if big_endian else "<")
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    strides = (step, itemsize) if layout.channels == 1 else (step, layout.channels * itemsize, itemsize)
    view = np.ndarray(shape=shape, dtype=dtype, buffer=buffer.data, offset=0, strides=strides)
    if itemsize > 1 and big_endian != _HOST_IS_BIGENDIAN:
        return view.astype(dtype.newbyteorder("="))
    return view


def image_to_rgb8(msg: Image) -> np.ndarray:
    """Any supported input encoding -> (H, W, 3) uint8 RGB.

    rgb8 with unpadded rows comes back as a zero-copy view; everything else is converted
    once. mono16 maps its full range to 0..255 (value * 255 // 65535).
    """
    pixels = image_to_array(msg)
    encoding = msg.encoding
    if encoding == "rgb8":
        return pixels
    if encoding == "bgr8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    if encoding == "mono8":
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    if encoding == "mono16":
        scaled = (pixels.astype(np.uint32) * 255 // 65535).astype(np.uint8)
        return cv2.cvtColor(scaled, cv2.COLOR_GRAY2RGB)
    if encoding in _UYVY:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_YUV2RGB_UYVY)
    if encoding in _YUYV:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_YUV2RGB_YUYV)
    raise ImageConversionError(f"no RGB conversion for encoding {encoding!r}")  # unreachable


def compressed_to_rgb8(msg: CompressedImage) -> np.ndarray:
    """JPEG / PNG CompressedImage -> (H, W, 3) uint8 RGB (colour, grey and 16-bit PNGs alike).

    Decoded by `inference.image_decoding.decode_image`: the payload's declared size is checked
    against its pixel limit before decoding, and EXIF orientation is ignored (pixels as stored)."""
    fmt = msg.format.lower()
    # image_transport writes e.g. "rgb8; jpeg compressed bgr8"; plain "jpeg"/"png" is common too.
    if not any(name in fmt for name in ("jpeg", "jpg", "png")):
        raise ImageConversionError(f"unsupported CompressedImage format {msg.format!r}; expected jpeg or png")
    try:
        bgr = decode_image(msg.data, cv2.IMREAD_COLOR)
    except ImageDecodeError as exc:
        raise ImageConversionError(f"CompressedImage (format {msg.format!r}) not decoded: {exc}") from None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def message_to_rgb8(msg: Image | CompressedImage) -> np.ndarray:
    """Image or CompressedImage -> (H, W, 3) uint8 RGB."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb8(msg)
    return image_to_rgb8(msg)


def array_to_image(pixels: np.ndarray, encoding: str, header=None) -> Image:
    """A numpy array -> sensor_msgs/Image (host byte order, unpadded rows).

    The array's dtype and channel count must match the encoding (e.g. 32FC1: (H, W) float32).
    """
    layout = _OUTPUT_LAYOUTS.get(encoding)
    if layout is None:
        raise ImageConversionError(f"cannot publish encoding {encoding!r}; known: {sorted(_OUTPUT_LAYOUTS)}")
    expected_ndim = 2 if layout.channels == 1 else 3
    if pixels.ndim != expected_ndim or (layout.channels > 1 and pixels.shape[2] != layout.channels):
        raise ImageConversionError(
            f"{encoding} needs an array of shape "
            f"(H, W{'' if layout.channels == 1 else f', {layout.channels}'})"
            f", got {pixels.shape}"
        )
    if pixels.dtype != np.dtype(layout.dtype):
        raise ImageConversionError(f"{encoding} needs dtype {np.dtype(layout.dtype)}, got {pixels.dtype}")
    pixels = np.ascontiguousarray(pixels)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = _HOST_IS_BIGENDIAN
    msg.step = int(pixels.strides[0])
    msg.data = array.array("B", pixels.tobytes())
    return msg


def rgb8_to_image(rgb: np.ndarray, encoding: str = "rgb8", header=None) -> Image:
    """(H, W, 3) uint8 RGB -> an Image in one of the camera encodings (used by the demo camera).

    mono8/mono16 use OpenCV's BT.601 luma; mono16 spreads 0..255 over 0..65535 (x * 257).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    converters = {
        "rgb8": lambda x: x,
        "bgr8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGR),
        "rgba8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2RGBA),
        "bgra8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2BGRA),
        "mono8": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
        "mono16": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.uint16) * np.uint16(257),
    }
    if encoding not in converters:
        raise ImageConversionError(f"cannot encode RGB as {encoding!r}; expected one of {sorted(converters)}")
    return array_to_image(converters[encoding](rgb), encoding, header)


def output_image_to_array(msg: Image) -> np.ndarray:
    """Decode one of the node's output encodings (32FC1, mono8, 16UC1, rgb8...) for consumers/tests."""
    return image_to_array(msg, _OUTPUT_LAYOUTS)


def rgb8_to_compressed(
    rgb: np.ndarray, fmt: str = "jpeg", header=None, jpeg_quality: int = 90
) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> CompressedImage (jpeg or png), as image_transport would send it."""
    if fmt not in ("jpeg", "png"):
        raise ImageConversionError(f"compression format must be 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(
        ".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params
    )
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = array.array("B", encoded.tobytes())
    return msg
