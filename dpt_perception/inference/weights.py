"""Official DPT checkpoints: registry, verified download into a cache, and name resolution.

The six files of the reference release live at
    https://github.com/isl-org/DPT/releases/download/1_0/<file>
(the release the DPT README links; its older links use the intel-isl organisation, which GitHub
redirects to isl-org). The 8 hex digits at the end of each file name are the start of the file's
SHA-256, so every download is verified against its own name. Downloads stream to a temporary
file in the cache directory, are hashed while streaming, and are renamed into place only when
the hash matches; a mismatch deletes the file and raises `WeightsVerificationError`.

CLI:  python -m dpt_perception.inference.weights list
      python -m dpt_perception.inference.weights download NAME [--cache-dir DIR] [--base-url URL]
      ros2 run dpt_perception download_weights NAME        (the name alone = download NAME)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dpt_perception.command_line import program_name
from dpt_perception.model.checkpoints.dispatch import DEMO_NAME, WEIGHTS_CACHE_ENV, weights_dir
from dpt_perception.model.config import PRESETS

DEFAULT_BASE_URL = "https://github.com/isl-org/DPT/releases/download/1_0"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class OfficialWeights:
    name: str  # file stem, e.g. "dpt_hybrid-midas-501f0c75"
    alias: str  # short name, e.g. "dpt_hybrid_midas" (the model presets use these)
    task: str  # "relative depth" | "metric depth" | "segmentation"
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"

    @property
    def sha256_prefix(self) -> str:
        return sha256_prefix_from_name(self.filename)


def _task(config: dict) -> str:
    if "segmentation" in config["heads"]:
        return "segmentation"
    return "metric depth" if config.get("depth_kind") == "metric" else "relative depth"


def _description(preset: dict) -> str:
    config = preset["config"]
    arch = {"vit_hybrid": "ViT-Hybrid", "vit_large": "ViT-Large", "vit_base": "ViT-Base"}[config["variant"]]
    output = {"segmentation": f"{config.get('num_classes')} classes", "metric depth": "metres",
              "relative depth": "relative inverse depth"}[_task(config)]
    h, w = config["net_size"]
    return f"{arch}, {preset['data']}, {output}, net {h if h == w else f'{h}x{w}'}"


# Built from the one registry of the release, dpt_perception.model.config.PRESETS.
OFFICIAL_WEIGHTS: dict[str, OfficialWeights] = {
    Path(p["file"]).stem: OfficialWeights(Path(p["file"]).stem, alias, _task(p["config"]), _description(p))
    for alias, p in PRESETS.items()
}


class WeightsVerificationError(RuntimeError):
    """A downloaded or cached file does not match the SHA-256 prefix in its name."""


class WeightsUnavailableError(RuntimeError):
    """An official checkpoint is not in the cache and could not be downloaded; the message says
    the three ways out (download command, file to copy by hand, the bundled demo model)."""


def unavailable_message(entry: OfficialWeights, cache: Path, url: str, reason: str) -> str:
    """The three ways out, naming the release by its short name however the file was asked for."""
    requested = entry.alias
    return (
        f"{entry.filename} is not in the weights cache and could not be downloaded ({reason}). Either:\n"
        f"  - download it where there is network: ros2 run dpt_perception download_weights {requested}\n"
        f"    (without ROS: python -m dpt_perception.inference.weights download {requested});\n"
        f"  - or copy the file by hand to {cache / entry.filename}\n"
        f"    (from {url}; ${WEIGHTS_CACHE_ENV} chooses another cache folder);\n"
        f"  - or start with the bundled demo model: weights:={DEMO_NAME} (small, trained on the synthetic "
        "demo scenes only)"
    )


def default_cache_dir() -> Path:
    return weights_dir()


def sha256_prefix_from_name(filename: str) -> str | None:
    """The hex digest prefix a file name carries ("x-501f0c75.pt" -> "501f0c75"), or None."""
    m = _HASH_IN_NAME.search(Path(filename).name)
    return m.group(1) if m else None


def lookup(name: str) -> OfficialWeights:
    """Registry entry by file stem, file name or alias."""
    key = name[:-3] if name.endswith(".pt") else name
    if key in OFFICIAL_WEIGHTS:
        return OFFICIAL_WEIGHTS[key]
    for w in OFFICIAL_WEIGHTS.values():
        if w.alias == key:
            return w
    known = ", ".join(f"{w.name} ({w.alias})" for w in OFFICIAL_WEIGHTS.values())
    raise KeyError(f"unknown weights {name!r}; known: {known}")


def pair_key(sources) -> str:
    """The cache name of a depth + segmentation pair, the same in either order: official names by
    their alias, paths by file stem + a hash of the absolute path (two files named alike differ)."""
    keys = []
    for source in sources:
        try:
            keys.append(lookup(str(source)).alias)
        except KeyError:
            path = Path(source).expanduser().resolve()
            keys.append(f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}")
    return "+".join(sorted(keys))


def distilled_target(sources, cache_dir: str | Path | None = None) -> Path:
    """Where the one-encoder student distilled from the pair `sources` is cached (our format)."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / "distilled" / f"{pair_key(sources)}.safetensors"


