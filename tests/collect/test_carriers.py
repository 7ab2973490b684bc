"""Memory-token carrier (collect.carriers, ``memtok:m``) on the tiny random model."""

import json

import numpy as np
import pytest
import torch

from collect.adapters import attach, parse_modules
from collect.errors import CollectError
from collect.probe import TrainConfig, run_cell
from collect.tasks import build_task


def logits(model, ids, mask=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, use_cache=False).logits


def test_carrier_specs_parse_and_reject_ranks(tiny):
    model, _ = tiny
    spec = parse_modules("memtok:8")
    assert spec.is_carrier and not spec.is_block and spec.layers == (0,)
    with pytest.raises(CollectError, match="not understood"):
        parse_modules("memtok:0")
    with pytest.raises(CollectError, match="ranks = \\[1\\]"):
        attach(model, "memtok:8", 4, seed=0)


@pytest.mark.parametrize("m", [1, 8])
def test_n_params_is_the_count_of_the_tensors_that_train(tiny, m):
    model, tok = tiny
    adapter = attach(model, f"memtok:{m}", 1, seed=0)
    ids = torch.tensor([tok("Recite: abc", add_special_tokens=False)["input_ids"]])
    logits_ = model(input_ids=ids, use_cache=False).logits
    logits_.logsumexp(-1).sum().backward()
    base = [p for p in model.parameters() if p.grad is not None or p.requires_grad]
    trained = [p for p in adapter.parameters if p.grad is not None]
    assert base == [] and len(trained) == len(adapter.parameters) == 1
    assert adapter.n_params == sum(p.numel() for p in trained) == m * model.config.hidden_size
    assert adapter.n_bytes == sum(p.numel() * p.element_size() for p in trained)
    assert adapter.n_bytes == 4 * adapter.n_params  # float32 storage
    adapter.detach()


def test_n_bytes_follows_the_storage_precision(tiny):
    model, _ = tiny
    adapter = attach(model.to(torch.bfloat16), "memtok:4", 1, seed=0)
    assert adapter.n_bytes == 2 * adapter.n_params == 2 * 4 * model.config.hidden_size
    adapter.detach()


def test_memory_changes_the_output_and_detach_restores_the_model(tiny):
    model, tok = tiny
    ids = torch.tensor([tok("Name: 0123", add_special_tokens=False)["input_ids"]])
    before = logits(model, ids)
    adapter = attach(model, "memtok:4", 1, seed=0)
    with_memory = logits(model, ids)
    assert with_memory.shape == before.shape  # memory positions are not in the output
    assert not torch.allclose(with_memory, before)
    adapter.detach()
    torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=0)


