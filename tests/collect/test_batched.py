"""Batched cells (collect.batched) equal separate runs (collect.probe.run_cell).

Per task and protocol, one batch holds every method, several ranks and seeds; the cells stop
at different steps (the batch shrinks as they do) and each must match its own separate run.
A sweep run with batched cells writes the cells an unbatched run writes.
"""

import json

import numpy as np
import pytest
import torch
import xarray as xr

from collect.batched import CellSpec, run_cells_batched, step_stats
from collect.cli import main as collect_main
from collect.config import CellKey, config_from_dict
from collect.errors import CollectError
from collect.probe import TrainConfig, run_cell
from collect.sweep import batch_units, cells_per_batch, check_batch_cells, run_sweep
from collect.tasks import build_task

CPU = torch.device("cpu")
MODULES = "mlp_block@2"
#: every method, different ranks and seeds side by side in one batch
CELLS = [
    CellSpec("sft", 1, 0),
    CellSpec("sft", 8, 1),
    CellSpec("memft_ot", 4, 0),
    CellSpec("memft_sw", 2, 0),
]
#: a large lr and a short patience: the cells stop at different steps, for every reason
FAST = {"max_steps": 60, "log_every": 5, "lr": 0.1, "patience": 8, "min_delta": 0.02}
PROTOCOLS = {
    "constant": {},
    "linear+dropout": {"schedule": "linear", "lora_dropout": 0.1},
    "plateau_decay": {"schedule": "plateau_decay", "max_decays": 1},
    "converge": {"converge_from": 20, "converge_tol": 0.05, "converge_window": 0.2},
    "autocast": {"autocast": "bfloat16"},
}


