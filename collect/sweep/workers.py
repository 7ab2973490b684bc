"""Several worker processes on one sweep directory, started and awaited by one command.

``collect run --workers N`` starts ``N`` processes that each run :func:`run_sweep` on the same
directory without merging: each claims the next cell (or batch of cells) nobody holds, as
``N`` copies of ``collect run`` started by hand would. The parent waits for them and merges
once. On a GPU the processes share the device: a small model's training step is too short
to keep a large GPU busy from one process (its kernels wait on Python and on launches), and
processes overlap that waiting. On a CPU, each worker gets an equal share of the cores
(``[data] threads`` when the sweep sets it).

The processes share the parent's deadline: its end on this machine's monotonic clock, so a
``--time-limit`` counts from the command's start in every worker. A signal to the parent
(SIGTERM, Ctrl-C) is passed on to the workers, which checkpoint their running cells and stop
as a single ``collect run`` does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

from collect.config import SweepConfig
from collect.errors import CollectError
from collect.malloc import keep_freed_memory
from collect.sweep.batching import AUTO_BATCH_TOKENS
from collect.sweep.runner import merge_into
from collect.timelimit import Deadline

#: seconds between the parent's looks at its workers and its deadline
POLL_SECONDS = 0.5


def worker_threads(config: SweepConfig, workers: int) -> int:
    """Threads per worker: the sweep's ``[data] threads``, else an equal share of the cores."""
    if config.threads:
        return int(config.threads)
    return max(1, (os.cpu_count() or 1) // workers)


def run_workers(
    config: SweepConfig,
    out_dir: str | Path,
    workers: int,
    deadline: Deadline,
    *,
    merge_to: str | Path | None = None,
    **run_kwargs: Any,
):
    """Run ``workers`` processes of :func:`collect.sweep.run_sweep` on ``out_dir``, merge once.

    Parameters
    ----------
    config : SweepConfig
        The validated sweep.
    out_dir : path
        The sweep directory every worker writes its cells to.
    workers : int
        How many processes; ``>= 1``.
    deadline : Deadline
        The parent's deadline: the workers stop claiming cells at its end, and when a signal
        expires it the workers are sent SIGTERM (they checkpoint and stop).
    merge_to : path, optional
        Where the parent writes the merged dataset once every worker has stopped (the
        workers never merge: one merge, after the last cell).
    **run_kwargs
        Passed to :func:`run_sweep` in each worker (``batch_cells``, ``extend_from``, ...);
        not ``progress``, ``shard``, ``deadline`` or ``batch_tokens``, which this sets: each
        worker's ``"auto"`` batches hold ``1 / workers`` of
        :data:`collect.sweep.AUTO_BATCH_TOKENS` batch tokens, so that together they take the
        GPU memory one process would.

    Returns
    -------
    xarray.Dataset or None
        The merged dataset when ``merge_to`` is given, as :func:`run_sweep` returns it.

    Raises
    ------
    CollectError
        ``workers`` is not a positive integer, or a worker exited with an error (the cells
        the others finished stay written).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CollectError(f"--workers takes a whole number >= 1, got {workers!r}.")
    keep_freed_memory()  # a bad COLLECT_MALLOC fails here, before any worker starts
    clash = {"progress", "shard", "deadline", "batch_tokens"} & set(run_kwargs)
    if clash:
        raise CollectError(f"run_workers sets {', '.join(sorted(clash))} itself; leave it out.")
    # the workers' batches together hold what one process's would: no more GPU memory
    run_kwargs = {**run_kwargs, "batch_tokens": max(1, AUTO_BATCH_TOKENS // workers)}
    spawn = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    threads = worker_threads(config, workers)
    args = (config, str(out_dir), deadline.end, deadline.poll_seconds, threads, run_kwargs)
    procs = [
        spawn.Process(target=_worker, args=args, name=f"collect-worker-{i}") for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    _await(procs, deadline)
    failed = [f"{p.name} (exit status {p.exitcode})" for p in procs if p.exitcode != 0]
    if failed:
        raise CollectError(
            f"{', '.join(failed)} stopped with an error (its output above says why); the "
            f"cells the workers finished are written in {out_dir}. Run the same command again "
            "to continue."
        )
    return merge_into(config, Path(out_dir), merge_to)


def _await(procs: list, deadline: Deadline) -> None:
    """Wait for every worker; when a signal expires ``deadline``, send them SIGTERM, once.

    The workers ignore Ctrl-C themselves (the terminal sends it to them too) and treat any
    SIGTERM as a stop, never as a second signal, so a scheduler that signals the whole process
    group and this forwarding do not add up to an abrupt stop. A second Ctrl-C reaches the
    parent as :class:`KeyboardInterrupt` and kills the workers at once.
    """
    told = False
    try:
        while alive := [p for p in procs if p.is_alive()]:
            if deadline.signal is not None and not told:
                for proc in alive:
                    os.kill(proc.pid, signal.SIGTERM)
                told = True
            alive[0].join(POLL_SECONDS)
    except KeyboardInterrupt:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        raise


def _worker(
    config: SweepConfig,
    out_dir: str,
    end: float,
    poll_seconds: float,
    threads: int,
    run_kwargs: dict,
) -> None:
    """One worker: the sweep under the parent's deadline; SIGTERM stops it cleanly."""
    import torch

    from collect.sweep.runner import run_sweep

    torch.set_num_threads(threads)
    deadline = Deadline.until(end, poll_seconds=poll_seconds)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C does
    signal.signal(
        signal.SIGTERM,
        lambda signum, frame: deadline.expire("SIGTERM received", signum),
    )
    run_sweep(config, out_dir, progress=False, deadline=deadline, **run_kwargs)


__all__ = ["POLL_SECONDS", "run_workers", "worker_threads"]
