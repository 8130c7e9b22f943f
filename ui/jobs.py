"""A process-wide first-come, first-served queue of long computations, with positions.

Each computation takes a ticket; at most ``slots`` tickets run at once (None: no bound, nobody waits),
the rest wait in order of arrival and are told how many jobs are ahead of them. A ticket whose owner
is gone (its browser session ended) is dropped from the queue by whoever looks next, so it neither
runs nor holds up those behind it. No Streamlit here: ``ui.compute`` supplies the session checks.
"""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator


class JobDropped(Exception):
    """The ticket's owner went away while it waited (raised in the owner's own thread)."""


@dataclass(eq=False)
class Ticket:
    number: int
    alive: Callable[[], bool] = field(repr=False)


class JobQueue:
    def __init__(self, slots: int | None = 1):
        self.slots = slots
        self._cond = threading.Condition()
        self._numbers = itertools.count(1)
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []

    def take(self, alive: Callable[[], bool] = lambda: True) -> Ticket:
        """A ticket at the end of the queue; ``alive()`` says whether its owner is still there."""
        with self._cond:
            ticket = Ticket(next(self._numbers), alive)
            self._waiting.append(ticket)
            return ticket

    def _drop_dead(self) -> None:
        """Remove waiting tickets whose owner has gone (under the lock)."""
        alive = [t for t in self._waiting if _is_alive(t)]
        if len(alive) != len(self._waiting):
            self._waiting[:] = alive
            self._cond.notify_all()

    def ahead(self, ticket: Ticket) -> int:
        """Jobs ahead of ``ticket``: those running and those that arrived before it (0 once it runs)."""
        with self._cond:
            self._drop_dead()
            if ticket not in self._waiting:
                return 0
            return len(self._running) + self._waiting.index(ticket)

    def _may_start(self, ticket: Ticket) -> bool:
        free = len(self._waiting) if self.slots is None else self.slots - len(self._running)
        return self._waiting.index(ticket) < free

    def wait(self, ticket: Ticket, on_wait: Callable[[int], None] = lambda n: None, poll: float = 0.5) -> None:
        """Block until ``ticket`` may run. ``on_wait(jobs ahead)`` is called before each pause (it may raise to
        give up; the caller then releases the ticket). Raises JobDropped when the owner has gone."""
        while True:
            with self._cond:
                self._drop_dead()
                if ticket not in self._waiting and ticket not in self._running:
                    raise JobDropped(f"job {ticket.number} was dropped: its session ended")
                if self._may_start(ticket):
                    self._waiting.remove(ticket)
                    self._running.append(ticket)
                    return
                n = len(self._running) + self._waiting.index(ticket)
            on_wait(n)  # outside the lock: it draws (Streamlit) and may raise
            with self._cond:
                self._cond.wait(timeout=poll)

    def release(self, ticket: Ticket) -> None:
        """Done, failed or given up: leave the queue (running or waiting) and wake those behind."""
        with self._cond:
            for line in (self._running, self._waiting):
                if ticket in line:
                    line.remove(ticket)
            self._cond.notify_all()

    @contextmanager
    def slot(self, alive: Callable[[], bool] = lambda: True,
             on_wait: Callable[[int], None] = lambda n: None, poll: float = 0.5) -> Iterator[Ticket]:
        """Take a ticket, wait for a turn, run the block, and leave the queue however the block ends."""
        ticket = self.take(alive)
        try:
            self.wait(ticket, on_wait, poll)
            yield ticket
        finally:
            self.release(ticket)

    def snapshot(self) -> tuple[int, int]:
        """(running, waiting): for tests and status lines."""
        with self._cond:
            self._drop_dead()
            return len(self._running), len(self._waiting)


def _is_alive(ticket: Ticket) -> bool:
    try:
        return bool(ticket.alive())
    except Exception:  # noqa: BLE001 - an owner that cannot even be asked is gone
        return False
