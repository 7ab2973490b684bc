"""``--share-cells-with``: a cell two sweeps hold under one fingerprint trains once."""

import json
import os
import re
import socket

import pytest
import xarray as xr

import collect.sweep.training as sweep_training
from collect.cli import main as collect_main
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.store import cell_path, claim_path, path_from, read_state, state_path
from collect.sweep import run_sweep
from collect.timelimit import Deadline

LONG = {"tasks": ["long_context"], "random_ratios": [1.0]}


def _raw(tiny_sweep, ranks, lengths, name, **train):
    settings = {"max_steps": 40, "log_every": 5, **train}
    grid = [{**LONG, "ranks": ranks, "lengths": lengths}]
    return tiny_sweep(name=name, grid=grid, train=settings)


def test_recorded_directories_are_relative_and_survive_a_move(tmp_path, monkeypatch):
    """``path_from`` gives the other directory relative to the sweep's, whatever the cwd."""
    out, other = tmp_path / "data" / "protocol" / "study", tmp_path / "data" / "law"
    out.mkdir(parents=True), other.mkdir()
    assert path_from(out, other) == "../../law"
    monkeypatch.chdir(tmp_path)
    assert path_from("data/protocol/study", "data/law") == "../../law"  # relative input
    moved = tmp_path / "elsewhere"
    (tmp_path / "data").rename(moved)  # the data tree cloned or moved somewhere else
    assert (moved / "protocol" / "study" / path_from(out, other)).resolve() == moved / "law"


@pytest.fixture()
def sweeps(tiny_sweep):
    """Two sweeps with one fingerprint: ``a`` has 4 cells, ``b`` 2 of them and one more."""
    a = config_from_dict(_raw(tiny_sweep, [1, 8], [20, 40], "a"))
    b = config_from_dict(_raw(tiny_sweep, [1, 2], [20], "b"))
    assert a.fingerprint() == b.fingerprint()  # grids and names are not settings
    shared = set(a.cells()) & set(b.cells())
    assert len(shared) == 1
    return a, b, shared


@pytest.fixture()
def trained(monkeypatch):
    """The keys ``run_cell`` trains, in order (it still trains them)."""
    calls = []
    real = sweep_training.run_cell

    def spy(*args, **kwargs):
        calls.append((kwargs["rank"], len(args[2])))
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_training, "run_cell", spy)
    return calls


def _values(ds):
    return ds.drop_vars(["wall_time"]).assign_attrs(created="", git_revision="")


def test_finished_cells_are_copied_and_the_dataset_equals_an_unshared_run(
    tmp_path, sweeps, trained
):
    a, b, shared = sweeps
    run_sweep(b, tmp_path / "b", progress=False)
    trained.clear()
    got = run_sweep(
        a, tmp_path / "a", progress=False, share_with=[tmp_path / "b"], merge_to=tmp_path / "a.nc"
    )
    assert len(trained) == len(a.cells()) - len(shared)  # the shared cell did not train
    (key,) = shared
    with xr.open_dataset(cell_path(tmp_path / "a", key)) as ds:
        assert ds.attrs["copied_from"] == "../b"  # relative: true after a move
    reference = run_sweep(a, tmp_path / "ref", progress=False, merge_to=tmp_path / "ref.nc")
    xr.testing.assert_identical(_values(got), _values(reference))


def test_a_cell_a_shared_worker_runs_is_left_to_it_then_copied(tmp_path, sweeps, trained):
    a, b, shared = sweeps
    (key,) = shared
    prepared = run_sweep(b, tmp_path / "b", progress=False, only=[])  # sweep.json only
    assert prepared is None
    claim = claim_path(tmp_path / "b", key)
    claim.parent.mkdir(parents=True, exist_ok=True)
    claim.write_text(f"{socket.gethostname()} {os.getpid()}")  # a live worker of b holds it
    run_sweep(a, tmp_path / "a", progress=False, share_with=[tmp_path / "b"])
    assert not cell_path(tmp_path / "a", key).exists()
    assert len(trained) == len(a.cells()) - 1
    assert not list((tmp_path / "a" / "cells").glob("*.claim"))
    assert claim.exists()  # b's claim is b's: untouched

    claim.unlink()
    run_sweep(b, tmp_path / "b", progress=False)  # b's worker finishes it
    trained.clear()
    done = run_sweep(
        a, tmp_path / "a", progress=False, share_with=[tmp_path / "b"], merge_to=tmp_path / "a.nc"
    )
    assert trained == [] and done.attrs["complete"] == "true"


