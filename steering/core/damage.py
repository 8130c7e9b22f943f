"""Damaged stored files: moved to ``<root>/quarantine/`` with the reason, never served, computed again.

Every reader of a stored file goes through ``read_or_quarantine``: a file that does not parse or has
the wrong shape (a reader raises ``Damaged`` for wrong columns, keys or types) is moved aside with a
one-line note naming it (the ``steering.store`` log, or ``on_damage``), and the caller recomputes it.
Nothing damaged is deleted: quarantine/ keeps it, with REASON.txt, for a person to look at.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, TypeVar

QUARANTINE = "quarantine"  # damaged runs and files are moved here (with REASON.txt), never served
log = logging.getLogger("steering.store")
T = TypeVar("T")


class Damaged(Exception):
    """A stored file parses but does not hold what its reader expects; the message says what is wrong."""


def quarantine(root: str | Path, path: str | Path, reason: str) -> Path | None:
    """Move a damaged run directory or file to ``root/quarantine/`` with REASON.txt.

    Returns where it went; None if it was already gone (another process moved it first) or cannot be
    moved (a read-only store: it stays, and is still not served).
    """
    path = Path(path)
    qdir = Path(root) / QUARANTINE
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix=f"{path.name[:150]}-{stamp}-", dir=qdir))
    except OSError:
        return None
    try:
        if path.is_dir() and not path.is_symlink():
            os.replace(path, dest)  # dest is an empty directory: the rename replaces it atomically
        else:
            os.replace(path, dest / path.name)
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)
        return None
    try:
        (dest / "REASON.txt").write_text(f"{path}\n{reason}\n")
    except OSError:
        pass
    return dest


def describe(e: BaseException) -> str:
    """A short reason for a failed read: the message of ``Damaged``, else the exception's kind."""
    if isinstance(e, Damaged):
        return str(e)
    text = " ".join(str(e).split())[:240]
    return f"does not parse ({type(e).__name__}{': ' + text if text else ''})"


def report(root: str | Path, path: str | Path, reason: str, what: str = "stored file",
           on_damage: Callable[[str], None] | None = None, after: str = "it will be computed again") -> Path | None:
    """Quarantine ``path`` and say so in one line naming the file."""
    path = Path(path)
    moved = quarantine(root, path, reason)
    where = f"moved to {moved}" if moved else "it could not be moved (read-only?) and is not used"
    (on_damage or log.warning)(f"{what} {_shown(root, path)} is damaged ({reason}); {where}; {after}")
    return moved


def _shown(root: str | Path, path: Path) -> str:
    try:
        return str(path.relative_to(Path(root)))
    except ValueError:
        return str(path)


def read_or_quarantine(root: str | Path, path: str | Path, reader: Callable[[Path], T], what: str = "stored file",
                       on_damage: Callable[[str], None] | None = None) -> T | None:
    """``reader(path)``; None when the file is absent, or damaged (then quarantined, with a note)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return reader(path)
    except FileNotFoundError:
        return None  # removed meanwhile (another process quarantined or replaced it)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - any failure to read a stored file is damage
        report(root, path, describe(e), what, on_damage)
        return None


def require_columns(df, columns: Iterable[str], name: str, rows: int | None = None,
                    numeric: Iterable[str] = ()) -> None:
    """Raise ``Damaged`` unless the table has these columns (and, when given, this many rows, and numbers in
    the ``numeric`` columns)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise Damaged(f"{name} lacks column(s) {', '.join(missing[:4])}")
    if rows is not None and len(df) != rows:
        raise Damaged(f"{name} has {len(df)} rows, expected {rows}")
    wrong = [c for c in numeric if c in df.columns and (not is_numeric_dtype(df[c]) or is_bool_dtype(df[c]))]
    if wrong:
        raise Damaged(f"{name}: column(s) {', '.join(wrong[:4])} do not hold numbers")


def require_types(obj, types: dict[str, type | tuple], name: str) -> None:
    """Raise ``Damaged`` unless ``obj`` is a dict whose keys hold values of these types."""
    if not isinstance(obj, dict):
        raise Damaged(f"{name} is not a JSON object")
    for key, kind in types.items():
        if not isinstance(obj.get(key), kind) or (kind is int and isinstance(obj.get(key), bool)):
            raise Damaged(f"{name}: '{key}' is missing or has the wrong type")
