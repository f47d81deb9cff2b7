"""The one decoder of compressed images (CompressedImage payloads, dataset files): sizes checked first.

OpenCV's ``imdecode`` picks its decoder from the payload's first bytes, not from any format name,
and allocates whatever the header declares: a few hundred bytes of BMP, WebP, TIFF or PNG can
declare 9000 x 9000 pixels (gigabytes while decoding), and OpenCV's own limit is 2^30 pixels.
So only formats whose header is read here are decoded: JPEG, PNG, BMP, WebP and TIFF. Their
declared width x height (and a TIFF's tile size) must be at most `MAX_DECODED_PIXELS`; anything
else (GIF, JPEG 2000, AVIF, PNM, HDR, ...) is refused by name with the accepted list, before a
byte is decoded. Pixels come back as stored, EXIF orientation ignored (as image_transport and
cv_bridge decode), so the frame's width and height are the header's and the CameraInfo's.
"""

from __future__ import annotations

from typing import NoReturn

import cv2
import numpy as np

# Largest decoded frame accepted (64 Mpx, 192 MB as 8-bit RGB): well above any camera.
MAX_DECODED_PIXELS = 1 << 26
DECODED_FORMATS = ("JPEG", "PNG", "BMP", "WebP", "TIFF")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0..SOF15 without DHT C4, JPG C8 and DAC CC) carry the size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# JPEG markers without a length field: TEM, RST0..7, SOI.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}
# Formats OpenCV can decode that are refused here, by their first bytes (for the error message).
_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"PF", "PFM"),
    (b"Pf", "PFM"),
    *((f"P{i}".encode(), "PNM") for i in range(1, 8)),
)
# TIFF tags and field types read here.
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_TILE_WIDTH, _TIFF_TILE_HEIGHT = 256, 257, 322, 323
_TIFF_SIZE_TAGS = (_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_TILE_WIDTH, _TIFF_TILE_HEIGHT)
_TIFF_INT_TYPES = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8 -> bytes


class ImageDecodeError(ValueError):
    """A payload that is not decoded: unknown or refused format, too large, truncated, corrupt."""


