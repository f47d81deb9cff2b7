"""Weights registry, verified download and resolution, against a loopback HTTP server."""
import functools
import hashlib
import http.server
import threading

import pytest

from dpt_perception.inference import weights as W


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/'srv' on 127.0.0.1 (random port); yields (base_url, directory)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


PAYLOAD = b"not really a checkpoint, but bytes with a known hash\n" * 1000
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]


@pytest.fixture
def test_entry(monkeypatch):
    """A registry entry whose name carries the payload's real hash prefix."""
    entry = W.OfficialWeights(f"tiny-test-{PREFIX}", "tiny_test", "relative depth", "test file")
    monkeypatch.setitem(W.OFFICIAL_WEIGHTS, entry.name, entry)
    return entry


def test_registry_holds_the_six_official_files():
    assert len(W.OFFICIAL_WEIGHTS) == 6
    assert W.lookup("dpt_hybrid-midas-501f0c75").sha256_prefix == "501f0c75"
    assert W.lookup("dpt_large-ade20k-b12dca68.pt").alias == "dpt_large_ade20k"
    assert W.lookup("dpt_hybrid_nyu").filename == "dpt_hybrid_nyu-2ce69ec7.pt"
    assert W.DEFAULT_BASE_URL == "https://github.com/isl-org/DPT/releases/download/1_0"
    with pytest.raises(KeyError, match="unknown weights 'dpt_tiny'"):
        W.lookup("dpt_tiny")


def test_registry_agrees_with_the_model_presets():
    config = pytest.importorskip("dpt_perception.model.config")
    files = {p["file"] for p in config.PRESETS.values()}
    assert files == {w.filename for w in W.OFFICIAL_WEIGHTS.values()}
    assert set(config.PRESETS) == {w.alias for w in W.OFFICIAL_WEIGHTS.values()}


def test_registry_entries_come_from_the_one_release_table():
    from dpt_perception.model.config import PRESETS, DPTConfig

    for alias, preset in PRESETS.items():
        entry = W.lookup(alias)
        config = DPTConfig.preset(alias)
        assert entry.filename == preset["file"] and entry.sha256_prefix == preset["file"][-11:-3]
        assert entry.task == ("segmentation" if config.heads == ["segmentation"] else
                              "metric depth" if config.depth_kind == "metric" else "relative depth")
        assert preset["data"] in entry.description
    assert W.lookup("dpt_hybrid_nyu").description == "ViT-Hybrid, fine-tuned on NYUv2, metres, net 480x640"


def test_load_model_by_name_downloads_once_only_when_asked(server, tmp_path, monkeypatch):
    import io

    import torch

    from dpt_perception.model import DPT, DPTConfig
    from dpt_perception.model.checkpoints import CheckpointError, load_model
    from dpt_perception.model.checkpoints.official import to_official_state_dict

    base_url, root = server
    torch.manual_seed(0)
    config = DPTConfig.tiny(heads=["depth"], aux_head=False, net_size=[64, 64])
    model = DPT(config).eval()
    buffer = io.BytesIO()
    torch.save(to_official_state_dict(model), buffer)
    data = buffer.getvalue()
    entry = W.OfficialWeights(f"tiny-official-{hashlib.sha256(data).hexdigest()[:8]}", "tiny_official",
                              "relative depth", "test file")
    monkeypatch.setitem(W.OFFICIAL_WEIGHTS, entry.name, entry)
    monkeypatch.setattr(W, "DEFAULT_BASE_URL", base_url)
    monkeypatch.setenv("DPT_PERCEPTION_CACHE", str(tmp_path / "cache"))
    (root / entry.filename).write_bytes(data)
    with pytest.raises(CheckpointError, match="not in"):
        load_model("tiny_official", preset=config)  # not cached, download not asked for
    loaded = load_model("tiny_official", preset=config, download=True)
    assert (tmp_path / "cache" / entry.filename).read_bytes() == data
    (root / entry.filename).unlink()  # from now on only the cache can answer
    again = load_model(entry.name, preset=config)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)["depth"]
        assert torch.equal(loaded(x)["depth"], expected) and torch.equal(again(x)["depth"], expected)


def test_download_verifies_and_caches(server, test_entry, tmp_path):
    base_url, root = server
    (root / test_entry.filename).write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    path = W.download_weights(test_entry.name, cache, base_url, progress=False)
    assert path == cache / test_entry.filename and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == [test_entry.filename]  # no temp files left
    # Cached: no second request needed (the server copy is gone).
    (root / test_entry.filename).unlink()
    assert W.resolve_weights("tiny_test", cache) == path
    W.verify_weights(path)


