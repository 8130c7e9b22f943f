"""Registry of public dataset sources (data/sources.json) and a checksummed downloader.

The project ships no third-party data: `fetch(name)` downloads a file from a URL
pinned to a commit, checks its sha256 and stores it in a cache that mirrors the
source repositories' layout, so `load_dataset(name, data_dir=cache)` finds it
(and a CAA generate file finds its test split beside it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from steering.errors import DatasetError

__all__ = ["Source", "REGISTRY_PATH", "DEFAULT_CACHE_DIR", "list_sources", "fetch"]

REGISTRY_PATH = Path(__file__).resolve().parents[2] / "data" / "sources.json"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "steerability" / "datasets"
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024  # the largest source is ~1 MB; refuse runaway responses
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    format: str  # "persona" | "risk" | "caa" | "truthfulqa"
    sha256: str
    path: str  # relative destination inside the cache
    license: str = ""
    group: str = ""
    companions: tuple[str, ...] = ()  # fetched together (e.g. a CAA test split)
    # A file inside a .tar.gz / .zip (e.g. a PyPI sdist): the URL's archive is checked against archive_sha256,
    # then only this member is read out and checked against sha256.
    member: str = ""
    archive_sha256: str = ""


def list_sources(registry: str | Path = REGISTRY_PATH) -> list[Source]:
    """All registered sources, in registry order."""
    try:
        doc = json.loads(Path(registry).read_text(encoding="utf-8"))
        return [
            Source(
                name=e["name"],
                url=e["url"],
                format=e["format"],
                sha256=e["sha256"].lower(),
                path=e.get("path") or Path(urlparse(e["url"]).path).name,
                license=e.get("license", ""),
                group=e.get("group", ""),
                companions=tuple(e.get("companions", ())),
                member=e.get("member", ""),
                archive_sha256=e.get("archive_sha256", "").lower(),
            )
            for e in doc["sources"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{registry}: unreadable source registry ({e})") from None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_member(src: Source, archive: Path) -> bytes:
    """The bytes of one named member of a verified .tar.gz or .zip; nothing is extracted to disk."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                return z.read(src.member)
        with tarfile.open(archive, "r:*") as t:
            f = t.extractfile(src.member)
            if f is None:
                raise KeyError(src.member)
            return f.read()
    except (KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{src.name}: {src.member} not readable in {src.url} ({e})") from None


def _download(src: Source, dest: Path, timeout: float) -> None:
    """Stream to a temporary file beside dest, verify, then os.replace (atomic)."""
    if urlparse(src.url).scheme not in ("https", "http", "file"):
        raise DatasetError(f"{src.name}: unsupported URL scheme in {src.url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(src.url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DatasetError(f"{src.name}: download from {src.url} exceeds {MAX_DOWNLOAD_BYTES} bytes")
                h.update(chunk)
                out.write(chunk)
        expected = src.archive_sha256 if src.member else src.sha256
        if h.hexdigest() != expected:
            raise DatasetError(
                f"{src.name}: sha256 mismatch for {src.url}: got {h.hexdigest()}, expected {expected}; file removed"
            )
        if src.member:
            data = _read_member(src, tmp)
            got = hashlib.sha256(data).hexdigest()
            if got != src.sha256:
                raise DatasetError(f"{src.name}: sha256 mismatch for {src.member} in {src.url}: got {got}, "
                                   f"expected {src.sha256}")
            tmp.write_bytes(data)
        os.replace(tmp, dest)
    except OSError as e:  # URLError is an OSError
        raise DatasetError(f"{src.name}: download from {src.url} failed ({getattr(e, 'reason', e)})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _destination(src: Source, cache: Path) -> Path:
    """Where a source is stored: a file strictly inside the cache. '.', an absolute path or one that
    leaves the cache would write over the cache itself or outside it."""
    rel, root = Path(src.path), cache.resolve()
    dest = (cache / rel).resolve()
    why = ("is absolute" if rel.is_absolute() or rel.drive else "leaves the cache directory"
           if not dest.is_relative_to(root) else "is the cache directory itself" if dest == root else None)
    if why:
        raise DatasetError(f"{src.name}: path '{src.path}' in the source registry {why}: give a file path "
                           "relative to the cache")
    return dest


def fetch(
    name: str,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    *,
    registry: str | Path = REGISTRY_PATH,
    timeout: float = 60.0,
) -> Path:
    """Path of the verified local copy of source `name`, downloading it (and its companions) if needed."""
    sources = {s.name: s for s in list_sources(registry)}
    if name not in sources:
        raise DatasetError(f"unknown source '{name}'; known sources include: {', '.join(list(sources)[:8])}")
    src = sources[name]
    cache = Path(cache_dir).expanduser()
    for companion in src.companions:
        fetch(companion, cache, registry=registry, timeout=timeout)
    dest = _destination(src, cache)
    if dest.is_file():
        if _sha256_file(dest) == src.sha256:
            return dest
        dest.unlink()  # stale or corrupted copy: never leave a wrong file behind
    _download(src, dest, timeout)
    return dest
