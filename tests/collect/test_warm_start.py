"""Warm starts: rank r starts from the converged rank-r/2 adapter of the same target."""

import json

import numpy as np
import pytest
import torch
import xarray as xr

from collect.adapters import attach
from collect.cli import main as collect_main
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.probe import TrainConfig, run_cell
from collect.store import cell_path, state_path
from collect.sweep import run_sweep
from collect.tasks import build_task
from collect.warmstart import load_warm_start

#: budget-stopped cells keep their state (the source); nothing memorizes in 15 steps
TRAIN = {"max_steps": 15, "log_every": 1, "lr": 5e-2, "stop_when_memorized": False}


@pytest.mark.parametrize("modules", ["mlp_block@2", "mlp@2"])
def test_a_padded_adapter_computes_what_its_source_computed(tiny, modules):
    model, tok = tiny
    ids = torch.tensor([tok.encode("warm start")])
    small = attach(model, modules, 1, seed=0)
    with torch.no_grad():
        for p in small.parameters:  # a nonzero source map
            p.normal_(0, 0.3)
        want = model(ids).logits
    source = [p.detach().clone() for p in small.parameters]
    model = small.detach()
    big = attach(model, modules, 2, seed=0)
    fresh = [p.detach().clone() for p in big.parameters]
    load_warm_start(big.parameters, source)
    with torch.no_grad():
        got = model(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for param, src, init in zip(big.parameters, source, fresh, strict=True):
        lead = tuple(slice(0, n) for n in src.shape)
        assert torch.equal(param[lead], src)
        rest = param.detach().clone()
        rest[lead] = init[lead]
        assert torch.equal(rest, init)  # the new directions keep their initialisation
    big.detach()


def test_tensors_that_do_not_nest_are_refused(tiny):
    model, _ = tiny
    adapter = attach(model, "mlp_block@2", 2, seed=0)
    wrong = [torch.zeros(1, 3), torch.zeros(3, 1)]
    with pytest.raises(CollectError, match="differing in the rank only"):
        load_warm_start(adapter.parameters, wrong)
    with pytest.raises(CollectError, match="expected adapter tensors"):
        load_warm_start(adapter.parameters, [p.detach() for p in adapter.parameters][:1])
    adapter.detach()


def test_a_warm_cell_starts_at_its_sources_loss_and_measures_against_the_base_model(tiny):
    model, tok = tiny
    entries = build_task("long_context", tok, 40, random_ratio=1.0)
    train = TrainConfig(**TRAIN)
    kw = dict(task="long_context", method="sft", modules="mlp_block@2", seed=0, device="cpu")
    source, model = run_cell(model, tok, entries, rank=1, train=train, keep_state=True, **kw)
    assert source.stop_reason == "budget"
    tensors = source.state["params"]
    warm, model = run_cell(model, tok, entries, rank=2, train=train, warm_start=tensors, **kw)
    cold, _ = run_cell(model, tok, entries, rank=2, train=train, **kw)
    assert warm.loss_before == cold.loss_before  # the base model's loss, not the source's
    # the first logged loss is the source's final adapter: where the source stopped
    np.testing.assert_allclose(warm.loss_curve[0], source.loss_curve[-1], rtol=1e-5)
    assert warm.loss_curve[0] < 0.95 * cold.loss_curve[0]  # so the comparison can fail
    assert warm.loss_after < source.loss_after  # and it trains on from there


def _raw(tiny_sweep, ranks, **train):
    raw = tiny_sweep(
        train={**TRAIN, **train},
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0], "ranks": ranks}],
    )
    raw["defaults"].update(modules=["mlp_block@2"], lengths=[20])
    return raw


