"""KV carriers (collect.carriers: ``kv:m@k`` and ``skv:k@LAYERS``) on the tiny random model."""

import numpy as np
import pytest
import torch

from collect.adapters import attach, parse_modules
from collect.carriers import init_text_ids
from collect.errors import CollectError
from collect.probe import TrainConfig, make_batch, run_cell
from collect.tasks import build_task

CPU = torch.device("cpu")


def ids_of(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


def kv_size(model, slots, n_layers):
    """2 · slots · n_kv_heads · head_dim · layers, from the config alone."""
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    return 2 * slots * cfg.num_key_value_heads * head_dim * n_layers


def cell(model, tok, entries, modules, *, task="long_context", steps=0, **kw):
    train = kw.pop("train", TrainConfig(max_steps=steps))
    return run_cell(
        model,
        tok,
        entries,
        task=task,
        method="sft",
        modules=modules,
        rank=1,
        seed=0,
        train=train,
        device=CPU,
        **kw,
    )


def test_kv_specs_parse_and_bad_ones_are_refused(tiny):
    model, tok = tiny
    assert parse_modules("kv:8@2").parts == ("kv",) and parse_modules("kv:8@-1").layers == (-1,)
    assert parse_modules("skv:4@all").layers is None
    assert parse_modules("skv:4@1,3").layers == (1, 3) and parse_modules("skv:4@1").is_carrier
    for bad in ("kv:4", "skv:4", "kv:4@1,2"):
        with pytest.raises(CollectError, match="not understood"):
            parse_modules(bad)
    for bad in ("kv:0@1", "skv:0@all"):
        with pytest.raises(CollectError, match="size must be a whole number >= 1"):
            parse_modules(bad)
    with pytest.raises(CollectError, match="4 layers"):
        attach(model, "kv:2@7", 1, seed=0, tokenizer=tok)
    with pytest.raises(CollectError, match="ranks = \\[1\\]"):
        attach(model, "skv:2@all", 2, seed=0)
    with pytest.raises(CollectError, match="tokenizer"):
        attach(model, "kv:2@1", 1, seed=0)


@pytest.mark.parametrize(("m", "k"), [(1, 0), (4, 2), (3, -1)])
def test_kv_prefix_n_params_is_the_count_of_the_tensors_that_train(tiny, m, k):
    model, tok = tiny
    adapter = attach(model, f"kv:{m}@{k}", 1, seed=0, tokenizer=tok)
    logits_ = model(input_ids=torch.tensor([ids_of(tok, "Recite: abc")]), use_cache=False).logits
    logits_.logsumexp(-1).sum().backward()
    base = [p for p in model.parameters() if p.grad is not None or p.requires_grad]
    trained = [p for p in adapter.parameters if p.grad is not None]
    n_layers = 4 - (k % 4)
    assert base == [] and len(trained) == len(adapter.parameters) == 2 * n_layers
    assert adapter.n_params == sum(p.numel() for p in trained) == kv_size(model, m, n_layers)
    assert adapter.n_bytes == sum(p.numel() * p.element_size() for p in trained)
    assert adapter.n_bytes == 4 * adapter.n_params  # float32 storage
    assert adapter.first_layer == k % 4
    adapter.detach()


def test_kv_prefix_n_bytes_follows_the_storage_precision(tiny):
    model, tok = tiny
    adapter = attach(model.to(torch.bfloat16), "kv:4@1", 1, seed=0, tokenizer=tok)
    assert adapter.n_bytes == 2 * adapter.n_params == 2 * kv_size(model, 4, 3)
    adapter.detach()


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_a_fresh_kv_prefix_at_every_layer_is_its_text_in_context(tiny, impl):
    # kv:m@0 starts as the keys and values of m real tokens, and the prompt's positions follow
    # them: the model reads the prompt exactly as if those tokens preceded it
    model, tok = tiny
    model.config._attn_implementation = impl
    prompt, m = ids_of(tok, "Recite: abc"), 6
    text = init_text_ids(tok, m)
    in_context = logits(model, text + prompt)[m:]
    adapter = attach(model, f"kv:{m}@0", 1, seed=0, tokenizer=tok)
    torch.testing.assert_close(logits(model, prompt), in_context, rtol=0, atol=1e-4)
    adapter.detach()
    torch.testing.assert_close(logits(model, text + prompt)[m:], in_context, rtol=0, atol=0)


def left_padded(tok, texts):
    prompts = [ids_of(tok, t) for t in texts]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):  # left padding, as greedy_decode does
        ids[row, width - len(p) :], mask[row, width - len(p) :] = torch.tensor(p), 1
    return prompts, ids, mask