def distilled_path(sources, cache_dir: str | Path | None = None) -> Path | None:
    """The cached distilled checkpoint for the pair `sources`, or None when there is none yet."""
    target = distilled_target(sources, cache_dir)
    return target if target.is_file() and target.with_suffix(".json").is_file() else None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_url(url: str, dest: str | Path, expected_prefix: str | None = None, progress: bool = True,
                 timeout: float = 60.0) -> Path:
    """Stream `url` to `dest` through a temporary file, hashing on the way; the file is renamed into
    place only if its SHA-256 starts with `expected_prefix` (default: the prefix in dest's name;
    no check when the name has none). On any failure nothing is left behind."""
    dest = Path(dest)
    if expected_prefix is None:
        expected_prefix = sha256_prefix_from_name(dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http(s) URL by design)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise RuntimeError(f"download of {url} failed: {exc.reason}") from exc
        with response, os.fdopen(fd, "wb") as out:
            fd = -1
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name)
            try:
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
        actual = digest.hexdigest()
        if expected_prefix is not None and not actual.startswith(expected_prefix):
            raise WeightsVerificationError(
                f"{url}: SHA-256 {actual} does not start with {expected_prefix} (the prefix in the file "
                "name); the download is corrupt or not the expected file and was deleted")
        os.replace(tmp, dest)
    finally:
        if fd != -1:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()
    return dest


def download_weights(name: str, cache_dir: str | Path | None = None, base_url: str | None = None,
                     progress: bool = True, force: bool = False, timeout: float = 60.0) -> Path:
    """Download an official checkpoint (by file stem, file name or alias) into cache_dir and return
    its path; an already cached file is returned as is unless force=True."""
    entry = lookup(name)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / entry.filename
    if dest.is_file() and not force:
        return dest
    url = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/{entry.filename}"
    return download_url(url, dest, entry.sha256_prefix, progress, timeout)


def verify_weights(path: str | Path) -> None:
    """Check a file against the SHA-256 prefix in its name (no-op for names without one)."""
    path = Path(path)
    prefix = sha256_prefix_from_name(path.name)
    if prefix is None:
        return
    actual = file_sha256(path)
    if not actual.startswith(prefix):
        raise WeightsVerificationError(f"{path}: SHA-256 {actual} does not start with {prefix} "
                                       "(the prefix in its name)")


def resolve_weights(name_or_path: str | Path, cache_dir: str | Path | None = None, download: bool = True,
                    base_url: str | None = None, verify: bool = False, progress: bool = True) -> Path:
    """An existing file path is returned as is; a registry name resolves to the cached file,
    downloading it when missing (download=True). verify=True re-hashes an existing file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        if verify:
            verify_weights(candidate)
        return candidate
    try:
        entry = lookup(str(name_or_path))
    except KeyError:
        raise FileNotFoundError(f"{name_or_path!r} is neither an existing file nor an official weights name "
                                f"({', '.join(OFFICIAL_WEIGHTS)})") from None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cached = cache / entry.filename
    if cached.is_file():
        if verify:
            verify_weights(cached)
        return cached
    if not download:
        raise FileNotFoundError(f"{entry.filename} is not in {cache}; run `python -m "
                                f"dpt_perception.inference.weights download {entry.name}`")
    try:
        return download_weights(entry.name, cache, base_url, progress=progress)
    except WeightsVerificationError:
        raise
    except (RuntimeError, OSError) as exc:  # no network, HTTP error, unwritable cache
        url = f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}/{entry.filename}"
        reason = str(exc) or type(exc).__name__
        message = unavailable_message(entry, cache, url, reason)
        raise WeightsUnavailableError(message) from exc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("list", "download") and not argv[0].startswith("-"):
        argv.insert(0, "download")  # `download_weights NAME` (the name alone) downloads NAME
    parser = argparse.ArgumentParser(
        prog=program_name("dpt_perception.inference.weights", "download_weights"),
        description="List and download the official DPT checkpoints. A checkpoint name alone is short "
        "for `download NAME`.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the official checkpoints and whether they are cached")
    dl = sub.add_parser("download", help="download (and verify) one checkpoint")
    dl.add_argument("name", help="file stem (dpt_hybrid-midas-501f0c75), file name, or alias "
                                 "(dpt_hybrid_midas)")
    for p in (dl, sub.choices["list"]):
        p.add_argument("--cache-dir", default=None,
                       help=f"cache directory (default: ${WEIGHTS_CACHE_ENV} or ~/.cache/dpt_perception)")
    dl.add_argument("--base-url", default=DEFAULT_BASE_URL, help="release URL the file name is appended to")
    dl.add_argument("--force", action="store_true", help="download again even if cached")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    if args.command == "list":
        for w in OFFICIAL_WEIGHTS.values():
            state = "cached" if (cache / w.filename).is_file() else "-"
            print(f"{w.name:28s} {w.alias:18s} {w.task:15s} {state:7s} {w.description}")
        return 0
    try:
        path = download_weights(args.name, cache, args.base_url, progress=not args.no_progress,
                                force=args.force)
    except (KeyError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
