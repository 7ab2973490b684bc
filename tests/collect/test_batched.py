"""Batched cells (collect.batched) equal separate runs (collect.probe.run_cell).

Per task, one batch holds every method, several ranks and seeds; the cells stop at different
steps (the batch shrinks as they do) and each must match its own separate run.
"""

import numpy as np
import pytest
import torch

from collect.batched import CellSpec, run_cells_batched
from collect.errors import CollectError
from collect.probe import TrainConfig, run_cell
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


@pytest.mark.parametrize(("task", "ratio"), [("long_context", 1.0), ("phonebook", 0.0)])
def test_batched_cells_equal_separate_runs(tiny, task, ratio):
    model, tok = tiny
    entries = build_task(task, tok, 20, random_ratio=ratio, data_seed=0)
    # a large lr and a short patience: the cells stop at different steps, for every reason
    train = TrainConfig(max_steps=60, log_every=5, lr=0.1, patience=8, min_delta=0.02)
    original = [type(m) for m in model.modules()]
    batched = run_cells_batched(
        model, tok, entries, task=task, modules=MODULES, cells=CELLS, train=train, device=CPU
    )
    assert [type(m) for m in model.modules()] == original  # the model is left as it was
    stops = []
    for cell, got in zip(CELLS, batched, strict=True):
        want, model = run_cell(
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
        assert got.status == want.status == "ok", (got.error, want.error)
        assert (got.steps, got.stop_reason) == (want.steps, want.stop_reason)
        assert got.n_params == want.n_params
        assert got.loss_before == pytest.approx(want.loss_before, rel=1e-6)
        np.testing.assert_array_equal(got.curve_steps, want.curve_steps)
        np.testing.assert_allclose(got.loss_curve, want.loss_curve, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.frac_above_curve, want.frac_above_curve)
        assert got.loss_after == pytest.approx(want.loss_after, rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(got.p_after, want.p_after, atol=1e-5)
        np.testing.assert_array_equal(got.greedy_correct, want.greedy_correct)
        assert got.exact_match == want.exact_match
        stops.append((got.steps, got.stop_reason))
    steps = {step for step, _ in stops}
    assert len(steps) >= 3, f"cells must leave the batch at different steps: {stops}"


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


@pytest.mark.parametrize("train", [{"schedule": "linear"}, {"lora_dropout": 0.1}])
def test_batched_cells_refuse_protocols_they_do_not_implement(tiny, train):
    model, tok = tiny
    entries = build_task("long_context", tok, 20, random_ratio=1.0)
    with pytest.raises(CollectError, match="constant learning rate and no dropout"):
        run_cells_batched(
            model, tok, entries, task="long_context", modules="mlp_block@2",
            cells=[CellSpec("sft", 1, 0)], train=TrainConfig(max_steps=5, **train), device="cpu",
        )
