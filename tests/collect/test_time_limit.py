"""``collect run --time-limit``: stop at the limit, checkpoint the running cell, resume exactly.

The clock is a fake one that ticks once each time it is read, so where the limit falls does not
depend on how fast this machine is (no wall-clock races).
"""

import signal

import pytest
import xarray as xr

from collect.cli import main as collect_main
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.store import checkpoint_step, read_state, state_path
from collect.sweep import run_sweep
from collect.timelimit import Deadline, TickingClock, TimeLimitReached, stop_on_signals

#: the limit, in clock ticks: it falls inside a cell of the sweep below (the test checks it)
LIMIT_TICKS = 70


def _config_grid() -> list[dict]:
    """Six cells: long-context SFT (ranks 1, 8 × lengths 20, 40) and PhoneBook MemFT-OT."""
    return [
        {"tasks": ["long_context"], "random_ratios": [1.0]},
        {"tasks": ["phonebook"], "methods": ["memft_ot"], "ranks": [1]},
    ]


def _config(tiny_sweep):
    return config_from_dict(tiny_sweep(grid=_config_grid()))


def _strip(ds):
    return ds.drop_vars(["wall_time"]).assign_attrs(created="", git_revision="")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_sweep):
    out = tmp_path_factory.mktemp("unlimited")
    return run_sweep(_config(tiny_sweep), out, progress=False, merge_to=out / "dataset.nc")


def test_a_time_limited_run_stops_checkpoints_and_resumes_to_the_same_dataset(
    tmp_path, tiny_sweep, reference
):
    config = _config(tiny_sweep)
    out = tmp_path / "run"
    deadline = Deadline(LIMIT_TICKS / 60, clock=TickingClock(), poll_seconds=0.0)
    cut = run_sweep(config, out, progress=False, merge_to=out / "dataset.nc", deadline=deadline)

    n_cells = len(config.cells())
    assert 0 < cut.attrs["n_cells_done"] < n_cells
    assert cut.attrs["complete"] == "false"
    assert xr.load_dataset(out / "dataset.nc").attrs["n_cells_done"] == cut.attrs["n_cells_done"]
    partials = sorted((out / "cells").glob("*.partial.pt"))
    assert len(partials) == 1, "the limit must fall inside a cell, which leaves its checkpoint"
    assert not list((out / "cells").glob("*.claim")), "no claim may outlive the run"
    (cut_key,) = [k for k in config.cells() if state_path(out, k, "partial") == partials[0]]
    assert not (out / "cells" / f"{cut_key.slug()}.nc").exists()
    cut_step = int(read_state(out, cut_key, "partial")["state"]["step"])
    assert cut_step > 0
    # what the plan, the price and the design read: the step it resumes from, 0 elsewhere
    assert [checkpoint_step(out, k) for k in config.cells()].count(cut_step) == 1
    assert sum(checkpoint_step(out, k) for k in config.cells()) == cut_step

    resumed = run_sweep(config, out, progress=False, merge_to=out / "dataset.nc")
    assert resumed.attrs["complete"] == "true"
    assert not list((out / "cells").glob("*.partial.pt"))
    cell = xr.load_dataset(out / "cells" / f"{cut_key.slug()}.nc")
    assert cell.attrs["resumed_from_step"] == cut_step  # continued, not rerun from step 0
    xr.testing.assert_identical(_strip(resumed), _strip(reference))


