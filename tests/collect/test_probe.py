import math

import numpy as np
import pytest
import torch

from collect.adapters import attach
from collect.objectives import LN2, MemFTSWLong, MemFTSWPhonebook, make_objective, threshold_mask
from collect.probe import (
    NEVER_EXACT,
    UNKNOWN_EXACT,
    Forward,
    TrainConfig,
    check_fast_path,
    make_batch,
    run_cell,
    token_stats,
)
from collect.tasks import build_task

CPU = torch.device("cpu")


def _run(model, tok, entries, task="phonebook", **kw):
    args = {"method": "sft", "modules": "mlp@2", "rank": 8, "seed": 0}
    args.update(kw)
    train = args.pop("train", TrainConfig(max_steps=60))
    return run_cell(model, tok, entries, task=task, train=train, device=CPU, **args)


def test_prefix_cache_reproduces_full_forward(tiny):
    model, tok = tiny
    entries = build_task("phonebook", tok, 50)
    batch = make_batch(tok, entries, CPU)
    adapter = attach(model, "mlp@2", 4, seed=0)
    for p in adapter.parameters:
        p.data.normal_(0, 0.1)  # a non-trivial adapter
    assert check_fast_path(model, batch, Forward(model, batch, start_layer=2))
    adapter.detach()


def test_lean_and_full_paths_give_identical_cells(tiny):
    model, tok = tiny
    entries = build_task("long_context", tok, 40, random_ratio=1.0)
    lean, model = _run(model, tok, entries, task="long_context")
    full, model = _run(
        model,
        tok,
        entries,
        task="long_context",
        train=TrainConfig(max_steps=60, prefix_cache=False),
    )
    assert lean.prefix_cached and not full.prefix_cached
    assert lean.steps == full.steps
    assert lean.loss_after == pytest.approx(full.loss_after, rel=1e-4)
    np.testing.assert_allclose(lean.p_after, full.p_after, rtol=1e-3, atol=1e-6)


def test_cell_measurements_are_consistent(tiny):
    model, tok = tiny
    entries = build_task("phonebook", tok, 60)
    res, _ = _run(model, tok, entries, train=TrainConfig(max_steps=200))
    assert res.status == "ok"
    assert res.loss_reduction == res.loss_before - res.loss_after
    assert res.loss_reduction > 0
    n = sum(len(e.target_ids) for e in entries)
    assert res.p_before.shape == res.p_after.shape == res.greedy_correct.shape == (n,)
    # mean loss is the mean of -log p (teacher forcing)
    assert res.loss_after == pytest.approx(float(np.mean(-np.log(res.p_after))), rel=1e-5)
    assert res.token_accuracy >= float(np.mean(res.p_after > 0.5))
    assert res.curve_steps[0] == 0 and res.loss_curve[0] == pytest.approx(res.loss_before, rel=1e-5)


def test_threshold_implies_greedy_exact_match(tiny):
    """p_after > 0.5 on every token of an entry => greedy decoding reproduces it (DESIGN §1)."""
    model, tok = tiny
    entries = build_task("phonebook", tok, 80)
    checked = 0
    for rank, steps in ((1, 15), (2, 30), (8, 200)):
        res, model = _run(model, tok, entries, rank=rank, train=TrainConfig(max_steps=steps))
        for e in range(len(entries)):
            mine = res.token_entry == e
            if (res.p_after[mine] > 0.5).all():
                checked += 1
                assert res.greedy_correct[mine].all()
    assert checked > 0  # the premise occurred, so the implication was really tested


def test_deterministic_given_seed(tiny):
    model, tok = tiny
    entries = build_task("phonebook", tok, 40)
    a, model = _run(model, tok, entries, seed=3)
    b, model = _run(model, tok, entries, seed=3)
    c, model = _run(model, tok, entries, seed=4)
    np.testing.assert_array_equal(a.p_after, b.p_after)
    assert a.loss_after != c.loss_after


def test_stops_when_memorized_or_plateaued(tiny):
    model, tok = tiny
    entries = build_task("phonebook", tok, 30)
    res, model = _run(model, tok, entries, train=TrainConfig(max_steps=500))
    assert res.stop_reason in ("memorized", "plateau") and res.steps < 500
    if res.stop_reason == "memorized":
        assert (res.p_after > 0.5).all()


def test_divergence_is_recorded_not_raised(tiny):
    model, tok = tiny
    entries = build_task("phonebook", tok, 30)
    ids = torch.arange(30)[None]
    with torch.no_grad():
        before = model(input_ids=ids).logits
    # AdamW moves every weight by ~lr on the first step: lr = 1e30 cannot stay finite
    res, model = _run(model, tok, entries, train=TrainConfig(max_steps=30, lr=1e30, grad_clip=1e30))
    assert res.status == "diverged" and res.stop_reason == "non-finite loss"
    assert math.isnan(res.loss_after) and res.steps < 30
    # the base model is intact: frozen, and it computes what it computed before
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)