def _u(data: bytes, pos: int, size: int, order: str, signed: bool = False) -> int:
    if pos < 0 or pos + size > len(data):
        raise ImageDecodeError(f"header ends early (needs bytes {pos}..{pos + size} of {len(data)})")
    return int.from_bytes(data[pos : pos + size], order, signed=signed)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageDecodeError(f"JPEG marker expected at byte {pos}, found 0x{data[pos]:02x}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_STANDALONE:
            pos += 2
        elif marker in _JPEG_SOF:
            return _u(data, pos + 7, 2, "big"), _u(data, pos + 5, 2, "big")
        elif marker == 0xDA:
            break
        else:
            pos += 2 + _u(data, pos + 2, 2, "big")
    raise ImageDecodeError("JPEG has no frame header (SOF) before its image data")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: the canvas size, 24 bits each, minus one
        return _u(data, 24, 3, "little") + 1, _u(data, 27, 3, "little") + 1
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one, after the 0x2f signature
        bits = _u(data, 21, 4, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: 14 bits each after the frame tag and start code
        return _u(data, 26, 2, "little") & 0x3FFF, _u(data, 28, 2, "little") & 0x3FFF
    raise ImageDecodeError(f"WebP starts with an unknown chunk {chunk!r}")


def _tiff_size(data: bytes) -> tuple[int, int, tuple[int, int] | None]:
    order = "little" if data[:2] == b"II" else "big"
    big = _u(data, 2, 2, order) == 43  # BigTIFF: 8-byte offsets and counts
    count_size, entry_size, value_size = (8, 20, 8) if big else (2, 12, 4)
    ifd = _u(data, 8 if big else 4, 8 if big else 4, order)
    entries = _u(data, ifd, count_size, order)
    tags = {}
    for i in range(min(entries, (len(data) - ifd) // entry_size)):
        pos = ifd + count_size + i * entry_size
        tag, kind = _u(data, pos, 2, order), _u(data, pos + 2, 2, order)
        if tag in _TIFF_SIZE_TAGS and kind in _TIFF_INT_TYPES:
            tags[tag] = _u(data, pos + 4 + value_size, _TIFF_INT_TYPES[kind], order)
    if _TIFF_WIDTH not in tags or _TIFF_HEIGHT not in tags:
        raise ImageDecodeError("TIFF's first image has no width/height tags")
    tile = None
    if _TIFF_TILE_WIDTH in tags or _TIFF_TILE_HEIGHT in tags:
        tile = tags.get(_TIFF_TILE_WIDTH, 0), tags.get(_TIFF_TILE_HEIGHT, 0)
    return tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT], tile


def _header(data: bytes) -> tuple[str, int, int, tuple[int, int] | None]:
    """(format, width, height, TIFF tile size or None) declared by the header of `data`."""
    if data[:8] == _PNG_SIGNATURE:
        if data[12:16] != b"IHDR":
            raise ImageDecodeError("PNG does not start with its IHDR header chunk")
        return "PNG", _u(data, 16, 4, "big"), _u(data, 20, 4, "big"), None
    if data[:3] == b"\xff\xd8\xff":
        return ("JPEG", *_jpeg_size(data), None)
    if data[:2] == b"BM":
        if _u(data, 14, 4, "little") == 12:  # OS/2 1.x core header: 16-bit sizes
            return "BMP", _u(data, 18, 2, "little"), _u(data, 20, 2, "little"), None
        # Windows headers: signed 32-bit; a negative height means rows stored top-down.
        return "BMP", _u(data, 18, 4, "little", True), abs(_u(data, 22, 4, "little", True)), None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("WebP", *_webp_size(data), None)
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return ("TIFF", *_tiff_size(data))
    _refuse(data)


def _refuse(data: bytes) -> NoReturn:
    """Raise for a payload that is none of DECODED_FORMATS, naming its format where known."""
    if data[4:8] == b"ftyp":
        name = f"ISO media ({data[8:12].decode('latin-1')!r}, e.g. AVIF/HEIF)"
    else:
        name = next((n for sig, n in _OTHER_SIGNATURES if data.startswith(sig)), None)
    accepted = ", ".join(DECODED_FORMATS)
    if name is not None:
        raise ImageDecodeError(f"{name} images are not decoded; accepted formats: {accepted}")
    raise ImageDecodeError(
        f"not an image in an accepted format ({accepted}); the data starts with {data[:8].hex(' ')!r}"
    )


def jpeg_truncated(data: bytes) -> bool:
    """A JPEG whose last scan has no end-of-image marker after it: libjpeg would "decode" it and
    fill the missing rows with grey. (0xFFD9 cannot occur inside entropy-coded data.)"""
    return data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


def declared_image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) the header of `data` declares, read without decoding.

    Raises ImageDecodeError for a format that is not decoded here (named, with the accepted
    list), or a header that ends early or holds no size."""
    fmt, width, height, _ = _header(bytes(data))
    return fmt, width, height


def decode_image(
    data: bytes, flags: int = cv2.IMREAD_COLOR, max_pixels: int = MAX_DECODED_PIXELS
) -> np.ndarray:
    """Decode `data` with ``cv2.imdecode(data, flags)`` (IMREAD_COLOR: BGR; IMREAD_UNCHANGED: as
    stored), after checking its declared size against `max_pixels`; orientation is ignored.

    Raises ImageDecodeError saying why (format refused, size and limit, truncated, corrupt)."""
    data = bytes(data)
    if not data:
        raise ImageDecodeError("no data")
    fmt, width, height, tile = _header(data)
    for what, (w, h) in (("", (width, height)), (" tile", tile or (1, 1))):
        if w * h > max_pixels:
            raise ImageDecodeError(
                f"{fmt} header declares{what} {w}x{h} = {w * h} pixels, more than the limit of "
                f"{max_pixels} ({len(data)} bytes)"
            )
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{fmt} header declares {width}x{height} pixels")
    if fmt == "JPEG" and jpeg_truncated(data):
        raise ImageDecodeError(
            f"truncated JPEG: no end-of-image marker after the last scan ({len(data)} bytes)"
        )
    if flags != cv2.IMREAD_UNCHANGED:  # UNCHANGED (-1) already ignores orientation
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise ImageDecodeError(f"could not decode {len(data)} bytes of {fmt}: {reason}") from None
    if image is None:
        raise ImageDecodeError(f"could not decode {len(data)} bytes of {fmt} ({width}x{height} declared)")
    if image.shape[:2] != (height, width):
        raise ImageDecodeError(
            f"{fmt} decoded to {image.shape[1]}x{image.shape[0]} pixels, its header declares {width}x{height}"
        )
    return image
