"""Results store: one directory per run, written atomically, keyed by its settings."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from steering.core.damage import QUARANTINE, log, quarantine, read_or_quarantine  # noqa: F401 - one home for all
from steering.core.files import mkdir_robust, name_lock

FILES = ("propensities.parquet", "steerability.parquet", "train.parquet", "vectors.safetensors",
         "vectors.json", "manifest.json")
WRITER_FILE = ".writer"  # "<host> <pid>" of the process writing a temporary directory
STALE_SECONDS = 3600  # a temporary file with no writer record is abandoned after this long


def settings_key(settings: dict) -> str:
    """Stable hash of the settings that determine a run's numbers."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


READABLE_BYTES = 120  # of a run directory's name before its key: with ".partial-" and the key, far below 255


def run_dir_name(settings: dict) -> str:
    """``<dataset>--<model>--<key>`` of a run's settings (see ``bounded_run_name``)."""
    return bounded_run_name(settings["dataset_name"], settings["model"], settings_key(settings))


def bounded_run_name(dataset_name: str, model: str, key: str) -> str:
    """``<dataset>--<model>--<key>``; a readable part longer than READABLE_BYTES is cut (the key keeps the name
    unique), so a long dataset file name can never fail with "File name too long" after the work is done."""
    model = Path(str(model)).name.replace("/", "_")
    readable = f"{dataset_name}--{model}"
    if len(readable.encode()) > READABLE_BYTES:
        readable = readable.encode()[:READABLE_BYTES].decode("utf-8", "ignore") + "~"
    return f"{readable}--{key}"


def find_run(root: str | Path, settings: dict, on_damage: Callable[[str], None] | None = None) -> Path | None:
    """The stored run of these settings, verified; a damaged one is quarantined and reported as absent.

    ``on_damage`` receives a one-line message (default: a warning on the ``steering.store`` log).
    """
    root = Path(root)
    path = root / run_dir_name(settings)
    if not path.exists():
        return None
    reason = verify_run(path, settings_key(settings))
    if reason is None:
        return path
    moved = quarantine(root, path, reason)
    msg = (f"stored run {path.name} was damaged ({reason}); moved to {moved or QUARANTINE + '/'} "
           "and it will be computed again")
    (on_damage or log.warning)(msg)
    return None


def verify_run(path: str | Path, key: str | None = None) -> str | None:
    """Why a stored run cannot be served (None when it can). Cheap: every file parses, sizes and key match."""
    try:
        return _verify_run(Path(path), key)
    except FileNotFoundError:
        return "a file disappeared while it was checked"
    except (OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError) as e:
        return f"unreadable ({type(e).__name__})"  # wrong JSON types, unreadable files: damage, not a crash


def _verify_run(path: Path, key: str | None) -> str | None:
    import pyarrow.parquet as pq

    from steering.core.vectors import read_meta

    if not path.is_dir():
        return "not a directory"
    for name in FILES:
        if not (path / name).is_file():
            return f"{name} is missing"
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError, RecursionError) as e:
        return f"manifest.json is not valid JSON ({type(e).__name__})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("settings"), dict):
        return "manifest.json has no settings"
    if manifest.get("key") != path.name.rsplit("--", 1)[-1] or (key is not None and manifest.get("key") != key):
        return f"manifest key {str(manifest.get('key'))[:20]!r} does not match the directory"
    files = manifest.get("files") or {}
    if not isinstance(files, dict):
        return "manifest.json: 'files' is not a JSON object"
    for name, size in files.items():
        if not (path / name).is_file():
            return f"{name} is missing"
        if (path / name).stat().st_size != size:
            return f"{name} is {(path / name).stat().st_size} bytes, the manifest says {size}"
    # the run's own tables (test, diagnostics); analyses stored beside them later (side effects) check their own
    extra = sorted(n for n in files if n.endswith(".parquet") and n not in FILES) if files else \
        sorted(p.name for p in path.glob("*.parquet") if p.name not in FILES)
    for name in FILES + tuple(extra):
        try:
            if name.endswith(".parquet"):
                pq.read_metadata(path / name)
            elif name == "vectors.json":
                read_meta(path / name)
            elif name.endswith(".json"):
                json.loads((path / name).read_text())
            else:
                from safetensors import safe_open

                with safe_open(str(path / name), framework="pt") as f:
                    keys = list(f.keys())
                layers = manifest["settings"].get("layers")
                if isinstance(layers, list) and sorted(keys) != sorted(f"layer.{l}" for l in layers):
                    return f"{name} holds {len(keys)} vectors, the settings have {len(layers)} layers"
        except Exception as e:  # noqa: BLE001 - any failure to parse is damage
            return f"{name} does not parse ({type(e).__name__})"
    return None


