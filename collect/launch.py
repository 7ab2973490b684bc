"""Send a sweep's pending cells to an existing job engine through submitit.

``submitit`` drives SLURM clusters (``cluster="slurm"``), runs jobs as local processes
(``"local"``) or in-process (``"debug"``). Every job runs a chunk of cells with
:func:`collect.sweep.run_chunk`, which writes the same atomic cell files as a local sweep, so a
cluster sweep resumes, merges and mixes with local runs like any other.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from collect.config import SweepConfig
from collect.errors import CollectError
from collect.sweep import extension_source, pending_cells, prepare_dir, run_chunk


def chunk(items: list, n_chunks: int) -> list[list]:
    """Split ``items`` into at most ``n_chunks`` contiguous, near-equal chunks."""
    n_chunks = max(1, min(n_chunks, len(items)))
    size, extra = divmod(len(items), n_chunks)
    out, start = [], 0
    for i in range(n_chunks):
        stop = start + size + (i < extra)
        out.append(items[start:stop])
        start = stop
    return out


def launch(
    config: SweepConfig,
    out_dir: str | Path,
    *,
    cluster: str = "slurm",
    jobs: int = 8,
    wait: bool = False,
    executor_params: dict[str, Any] | None = None,
    extend_from: str | Path | None = None,
) -> list:
    """Submit the pending cells of ``config`` as ``jobs`` array jobs.

    Parameters
    ----------
    config : SweepConfig
        The validated sweep.
    out_dir : path
        Sweep directory shared by all jobs (a shared filesystem on a cluster).
    cluster : {"slurm", "local", "debug"}
        submitit backend.
    jobs : int
        Number of jobs the pending cells are split into (cells of one model/task stay together).
    wait : bool
        Block until every job finished and raise if one failed.
    executor_params : dict, optional
        Passed to ``executor.update_parameters`` (e.g. ``slurm_partition``, ``gpus_per_node``,
        ``timeout_min``).
    extend_from : path, optional
        A finished sweep with a smaller budget to build on, as in
        :func:`collect.sweep.run_sweep` (checked here, before anything is submitted).

    Returns
    -------
    list of submitit.Job
    """
    try:
        import submitit
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise CollectError("launching needs submitit: pip install 'lawfit[collect]'.") from err
    if cluster not in ("slurm", "local", "debug"):
        raise CollectError(f"cluster must be 'slurm', 'local' or 'debug', got {cluster!r}.")
    if config.train.warm_start != "none":
        raise CollectError(
            f"collect launch runs cells in parallel jobs, but [train] warm_start = "
            f"{config.train.warm_start!r} starts each rank-r cell from its finished rank-r/2 "
            "cell; run this sweep with collect run (several workers may share its directory)."
        )
    out_dir = Path(out_dir)
    if extend_from is not None:
        extension_source(config, extend_from, out_dir)
        extend_from = str(extend_from)
    prepare_dir(config, out_dir)
    todo = pending_cells(config, out_dir)
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=out_dir / "logs", cluster=cluster)
    executor.update_parameters(**{"timeout_min": 240, **(executor_params or {})})
    chunks = chunk([asdict(k) for k in todo], jobs)
    config_dict = config.to_dict()
    raw = {
        "name": config_dict["name"],
        "grid": config_dict["grids"],
        "train": config_dict["train"],
        "data": {
            # the grid blocks carry the data_seeds axis; a sweep-wide [data] data_seed is kept
            # only where it was set (it is part of the settings' fingerprint)
            **({"data_seed": config.data_seed} if config.data_seed else {}),
            "source": config.source,
            "device": config.device,
            "dtype": config.dtype,
            "threads": config.threads,
            "pack_prompts": config.pack_prompts,
            "checkpoint_minutes": config.checkpoint_minutes,
        },
    }
    submitted = executor.map_array(
        run_chunk,
        [raw] * len(chunks),
        [str(out_dir)] * len(chunks),
        chunks,
        [extend_from] * len(chunks),
    )
    if wait:
        for job in submitted:
            job.result()
    return submitted
