"""bench/stress_inputs.py's bomb payloads are what they claim: each format's header, read by the
decoder's own parser, declares more pixels than MAX_DECODED_PIXELS (so the traffic figures in
docs/reliability.md measure refusals of real bombs, not of unparsable bytes)."""
import importlib.util
from pathlib import Path

import pytest

from dpt_perception.inference.image_decoding import MAX_DECODED_PIXELS, ImageDecodeError, decode_image

BENCH = Path(__file__).resolve().parents[1] / "bench" / "stress_inputs.py"


def _bench():
    spec = importlib.util.spec_from_file_location("stress_inputs", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["JPEG", "PNG", "BMP", "WebP", "TIFF", "TIFF tile"])
def test_every_bomb_payload_declares_too_many_pixels_in_its_own_format(name):
    data = _bench()._payloads(9000)[name]
    assert len(data) < 2048
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    message = str(info.value)
    assert f"{name.split()[0]} header declares" in message, message
    declared = int(message.split(" = ")[1].split()[0])
    assert declared > MAX_DECODED_PIXELS, message