def test_memft_ot_masks_tokens_above_threshold():
    losses = torch.tensor([0.1, 2.0, LN2 + 1e-3, 0.5])
    assert threshold_mask(losses).tolist() == [0, 1, 1, 0]
    assert threshold_mask(torch.tensor([0.1, 0.2])).tolist() == [1, 1]  # none above: plain mean


def test_memft_sw_long_window_and_growth():
    obj = MemFTSWLong(window=4, decay=2.0)
    losses = torch.full((12,), 2.0)
    correct = torch.ones(12, dtype=torch.bool)
    correct[3] = False
    w = obj.weights(losses, correct, 0)
    soft = torch.sigmoid(torch.tensor(10 * (2.0 - LN2)))
    assert w[3] == pytest.approx(float(soft))
    assert w[4] == pytest.approx(float(soft * math.exp(-0.5)))
    assert w[0] == pytest.approx(float(soft * 0.01)) and w[8] == pytest.approx(float(soft * 0.01))
    for step in range(1, 4):  # anchor stuck for 3 steps: the window grows by x0.5
        w = obj.weights(losses, correct, step)
    assert obj._mult == 1.5 and w[8] > float(soft * 0.01)


def test_memft_sw_phonebook_curriculum():
    token_entry = np.repeat(np.arange(10), 3)
    obj = make_objective(
        "memft_sw", task="phonebook", token_entry=token_entry, max_steps=100, seed=0
    )
    assert isinstance(obj, MemFTSWPhonebook)
    losses = torch.full((30,), 2.0)
    correct = torch.zeros(30, dtype=torch.bool)
    shown = [int(obj.weights(losses, correct, s).sum()) // 3 for s in (0, 10, 20, 30, 40, 99)]
    assert shown == [2, 4, 6, 8, 10, 10]


@pytest.mark.parametrize(
    ("method", "task"),
    [("sft", "long_context"), ("memft_ot", "long_context"), ("memft_sw", "phonebook")],
)
def test_objectives_without_argmax_ignore_correct(method, task):
    """A step skips the vocabulary argmax only for objectives whose weights never read it."""
    token_entry = np.repeat(np.arange(4), 3)
    obj = make_objective(method, task=task, token_entry=token_entry, max_steps=50, seed=0)
    assert obj.uses_argmax is False
    losses = torch.linspace(0.1, 3.0, 12)
    for correct in (torch.zeros(12, dtype=torch.bool), torch.ones(12, dtype=torch.bool)):
        torch.testing.assert_close(obj.weights(losses, None, 20), obj.weights(losses, correct, 20))


def test_memft_sw_long_reads_the_argmax():
    obj = make_objective(
        "memft_sw", task="long_context", token_entry=np.zeros(12, int), max_steps=50, seed=0
    )
    assert obj.uses_argmax is True
    losses, correct = torch.full((12,), 2.0), torch.ones(12, dtype=torch.bool)
    correct[5] = False
    assert int(obj.weights(losses, correct, 0).argmax()) == 5  # the anchor: first wrong argmax


def test_token_stats_skips_the_argmax_on_request():
    logits = torch.randn(6, 11, generator=torch.Generator().manual_seed(0))
    labels = logits.argmax(-1)
    labels[2] = (labels[2] + 1) % 11
    loss, p, correct = token_stats(logits, labels)
    loss2, p2, none = token_stats(logits, labels, argmax=False)
    assert none is None and correct.tolist() == [True, True, False, True, True, True]
    torch.testing.assert_close(loss, loss2, rtol=0, atol=0)
    torch.testing.assert_close(p, (-loss).exp(), rtol=0, atol=0)


def test_first_exact_step_is_reached_by_a_memorized_cell(tiny):
    """A cell trained until memorized became exact at or before its last step, and stays so."""
    model, tok = tiny
    entries = build_task("phonebook", tok, 60)
    res, _ = _run(model, tok, entries, train=TrainConfig(max_steps=200))
    assert res.stop_reason == "memorized"
    assert 0 <= res.first_exact_step <= res.steps
    assert res.token_accuracy == 1.0  # the last step's teacher-forced argmax, all correct
    assert res.greedy_correct.all() and res.exact_match == 1.0


def test_first_exact_step_matches_greedy_recall_of_real_cells(tiny):
    """All teacher-forced argmaxes right <=> greedy decoding reproduces every target."""
    model, tok = tiny
    entries = build_task("phonebook", tok, 60)
    seen = set()
    for rank, steps in ((1, 3), (8, 200)):
        train = TrainConfig(max_steps=steps, stop_when_memorized=False)
        res, model = _run(model, tok, entries, rank=rank, train=train)
        exact = res.token_accuracy == 1.0
        assert exact == bool(res.greedy_correct.all())
        # exact after the last step: reached at it or before; never reached: -1 (not yet)
        assert (res.first_exact_step >= 0) if exact else True
        assert res.first_exact_step <= res.steps
        seen.add(exact)
    assert seen == {True, False}  # both sides of the equivalence occurred


def _greedy(table, length):
    out = ()
    for _ in range(length):
        out += (int(np.argmax(table[out])),)
    return out


def test_teacher_forced_argmax_all_correct_iff_greedy_reproduces_target():
    """The induction over positions, checked on every target of handcrafted logit tables."""
    import itertools

    rng = np.random.default_rng(0)
    vocab, length = 3, 3
    prefixes = [p for n in range(length) for p in itertools.product(range(vocab), repeat=n)]
    both = set()
    for _ in range(20):
        table = {p: rng.normal(size=vocab) for p in prefixes}  # next-token logits per prefix
        for target in itertools.product(range(vocab), repeat=length):
            logits = torch.tensor(np.stack([table[target[:t]] for t in range(length)]))
            _, _, correct = token_stats(logits, torch.tensor(target))
            forced = bool(correct.all())
            assert forced == (_greedy(table, length) == target)
            both.add(forced)
    assert both == {True, False}


def test_every_argmax_hit_answers_as_the_argmax_ties_included():
    """The cheap all-hits check against ``(argmax == labels).all()``: misses, ties, NaN-free."""
    from collect.probe.measure import every_argmax_hit

    rng = np.random.default_rng(1)
    seen = set()
    for trial in range(400):
        vocab, n = int(rng.integers(2, 6)), int(rng.integers(1, 5))
        logits = torch.tensor(rng.integers(-2, 3, size=(n, vocab)), dtype=torch.float32)
        labels = logits.argmax(-1) if trial % 2 else torch.tensor(rng.integers(0, vocab, n))
        if trial % 4 == 1:  # the label tied with an earlier index at the maximum: a miss
            row, top = 0, float(logits[0].max())
            logits[row, :] = torch.clamp(logits[row], max=top - 1)
            logits[row, 0] = logits[row, vocab - 1] = top
            labels[row] = vocab - 1
        want = bool((logits.argmax(-1) == labels).all())
        got = every_argmax_hit(logits, labels)
        assert got.dim() == 0 and bool(got) == want
        assert bool(token_stats(logits, labels, argmax="all")[2]) == want
        seen.add(want)
    assert seen == {True, False}


@pytest.mark.parametrize("method", ["sft", "memft_ot", "memft_sw"])
def test_a_cell_is_the_same_as_with_the_full_argmax_at_every_step(tiny, monkeypatch, method):
    """Asking only what a step needs of the argmax changes nothing a cell records."""
    from collect.probe.loop import CellLoop

    model, tok = tiny
    entries = build_task("phonebook", tok, 40)
    kw = {"method": method, "rank": 8, "train": TrainConfig(max_steps=120)}
    lean, model = _run(model, tok, entries, **kw)
    monkeypatch.setattr(CellLoop, "argmax_wanted", property(lambda self: True))
    full, _ = _run(model, tok, entries, **kw)
    assert 0 <= lean.first_exact_step == full.first_exact_step
    assert lean.steps == full.steps and lean.stop_reason == full.stop_reason
    np.testing.assert_array_equal(lean.loss_curve, full.loss_curve)
    np.testing.assert_array_equal(lean.p_after, full.p_after)


def test_first_exact_step_survives_a_resume(tiny):
    """Resumed from a snapshot after it was reached, a cell reports the same step."""
    model, tok = tiny
    entries = build_task("phonebook", tok, 40)
    kw = {"rank": 8, "train": TrainConfig(max_steps=200, stop_when_memorized=False)}
    direct, model = _run(model, tok, entries, **kw)
    assert 0 <= direct.first_exact_step < 150
    cut = direct.first_exact_step + 5
    first, model = _run(
        model,
        tok,
        entries,
        rank=8,
        train=TrainConfig(max_steps=cut, stop_when_memorized=False),
        keep_state=True,
    )
    assert first.state["first_exact_step"] == direct.first_exact_step
    more, model = _run(model, tok, entries, resume=first.state, **kw)
    assert more.first_exact_step == direct.first_exact_step
    old = {k: v for k, v in first.state.items() if k != "first_exact_step"}  # older snapshot
    later, _ = _run(model, tok, entries, resume=old, **kw)
    assert later.first_exact_step == UNKNOWN_EXACT  # it may have passed before the snapshot
    # what a cell file records beside the step (which is NaN for both -1 and -2)
    from collect.store import first_exact_label

    assert first_exact_label(later.first_exact_step) == "unknown"
    assert first_exact_label(direct.first_exact_step) == "reached"
    assert first_exact_label(NEVER_EXACT) == "never"
