"""``collect run --workers N``: processes sharing one sweep directory, merged once.

The workers are real processes (spawned), as on a GPU node: the tests run the command line.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from collect.config import config_from_dict
from collect.errors import CollectError
from collect.sweep import run_workers
from collect.sweep.workers import worker_threads
from collect.timelimit import Deadline

#: worker processes of its own, signalled mid-cell: `make test` runs these alone
pytestmark = pytest.mark.serial

ROOT = Path(__file__).resolve().parents[2]


def _collect(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "collect", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, **kwargs)


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(raw))
    return path


def _values(ds: xr.Dataset) -> xr.Dataset:
    """What a cell computes (its wall time and the merge's stamps aside)."""
    return ds.drop_vars(["wall_time"]).assign_attrs(created="", git_revision="")


def test_two_workers_give_the_dataset_one_process_gives(tmp_path, tiny_sweep):
    raw = tiny_sweep()
    sweep = _write(tmp_path, raw)
    one = _collect("run", str(sweep), "--out", str(tmp_path / "one"), "--no-progress")
    two = _collect("run", str(sweep), "--out", str(tmp_path / "two"), "--workers", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    assert "collect: 2 workers on" in two.stdout
    a = xr.load_dataset(tmp_path / "one" / "dataset.nc")
    b = xr.load_dataset(tmp_path / "two" / "dataset.nc")
    assert int(b.attrs["n_cells_done"]) == len(config_from_dict(raw).cells())
    xr.testing.assert_identical(_values(a), _values(b))
    assert not list((tmp_path / "two" / "cells").glob("*.claim"))
    # the API: nothing left to train, the workers stop at once and the parent merges once
    config = config_from_dict(raw)
    again = run_workers(
        config, tmp_path / "two", 2, Deadline.unlimited(), merge_to=tmp_path / "again.nc"
    )
    xr.testing.assert_identical(_values(again), _values(xr.load_dataset(tmp_path / "again.nc")))
    xr.testing.assert_identical(_values(again), _values(b))
    assert run_workers(config, tmp_path / "two", 1, Deadline.unlimited()) is None


def test_sigterm_to_the_parent_checkpoints_every_workers_cell_and_merges(tmp_path, tiny_sweep):
    """A scheduler's SIGTERM: each worker saves its running cell; the next run continues."""
    raw = tiny_sweep(
        train={
            "max_steps": 100_000,
            "log_every": 5,
            "stop_when_memorized": False,
            "patience": 10**9,
        },
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}],
    )
    raw["defaults"]["ranks"], raw["defaults"]["lengths"] = [1, 8], [20]
    sweep = _write(tmp_path, raw)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "collect", "run", str(sweep), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(list((out / "cells").glob("*.claim"))) < 2:  # both workers hold a cell
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.5)
        time.sleep(3)  # into their training loops
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert len(list((out / "cells").glob("*.partial.pt"))) == 2, stderr[-3000:]
    assert not list((out / "cells").glob("*.claim"))
    ds = xr.load_dataset(out / "dataset.nc")
    assert int(ds.attrs["n_cells_done"]) == 0 and ds.attrs["complete"] == "false"


def test_worker_threads_share_the_cores_unless_the_sweep_sets_them(tiny_sweep):
    raw = tiny_sweep()
    assert worker_threads(config_from_dict(raw), 2) == 1  # [data] threads = 1
    del raw["data"]["threads"]
    cores = os.cpu_count() or 1
    assert worker_threads(config_from_dict(raw), 2) == max(1, cores // 2)
    assert worker_threads(config_from_dict(raw), 10 * cores) == 1


def test_bad_worker_counts_and_a_shard_beside_workers_are_refused_before_any_work(
    tmp_path, tiny_sweep
):
    sweep = _write(tmp_path, tiny_sweep())
    for bad in ("0", "-1", "two", "1.5"):
        out = _collect("run", str(sweep), "--out", str(tmp_path / "x"), "--workers", bad)
        assert out.returncode == 2
        assert "expected an integer >= 1" in out.stderr, out.stderr
    out = _collect(
        "run", str(sweep), "--out", str(tmp_path / "y"), "--workers", "2", "--shard", "0/2"
    )
    assert out.returncode == 2
    assert "leave --shard 0/2 out" in out.stderr, out.stderr
    assert not (tmp_path / "y" / "cells").exists() or not list((tmp_path / "y" / "cells").iterdir())
    config = config_from_dict(tiny_sweep())
    with pytest.raises(CollectError, match="whole number >= 1"):
        run_workers(config, tmp_path / "z", 0, Deadline.unlimited())
    with pytest.raises(CollectError, match="sets progress itself"):
        run_workers(config, tmp_path / "z", 2, Deadline.unlimited(), progress=True)
    with pytest.raises(CollectError, match="sets batch_tokens itself"):
        run_workers(config, tmp_path / "z", 2, Deadline.unlimited(), batch_tokens=10)


def test_a_deadline_passes_to_another_process_by_its_end():
    limited = Deadline(2.0)
    copy = Deadline.until(limited.end, poll_seconds=1.0)
    assert copy.end == limited.end and not copy.passed()
    assert 1.9 < copy.minutes <= 2.0 and copy.poll_seconds == 1.0
    assert Deadline.until(Deadline.unlimited().end).end == float("inf")
    assert Deadline.until(time.monotonic() - 1).passed()
    expired = Deadline.unlimited()
    expired.expire("SIGTERM received", signal.SIGTERM)
    assert Deadline.until(expired.end).passed()  # a signalled parent's workers claim nothing