def _mark_writer(directory: Path) -> None:
    (directory / WRITER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _abandoned(path: Path, owner: str | None) -> bool:
    """True when the writer recorded for ``path`` is a dead process on this host (or, unknown, it is old)."""
    if owner:
        parts = owner.split()
        if len(parts) == 2 and parts[0] == socket.gethostname() and parts[1].isdigit():
            return not _pid_alive(int(parts[1]))
    try:
        return time.time() - path.stat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def cleanup(root: str | Path) -> list[Path]:
    """Remove what interrupted or superseded writers left: ``.tmp-*`` directories of dead writers,
    ``.partial-*`` directories whose run is stored, and temporary batch files of dead writers.

    A ``.partial-*`` of an unfinished run is kept: running the same settings resumes from it.
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for d in root.iterdir():
        try:
            if d.name.startswith(".tmp-") and d.is_dir():
                owner = (d / WRITER_FILE).read_text() if (d / WRITER_FILE).is_file() else None
                if _abandoned(d, owner):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d)
            elif d.name.startswith(".partial-") and d.is_dir():
                final = root / d.name[len(".partial-"):]
                if final.is_dir() and verify_run(final) is None:
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d)
                    continue
                for f in d.iterdir():
                    if ".tmp" in f.name:  # ".batch-<n>.<pid>.<random>.tmp.npz" or vectors' "tmpXXXX.tmp"
                        parts = f.name.split(".")
                        owner = f"{socket.gethostname()} {parts[2]}" if f.name.startswith(".") \
                            and len(parts) > 2 and parts[2].isdigit() else None
                        if _abandoned(f, owner):
                            f.unlink(missing_ok=True)
                            removed.append(f)
        except OSError:
            continue  # another process removed it meanwhile
    return removed


class RunWriter:
    """Collects a run's files in a temporary sibling directory, then renames it into place.

    Nothing partial is ever visible under the final name: an error before
    ``commit`` removes the temporary directory.
    """

    def __init__(self, root: str | Path, settings: dict):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.final = self.root / run_dir_name(settings)
        self.key = settings_key(settings)
        cleanup(self.root)
        self.tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        _mark_writer(self.tmp)

    def path(self, name: str) -> Path:
        return self.tmp / name

    def parquet(self, name: str, df: pd.DataFrame) -> None:
        df.to_parquet(self.tmp / name, index=False)

    def json(self, name: str, obj: dict) -> None:
        (self.tmp / name).write_text(json.dumps(obj, indent=2, default=str))

    def commit(self) -> Path:
        """Rename the finished directory into place; when another writer stored the same run first, use theirs.

        The rename is atomic and fails when the final directory exists, so two
        writers never both think they stored the run and never see a half-written one.
        """
        self._record_sizes()
        (self.tmp / WRITER_FILE).unlink(missing_ok=True)
        for _ in range(3):
            try:
                os.rename(self.tmp, self.final)
                return self.final
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise
            reason = verify_run(self.final, self.key)
            if reason is None:  # another writer finished the same run first: keep theirs
                self.abort()
                return self.final
            quarantine(self.root, self.final, reason)
        raise OSError(errno.EEXIST, "cannot store the run: its directory keeps reappearing", str(self.final))

    def _record_sizes(self) -> None:
        """Add each file's size to the manifest, so a truncated file is caught when the run is served."""
        m = self.tmp / "manifest.json"
        if m.is_file():
            manifest = json.loads(m.read_text())
            manifest["files"] = {p.name: p.stat().st_size for p in sorted(self.tmp.iterdir())
                                 if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".")}
            m.write_text(json.dumps(manifest, indent=2, default=str))

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def list_runs(root: str | Path, damaged: list[tuple[str, str]] | None = None) -> list[dict]:
    """Manifests of the complete runs under root, newest first.

    A run whose manifest does not read is left out; ``damaged`` (when given) receives (name, reason)."""
    root = Path(root)
    runs = []
    if root.exists():
        for d in root.iterdir():
            m = d / "manifest.json"
            if d.is_dir() and not d.name.startswith(".") and m.exists():
                try:
                    info = json.loads(m.read_text())
                    if not isinstance(info, dict):
                        raise ValueError("not a JSON object")
                except (OSError, ValueError, RecursionError) as e:
                    if damaged is not None:
                        damaged.append((d.name, f"manifest.json does not parse ({type(e).__name__})"))
                    continue
                info["path"] = str(d)
                runs.append(info)
    return sorted(runs, key=lambda r: str(r.get("created", "")), reverse=True)


