"""What every command shares: the progress bar on stderr, and how a failure is reported."""

from __future__ import annotations

import shlex
import sys
import time
from typing import Callable

from steering.errors import debug, internal_line, user_message, write_log


def internal_error_line(e: BaseException, out: str | None, argv: list[str] | None = None) -> str:
    """Write ``e``'s traceback under ``<out or results>/logs/`` and return the one line to print."""
    command = "python -m steering " + shlex.join(sys.argv[1:] if argv is None else argv)
    return internal_line(e, write_log(e, out or "results", context=command))


def guarded(command: Callable[[], int], out: str | None, argv: list[str] | None = None) -> int:
    """Run one command. Bad input (an InputError, or an OSError the user can fix) is one ``error:`` line,
    exit 2; anything else is a bug: one line naming the log with its traceback, exit 1 (STEERING_DEBUG=1
    re-raises it instead)."""
    try:
        return command()
    except Exception as e:  # noqa: BLE001 - KeyboardInterrupt and SystemExit are BaseException and pass
        message = user_message(e)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return 2
        if debug():
            raise
        print(f"error: {internal_error_line(e, out, argv)}", file=sys.stderr)
        return 1


class Bar:
    """A small progress bar with ETA on stderr, one line per phase."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.phase, self.t0 = stream, None, 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.time()
        if phase != self.phase:
            if self.phase is not None:
                self.stream.write("\n")
            self.phase, self.t0 = phase, now
        frac = done / max(total, 1)
        eta = (now - self.t0) / frac * (1 - frac) if frac > 0 else 0
        filled = int(30 * frac)
        self.stream.write(f"\r{phase:>5} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                          f"{now - self.t0:5.1f}s elapsed, ETA {eta:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.phase is not None:
            self.stream.write("\n")
            self.stream.flush()