def test_a_sweep_trains_each_source_first_and_records_it(tiny_sweep, tmp_path):
    # rank 4 and 2 listed before their sources: the sweep still trains 1, then 2, then 4
    config = config_from_dict(_raw(tiny_sweep, [4, 2, 1], warm_start="half_rank"))
    run_sweep(config, tmp_path, progress=False)
    attrs, curves = {}, {}
    for key in config.cells():
        with xr.open_dataset(cell_path(tmp_path, key)) as ds:
            attrs[key.rank] = ds.attrs["warm_started_from"]
            curves[key.rank] = (float(ds["loss_after"]), ds["loss_curve"].values.copy())
    assert attrs[1] == "none (rank 1)"
    for rank in (2, 4):
        recorded = json.loads(attrs[rank])
        assert recorded["rank"] == rank // 2 and recorded["steps"] == TRAIN["max_steps"]
        assert recorded["cell"] in {k.slug() for k in config.cells() if k.rank == rank // 2}
        # each starts where its source's training stopped
        source_curve = curves[rank // 2][1]
        np.testing.assert_allclose(curves[rank][1][0], source_curve[-1], rtol=1e-5)


def test_cells_without_a_source_are_refused_before_anything_trains(tiny_sweep, tmp_path):
    config = config_from_dict(_raw(tiny_sweep, [2], warm_start="half_rank"))
    with pytest.raises(CollectError, match="--warm-start-from") as err:
        run_sweep(config, tmp_path / "out", progress=False)
    assert "r1" in str(err.value) and not list((tmp_path / "out").glob("cells/*.nc"))
    # a finished rank-1 sweep elsewhere provides the source
    source_config = config_from_dict(_raw(tiny_sweep, [1]))
    run_sweep(source_config, tmp_path / "source", progress=False)
    (key,) = source_config.cells()
    assert state_path(tmp_path / "source", key).exists()
    run_sweep(config, tmp_path / "out", progress=False, warm_start_from=[tmp_path / "source"])
    (warm,) = config.cells()
    with xr.open_dataset(cell_path(tmp_path / "out", warm)) as ds:
        assert json.loads(ds.attrs["warm_started_from"])["directory"] == "../source"


def test_warm_start_settings_that_cannot_apply_are_refused(tiny_sweep, tmp_path):
    plain = config_from_dict(_raw(tiny_sweep, [1]))
    with pytest.raises(CollectError, match="only applies to a sweep with"):
        run_sweep(plain, tmp_path, progress=False, warm_start_from=[tmp_path])
    with pytest.raises(CollectError, match="warm_start must be one of"):
        config_from_dict(_raw(tiny_sweep, [1], warm_start="double"))
    scaled = config_from_dict(_raw(tiny_sweep, [1], warm_start="half_rank", lora_alpha=8.0))
    with pytest.raises(CollectError, match="lora_alpha"):
        run_sweep(scaled, tmp_path, progress=False)


def test_the_cli_passes_the_source_directories(tiny_sweep, tmp_path):
    source = config_from_dict(_raw(tiny_sweep, [1]))
    run_sweep(source, tmp_path / "source", progress=False)
    sweep = tmp_path / "warm.json"
    sweep.write_text(json.dumps(_raw(tiny_sweep, [2], warm_start="half_rank")))
    argv = ["run", str(sweep), "--out", str(tmp_path / "out"), "--no-progress"]
    assert collect_main([*argv, "--warm-start-from", str(tmp_path / "source")]) == 0
    assert len(list((tmp_path / "out" / "cells").glob("*.nc"))) == 1


def test_launch_refuses_a_warm_start_sweep(tiny_sweep, tmp_path):
    from collect.launch import launch

    config = config_from_dict(_raw(tiny_sweep, [1, 2], warm_start="half_rank"))
    with pytest.raises(CollectError, match="run this sweep with collect run"):
        launch(config, tmp_path, cluster="debug")
    assert not (tmp_path / "sweep.json").exists()


def test_plan_says_where_each_cell_starts(tiny_sweep, tmp_path, capsys):
    source = config_from_dict(_raw(tiny_sweep, [1]))
    run_sweep(source, tmp_path / "source", progress=False)
    sweep = tmp_path / "warm.json"
    sweep.write_text(json.dumps(_raw(tiny_sweep, [1, 2, 4], warm_start="half_rank")))
    argv = ["plan", str(sweep), "--out", str(tmp_path / "out")]
    assert collect_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    said = {r: next(line for line in lines if f"-r{r}-" in line) for r in (1, 2, 4)}
    assert "from scratch (rank 1)" in said[1]
    assert "trained first in this run" in said[2] and "trained first in this run" in said[4]
    assert collect_main([*argv, "--warm-start-from", str(tmp_path / "source")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("-r2-" in line and f"in {tmp_path / 'source'}" in line for line in lines)


def test_a_cut_warm_cell_resumes_to_the_cell_an_uncut_run_writes(tiny_sweep, tmp_path):
    from collect.timelimit import Deadline, TickingClock

    source = config_from_dict(_raw(tiny_sweep, [1]))
    run_sweep(source, tmp_path / "source", progress=False)
    config = config_from_dict(_raw(tiny_sweep, [2], warm_start="half_rank"))
    kw = dict(progress=False, warm_start_from=[tmp_path / "source"])
    whole = run_sweep(config, tmp_path / "whole", merge_to=tmp_path / "whole.nc", **kw)
    deadline = Deadline(8 / 60, clock=TickingClock(), poll_seconds=0.0)  # the cut falls mid-cell
    run_sweep(config, tmp_path / "cut", deadline=deadline, **kw)
    (key,) = config.cells()
    assert state_path(tmp_path / "cut", key, "partial").exists()
    resumed = run_sweep(config, tmp_path / "cut", merge_to=tmp_path / "cut.nc", **kw)
    with xr.open_dataset(cell_path(tmp_path / "cut", key)) as ds:
        assert ds.attrs["resumed_from_step"] > 0
        assert json.loads(ds.attrs["warm_started_from"])["rank"] == 1
    for name in ("loss_curve", "p_after", "loss_after"):
        np.testing.assert_allclose(resumed[name].values, whole[name].values, rtol=1e-6)


def test_a_warm_start_run_is_deterministic_given_its_seeds(tiny_sweep, tmp_path):
    config = config_from_dict(_raw(tiny_sweep, [1, 2], warm_start="half_rank"))
    first = run_sweep(config, tmp_path / "a", progress=False, merge_to=tmp_path / "a.nc")
    second = run_sweep(config, tmp_path / "b", progress=False, merge_to=tmp_path / "b.nc")
    for name in ("loss_curve", "p_after", "loss_after", "greedy_correct"):
        np.testing.assert_array_equal(first[name].values, second[name].values, err_msg=name)
    # and the warm start changes training, so the comparison above can fail
    cold = run_sweep(
        config_from_dict(_raw(tiny_sweep, [1, 2])),
        tmp_path / "c",
        progress=False,
        merge_to=tmp_path / "c.nc",
    )
    rank2 = {"rank": 2}
    assert not np.allclose(first["loss_curve"].sel(rank2), cold["loss_curve"].sel(rank2))
    np.testing.assert_array_equal(first["loss_before"].values, cold["loss_before"].values)