def test_cells_trained_here_are_claimed_in_the_shared_dir_while_they_run(
    tmp_path, sweeps, monkeypatch
):
    a, b, shared = sweeps
    run_sweep(b, tmp_path / "b", progress=False, only=[])
    held = []
    real = sweep_training.run_cell

    def spy(*args, **kwargs):
        held.append(sorted(p.name for p in (tmp_path / "b" / "cells").glob("*.claim")))
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_training, "run_cell", spy)
    run_sweep(a, tmp_path / "a", progress=False, share_with=[tmp_path / "b"])
    keys = [k for k in a.cells()]
    assert held == [[claim_path(tmp_path / "b", k).name] for k in keys]
    assert not list((tmp_path / "b" / "cells").glob("*.claim")), "claims must be released"
    # b's worker, sharing back, copies every cell a trained that b holds
    run_sweep(b, tmp_path / "b", progress=False, share_with=[tmp_path / "a"])
    (key,) = shared
    with xr.open_dataset(cell_path(tmp_path / "b", key)) as ds:
        assert ds.attrs["copied_from"] == "../a"


def test_a_checkpoint_in_the_shared_dir_is_resumed(tmp_path, sweeps, monkeypatch):
    a, b, shared = sweeps
    (key,) = shared
    ticks = iter(range(10**6))
    deadline = Deadline(20 / 60, clock=lambda: float(next(ticks)), poll_seconds=0.0)
    run_sweep(b, tmp_path / "b", progress=False, only=[key], deadline=deadline)
    assert state_path(tmp_path / "b", key, "partial").exists(), "the limit must cut the cell"
    cut_step = int(read_state(tmp_path / "b", key, "partial")["state"]["step"])
    assert 0 < cut_step < 40

    got = run_sweep(
        a, tmp_path / "a", progress=False, share_with=[tmp_path / "b"], merge_to=tmp_path / "a.nc"
    )
    with xr.open_dataset(cell_path(tmp_path / "a", key)) as ds:
        assert ds.attrs["resumed_from_step"] == cut_step  # continued, not rerun from step 0
    reference = run_sweep(a, tmp_path / "ref", progress=False, merge_to=tmp_path / "ref.nc")
    xr.testing.assert_identical(_values(got), _values(reference))


def test_other_settings_precision_or_the_output_itself_are_refused(tmp_path, tiny_sweep, sweeps):
    a, _, _ = sweeps
    other = config_from_dict(_raw(tiny_sweep, [1], [20], "c", lr=3e-2))
    run_sweep(other, tmp_path / "c", progress=False, only=[])
    with pytest.raises(CollectError, match=r"other settings.*\n.*\[train\] lr"):
        run_sweep(a, tmp_path / "a", progress=False, share_with=[tmp_path / "c"])
    assert not list((tmp_path / "a" / "cells").glob("*.nc")), "nothing may train first"
    with pytest.raises(CollectError, match="no sweep.json"):
        run_sweep(a, tmp_path / "a", progress=False, share_with=[tmp_path / "nowhere"])
    with pytest.raises(CollectError, match="output directory itself"):
        run_sweep(a, tmp_path / "a", progress=False, share_with=[tmp_path / "a"])

    run_sweep(a, tmp_path / "d", progress=False, only=[])
    meta = tmp_path / "d" / "sweep.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "precision": "bfloat16"}))
    with pytest.raises(CollectError, match="bfloat16"):
        run_sweep(a, tmp_path / "a", progress=False, share_with=[tmp_path / "d"])