def _assert_same_cell(got, want):
    """A batched cell equals its separate run up to float32 summation order."""
    assert got.status == want.status == "ok", (got.error, want.error)
    assert (got.steps, got.stop_reason) == (want.steps, want.stop_reason)
    assert got.lr_decays == want.lr_decays
    assert (got.n_params, got.n_bytes) == (want.n_params, want.n_bytes)
    assert got.loss_before == pytest.approx(want.loss_before, rel=1e-6)
    np.testing.assert_array_equal(got.curve_steps, want.curve_steps)
    np.testing.assert_allclose(got.loss_curve, want.loss_curve, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.frac_above_curve, want.frac_above_curve)
    assert got.loss_after == pytest.approx(want.loss_after, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(got.p_after, want.p_after, atol=1e-5)
    np.testing.assert_array_equal(got.greedy_correct, want.greedy_correct)
    assert got.exact_match == want.exact_match


def _separate(model, tok, entries, task, cell, train):
    return run_cell(
        model,
        tok,
        entries,
        task=task,
        method=cell.method,
        modules=MODULES,
        rank=cell.rank,
        seed=cell.seed,
        train=train,
        device=CPU,
    )


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize(("task", "ratio"), [("long_context", 1.0), ("phonebook", 0.0)])
def test_batched_cells_equal_separate_runs(tiny, task, ratio, protocol):
    model, tok = tiny
    entries = build_task(task, tok, 20, random_ratio=ratio, data_seed=0)
    train = TrainConfig(**FAST, **PROTOCOLS[protocol])
    original = [type(m) for m in model.modules()]
    done = []
    batched = run_cells_batched(
        model,
        tok,
        entries,
        task=task,
        modules=MODULES,
        cells=CELLS,
        train=train,
        device=CPU,
        on_done=lambda k, result: done.append((k, result)),
    )
    assert [type(m) for m in model.modules()] == original  # the model is left as it was
    assert sorted(k for k, _ in done) == list(range(len(CELLS)))  # each handed on once
    stops = []
    for cell, got in zip(CELLS, batched, strict=True):
        want, model = _separate(model, tok, entries, task, cell, train)
        _assert_same_cell(got, want)
        stops.append((got.steps, got.stop_reason, got.lr_decays))
    assert len({step for step, _, _ in stops}) >= 2, f"cells must stop apart: {stops}"
    if protocol == "plateau_decay":
        assert any(decays for _, _, decays in stops), f"no lr decay happened: {stops}"
    if protocol == "converge":
        assert any(reason == "converged" for _, reason, _ in stops), f"none converged: {stops}"


def test_a_batched_cell_resumes_from_its_checkpoint_beside_fresh_cells(tiny):
    """One cell continues from step 20 while the others start at 0; all end as direct runs."""
    model, tok = tiny
    entries = build_task("long_context", tok, 20, random_ratio=1.0, data_seed=0)
    train = TrainConfig(max_steps=40, log_every=5, lora_dropout=0.1)
    states = {}

    def keep(state):
        states.setdefault(state["step"], state)

    cells = CELLS[:2]
    common = {"task": "long_context", "modules": MODULES, "train": train, "device": CPU}
    direct = run_cells_batched(
        model, tok, entries, cells=cells, checkpoint=[keep, None], checkpoint_every=0, **common
    )
    assert 20 in states
    resumed = run_cells_batched(
        model, tok, entries, cells=cells, resume=[states[20], None], **common
    )
    for got, want in zip(resumed, direct, strict=True):
        _assert_same_cell(got, want)


def test_other_placements_are_refused(tiny):
    model, tok = tiny
    entries = build_task("long_context", tok, 20, random_ratio=1.0, data_seed=0)
    with pytest.raises(CollectError, match="one mlp_block adapter at a single layer"):
        run_cells_batched(
            model,
            tok,
            entries,
            task="long_context",
            modules="mlp@2",
            cells=CELLS[:1],
            train=TrainConfig(max_steps=5),
            device=CPU,
        )


def _key(modules=MODULES, rank=1, length=20, task="long_context", data_seed=0):
    return CellKey("tiny-random", task, 1.0, "sft", modules, rank, length, 0, data_seed)


def test_units_gather_the_cells_of_one_target_and_placement_in_sweep_order():
    a1, b1, a2 = _key(rank=1), _key(rank=1, length=40), _key(rank=2)
    other = _key(rank=3, data_seed=1)
    lora = _key(modules="mlp@2", rank=4)
    a3, a4 = _key(rank=3), _key(rank=4)
    keys = [a1, b1, lora, a2, other, a3, a4]
    units = batch_units(keys, lambda key: 3, TrainConfig())
    assert units == [[a1, a2, a3], [b1], [lora], [other], [a4]]
    assert batch_units(keys, lambda key: 1, TrainConfig()) == [[k] for k in keys]
    # without the prefix cache nothing is shared: every cell on its own
    assert batch_units(keys, lambda key: 3, TrainConfig(prefix_cache=False)) == [[k] for k in keys]


class _Device:
    def __init__(self, kind):
        self.type = kind


def test_auto_batches_on_a_gpu_only_and_fewer_long_cells():
    assert cells_per_batch("auto", _Device("cpu"), _key()) == 1
    assert cells_per_batch("auto", _Device("cuda"), _key(length=64)) == 16
    assert cells_per_batch("auto", _Device("cuda"), _key(length=8192)) == 4
    assert cells_per_batch("auto", _Device("cuda"), _key(length=10**6)) == 1
    assert cells_per_batch(5, _Device("cpu"), _key()) == 5
    # a worker of four sharing the GPU gets a quarter of the tokens: 8,192 at l = 2,048 is 4
    assert cells_per_batch("auto", _Device("cuda"), _key(length=2048), tokens=8192) == 4
    assert cells_per_batch("auto", _Device("cuda"), _key(length=2048)) == 16


def test_auto_batches_count_each_cells_whole_batch():
    """A PhoneBook cell's prompts fill the batch too: 4.5 batch tokens per target token."""
    asked = []

    def phonebook_tokens(key):
        asked.append(key)
        return round(4.5 * key.length)

    cuda, key = _Device("cuda"), _key(length=2048)
    assert cells_per_batch("auto", cuda, key, cell_tokens=phonebook_tokens) == 3
    assert cells_per_batch("auto", cuda, _key(length=8192), cell_tokens=phonebook_tokens) == 1
    assert asked == [key, _key(length=8192)]
    # one by one on the CPU, or a size given: the batch is not even counted
    assert cells_per_batch("auto", _Device("cpu"), key, cell_tokens=phonebook_tokens) == 1
    assert cells_per_batch(4, cuda, key, cell_tokens=phonebook_tokens) == 4
    assert len(asked) == 2


def test_a_sweep_sizes_auto_batches_by_each_cells_batch_tokens(tmp_path, tiny_sweep, monkeypatch):
    """On a GPU (faked: only the device's type is read) PhoneBook batches count their prompts."""
    import collect.sweep.training as training

    sizes = {}

    def on_a_gpu(batch_cells, device, key, tokens, cell_tokens=None):
        sizes[key] = cells_per_batch(batch_cells, _Device("cuda"), key, tokens, cell_tokens)
        return sizes[key]

    monkeypatch.setattr(training, "cells_per_batch", on_a_gpu)
    grid = [
        {"tasks": ["long_context"], "random_ratios": [1.0]},
        {"tasks": ["phonebook"], "methods": ["sft"]},
    ]
    defaults = {**tiny_sweep()["defaults"], "modules": [MODULES], "lengths": [20]}
    config = config_from_dict(tiny_sweep(grid=grid, defaults=defaults))
    out = tmp_path / "g"
    ds = run_sweep(
        config, out, progress=False, merge_to=out / "g.nc", batch_cells="auto", batch_tokens=100
    )
    assert ds.attrs["complete"] == "true"
    # the tiny tokenizer: a long-context batch of 20 target tokens holds 53 tokens (one at a
    # time), a PhoneBook batch 44 (two together); by target tokens alone both would be 5
    by_task = {key.task: size for key, size in sizes.items()}
    assert by_task == {"long_context": 1, "phonebook": 2}


@pytest.mark.parametrize("bad", [0, -2, 1.5, "many", True])
def test_bad_batch_sizes_are_refused(bad):
    with pytest.raises(CollectError, match="batch_cells must be 'auto' or an integer >= 1"):
        check_batch_cells(bad)


def test_cli_refuses_a_bad_batch_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        collect_main(["run", "--ranks", "1", "--lengths", "20", "--out", str(tmp_path),
                      "--batch-cells", "0"])  # fmt: skip
    assert stop.value.code == 2
    assert "expected 'auto' or an integer >= 1" in capsys.readouterr().err


def _strip(ds):
    """Leave out what differs between two runs of one sweep: times and the code's revision."""
    return ds.drop_vars(["wall_time", "git_revision"]).assign_attrs(created="", git_revision="")


def test_batched_and_unbatched_runs_share_one_sweep_directory(tmp_path, tiny_sweep):
    """Half the cells one by one, the rest batched, into one directory: the one-by-one data."""
    raw = tiny_sweep(defaults={**tiny_sweep()["defaults"], "modules": [MODULES]})
    config = config_from_dict(raw)
    keys = config.cells()
    alone = run_sweep(config, tmp_path / "alone", progress=False, merge_to=tmp_path / "a.nc")
    mixed = tmp_path / "mixed"
    run_sweep(config, mixed, only=keys[::2], progress=False, batch_cells=1)
    ds = run_sweep(config, mixed, progress=False, merge_to=tmp_path / "m.nc", batch_cells=4)
    assert ds.attrs["complete"] == "true"
    names = sorted(p.name for p in (mixed / "cells").glob("*.nc"))
    assert names == sorted(p.name for p in (tmp_path / "alone" / "cells").glob("*.nc"))
    want, got = _strip(alone), _strip(ds)
    assert json.loads(got.attrs["config"]) == json.loads(want.attrs["config"])
    assert got.attrs["fingerprint"] == want.attrs["fingerprint"]
    xr.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for name in ("steps", "greedy_correct", "status", "stop_reason"):
        xr.testing.assert_equal(got[name], want[name])


def test_a_batch_out_of_memory_runs_its_cells_one_by_one(tmp_path, tiny_sweep, monkeypatch, capsys):
    """A batch of several cells that runs out of memory is not recorded as oom cells."""
    import collect.batched as batched

    def no_room(runs, active, *args):
        if len(active) > 1:
            raise torch.cuda.OutOfMemoryError("simulated: several cells do not fit")
        return step(runs, active, *args)

    step = batched._step_together
    monkeypatch.setattr(batched, "_step_together", no_room)
    grid = [{"tasks": ["long_context"], "random_ratios": [1.0], "lengths": [20]}]
    raw = tiny_sweep(grid=grid, defaults={**tiny_sweep()["defaults"], "modules": [MODULES]})
    config = config_from_dict(raw)
    out = tmp_path / "b"
    ds = run_sweep(config, out, progress=False, merge_to=out / "b.nc", batch_cells=2)
    assert ds.attrs["complete"] == "true"
    assert set(ds["status"].values.ravel()) == {"ok"}
    assert "2 cells run one by one instead" in capsys.readouterr().err
    alone = run_sweep(config, tmp_path / "a", progress=False, merge_to=tmp_path / "a.nc")
    xr.testing.assert_identical(_strip(ds), _strip(alone))  # the one-by-one path ran them


@pytest.mark.parametrize("backend", ["inductor", "aot_eager"])
def test_a_compiled_step_gives_the_eager_cells(tiny, backend):
    """torch.compile of the step (opt-in, for the GPU) changes no cell beyond rounding."""
    model, tok = tiny
    entries = build_task("long_context", tok, 20, random_ratio=1.0, data_seed=0)
    train = TrainConfig(**FAST, lora_dropout=0.1)
    common = {"task": "long_context", "modules": MODULES, "cells": CELLS, "train": train}
    eager = run_cells_batched(model, tok, entries, device=CPU, **common)
    torch._dynamo.reset()
    compiled = run_cells_batched(model, tok, entries, device=CPU, compile_step=backend, **common)
    for got, want in zip(compiled, eager, strict=True):
        _assert_same_cell(got, want)


def test_a_sweep_passes_compile_on_and_refuses_a_bad_value(tmp_path, tiny_sweep, monkeypatch):
    import collect.batched as batched

    asked = []
    monkeypatch.setattr(batched, "step_stats", lambda value: asked.append(value) or step_stats())
    grid = [{"tasks": ["long_context"], "random_ratios": [1.0], "lengths": [20]}]
    raw = tiny_sweep(grid=grid, defaults={**tiny_sweep()["defaults"], "modules": [MODULES]})
    config = config_from_dict(raw)
    run_sweep(config, tmp_path / "c", progress=False, batch_cells=2, compile_step="aot_eager")
    assert asked == ["aot_eager"]  # the one batch of two cells compiled its step
    with pytest.raises(CollectError, match="compile_step must be true, false or a torch.compile"):
        run_sweep(config, tmp_path / "bad", progress=False, compile_step=3)
    assert not (tmp_path / "bad").exists()  # refused before anything was written