def assert_cached_decoding_is_exact(model, tok):
    prompts, ids, mask = left_padded(tok, ("Ab:", "Longer key:"))
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        cached = model.generate(input_ids=ids, attention_mask=mask, use_cache=True, **kw)
        plain = model.generate(input_ids=ids, attention_mask=mask, use_cache=False, **kw)
    torch.testing.assert_close(cached, plain)
    # each row's first generated token is the argmax of a forward pass on its own prompt
    first = torch.stack([logits(model, p)[-1].argmax() for p in prompts])
    torch.testing.assert_close(cached[:, ids.shape[1]], first)


def test_kv_prefix_cached_greedy_decoding_equals_recomputing_every_step(tiny):
    model, tok = tiny
    adapter = attach(model, "kv:3@1", 1, seed=0, tokenizer=tok)
    assert_cached_decoding_is_exact(model, tok)
    adapter.detach()


def test_sparse_kv_cached_greedy_decoding_equals_recomputing_every_step(tiny):
    model, tok = tiny
    entries = build_task("phonebook", tok, 20)
    adapter = attach(model, "skv:5@1,3", 1, seed=0)
    adapter.write(make_batch(tok, entries, CPU))
    assert_cached_decoding_is_exact(model, tok)
    adapter.detach()


def test_kv_prefix_memorizes_a_short_target_exactly(tiny):
    model, tok = tiny
    entries = build_task("long_context", tok, 16, random_ratio=1.0)
    train = TrainConfig(max_steps=300, lr=0.05)
    result, model = cell(model, tok, entries, "kv:4@1", train=train)
    assert result.status == "ok", result.error
    assert result.stop_reason == "memorized" and result.exact_match == 1.0
    assert np.all(result.greedy_correct) and np.all(result.p_after > 0.5)
    assert result.n_params == kv_size(model, 4, 3)
    assert result.prefix_cached  # layers below k never see the memory


def test_kv_prefix_reads_packed_prompts_as_the_plain_batch(chat_tiny):
    model, tok = chat_tiny
    entries = build_task("phonebook", tok, 30)
    packed, model = cell(model, tok, entries, "kv:2@1", task="phonebook", steps=3)
    plain, model = cell(model, tok, entries, "kv:2@1", task="phonebook", steps=3, pack=False)
    assert packed.status == plain.status == "ok", (packed.error, plain.error)
    assert packed.prompt_packed and not plain.prompt_packed
    np.testing.assert_allclose(packed.p_before, plain.p_before, rtol=0, atol=1e-5)
    np.testing.assert_allclose(packed.p_after, plain.p_after, rtol=0, atol=1e-4)


def full_context_probs(model, batch):
    """p of each target token when the model reads all rows first, then the row again."""
    memory = [t for p, t_ in zip(batch.prompts, batch.targets, strict=True) for t in (*p, *t_)]
    out = []
    for prompt, target in zip(batch.prompts, batch.targets, strict=True):
        seq = memory + prompt + target
        logp = torch.log_softmax(logits(model, seq).double(), -1)
        start = len(memory) + len(prompt) - 1
        out += [logp[start + j, t].exp().item() for j, t in enumerate(target)]
    return np.asarray(out), len(memory)


@pytest.mark.parametrize("task", ["phonebook", "long_context"])
def test_sparse_kv_keeping_every_position_reproduces_the_full_context(tiny, task):
    model, tok = tiny
    entries = build_task(task, tok, 24)
    batch = make_batch(tok, entries, CPU)
    expected, n_text = full_context_probs(model, batch)
    result, model = cell(model, tok, entries, f"skv:{n_text}@all", task=task)
    assert result.status == "ok", result.error
    assert result.stop_reason == "written" and result.steps == 0
    assert result.n_params == kv_size(model, n_text, 4)
    np.testing.assert_allclose(result.p_after, expected, rtol=1e-4, atol=1e-6)
    # before the write the memory is empty: the bare model on the prompts alone
    bare = []
    for prompt, target in zip(batch.prompts, batch.targets, strict=True):
        logp = torch.log_softmax(logits(model, prompt + target).double(), -1)
        bare += [logp[len(prompt) - 1 + j, t].exp().item() for j, t in enumerate(target)]
    np.testing.assert_allclose(result.p_before, bare, rtol=1e-4, atol=1e-6)


