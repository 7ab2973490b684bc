"""Memory-token carrier (collect.carriers, ``memtok:m``) on the tiny random model."""

import functools
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


#: one cell of a carrier (rank 1, SFT, seed 0) on the CPU
sft_cell = functools.partial(run_cell, method="sft", rank=1, seed=0, device=torch.device("cpu"))
LC = "long_context"


def test_carrier_specs_parse_and_reject_ranks(tiny):
    model, _ = tiny
    spec = parse_modules("memtok:8")
    assert spec.is_carrier and not spec.is_block and spec.layers == (0,)
    with pytest.raises(CollectError, match="size must be a whole number >= 1"):
        parse_modules("memtok:0")
    with pytest.raises(CollectError, match="ranks = \\[1\\]"):
        attach(model, "memtok:8", 4, seed=0)


@pytest.mark.parametrize(
    ("spec", "m", "first"),
    [("memtok:1", 1, 0), ("memtok:8", 8, 0), ("memtok:1@0", 1, 0), ("memtok:4@2", 4, 2)]
    + [("memtok:3@-1", 3, 3)],
)
def test_n_params_is_the_count_of_the_tensors_that_train(tiny, spec, m, first):
    model, tok = tiny
    adapter = attach(model, spec, 1, seed=0)
    ids = torch.tensor([tok("Recite: abc", add_special_tokens=False)["input_ids"]])
    logits_ = model(input_ids=ids, use_cache=False).logits
    logits_.logsumexp(-1).sum().backward()
    base = [p for p in model.parameters() if p.grad is not None or p.requires_grad]
    trained = [p for p in adapter.parameters if p.grad is not None]
    assert base == [] and len(trained) == len(adapter.parameters) == 1
    assert adapter.n_params == sum(p.numel() for p in trained) == m * model.config.hidden_size
    assert adapter.n_bytes == sum(p.numel() * p.element_size() for p in trained)
    assert adapter.n_bytes == 4 * adapter.n_params  # float32 storage
    assert adapter.first_layer == first
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


@pytest.mark.parametrize("spec", ["memtok:3", "memtok:3@1"])
def test_cached_greedy_decoding_equals_recomputing_every_step(tiny, spec):
    model, tok = tiny
    adapter = attach(model, spec, 1, seed=1)
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


@pytest.mark.parametrize(("spec", "m", "lr"), [("memtok:8", 8, 0.05), ("memtok:16@1", 16, 0.1)])
def test_memory_tokens_memorize_a_short_target_exactly(tiny, spec, m, lr):
    model, tok = tiny
    entries = build_task("long_context", tok, 16, random_ratio=1.0)
    train = TrainConfig(max_steps=300, lr=lr)
    result, model = sft_cell(model, tok, entries, task="long_context", modules=spec, train=train)
    assert result.status == "ok", result.error
    assert result.stop_reason == "memorized" and result.exact_match == 1.0
    assert np.all(result.greedy_correct) and np.all(result.p_after > 0.5)
    assert result.n_params == m * model.config.hidden_size
    # memtok:m changes what enters layer 0; memtok:m@1 leaves layer 0 to run once per cell
    assert result.prefix_cached == ("@" in spec)


def test_a_sweep_runs_carrier_cells(tmp_path, tiny_sweep):
    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "modules": ["memtok:2", "memtok:2@1", "kv:2@1", "skv:8@all", "mlp_block@1"],
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
    assert int(n_params.sel(modules="memtok:2@1")) == 2 * 64
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


# ------------------------------------------------ memory tokens entering layer k (memtok:m@k)


def test_entering_layer_specs_parse_and_bad_ones_are_refused(tiny):
    model, _ = tiny
    spec = parse_modules("memtok:8@2")
    assert spec.is_carrier and spec.parts == ("memtok",) and spec.layers == (2,)
    assert parse_modules("memtok:8@-1").layers == (-1,)
    for bad in ("memtok:8@", "memtok:8@1,2", "memtok:8@all"):
        with pytest.raises(CollectError, match="not understood"):
            parse_modules(bad)
    with pytest.raises(CollectError, match="size must be a whole number >= 1"):
        parse_modules("memtok:0@1")
    with pytest.raises(CollectError, match="4 layers"):
        attach(model, "memtok:2@4", 1, seed=0)