@contextlib.contextmanager
def run_lock(root: str | Path, settings: dict) -> Iterator[bool]:
    """Serialise writers of one run: a second identical sweep waits, then finds the first one's run stored.

    Re-entrant within a thread (``store_run`` inside ``run_sweep``); a read-only store is not locked."""
    name = run_dir_name(settings)

    def waiting() -> None:
        log.warning(f"another process is computing run {name}; waiting for it (its result is then read)")

    with name_lock(root, name, on_wait=waiting) as held:
        yield held


class Partial:
    """Finished pieces of an interrupted run, so that running it again resumes.

    Holds the trained vectors and each completed batch of the grid (``.npz``
    with the batch's example indices, read with ``allow_pickle=False``). It
    lives beside the run directories and is removed once the run is stored.
    """

    def __init__(self, root: str | Path, settings: dict):
        self.dir = Path(root) / f".partial-{run_dir_name(settings)}"
        cleanup(root)
        self.started = time.time()
        self.prior_seconds = self._read_seconds()  # compute time of earlier, interrupted attempts

    @property
    def vectors_path(self) -> Path:
        return self.dir / "vectors.safetensors"

    def _read_seconds(self) -> float:
        try:
            value = float(json.loads((self.dir / "seconds.json").read_text())["seconds"])
            return value if value >= 0 and value == value and value != float("inf") else 0.0
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0

    def total_seconds(self) -> float:
        """Compute time of this attempt plus every interrupted attempt before it."""
        return self.prior_seconds + time.time() - self.started

    def checkpoint(self) -> None:
        """Record the compute time so far (a resumed run's manifest then holds the total)."""
        self._atomic(lambda f: f.write(json.dumps({"seconds": round(self.total_seconds(), 3)}).encode()),
                     "seconds.json", ".seconds")

    def batches(self) -> dict[int, tuple[list[int], np.ndarray]]:
        out = {}
        if self.dir.exists():
            for f in self.dir.glob("batch-*.npz"):
                try:
                    number = int(f.stem.split("-")[1])
                    with np.load(f, allow_pickle=False) as z:
                        out[number] = (z["index"].tolist(), z["values"])
                except Exception:  # noqa: BLE001 - a damaged batch is computed again
                    f.unlink(missing_ok=True)
        return out

    def _atomic(self, write: Callable, name: str, prefix: str) -> None:
        """Write ``name`` through a uniquely named temporary file and an atomic replace.

        Another writer of the same run may clear the directory meanwhile (it
        stored the run): recreate it and try again.
        """
        for attempt in range(3):
            try:
                mkdir_robust(self.dir)
                fd, tmp = tempfile.mkstemp(prefix=f"{prefix}.{os.getpid()}.", suffix=".tmp", dir=self.dir)
                try:
                    with os.fdopen(fd, "wb") as f:
                        write(f)
                    os.replace(tmp, self.dir / name)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def save_batch(self, number: int, index: list[int], values: np.ndarray) -> None:
        self._atomic(lambda f: np.savez(f, index=np.asarray(index), values=values),
                     f"batch-{number}.npz", f".batch-{number}")
        self.checkpoint()

    def ensure_dir(self) -> Path:
        return mkdir_robust(self.dir)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
