"""The convergence stop: a cell stops once its ΔL gained at most tol over its last steps."""

from __future__ import annotations

import pytest

from collect.config import config_from_dict
from collect.errors import CollectError
from collect.probe import converged


def test_converged_compares_best_delta_l_now_with_the_best_a_window_ago():
    # loss_before 10; t = 10: window 0.2 looks back 2 steps, to the best of steps 0..8
    history = [10.0, 8.0, 6.0, 5.0, 4.5, 4.2, 4.1, 4.05, 4.02, 4.01, 4.0]
    # best ΔL now 6.0, best at step 8 5.98: gain 0.02 = 0.33 % of 6.0
    assert converged(history, 10.0, window=0.2, tol=0.004)
    assert not converged(history, 10.0, window=0.2, tol=0.003)
    # a longer window reaches back to step 5 (best ΔL 5.8): gain 3.3 %
    assert not converged(history, 10.0, window=0.5, tol=0.03)
    assert converged(history, 10.0, window=0.5, tol=0.034)


def test_an_oscillating_loss_cannot_pass_on_a_dip():
    # the loss jumps up and back: best-so-far values, so the bump is not a 'gain'
    history = [10.0, 6.0, 5.0, 4.0, 9.0, 4.0]
    assert converged(history, 10.0, window=0.4, tol=1e-9)  # no new best over steps 3..5
    # a dip *below* the earlier best is a real gain and blocks the stop
    assert not converged([10.0, 6.0, 5.0, 4.0, 9.0, 3.0], 10.0, window=0.4, tol=0.1)


def test_nothing_stops_before_a_whole_window_has_run_or_without_any_gain():
    assert not converged([10.0], 10.0, window=0.1, tol=0.5)
    assert not converged([10.0, 10.0, 10.0], 10.0, window=0.5, tol=0.5)  # ΔL 0: not converged


def _raw(tiny_sweep, **train):
    return tiny_sweep(train={"max_steps": 40, **train})


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"converge_from": 40}, "converge_from must be below max_steps"),
        ({"converge_from": 10, "schedule": "linear"}, "needs schedule = 'constant'"),
        ({"converge_tol": 0.02}, "only apply with converge_from > 0"),
        ({"converge_from": 10, "converge_tol": 0}, "converge_tol must be a relative ΔL gain"),
        ({"converge_from": 10, "converge_window": 1.0}, "converge_window must be a share"),
        ({"converge_from": -1}, "converge_from must be a step >= 0"),
    ],
)
def test_bad_convergence_settings_are_refused(tiny_sweep, train, message):
    with pytest.raises(CollectError, match=message):
        config_from_dict(_raw(tiny_sweep, **train))


def test_the_stop_off_leaves_fingerprints_as_they_were(tiny_sweep):
    plain = config_from_dict(_raw(tiny_sweep))
    assert config_from_dict(_raw(tiny_sweep, converge_from=0)).fingerprint() == plain.fingerprint()
    stop = config_from_dict(_raw(tiny_sweep, converge_from=20))
    assert stop.fingerprint() != plain.fingerprint()
    other_tol = config_from_dict(_raw(tiny_sweep, converge_from=20, converge_tol=0.02))
    assert other_tol.fingerprint() != stop.fingerprint()
    # the stop is part of the budget: a sweep may add it when extending another
    assert stop.fingerprint_without_budget() == plain.fingerprint_without_budget()


def test_a_converged_cell_met_the_test_where_it_stopped(tiny):
    """On the tiny model: the stop fires after converge_from, and its test holds there."""
    import torch

    from collect.probe import TrainConfig, run_cell
    from collect.tasks import build_task

    model, tok = tiny
    train = TrainConfig(
        lr=3e-2,
        max_steps=200,
        log_every=1,
        patience=10_000,
        converge_from=30,
        converge_tol=0.02,
        converge_window=0.2,
        stop_when_memorized=False,
    )
    entries = build_task("long_context", tok, 48, random_ratio=1.0)
    result, _ = run_cell(
        model,
        tok,
        entries,
        task="long_context",
        method="sft",
        modules="mlp@2",
        rank=1,
        seed=0,
        train=train,
        device=torch.device("cpu"),
    )
    assert result.stop_reason == "converged" and 30 <= result.steps < 200
    history = list(result.loss_curve)  # logged at every step: the stop's own history
    assert len(history) == result.steps + 1
    assert converged(history, result.loss_before, 0.2, 0.02)
    if result.steps > 30:  # it stopped at the first step that passed the test
        assert not converged(history[:-1], result.loss_before, 0.2, 0.02)
