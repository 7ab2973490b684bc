"""The plateau rule: a flat mean loss stops training only if no token is crossing p = 0.5."""

from collect.probe import above_rising, plateaued


def test_flat_loss_is_a_plateau():
    assert plateaued([5.0] * 60, patience=50, min_delta=1e-3)
    assert not plateaued([5.0 - 0.01 * i for i in range(60)], patience=50, min_delta=1e-3)


def test_tokens_still_crossing_the_threshold_keep_training():
    steps = list(range(0, 110, 10))
    # the share of tokens above 0.5 reaches a new maximum within the last 50 steps
    rising = [0.0, 0.0, 0.002, 0.0, 0.002, 0.004, 0.002, 0.004, 0.008, 0.006, 0.012]
    assert above_rising(steps, rising, step=100, patience=50)
    # it only fluctuates below its earlier maximum: no progress
    stuck = [0.0, 0.0, 0.012, 0.0, 0.002, 0.004, 0.002, 0.004, 0.008, 0.006, 0.010]
    assert not above_rising(steps, stuck, step=100, patience=50)


def test_steps_before_the_earliest_stop_do_not_count():
    steps = list(range(0, 110, 10))
    frac = [0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.01, 0.01, 0.02, 0.02, 0.03]
    # a curriculum that starts at step 20: the 0.5 before it is a different target set
    assert above_rising(steps, frac, step=100, patience=50, start=20)
    assert not above_rising(steps, frac, step=100, patience=50, start=0)


def test_too_little_history_is_not_rising():
    assert not above_rising([0, 10], [0.0, 0.1], step=10, patience=50)


def _flat_rule_cell(tiny, method):
    """A long-context cell under a plateau rule that fires as soon as it may (min_delta = 1)."""
    import torch

    from collect.probe import TrainConfig, run_cell
    from collect.tasks import build_task

    model, tok = tiny
    entries = build_task("long_context", tok, 40, random_ratio=1.0)
    train = TrainConfig(max_steps=40, log_every=5, patience=5, min_delta=1.0)
    result, _ = run_cell(
        model,
        tok,
        entries,
        task="long_context",
        method=method,
        modules="mlp@2",
        rank=1,
        seed=0,
        train=train,
        device=torch.device("cpu"),
    )
    return result


def test_memft_sw_on_a_long_target_never_stops_on_a_plateau(tiny):
    # the same rule stops SFT early; MemFT-SW (long) runs until memorized or the budget
    sft = _flat_rule_cell(tiny, "sft")
    assert sft.stop_reason == "plateau" and sft.steps < 40
    sw = _flat_rule_cell(tiny, "memft_sw")
    assert sw.stop_reason in ("budget", "memorized")
    assert sw.steps == 40 or sw.stop_reason == "memorized"
