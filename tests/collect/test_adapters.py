import re

import pytest
import torch

from collect.adapters import attach, parse_modules, target_module_names
from collect.errors import CollectError


@pytest.mark.parametrize(
    ("text", "parts", "layers"),
    [
        ("mlp@2", ("mlp",), (2,)),
        ("attn+mlp@all", ("attn", "mlp"), None),
        ("q_proj+v_proj@0,-1", ("q_proj", "v_proj"), (0, -1)),
        ("mlp_block@3", ("mlp_block",), (3,)),
    ],
)
def test_parse_modules(text, parts, layers):
    spec = parse_modules(text)
    assert spec.parts == parts and spec.layers == layers


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        *[
            (bad, f"modules spec {re.escape(repr(bad))} is not understood. Expected PARTS@LAYERS")
            for bad in ("mlp", "mlp@", "@3", "mlp@x", "")
        ],
        ("mlp_block+attn@1", "'mlp_block' cannot be combined with other parts"),
    ],
)
def test_parse_modules_rejects(bad, match):
    with pytest.raises(CollectError, match=match):
        parse_modules(bad)


def test_n_params_are_exact(tiny):
    model, _ = tiny
    d, ff = model.config.hidden_size, model.config.intermediate_size
    cases = {
        "mlp@1": 3 * (d + ff),  # gate, up: d->ff ; down: ff->d
        "mlp_block@1": 2 * d,  # the paper's placement: r * 2d
        "down_proj@1": d + ff,
    }
    for spec, per_rank in cases.items():
        adapter = attach(model, spec, 4, seed=0)
        assert adapter.n_params == 4 * per_rank, spec
        model = adapter.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_n_bytes_are_the_trainable_tensors_in_float32(tiny, dtype):
    # weight-delta adapters train in float32 even on a bf16 model (peft's autocast, the block
    # adapter's own layers): 4 bytes per parameter, exactly the trainable tensors' bytes
    model, _ = tiny
    model = model.to(dtype)
    for spec in ("mlp@1", "mlp_block@1", "attn@all"):
        adapter = attach(model, spec, 2, seed=0)
        model(input_ids=torch.arange(12)[None], use_cache=False).logits.float().sum().backward()
        trained = [p for p in adapter.parameters if p.grad is not None]
        assert len(trained) == len(adapter.parameters), spec
        assert adapter.n_bytes == sum(p.numel() * p.element_size() for p in trained), spec
        assert adapter.n_bytes == 4 * adapter.n_params, spec
        model = adapter.detach()


def test_detach_restores_the_base_model(tiny):
    model, _ = tiny
    ids = torch.arange(30)[None]
    before = model(input_ids=ids).logits
    for spec in ("mlp@all", "mlp_block@2"):
        adapter = attach(model, spec, 4, seed=0)
        # B = 0 at initialisation: the adapter starts as an exact no-op
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)
        for p in adapter.parameters:
            p.data.add_(0.1)
        assert not torch.allclose(model(input_ids=ids).logits, before)
        model = adapter.detach()
        torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)
    assert not any(p.requires_grad for p in model.parameters())
    assert "lora" not in " ".join(n for n, _ in model.named_modules())


def test_unknown_module_name_and_layer(tiny):
    model, _ = tiny
    with pytest.raises(CollectError, match="no module matches 'foo_proj'.*down_proj"):
        target_module_names(model, parse_modules("foo_proj@1"))
    with pytest.raises(CollectError, match="names layer 9, but the model has 4 layers"):
        attach(model, "mlp@9", 2, seed=0)
    with pytest.raises(CollectError, match="rank must be a positive integer"):
        attach(model, "mlp@1", 0, seed=0)
