"""Every error class of the backend, in one place.

``InputError`` is the base of what a user can fix (a bad name, a bad number, a damaged file they
gave): entry points show it as one line (CLI exit 2, a message in the page). Anything else that
escapes is a bug: an internal error with its traceback written to a log.

They stay ``ValueError`` subclasses so that callers written against ``ValueError`` keep working.
The functions at the end are what every entry point (CLI, dashboard) uses to tell the two apart.
"""

from __future__ import annotations

import datetime
import errno
import os
import sys
import tempfile
import traceback
from pathlib import Path


class InputError(ValueError):
    """Bad input a user can fix; the message says what is wrong and what would be valid."""


class SweepError(InputError):
    """Sweep settings that cannot be used (layers, multipliers, split sizes, choices)."""


class DatasetError(InputError):
    """A dataset that cannot be found or read; the message names the file and the problem."""


class ModelError(InputError):
    """A model that cannot be found or loaded; the message says what is valid."""


class ValidationError(InputError):
    """Bad input found before any work; the message says what is valid."""


class NonFiniteError(InputError):
    """Numbers that are not finite where a fit needs finite ones."""


class TextError(InputError):
    """A neutral-text file that cannot be used; the message says what is expected."""


class ControlVectorError(InputError):
    """A control-vector or vector file that cannot be read or written."""


class UnavailableError(InputError, RuntimeError):
    """A feature this installation lacks (an optional package or program); the message says how to add it.

    Also a RuntimeError, as it was before there were error classes."""


class StoreError(InputError):
    """A stored file or name that cannot be used as asked: it exists (``--force``/``--replace`` replace
    it), it is damaged (the message names the file), or its registry entry points outside its folder."""


class FastPathUnsupported(RuntimeError):
    """The fast path cannot serve this model or item; the caller falls back to the reference path."""


# ---------------------------------------------------------------- telling bad input from bugs

# An OSError naming a file with one of these errnos is the environment, not a bug: a full or read-only
# disk, a missing or unreadable path the user gave, a name too long for the file system. The user can
# fix each, so it is shown like bad input (one line, CLI exit 2) instead of as an internal error.
USER_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "ENOENT", "EISDIR",
                                      "ENOTDIR", "ENAMETOOLONG") if hasattr(errno, name))
# A full disk or quota names no file when a write fails, and is still not a bug.
NO_FILENAME_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT") if hasattr(errno, name))


def user_message(e: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for an internal error (a bug)."""
    if isinstance(e, InputError):
        return " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.errno in USER_ERRNOS and (e.filename or e.errno in NO_FILENAME_ERRNOS):
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or os.strerror(e.errno)}{where}"
    return None


def debug() -> bool:
    """STEERING_DEBUG=1: every entry point re-raises internal errors instead of logging them."""
    return os.environ.get("STEERING_DEBUG", "").strip() not in ("", "0")


def write_log(e: BaseException, results_dir: str | os.PathLike | None, context: str = "") -> Path | None:
    """Write ``e``'s traceback to ``<results_dir>/logs/internal-<UTC time>-<pid>.log`` (else the system
    temp dir); the path written, or None when neither could be written."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = f"internal-{now:%Y%m%dT%H%M%S.%fZ}-{os.getpid()}.log"
    text = (f"{now.isoformat()} pid {os.getpid()} python {sys.version.split()[0]}\n{context}\n\n"
            + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    for folder in ([Path(results_dir) / "logs"] if results_dir else []) + [Path(tempfile.gettempdir())]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def internal_line(e: BaseException, log: Path | None) -> str:
    """One line saying that ``e`` is an internal error and where its traceback is."""
    what = " ".join(f"{type(e).__name__}: {e}".split())[:300]
    where = f"the traceback is in {log}" if log else "no log could be written; STEERING_DEBUG=1 shows the traceback"
    return f"internal error, not a problem with your input ({what}); {where}"
