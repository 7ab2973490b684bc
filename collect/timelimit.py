"""A wall-clock limit for a sweep: stop claiming cells, checkpoint the running one, exit cleanly.

``collect run --time-limit MINUTES`` builds a :class:`Deadline`. The sweep checks it before it
claims each cell. Inside a cell, the training loop's checkpoint callback
(:func:`collect.probe.run_cell`'s ``checkpoint=``) is wrapped by :meth:`Deadline.guard`: once the
limit has passed, the callback saves the cell's training state as its checkpoint
(``cells/<slug>.partial.pt``) and raises :class:`TimeLimitReached`. The sweep then merges what
finished. The next ``collect run`` continues the cut cell from that checkpoint, so a run cut by
the limit and resumed ends with the dataset of an uninterrupted run.

A signal ends a sweep the same way (:func:`stop_on_signals`): SIGTERM (a batch scheduler's
preemption, a machine shutting down) or a first Ctrl-C expire the deadline, so the running
cells save their state and what finished is merged; a second Ctrl-C stops at once.

The clock is injectable (``clock=``), so the behaviour is testable without wall-clock races.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from collect.errors import CollectError


class TimeLimitReached(BaseException):  # noqa: N818 - a signal like KeyboardInterrupt, not an error
    """Raised inside a cell when the sweep's time limit has passed (its state is saved first).

    It derives from :class:`BaseException`, as :class:`KeyboardInterrupt` does, because
    :func:`collect.probe.run_cell` records every :class:`Exception` as a ``failed`` cell: a cell
    cut by the time limit has not failed, it continues from its checkpoint next time.
    """


class TickingClock:
    """A clock that advances one second each time it is read.

    A :class:`Deadline` on it falls at the same point of the work on every machine, however
    fast it runs.

    ``Deadline(40 / 60, clock=TickingClock(), poll_seconds=0.0)`` cuts a sweep at the 40th
    reading of the clock, which the tests (and ``benchmarks/resume_exactness.py``) use to cut
    cells without wall-clock races.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        """Advance one second and return the time."""
        self.now += 1.0
        return self.now


class Deadline:
    """A point in time after which a sweep stops.

    Parameters
    ----------
    minutes : float
        Time allowed from now; ``>= 0``.
    clock : callable, default :func:`time.monotonic`
        Returns the current time in seconds (tests pass a fake clock).
    poll_seconds : float, default 5.0
        How often a running cell looks at the clock (its checkpoint callback is called this
        often). The limit is overrun by at most this, plus one training step, plus the cell's
        final measurements when the limit passes during them.
    """

    def __init__(
        self,
        minutes: float,
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = 5.0,
    ) -> None:
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise CollectError(f"a time limit is a number of minutes, got {minutes!r}.")
        if not math.isfinite(minutes) or minutes < 0:
            raise CollectError(
                f"the time limit must be a finite number of minutes >= 0, got {minutes!r}; "
                "leave --time-limit out to run without one."
            )
        if poll_seconds < 0:
            raise CollectError(f"poll_seconds must be >= 0, got {poll_seconds!r}.")
        self.minutes = float(minutes)
        self.clock = clock
        self.poll_seconds = float(poll_seconds)
        self.end = clock() + 60.0 * self.minutes
        self.reason = f"time limit of {self.minutes:g} min reached"
        self.signal: int | None = None  # the signal that expired it, if one did

    @classmethod
    def unlimited(
        cls, clock: Callable[[], float] = time.monotonic, poll_seconds: float = 5.0
    ) -> Deadline:
        """Make a deadline with no time limit, that only :meth:`expire` (a signal) ends."""
        deadline = cls(0, clock=clock, poll_seconds=poll_seconds)
        deadline.minutes, deadline.end, deadline.reason = math.inf, math.inf, "never reached"
        return deadline

    @classmethod
    def until(cls, end: float, poll_seconds: float = 5.0) -> Deadline:
        """Make the deadline another process of this machine holds: it ends at ``end``.

        ``end`` is a :attr:`end` read on :func:`time.monotonic` (one clock for every process
        of a machine): ``inf`` for a deadline without a time limit, ``-inf`` for one a signal
        expired.
        """
        if end == math.inf:
            return cls.unlimited(poll_seconds=poll_seconds)
        deadline = cls(0, poll_seconds=poll_seconds)
        deadline.end = float(end)
        deadline.minutes = max(0.0, (deadline.end - time.monotonic()) / 60.0)
        deadline.reason = "the time limit reached"
        return deadline

    def expire(self, reason: str, signum: int | None = None) -> None:
        """End the deadline now: the sweep stops as it does at a time limit.

        Parameters
        ----------
        reason : str
            What the sweep says when it stops (``"SIGTERM received"``).
        signum : int, optional
            The signal that ended it; the command line exits with ``128 + signum``.
        """
        self.end, self.reason, self.signal = -math.inf, reason, signum

    def passed(self) -> bool:
        """Tell whether the limit has passed."""
        return self.clock() >= self.end

    def guard(self, save: Callable[[dict], None], every: float) -> Callable[[dict], None]:
        """Wrap a cell's checkpoint callback so that it also enforces the limit.

        Parameters
        ----------
        save : callable
            Writes a training state as the cell's checkpoint.
        every : float
            Seconds between regular checkpoints (0: none; only the one at the limit).

        Returns
        -------
        callable
            The callback to give :func:`collect.probe.run_cell` with
            ``checkpoint_every=self.poll_seconds``: it saves the state every ``every`` seconds,
            and at the limit saves it and raises :class:`TimeLimitReached`.
        """
        last = self.clock()

        def check(state: dict) -> None:
            nonlocal last
            now = self.clock()
            if now >= self.end:
                save(state)
                raise TimeLimitReached
            if every and now - last >= every:
                save(state)
                last = now

        return check


#: the signals that stop a sweep cleanly
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(deadline: Deadline, signals=STOP_SIGNALS) -> Iterator[Deadline]:
    """Turn SIGTERM and a first Ctrl-C into the expiry of ``deadline`` while the block runs.

    The running cells then checkpoint at their next poll (at most ``deadline.poll_seconds``
    plus one training step later) and the sweep merges what finished. A second Ctrl-C (or any
    second signal) raises :class:`KeyboardInterrupt` at once. The previous handlers come back
    when the block ends. Outside the main thread (where Python delivers signals) it does
    nothing.

    Parameters
    ----------
    deadline : Deadline
        The sweep's deadline (:meth:`Deadline.unlimited` when it has no time limit).
    signals : tuple of signal.Signals
        The signals to catch.

    Yields
    ------
    Deadline
        ``deadline``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield deadline
        return

    def handle(signum: int, frame) -> None:
        if deadline.signal is not None:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        deadline.expire(f"{name} received", signum)
        print(
            f"collect: {name} received: the running cells save their state, then what "
            "finished is merged (Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield deadline
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