def test_layers_below_k_never_see_the_memory_and_detach_restores_the_model(tiny):
    model, tok = tiny
    ids = torch.tensor([tok("Name: 0123", add_special_tokens=False)["input_ids"]])

    def hidden(model):
        with torch.no_grad():
            out = model.get_decoder()(input_ids=ids, output_hidden_states=True, use_cache=False)
        return out.hidden_states

    before = hidden(model)
    adapter = attach(model, "memtok:3@2", 1, seed=0)
    with_memory = hidden(model)
    for layer in (0, 1, 2):  # what enters layers 0..k: the positions move by m, rope is relative
        torch.testing.assert_close(with_memory[layer], before[layer], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(with_memory[3], before[3], atol=1e-2)  # layer 2 read the memory
    model = adapter.detach()
    for got, want in zip(hidden(model), before, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("spec", ["memtok:3@2", "memtok:3", "memtok:3@0"])
def test_entering_layer_k_is_m_extra_positions_in_the_residual_stream(tiny, impl, spec):
    # the reference, written out: the prompt alone through layers 0..k-1 (at positions m..,
    # where it will sit), then the m vectors put before it and the m + T positions run through
    # layers k..L-1 as one sequence (k = 0: the vectors prepended to the input embeddings,
    # memtok:m's definition); the KV route must give the same logits
    model, tok = tiny
    model.config._attn_implementation = impl
    ids = torch.tensor([tok("Name: 0123", add_special_tokens=False)["input_ids"]])
    m, k, n = 3, int(spec.partition("@")[2] or 0), ids.shape[1]
    adapter = attach(model, spec, 1, seed=0)
    with torch.no_grad():
        adapter.parameters[0].add_(torch.randn(m, model.config.hidden_size))  # a trained-like state
    got = logits(model, ids)
    vectors = adapter.parameters[0].detach().clone()
    model = adapter.detach()
    decoder, layers = model.get_decoder(), model.model.layers
    with torch.no_grad():
        positions = torch.arange(m, m + n)[None]
        below = decoder(input_ids=ids, position_ids=positions, output_hidden_states=True)
        stream = torch.cat([vectors[None], below.hidden_states[k]], dim=1)
        model.model.layers = torch.nn.ModuleList(list(layers)[k:])
        try:
            above = decoder(inputs_embeds=stream, use_cache=False).last_hidden_state
        finally:
            model.model.layers = layers
        want = model.get_output_embeddings()(above[:, m:])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_memtok_m_and_memtok_m_at_0_are_one_carrier(tiny):
    # memtok:m enters layer 0: the same vectors from the same seed (the embeddings of the same
    # m random tokens), the same cell
    model, tok = tiny
    entries = build_task("long_context", tok, 16, random_ratio=1.0)
    train = TrainConfig(max_steps=8, lr=0.05, stop_when_memorized=False)
    first, model = sft_cell(model, tok, entries, task=LC, modules="memtok:4", train=train)
    entering, model = sft_cell(model, tok, entries, task=LC, modules="memtok:4@0", train=train)
    assert first.status == entering.status == "ok", (first.error, entering.error)
    assert first.steps == entering.steps == 8 and first.n_params == entering.n_params
    assert first.loss_before == entering.loss_before
    np.testing.assert_array_equal(entering.loss_curve, first.loss_curve)
    assert first.loss_after < first.loss_before - 0.1  # training moved them
    start = attach(model, "memtok:4", 1, seed=0)
    ids = torch.randint(
        model.get_input_embeddings().num_embeddings,
        (4,),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        want = model.get_input_embeddings()(ids)
    torch.testing.assert_close(start.parameters[0], want, rtol=0, atol=0)
    start.detach()


def test_entering_layer_prefix_cache_gives_the_uncached_cell(tiny):
    model, tok = tiny
    entries = build_task("long_context", tok, 16, random_ratio=1.0)
    runs = {}
    for cache in (True, False):
        train = TrainConfig(max_steps=8, prefix_cache=cache)
        runs[cache], model = sft_cell(
            model, tok, entries, task=LC, modules="memtok:4@2", train=train
        )
    cached, plain = runs[True], runs[False]
    assert cached.status == plain.status == "ok", (cached.error, plain.error)
    assert cached.prefix_cached and not plain.prefix_cached  # layers 0-1 ran once per cell
    assert abs(cached.loss_before - plain.loss_before) < 1e-5
    assert abs(cached.loss_after - plain.loss_after) < 1e-4
    assert cached.loss_after < cached.loss_before  # the steps trained the vectors
    np.testing.assert_allclose(cached.p_after, plain.p_after, rtol=0, atol=1e-4)


@pytest.mark.parametrize("spec", ["memtok:2@1", "memtok:2"])
def test_memory_tokens_read_packed_prompts_as_the_plain_batch(chat_tiny, spec):
    # the memory is read as a KV prefix, so packed prompts apply, at layer 0 too
    model, tok = chat_tiny
    entries = build_task("phonebook", tok, 30)
    runs = {}
    for pack in (True, False):
        train = TrainConfig(max_steps=3)
        runs[pack], model = sft_cell(
            model, tok, entries, task="phonebook", modules=spec, train=train, pack=pack
        )
    packed, plain = runs[True], runs[False]
    assert packed.status == plain.status == "ok", (packed.error, plain.error)
    assert packed.prompt_packed and not plain.prompt_packed
    np.testing.assert_allclose(packed.p_before, plain.p_before, rtol=0, atol=1e-5)
    np.testing.assert_allclose(packed.p_after, plain.p_after, rtol=0, atol=1e-4)


def test_a_skeleton_counts_entering_memory_tokens_without_weights():
    from collect.models import load_skeleton

    loaded = load_skeleton("tiny-random")
    adapter = attach(loaded.model, "memtok:3@2", 1, seed=0)
    assert adapter.n_params == 3 * loaded.model.config.hidden_size
    adapter.detach()


def test_memft_objectives_write_every_trained_carrier(tmp_path, tiny_sweep):
    """MemFT applies wherever the write is gradient-based (issue 15): memory tokens, KV slots."""
    from collect.config import config_from_dict
    from collect.sweep import run_sweep

    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "modules": ["memtok:2", "memtok:2@1", "kv:2@1"],
            "methods": ["memft_ot", "memft_sw"],
            "ranks": [1],
            "lengths": [20],
            "seeds": [0],
        },
        train={"max_steps": 3, "log_every": 1},
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}],
    )
    ds = run_sweep(config_from_dict(raw), tmp_path, progress=False, merge_to=tmp_path / "d.nc")
    assert (ds["status"] == "ok").all() and ds["status"].size == 6
    assert set(ds["objective"].values) == {"memft_ot", "memft_sw"}
    # each trained: the loss moved from where it started
    assert np.all(np.abs(ds["loss_reduction"].values) > 0)
