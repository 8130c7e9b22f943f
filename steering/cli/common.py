"""What every command shares: the progress bar on stderr (the numbers come from ``core.progress``), and
how a failure is reported."""

from __future__ import annotations

import shlex
import sys
from typing import Callable

from steering.core.progress import Measure, Progress
from steering.errors import debug, internal_line, user_message, write_log

WIDTH = 30


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
    """A progress bar with elapsed time and ETA on stderr, one line per stage (a phase, or a whole study)."""

    def __init__(self, stream=None, labels=None, measure: Measure | None = None, progress: Progress | None = None):
        self.stream = stream or sys.stderr  # looked up now: tests and wrappers replace sys.stderr
        self.model = progress or Progress(labels, measure)
        self.open, self.width = False, 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        snap = self.model.update(phase, done, total)
        if snap.new_stage and self.open:
            self.stream.write("\n")
            self.width = 0
        filled = int(WIDTH * snap.fraction)
        line = f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {snap.fraction:4.0%} {snap.text()}"
        self.stream.write(line.ljust(self.width))  # pad over a longer previous line
        self.stream.flush()
        self.open, self.width = True, len(line)

    def close(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def load_quietly(name: str, **kwargs):
    """Load a model with its loading bars held back: a bad input found later is still one line on stderr."""
    import contextlib
    import io

    from steering.engine.models import load_model

    with contextlib.redirect_stderr(io.StringIO()):
        return load_model(name, **kwargs)
