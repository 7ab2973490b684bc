"""What ``collect run`` shows while it works.

A bar over the sweep's cells, a bar inside each running cell (several when cells train
batched) (step, loss, share of target
tokens above p = 0.5, time left), one line per finished cell and a summary at the end.
Warnings that libraries emit while the bars are drawn (``warnings`` and ``logging``) are
printed above the bars instead of through them.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from collect.config import CellKey


def describe(key: CellKey) -> str:
    """Name a cell in a few words: ``phonebook sft mlp_block@20 r=4 l=256 s=0``.

    ``d=2`` names the target sequence when it is not the first; a carrier (``kv:4@27``) has
    no rank, so ``r=`` is left out for it.
    """
    from collect.carriers import parse_carrier

    rank = "" if parse_carrier(key.modules) is not None else f" r={key.rank}"
    content = f" d={key.data_seed}" if key.data_seed else ""
    return f"{key.task} {key.method} {key.modules}{rank} l={key.length} s={key.seed}{content}"


def cell_line(key: CellKey, result) -> str:
    """Summarise a finished cell in one line (status, stop, ΔL, exact match, time)."""
    text = f"{describe(key)}: {result.status}"
    if result.stop_reason:
        text += f" ({result.stop_reason} at step {result.steps})"
    if result.status != "ok":
        return text + (f": {result.error}" if result.error else "")
    return (
        f"{text}, ΔL {result.loss_reduction:.3g} nats/token, exact match "
        f"{result.exact_match:.2f}, {result.wall_time:.0f} s"
    )


class SweepProgress:
    """Bars and one-line summaries of a sweep run.

    Parameters
    ----------
    total : int
        Cells this worker has to go through (run, copied, or found finished meanwhile).
    label : str
        Label of the bar over cells.
    enabled : bool
        Draw the bars; the one-line summaries are printed either way.
    file
        Stream for bars and lines (default: standard error).
    """

    def __init__(self, total: int, label: str, enabled: bool = True, file=None) -> None:
        self.file = file if file is not None else sys.stderr
        self.enabled = enabled
        self.started = time.perf_counter()
        self.outcomes: Counter = Counter()
        self.stopped = ""  # why a time limit or a signal cut the run ("" if none did)
        self.cells = tqdm(total=total, desc=label, unit="cell", disable=not enabled, file=self.file)
        self.inner: dict[CellKey, tqdm] = {}  # the bar of each running cell

    def say(self, text: str) -> None:
        """Print a line above the bars."""
        tqdm.write(text, file=self.file)

    def status(self, text: str) -> None:
        """Show what the worker is doing now next to the cell bar (e.g. loading a model)."""
        self.cells.set_postfix_str(text)

    def skipped(self, why: str) -> None:
        """Count a cell that needed no training (copied, or finished by another worker)."""
        self.outcomes[why] += 1
        self.cells.update(1)

    def start_cell(self, key: CellKey, max_steps: int, first_step: int = 0) -> Callable:
        """Open the bar of one cell; return the callback for :func:`collect.probe.run_cell`."""
        self.status(describe(key))
        bar = self.inner[key] = tqdm(
            total=max_steps,
            initial=first_step,
            desc=describe(key),
            unit="step",
            leave=False,
            disable=not self.enabled,
            file=self.file,
        )

        def on_step(step: int, loss: float, frac_above: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix_str(f"loss {loss:.3f}, above 0.5: {frac_above:.0%}")

        return on_step

    def end_cell(self, key: CellKey, result) -> None:
        """Close the cell's bar and print its one-line summary."""
        self.close_cells([key])
        outcome = result.stop_reason if result.status == "ok" else result.status
        self.outcomes[outcome or result.status] += 1
        self.say(cell_line(key, result))
        self.cells.update(1)

    def close_cells(self, keys) -> None:
        """Close the bars of these cells (if open), without counting them."""
        for key in keys:
            bar = self.inner.pop(key, None)
            if bar is not None:
                bar.close()

    def close(self) -> None:
        """Close the bars and print what the run did."""
        self.close_cells(list(self.inner))
        self.cells.close()
        counts = ", ".join(f"{n} {what}" for what, n in self.outcomes.most_common())
        minutes = (time.perf_counter() - self.started) / 60
        if self.stopped:  # a time limit or a signal cut the run: say so, not "nothing to do"
            self.say(
                f"stopped after {minutes:.1f} min ({self.stopped}): "
                f"{counts or 'no cell finished'}; the same command continues the cut cells."
            )
            return
        self.say(f"done in {minutes:.1f} min: {counts or 'nothing to do'}.")


@contextlib.contextmanager
def warnings_above_bars(file=None) -> Iterator[None]:
    """Print library warnings and log records above the progress bars, not through them."""
    stream = file if file is not None else sys.stderr

    def show(message, category, filename, lineno, line=None, file=None):  # noqa: ARG001
        text = warnings.formatwarning(message, category, filename, lineno, line="")
        tqdm.write(text.rstrip("\n"), file=stream)

    with warnings.catch_warnings(), logging_redirect_tqdm():
        warnings.showwarning = show
        yield
