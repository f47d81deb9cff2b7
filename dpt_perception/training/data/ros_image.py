"""Decoding deserialised ``sensor_msgs/Image`` / ``CompressedImage`` messages into numpy (no ROS needed).

Messages are the objects ``rosbags`` typestores return (attributes ``height``, ``width``,
``encoding``, ``is_bigendian``, ``step``, ``data`` / ``format``, ``data``). Errors are
:class:`ValueError` with the reason; callers turn them into ``CorruptSampleError``.

Supported: colour ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8`` (also ``8UC1``/``8UC3`` as
mono/BGR, the cv_bridge reading) and CompressedImage JPEG, PNG, BMP, WebP or TIFF
(``inference.image_decoding``, size-checked); depth ``16UC1`` /
``mono16`` (millimetres by default), ``32FC1`` (metres), and CompressedImage depth as plain
16-bit PNG (``format`` "16UC1; png") or ``compressedDepth`` PNG (a 12-byte header: int32
format, float32 quantisation A and B; 16UC1 payloads are millimetres, 32FC1 payloads are
quantised inverse depth, ``depth = A / (value - B)``, 0 = invalid).
"""

from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

from dpt_perception.inference.image_decoding import ImageDecodeError, decode_image

_COLOUR_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}
_TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "8uc3": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
}


def header_stamp_ns(raw: bytes | memoryview) -> int:
    """``header.stamp`` (ns) of a CDR-serialised message whose first field is a std_msgs/Header.

    CDR: 4-byte encapsulation header (byte 1: 0 = big, 1 = little endian), then the Header's
    ``stamp.sec`` (int32) and ``stamp.nanosec`` (uint32). Reading it directly keeps indexing a
    bag from copying every image payload.
    """
    if len(raw) < 12:
        raise ValueError(f"message of {len(raw)} bytes is too short for a CDR header stamp")
    endian = "<" if raw[1] & 1 else ">"
    sec, nsec = struct.unpack_from(endian + "iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def _raw_pixels(msg: Any, channels: int, dtype: np.dtype) -> np.ndarray:
    """(H,W[,C]) view of an Image's data honouring ``step`` (row padding) and endianness."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = w * channels * itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if h == 0 or w == 0:
        raise ValueError(f"empty image {w}x{h}")
    if step < row_bytes:
        raise ValueError(f"step {step} is smaller than a row of {w} x {channels} x {itemsize} bytes")
    if data.size < step * (h - 1) + row_bytes:
        raise ValueError(f"data has {data.size} bytes, expected {step * h} for {w}x{h} step {step}")
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, row_bytes), strides=(step, 1))
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<"))
    pixels = pixels.astype(np.dtype(dtype).newbyteorder("="))
    return pixels.reshape(h, w, channels) if channels > 1 else pixels.reshape(h, w)


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """(H,W,3) uint8 RGB from an Image or CompressedImage message."""
    if hasattr(msg, "format"):
        try:
            bgr = decode_image(msg.data, cv2.IMREAD_COLOR)
        except ImageDecodeError as exc:
            raise ValueError(f"CompressedImage (format {msg.format!r}) not decoded: {exc}") from None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    enc = msg.encoding.lower()
    if enc not in _COLOUR_CHANNELS:
        raise ValueError(
            f"unsupported colour encoding {msg.encoding!r} (expected one of {sorted(_COLOUR_CHANNELS)})"
        )
    pixels = _raw_pixels(msg, _COLOUR_CHANNELS[enc], np.uint8)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    code = _TO_RGB[enc]
    return pixels if code is None else cv2.cvtColor(pixels, code)


def _compressed_depth_to_metres(msg: Any, depth_scale_16u: float) -> np.ndarray:
    fmt = msg.format.lower()
    data = bytes(msg.data)
    if "compresseddepth" in fmt:
        if "rvl" in fmt:
            raise ValueError(f"compressedDepth RVL is not supported (format {msg.format!r}); record PNG")
        if len(data) < 12:
            raise ValueError("compressedDepth message shorter than its 12-byte header")
        _, quant_a, quant_b = struct.unpack_from("<iff", data, 0)
        payload = data[12:]
    else:
        quant_a = quant_b = 0.0
        payload = data
    try:
        img = decode_image(payload, cv2.IMREAD_UNCHANGED)
    except ImageDecodeError as exc:
        raise ValueError(f"compressed depth (format {msg.format!r}) not decoded: {exc}") from None
    if img.ndim != 2 or img.dtype != np.uint16:
        raise ValueError(
            f"compressed depth (format {msg.format!r}) is not a decodable 16-bit single-channel PNG"
        )
    if fmt.startswith("32fc1"):
        if "compresseddepth" not in fmt:
            raise ValueError(
                f"32FC1 compressed depth needs the compressedDepth header (format {msg.format!r})"
            )
        inv = img.astype(np.float32)
        with np.errstate(divide="ignore"):
            return np.where(inv > 0, np.float32(quant_a) / (inv - np.float32(quant_b)), np.float32(0.0))
    return (img.astype(np.float64) * depth_scale_16u).astype(np.float32)


def depth_msg_to_metres(msg: Any, depth_scale_16u: float = 0.001) -> np.ndarray:
    """(H,W) float32 metres from a depth Image / CompressedImage (16-bit values x ``depth_scale_16u``)."""
    if hasattr(msg, "format"):
        return _compressed_depth_to_metres(msg, depth_scale_16u)
    enc = msg.encoding.lower()
    if enc in ("16uc1", "mono16"):
        return (_raw_pixels(msg, 1, np.uint16).astype(np.float64) * depth_scale_16u).astype(np.float32)
    if enc == "32fc1":
        return _raw_pixels(msg, 1, np.float32)
    raise ValueError(f"unsupported depth encoding {msg.encoding!r} (expected 16UC1, mono16 or 32FC1)")