def test_plan_says_which_cells_are_copied(tmp_path, tiny_sweep, sweeps, capsys):
    _, b, shared = sweeps
    run_sweep(b, tmp_path / "b", progress=False)
    config = tmp_path / "a.json"
    config.write_text(json.dumps(_raw(tiny_sweep, [1, 8], [20, 40], "a")))
    argv = ["plan", str(config), "--out", str(tmp_path / "a")]
    assert collect_main([*argv, "--share-cells-with", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    (key,) = shared
    assert "shared: 1 copied" in out
    assert f"{key.slug()} copied from {tmp_path / 'b'}" in out


def test_plan_counts_each_cell_once_when_it_both_extends_and_shares(
    tmp_path, tiny_sweep, sweeps, capsys
):
    """A cell the shared sweep finished is copied from there: not also 'resume'/'scratch'."""
    a, b, shared = sweeps
    (key,) = shared
    run_sweep(b, tmp_path / "b", progress=False)
    old = config_from_dict(_raw(tiny_sweep, [1, 8], [20, 40], "a", max_steps=20))
    run_sweep(old, tmp_path / "old", progress=False)
    config = tmp_path / "a.json"
    config.write_text(json.dumps(_raw(tiny_sweep, [1, 8], [20, 40], "a")))
    argv = ["plan", str(config), "--out", str(tmp_path / "a")]
    argv += ["--extend-from", str(tmp_path / "old"), "--share-cells-with", str(tmp_path / "b")]
    assert collect_main(argv) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if key.slug() in ln)
    assert line.split() == [key.slug(), "copied", "from", str(tmp_path / "b")]
    counts = re.search(r"(\d+) copied, (\d+) resumed, (\d+) from scratch", out)
    assert counts and sum(map(int, counts.groups())) + 1 == len(a.cells())
    assert "shared: 1 copied" in out


def test_plan_says_where_a_shared_cell_runs_but_not_for_its_own_worker(
    tmp_path, tiny_sweep, sweeps, capsys
):
    """A worker here also claims its cell in the shared directory: that is not "elsewhere"."""
    _, b, shared = sweeps
    (key,) = shared
    run_sweep(b, tmp_path / "b", progress=False, only=[])
    config = tmp_path / "a.json"
    config.write_text(json.dumps(_raw(tiny_sweep, [1, 8], [20, 40], "a")))
    argv = ["plan", str(config), "--out", str(tmp_path / "a")]
    worker = f"{socket.gethostname()} {os.getpid()}"  # a live process on this host
    for folder in ("a", "b"):
        claim_path(tmp_path / folder, key).parent.mkdir(parents=True, exist_ok=True)
    claim_path(tmp_path / "b", key).write_text(worker)  # b's worker runs it
    assert collect_main([*argv, "--share-cells-with", str(tmp_path / "b")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if key.slug() in ln)
    assert f"running in {tmp_path / 'b'} ({worker})" in line
    claim_path(tmp_path / "a", key).write_text(worker)  # the same worker, claimed in both
    assert collect_main([*argv, "--share-cells-with", str(tmp_path / "b")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if key.slug() in ln)
    assert "running in" not in line and f"running ({worker})" in line


def test_a_cell_the_shared_worker_finishes_during_the_run_joins_its_merge(
    tmp_path, sweeps, monkeypatch
):
    a, b, shared = sweeps
    (key,) = shared
    run_sweep(b, tmp_path / "b", progress=False, only=[])
    claim = claim_path(tmp_path / "b", key)
    claim.parent.mkdir(parents=True, exist_ok=True)
    claim.write_text(f"{socket.gethostname()} {os.getpid()}")  # b's worker runs it
    real, calls = sweep_training.run_cell, []

    def spy(*args, **kwargs):
        calls.append(1)
        if len(calls) == len(a.cells()) - 1:  # a's last cell: b's worker finishes meanwhile
            claim.unlink()
            run_sweep(b, tmp_path / "b", progress=False, only=[key])
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_training, "run_cell", spy)
    got = run_sweep(
        a, tmp_path / "a", progress=False, share_with=[tmp_path / "b"], merge_to=tmp_path / "a.nc"
    )
    assert got.attrs["complete"] == "true"
    with xr.open_dataset(cell_path(tmp_path / "a", key)) as ds:
        assert ds.attrs["copied_from"] == "../b"  # relative: true after a move


def test_a_zero_time_limit_copies_shared_cells_and_loads_no_model(tmp_path, sweeps, monkeypatch):
    a, b, shared = sweeps
    run_sweep(b, tmp_path / "b", progress=False)

    def no_model(*args, **kwargs):
        raise AssertionError("a run past its time limit must not load a model")

    monkeypatch.setattr(sweep_training, "load_model", no_model)
    got = run_sweep(
        a,
        tmp_path / "a",
        progress=False,
        share_with=[tmp_path / "b"],
        deadline=Deadline(0),
        merge_to=tmp_path / "a.nc",
    )
    assert got.attrs["n_cells_done"] == len(shared)
