"""The bf16 path (what a CUDA GPU runs), exercised on the CPU with the tiny model.

CPU bf16 matmuls are not the GPU kernels, so these tests check dtype handling, the lean
shortcuts' checks at bf16 precision and the float32 measurements, not GPU numerics.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from collect.adapters import attach
from collect.packing import pack_batch
from collect.probe import Forward, TrainConfig, check_fast_path, make_batch, run_cell
from collect.tasks import build_task

CPU = torch.device("cpu")


@pytest.fixture()
def bf16_tiny(chat_tiny):
    """The tiny chat model (shared prompt opening) in bf16."""
    model, tok = chat_tiny
    return model.to(torch.bfloat16), tok


@pytest.mark.parametrize("method", ["sft", "memft_ot", "memft_sw"])
@pytest.mark.parametrize(("task", "ratio"), [("phonebook", 0.0), ("long_context", 1.0)])
def test_bf16_cells_take_the_lean_path_and_measure_in_float32(bf16_tiny, task, ratio, method):
    model, tok = bf16_tiny
    entries = build_task(task, tok, 60, random_ratio=ratio)
    result, model = run_cell(
        model,
        tok,
        entries,
        task=task,
        method=method,
        modules="mlp_block@2",
        rank=4,
        seed=0,
        train=TrainConfig(max_steps=30),
        device=CPU,
    )
    assert result.status == "ok", result.error
    assert result.prefix_cached
    assert result.prompt_packed == (task == "phonebook")  # long context is one entry
    assert result.loss_after < result.loss_before
    assert result.p_after.dtype == np.float64
    assert np.all((result.p_after > 0) & (result.p_after <= 1))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())  # adapter removed


def test_bf16_check_still_rejects_wrong_positions(bf16_tiny):
    model, tok = bf16_tiny
    plain = make_batch(tok, build_task("phonebook", tok, 120), CPU)
    packed = pack_batch(plain, torch.bfloat16)
    adapter = attach(model, "mlp@2", 4, seed=0)
    assert check_fast_path(model, plain, Forward(model, packed, 2))
    shifted = packed.position_ids.clone()
    shifted[:, packed.position_ids.shape[1] // 2 :] += 3
    assert not check_fast_path(model, plain, Forward(model, replace(packed, position_ids=shifted)))
    adapter.detach()