def test_a_time_limited_batched_run_stops_checkpoints_and_resumes_to_the_same_dataset(
    tmp_path, tiny_sweep
):
    """The same with cells trained four at a time: every cell the limit cuts keeps its state."""
    raw = tiny_sweep(grid=_config_grid())
    raw["defaults"]["modules"] = ["mlp_block@2"]
    config = config_from_dict(raw)
    run = {"progress": False, "batch_cells": 4}
    unlimited = run_sweep(config, tmp_path / "ref", merge_to=tmp_path / "ref.nc", **run)
    out = tmp_path / "run"
    # each running cell reads the clock once a step: the first batch (two cells, 40 steps)
    # takes about 80 ticks, the limit falls inside the second
    deadline = Deadline(120 / 60, clock=TickingClock(), poll_seconds=0.0)
    cut = run_sweep(config, out, merge_to=out / "dataset.nc", deadline=deadline, **run)

    assert 0 < cut.attrs["n_cells_done"] < len(config.cells())
    partials = sorted((out / "cells").glob("*.partial.pt"))
    assert len(partials) >= 2, "the limit must fall inside a batch, which leaves its checkpoints"
    assert not list((out / "cells").glob("*.claim")), "no claim may outlive the run"
    cut_keys = [k for k in config.cells() if state_path(out, k, "partial") in partials]
    steps = {k: int(read_state(out, k, "partial")["state"]["step"]) for k in cut_keys}
    assert all(step > 0 for step in steps.values())

    resumed = run_sweep(config, out, merge_to=out / "dataset.nc", **run)
    assert resumed.attrs["complete"] == "true"
    assert not list((out / "cells").glob("*.partial.pt"))
    for key, step in steps.items():
        cell = xr.load_dataset(out / "cells" / f"{key.slug()}.nc")
        assert cell.attrs["resumed_from_step"] == step  # continued, not rerun from step 0
    # batches of other sizes sum in other orders: equal up to float32 rounding
    xr.testing.assert_allclose(_strip(resumed), _strip(unlimited), rtol=1e-4, atol=1e-5)
    xr.testing.assert_equal(resumed["steps"], unlimited["steps"])


def test_a_limit_already_passed_claims_no_cell(tmp_path, tiny_sweep):
    config = _config(tiny_sweep)
    out = tmp_path / "run"
    ds = run_sweep(config, out, progress=False, merge_to=out / "x.nc", deadline=Deadline(0))
    assert ds.attrs["n_cells_done"] == 0
    assert not list((out / "cells").glob("*"))


def test_the_guard_saves_on_schedule_and_at_the_limit():
    clock = TickingClock()
    deadline = Deadline(10 / 60, clock=clock, poll_seconds=0.0)  # ends at tick 11
    saved = []
    check = deadline.guard(lambda state: saved.append((clock.now, state["step"])), every=4)
    with pytest.raises(TimeLimitReached):
        for step in range(1, 100):
            check({"step": step})
    # regular checkpoints 4 ticks apart, then the one at the limit
    assert saved == [(6.0, 4), (10.0, 8), (11.0, 9)]


def test_time_limit_reached_is_not_an_error_a_cell_would_record():
    assert not issubclass(TimeLimitReached, Exception)


@pytest.mark.parametrize("minutes", [-1, float("nan"), float("inf"), True, "5"])
def test_bad_time_limits_are_refused(minutes):
    with pytest.raises(CollectError, match="time limit"):
        Deadline(minutes)


def test_cli_time_limit(tmp_path, tiny_sweep, capsys):
    import json

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_sweep()))
    out = tmp_path / "run"
    args = ["run", str(cfg), "--out", str(out), "--no-progress", "--time-limit"]
    assert collect_main([*args, "-2"]) == 2
    assert "time limit must be a finite number of minutes >= 0" in capsys.readouterr().err
    assert collect_main([*args, "0"]) == 0
    captured = capsys.readouterr()  # the stop is a line above the bars (stderr)
    assert "time limit of 0 min reached" in captured.err
    assert "(time limit of 0 min reached): no cell finished" in captured.err  # not "nothing to do"
    assert "0/12 cells" in captured.out
    assert xr.load_dataset(out / "dataset.nc").attrs["n_cells_done"] == 0