def test_cached_greedy_decoding_equals_recomputing_every_step(tiny):
    model, tok = tiny
    adapter = attach(model, "memtok:3", 1, seed=1)
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("Ab:", "Longer key:")]
    width = max(map(len, prompts))
    ids = torch.full((2, width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):  # left padding, as greedy_decode does
        ids[row, width - len(p) :], mask[row, width - len(p) :] = torch.tensor(p), 1
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        cached = model.generate(input_ids=ids, attention_mask=mask, use_cache=True, **kw)
        plain = model.generate(input_ids=ids, attention_mask=mask, use_cache=False, **kw)
    torch.testing.assert_close(cached, plain)
    # and each row's first generated token is the argmax of a forward pass on its own prompt
    # (unpadded, as in training): left padding does not move the memory or the prompt
    first = torch.stack([logits(model, torch.tensor([p]))[0, -1].argmax() for p in prompts])
    torch.testing.assert_close(cached[:, width], first)
    adapter.detach()


def test_memory_tokens_memorize_a_short_target_exactly(tiny):
    model, tok = tiny
    entries = build_task("long_context", tok, 16, random_ratio=1.0)
    train = TrainConfig(max_steps=300, lr=0.05)
    result, model = run_cell(
        model,
        tok,
        entries,
        task="long_context",
        method="sft",
        modules="memtok:8",
        rank=1,
        seed=0,
        train=train,
        device=torch.device("cpu"),
    )
    assert result.status == "ok", result.error
    assert result.stop_reason == "memorized" and result.exact_match == 1.0
    assert np.all(result.greedy_correct) and np.all(result.p_after > 0.5)
    assert result.n_params == 8 * model.config.hidden_size
    assert not result.prefix_cached  # the carrier changes what enters layer 0


def test_packed_prompts_fall_back_to_the_plain_batch(chat_tiny):
    model, tok = chat_tiny
    entries = build_task("phonebook", tok, 30)
    with pytest.warns(UserWarning, match="packed prompts"):
        result, _ = run_cell(
            model,
            tok,
            entries,
            task="phonebook",
            method="sft",
            modules="memtok:2",
            rank=1,
            seed=0,
            train=TrainConfig(max_steps=3),
            device=torch.device("cpu"),
        )
    assert result.status == "ok", result.error
    assert not result.prompt_packed and len(result.p_after) == 30


def test_a_sweep_runs_carrier_cells(tmp_path, tiny_sweep):
    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "modules": ["memtok:2", "kv:2@1", "skv:8@all", "mlp_block@1"],
            "ranks": [1],
            "lengths": [20],
            "seeds": [0],
        },
        train={"max_steps": 2, "log_every": 1},
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}],
    )
    ds = run_sweep(config_from_dict(raw), tmp_path, progress=False, merge_to=tmp_path / "d.nc")
    assert (ds["status"] == "ok").all()
    n_params = ds["n_params"].sel(rank=1).squeeze()
    assert int(n_params.sel(modules="memtok:2")) == 2 * 64  # m · hidden
    assert int(n_params.sel(modules="kv:2@1")) == 2 * 2 * 2 * 16 * 3  # 2 m n_kv d_head (L - k)
    assert int(n_params.sel(modules="skv:8@all")) == 2 * 8 * 2 * 16 * 4  # 2 k n_kv d_head L
    assert int(n_params.sel(modules="mlp_block@1")) == 2 * 64  # r · 2d
    # every cell measured its bytes: float32 storage, 4 bytes per scalar
    n_bytes = ds["n_bytes"].sel(rank=1).squeeze()
    assert n_bytes.dims == n_params.dims and ds["n_bytes"].attrs["derived_cells"] == 0
    np.testing.assert_array_equal(n_bytes.values, 4 * n_params.values)
    assert json.loads(ds.attrs["cell_stop_reasons"])["written"] == 1  # the skv cell
    assert ":" not in "".join(p.name for p in (tmp_path / "cells").iterdir())


def test_cells_written_before_n_bytes_existed_still_merge(tmp_path, tiny_sweep):
    # older cell files have no n_bytes: merge derives it from n_params (4 bytes for a weight
    # delta, whatever the model; the recorded dtype's size for a carrier), counts those cells,
    # and the fingerprint of the sweep is unchanged (no cell is re-run)
    import xarray as xr

    from collect.config import config_from_dict
    from collect.store import CHECKSUM_ATTR, data_checksum, merge
    from collect.sweep import run_sweep

    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "modules": ["memtok:2", "mlp@1"],
            "ranks": [1],
            "lengths": [20],
            "seeds": [0],
        },
        train={"max_steps": 1, "log_every": 1},
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}],
    )
    config = config_from_dict(raw)
    run_sweep(config, tmp_path, progress=False)
    new = merge(config, tmp_path, strict=True)
    assert new["n_bytes"].attrs["derived_cells"] == 0
    files = sorted((tmp_path / "cells").glob("*.nc"))
    for path in files:
        old = xr.load_dataset(path).drop_vars("n_bytes")
        old.attrs[CHECKSUM_ATTR] = data_checksum(old)
        old.to_netcdf(path)
    merged = merge(config, tmp_path, strict=True)
    assert merged.attrs["fingerprint"] == new.attrs["fingerprint"] == config.fingerprint()
    assert merged["n_bytes"].attrs["derived_cells"] == len(files) == 2
    np.testing.assert_array_equal(merged["n_bytes"].values, new["n_bytes"].values)
    # a bfloat16 carrier cell is derived at 2 bytes per scalar, a weight delta at 4
    from collect.carriers import derived_n_bytes

    assert derived_n_bytes("memtok:2", 128, "bfloat16") == 256
    assert derived_n_bytes("mlp@1", 1152, "bfloat16") == 4 * 1152
    assert derived_n_bytes("kv:2@1", 384, "") is None  # a carrier's dtype is always recorded