def distances(a, b):
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def test_sparse_kv_smaller_k_stores_fewer_scalars_and_a_subset_of_positions(tiny):
    # recall is not guaranteed to fall monotonically with k (a sparser memory may help one
    # token by chance); what is guaranteed is that the kept positions nest, and that they are
    # the positions that received the most attention
    from collect.carriers import _read_keys_values

    model, tok = tiny
    batch = make_batch(tok, build_task("phonebook", tok, 20), CPU)
    text = [t for p, t_ in zip(batch.prompts, batch.targets, strict=True) for t in (*p, *t_)]
    unwritten = attach(model, "skv:1@0,2", 1, seed=0)  # reads the text's keys, unshifted
    memories = {i: model.model.layers[i].self_attn.kv_memory for i in (0, 2)}
    captured = _read_keys_values(model, text, memories)
    model = unwritten.detach()
    stored = {}
    for k in (4, 9, 15):
        adapter = attach(model, f"skv:{k}@0,2", 1, seed=0)
        adapter.write(batch)
        stored[k] = [p.clone() for p in adapter.parameters]
        assert adapter.n_params == kv_size(model, k, 2) and adapter.n_bytes == 4 * adapter.n_params
        # the bytes are those of the kept keys and values, at the model's precision
        assert adapter.n_bytes == sum(t.numel() * t.element_size() for t in stored[k])
        for layer, keys_kept in zip((0, 2), stored[k][::2], strict=True):
            keys, _, received = captured[layer]
            for head in range(keys.shape[0]):
                hit = distances(keys_kept[head], keys[head]).argmin(dim=1)
                rest = np.setdiff1d(np.arange(len(text)), hit.numpy())
                assert received[head, hit].min() >= received[head, rest].max()
        model = adapter.detach()
    for small, large in ((4, 9), (9, 15)):
        for kept, more in zip(stored[small], stored[large], strict=True):
            for head in range(kept.shape[0]):  # every kept vector is among the larger set's
                dist = distances(kept[head], more[head])
                assert torch.all(dist.min(dim=1).values == 0)


@pytest.mark.parametrize("chunk", [512, 3])
def test_received_attention_is_the_eager_attention_summed_over_queries(tiny, monkeypatch, chunk):
    from collect.carriers import _read_keys_values, kv_memory

    # received_attention reads QUERY_CHUNK in collect.carriers.kv_memory
    monkeypatch.setattr(kv_memory, "QUERY_CHUNK", chunk)  # 3: the queries in several blocks
    model, tok = tiny
    model.config._attn_implementation = "eager"
    ids = ids_of(tok, "The received attention of each key.")
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids]), output_attentions=True).attentions
    adapter = attach(model, "skv:3@1,2", 1, seed=0)
    memories = adapter.model.model.layers
    captured = _read_keys_values(model, ids, {i: memories[i].self_attn.kv_memory for i in (1, 2)})
    for layer in (1, 2):
        n_heads, n_kv = probs[layer].shape[1], model.config.num_key_value_heads
        per_head = probs[layer][0].sum(1)  # (heads, K): summed over queries
        expected = per_head.view(n_kv, n_heads // n_kv, -1).sum(1)
        torch.testing.assert_close(captured[layer][2], expected, rtol=1e-5, atol=1e-5)
    adapter.detach()


def test_sparse_kv_larger_than_its_text_fails_the_cell_with_a_fix(tiny):
    model, tok = tiny
    entries = build_task("long_context", tok, 8, random_ratio=1.0)
    result, _ = cell(model, tok, entries, "skv:500@all")
    assert result.status == "failed" and "use k <=" in result.error


def test_a_sweep_refuses_memft_objectives_for_a_memory_written_without_training(tiny_sweep):
    from collect.config import config_from_dict

    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "modules": ["skv:8@all"],
            "ranks": [1],
            "lengths": [20],
            "seeds": [0],
        },
        grid=[{"tasks": ["phonebook"], "methods": ["sft", "memft_ot"]}],
    )
    with pytest.raises(CollectError, match='methods = \\["sft"\\]'):
        config_from_dict(raw)


@pytest.mark.parametrize("spec", ["kv:3@1", "skv:5@0,2"])
def test_a_skeleton_counts_kv_carriers_without_weights(spec):
    from collect.models import load_skeleton

    loaded = load_skeleton("tiny-random")
    adapter = attach(loaded.model, spec, 1, seed=0, tokenizer=loaded.tokenizer)
    assert adapter.n_params == (
        kv_size(loaded.model, 3, 3) if spec[0] == "k" else kv_size(loaded.model, 5, 2)
    )
    adapter.detach()