def test_blocks_run_by_priority_then_in_listed_order(tiny_sweep):
    grid = [
        {"tasks": ["long_context"], "ranks": [1], "lengths": [20]},
        {"tasks": ["phonebook"], "ranks": [2], "lengths": [20], "priority": 5},
        {"tasks": ["long_context"], "ranks": [3], "lengths": [20]},
        {"tasks": ["phonebook"], "ranks": [4], "lengths": [20], "priority": 5},
    ]
    config = config_from_dict(tiny_sweep(grid=grid))
    assert [k.rank for k in config.cells()] == [2, 4, 1, 3]
    assert all("priority" not in g for g in config.to_dict()["grids"])


def test_a_priority_must_be_a_number(tiny_sweep):
    with pytest.raises(CollectError, match="block 1: priority must be a number"):
        config_from_dict(tiny_sweep(grid=[{}, {"priority": "high"}]))


class SignalAt(TickingClock):
    """A ticking clock that sends this process ``signum`` when it reaches ``tick``."""

    def __init__(self, tick: int, signum: int) -> None:
        super().__init__()
        self.tick, self.signum = tick, signum

    def __call__(self) -> float:
        now = super().__call__()
        if now == self.tick:
            signal.raise_signal(self.signum)
        return now


def test_sigterm_stops_a_sweep_as_a_time_limit_does_and_it_resumes_exactly(
    tmp_path, tiny_sweep, reference
):
    config = _config(tiny_sweep)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    deadline = Deadline.unlimited(clock=SignalAt(LIMIT_TICKS, signal.SIGTERM), poll_seconds=0.0)
    with stop_on_signals(deadline):
        cut = run_sweep(config, out, progress=False, merge_to=out / "dataset.nc", deadline=deadline)
    assert signal.getsignal(signal.SIGTERM) == before, "the previous handler must come back"
    assert deadline.signal == signal.SIGTERM and deadline.reason == "SIGTERM received"
    assert 0 < cut.attrs["n_cells_done"] < len(config.cells())
    assert len(list((out / "cells").glob("*.partial.pt"))) == 1
    assert not list((out / "cells").glob("*.claim")), "no claim may outlive the run"

    resumed = run_sweep(config, out, progress=False, merge_to=out / "dataset.nc")
    assert resumed.attrs["complete"] == "true"
    xr.testing.assert_identical(_strip(resumed), _strip(reference))


def test_a_second_ctrl_c_stops_at_once():
    deadline = Deadline.unlimited()
    assert not deadline.passed()
    # a shell ignores SIGINT in commands it starts in the background (SIG_IGN, not the
    # default handler): whatever it was must come back
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(deadline):
        # the first Ctrl-C only expires the deadline: no KeyboardInterrupt here (were one
        # raised, the test would fail, not pass as the second signal's expected one)
        signal.raise_signal(signal.SIGINT)
        assert deadline.passed() and deadline.signal == signal.SIGINT
        assert deadline.reason == "SIGINT received"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) == before


def test_cli_exits_with_128_plus_the_signal_after_saving_and_merging(tmp_path, tiny_sweep):
    """A real process, a real SIGTERM: the running cell's state is saved, the merge written."""
    import json
    import os
    import subprocess
    import sys
    import time

    raw = tiny_sweep(grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}])
    raw["train"].update(max_steps=100_000, patience=1_000_000, stop_when_memorized=False)
    cfg, out = tmp_path / "long.json", tmp_path / "run"
    cfg.write_text(json.dumps(raw))
    cmd = [sys.executable, "-m", "collect", "run", str(cfg), "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        claims = out / "cells"
        deadline = time.monotonic() + 120
        while not list(claims.glob("*.claim")) and time.monotonic() < deadline:
            time.sleep(0.2)  # a claimed cell: the handlers are installed, training runs
        assert proc.poll() is None, proc.communicate()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM received" in stderr
    assert len(list(claims.glob("*.partial.pt"))) == 1
    assert not list(claims.glob("*.claim"))
    assert "0/4 cells" in stdout
    assert xr.load_dataset(out / "dataset.nc").attrs["n_cells_done"] == 0
