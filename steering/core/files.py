"""Writing files safely: atomic replaces of the store's own files, no-clobber publishing of files a
user names, and locks that serialise two writers of one name.

Rule: a write never replaces a file it did not create unless asked (``force``); two writers of one
name are serialised (``name_lock``) or the second is refused with one line; identical concurrent work
both succeeds (every temporary file has a unique name, every publish is one rename or link).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from steering.errors import StoreError

LOCKS = ".locks"  # lock files live here, beside what they guard, while they are held
_held = threading.local()  # lock paths this thread holds: taking one again is a no-op (re-entrant)


def _lock_file(directory: Path, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]  # distinct names never share a lock file
    return directory / LOCKS / f"{safe}-{digest}.lock"


@contextlib.contextmanager
def name_lock(directory: str | Path, name: str, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold an exclusive OS lock (``flock``) on ``name`` within ``directory`` until the block ends.

    Another process or thread taking the same name waits; the lock goes with the process (exit,
    crash, kill -9). Yields True when locked, False when the directory cannot be written (a
    read-only store is still served; nothing is written there). ``on_wait`` is called once when
    the lock is busy, before waiting for it. The lock file is removed on release (nothing is left
    in the store): a waiter that then holds a removed file notices and takes the new one.
    """
    path = _lock_file(Path(directory), name)
    held: set = getattr(_held, "paths", None) or set()
    _held.paths = held
    if str(path) in held:
        yield True
        return
    fd = _acquire(path, on_wait)
    if fd is None:
        yield False
        return
    held.add(str(path))
    try:
        yield True
    finally:
        held.discard(str(path))
        try:
            path.unlink(missing_ok=True)  # while holding it: no one else can hold this file now
            os.rmdir(path.parent)  # the last holder tidies the folder (fails, harmlessly, when in use)
        except OSError:
            pass
        os.close(fd)  # releases the lock


def _acquire(path: Path, on_wait: Callable[[], None] | None) -> int | None:
    """An open, flock-ed descriptor of the lock file at ``path`` (None: the folder is read-only)."""
    warned = False
    while True:
        try:
            mkdir_robust(path.parent)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            continue  # the folder was tidied away between the mkdir and the open
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None and not warned:
                on_wait()
                warned = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder before us removed this file on release: lock the current one


def _temp_beside(path: Path) -> Path:
    """A new, uniquely named empty file in ``path``'s folder (two writers never share one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` then one atomic replace of ``path``: readers see the old file or the new one, whole.

    For the store's own files (it created them); user-named destinations go through ``publish``.
    """
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def refuse_existing(paths: list[Path], force: bool) -> None:
    """One line naming the first destination that exists, unless ``force``."""
    if force:
        return
    for p in paths:
        if p.exists() or p.is_symlink():
            raise StoreError(f"{p} exists: choose another destination, or pass --force to replace it")


def publish(dest: str | Path, write: Callable[[Path], None], force: bool = False) -> Path:
    """Write a user-named file: ``write(tmp)``, then link it into place only if ``dest`` does not exist
    (checked and claimed in one step, so a racing writer cannot slip in), or replace it when ``force``."""
    dest = Path(dest)
    refuse_existing([dest], force)
    tmp = _temp_beside(dest)
    try:
        write(tmp)
        if force:
            os.replace(tmp, dest)
        else:
            _link_new(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _link_new(tmp: Path, dest: Path) -> None:
    try:
        os.link(tmp, dest)  # fails with EEXIST when dest appeared meanwhile: nothing is replaced
    except FileExistsError:
        raise StoreError(f"{dest} exists: choose another destination, or pass --force to replace it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # a file system without hard links: claim the name exclusively, then replace the empty claim
        try:
            os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise StoreError(f"{dest} exists: choose another destination, or pass --force to replace it") from None
        os.replace(tmp, dest)


def mkdir_robust(path: str | Path) -> Path:
    """``mkdir -p`` that survives another process removing the directory at the same moment.

    ``Path.mkdir(exist_ok=True)`` raises FileExistsError when the directory exists at its mkdir and is
    gone at its check (another writer cleared it): create it again.
    """
    path = Path(path)
    for attempt in range(5):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return path
        except FileExistsError:
            if attempt == 4 or (path.exists() and not path.is_dir()):
                raise
    return path