def test_corrupted_download_is_deleted_with_a_clear_error(server, tmp_path):
    base_url, root = server
    name = "dpt_hybrid-midas-501f0c75.pt"
    (root / name).write_bytes(PAYLOAD)  # wrong content for that name
    cache = tmp_path / "cache"
    with pytest.raises(W.WeightsVerificationError, match="does not start with 501f0c75"):
        W.download_weights("dpt_hybrid_midas", cache, base_url, progress=False)
    assert list(cache.iterdir()) == []


def test_http_errors_are_reported(server, tmp_path):
    base_url, _ = server
    with pytest.raises(RuntimeError, match="HTTP 404"):
        W.download_weights("dpt_large_midas", tmp_path / "cache", base_url, progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_url_with_explicit_prefix(server, tmp_path):
    base_url, root = server
    (root / "plain.bin").write_bytes(PAYLOAD)
    path = W.download_url(f"{base_url}/plain.bin", tmp_path / "plain.bin", PREFIX, progress=False)
    assert path.read_bytes() == PAYLOAD
    with pytest.raises(W.WeightsVerificationError):
        W.download_url(f"{base_url}/plain.bin", tmp_path / "other.bin", "00000000", progress=False)
    assert not (tmp_path / "other.bin").exists()


def test_resolve_weights(tmp_path):
    local = tmp_path / "mine.safetensors"
    local.write_bytes(b"x")
    assert W.resolve_weights(str(local)) == local
    with pytest.raises(FileNotFoundError, match="neither an existing file nor an official weights name"):
        W.resolve_weights(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="run `python -m dpt_perception.inference.weights download"):
        W.resolve_weights("dpt_hybrid_kitti", tmp_path / "empty", download=False)
    bad = tmp_path / "dpt_large-midas-2f21e586.pt"
    bad.write_bytes(b"corrupt")
    with pytest.raises(W.WeightsVerificationError):
        W.resolve_weights(bad, verify=True)


def test_cli_list_and_download(server, test_entry, tmp_path, capsys):
    base_url, root = server
    (root / test_entry.filename).write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    assert W.main(["download", test_entry.name, "--cache-dir", str(cache), "--base-url", base_url,
                   "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / test_entry.filename)
    assert W.main(["list", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert "dpt_hybrid_kitti-cb926ef4" in listing and f"tiny-test-{PREFIX}" in listing and "cached" in listing
    (root / "dpt_hybrid_nyu-2ce69ec7.pt").write_bytes(PAYLOAD)
    assert W.main(["download", "dpt_hybrid_nyu", "--cache-dir", str(cache), "--base-url", base_url,
                   "--no-progress"]) == 1
    assert "does not start with 2ce69ec7" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        W.main(["--help"])


def test_cli_name_alone_downloads_like_download_name(server, test_entry, tmp_path, capsys):
    """`ros2 run dpt_perception download_weights NAME`, the form the node's messages give."""
    base_url, root = server
    (root / test_entry.filename).write_bytes(PAYLOAD)
    cache = tmp_path / "cache"
    assert W.main(["tiny_test", "--cache-dir", str(cache), "--base-url", base_url, "--no-progress"]) == 0
    assert (cache / test_entry.filename).read_bytes() == PAYLOAD
    assert capsys.readouterr().out.strip() == str(cache / test_entry.filename)
    assert W.main(["no_such_weights", "--cache-dir", str(cache), "--base-url", base_url]) == 1
    assert "unknown weights 'no_such_weights'" in capsys.readouterr().err
    assert W.main(["list", "--cache-dir", str(cache)]) == 0
    assert "cached" in capsys.readouterr().out


def test_unreachable_download_says_the_three_ways_out(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(W.WeightsUnavailableError) as info:
        W.resolve_weights("dpt_hybrid_kitti", cache, base_url="http://127.0.0.1:9", progress=False)
    text = str(info.value)
    assert "ros2 run dpt_perception download_weights dpt_hybrid_kitti" in text
    assert str(cache / "dpt_hybrid_kitti-cb926ef4.pt") in text  # exactly where to copy it by hand
    assert "http://127.0.0.1:9/dpt_hybrid_kitti-cb926ef4.pt" in text  # and where it comes from
    assert "weights:=demo" in text
    assert not cache.exists() or list(cache.iterdir()) == []
