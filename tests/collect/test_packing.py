"""Packing entries around their shared prompt prefix reproduces the plain batch exactly."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from collect.adapters import attach
from collect.packing import entries_per_row, pack_batch, shared_prompt_length
from collect.probe import Forward, TrainConfig, check_fast_path, make_batch, run_cell
from collect.tasks import build_task

CPU = torch.device("cpu")


def _nontrivial_adapter(model, modules="mlp@2", rank=4):
    adapter = attach(model, modules, rank, seed=0)
    generator = torch.Generator().manual_seed(1)
    for p in adapter.parameters:
        p.data.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return adapter


def test_shared_prompt_length_keeps_one_own_token_per_prompt():
    assert shared_prompt_length([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert shared_prompt_length([[1, 2, 3], [1, 2, 3, 4, 5]]) == 2  # [1, 2, 3] keeps its 3
    assert shared_prompt_length([[7, 2], [1, 2]]) == 0
    assert shared_prompt_length([[1, 2, 3]]) == 0  # one entry: nothing to share


def test_entries_per_row_bounds_the_prefix_share():
    assert entries_per_row(24, [21] * 100) == 10  # prefix adds ≤ 1/8 of a segment per entry
    assert entries_per_row(24, [21] * 3) == 3  # never more than there are entries
    assert entries_per_row(1, [50] * 10) == 1


def test_no_packing_without_a_shared_prefix(tiny):
    model, tok = tiny
    batch = make_batch(tok, build_task("phonebook", tok, 60), CPU)  # keys are bare names
    assert pack_batch(batch, torch.float32) is None


def test_packed_batch_keeps_labels_and_saves_positions(chat_tiny):
    model, tok = chat_tiny
    plain = make_batch(tok, build_task("phonebook", tok, 120), CPU)
    packed = pack_batch(plain, torch.float32)
    assert packed is not None
    assert torch.equal(packed.labels, plain.labels)
    np.testing.assert_array_equal(packed.token_entry, plain.token_entry)
    assert packed.input_ids.numel() < 0.8 * plain.input_ids.numel()
    # the position predicting each target token holds the token before it in its own sequence
    flat = packed.input_ids.flatten().numpy()
    before = []
    for prompt, target in zip(plain.prompts, plain.targets, strict=True):
        before += [prompt[-1], *target[:-1]]
    np.testing.assert_array_equal(flat[packed.pred_index.numpy()], before)


@pytest.mark.parametrize("start_layer", [0, 2])
def test_packed_logits_and_gradients_equal_the_plain_batch(chat_tiny, start_layer):
    model, tok = chat_tiny
    plain = make_batch(tok, build_task("phonebook", tok, 120), CPU)
    packed = pack_batch(plain, torch.float32)
    adapter = _nontrivial_adapter(model)
    ref = Forward(model, plain, 0)
    fast = Forward(model, packed, start_layer)
    assert check_fast_path(model, plain, fast)
    grads = []
    for fwd in (ref, fast):
        logits = fwd.logits()
        loss = torch.nn.functional.cross_entropy(logits, plain.labels)
        for p in adapter.parameters:
            p.grad = None
        loss.backward()
        grads.append([p.grad.clone() for p in adapter.parameters])
        if fwd is ref:
            ref_logits = logits.detach()
    torch.testing.assert_close(logits.detach(), ref_logits, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    adapter.detach()


def test_check_fast_path_rejects_a_wrong_packing(chat_tiny):
    model, tok = chat_tiny
    plain = make_batch(tok, build_task("phonebook", tok, 120), CPU)
    packed = pack_batch(plain, torch.float32)
    broken = packed.position_ids.clone()
    broken[:, packed.position_ids.shape[1] // 2 :] += 3  # shifted positions: RoPE differs
    adapter = _nontrivial_adapter(model)
    assert not check_fast_path(model, plain, Forward(model, replace(packed, position_ids=broken)))
    adapter.detach()


def test_packed_and_plain_cells_agree(chat_tiny):
    model, tok = chat_tiny
    entries = build_task("phonebook", tok, 90)
    train = TrainConfig(max_steps=40)
    args = {"task": "phonebook", "method": "sft", "modules": "mlp@2", "rank": 4, "seed": 0}
    packed, model = run_cell(model, tok, entries, train=train, device=CPU, **args)
    plain, model = run_cell(model, tok, entries, train=train, device=CPU, pack=False, **args)
    assert packed.prompt_packed and packed.prefix_cached
    assert not plain.prompt_packed
    assert packed.status == plain.status == "ok"
    assert packed.steps == plain.steps
    assert packed.loss_before == pytest.approx(plain.loss_before, rel=1e-6)
    assert packed.loss_after == pytest.approx(plain.loss_after, rel=1e-4)
    np.testing.assert_allclose(packed.p_after, plain.p_after, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(packed.greedy_correct, plain.greedy_correct)


def test_a_packed_path_that_raises_falls_back_with_a_warning(chat_tiny, monkeypatch):
    import collect.probe.forward

    def malformed(batch, dtype):  # a mask the attention kernel rejects
        packed = pack_batch(batch, dtype)
        return replace(packed, attention_mask=packed.attention_mask[..., :-1])

    # lean_forward looks pack_batch up in collect.probe.forward
    monkeypatch.setattr(collect.probe.forward, "pack_batch", malformed)
    model, tok = chat_tiny
    entries = build_task("phonebook", tok, 60)
    with pytest.warns(UserWarning, match="packed prompts fails here"):
        result, _ = run_cell(
            model,
            tok,
            entries,
            task="phonebook",
            method="sft",
            modules="mlp@2",
            rank=2,
            seed=0,
            train=TrainConfig(max_steps=5),
            device=CPU,
        )
    assert result.status == "ok" and not result.prompt_packed and result.prefix_cached
