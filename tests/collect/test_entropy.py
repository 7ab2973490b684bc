"""Entropy of the target tokens' content (collect.tasks.target_entropy) and its recording."""

import json
import math

import numpy as np
import pytest
import xarray as xr

import lawfit.information
from collect.config import config_from_dict
from collect.sweep import run_sweep
from collect.tasks import build_task, random_token_pool, target_entropy


class DigitChunkTokenizer:
    """Splits digit strings into tokens of ``sizes`` digits (repeated), or merges runs of "0".

    A stand-in for tokenizers that group digits (Llama 3 style: by three) or merge them by
    value (GPT-2 style BPE), with the two methods ``target_entropy`` uses.
    """

    def __init__(self, sizes=(3,), merge_zeros=False):
        self.sizes, self.merge_zeros = sizes, merge_zeros
        self.pieces: dict[str, int] = {}

    def _split(self, text):
        if self.merge_zeros:
            out = []
            for ch in text:
                if out and ch == "0" and set(out[-1]) == {"0"}:
                    out[-1] += ch
                else:
                    out.append(ch)
            return out
        out, at, i = [], 0, 0
        while at < len(text):
            n = self.sizes[min(i, len(self.sizes) - 1)]
            out.append(text[at : at + n])
            at, i = at + n, i + 1
        return out

    def _id(self, piece):
        return self.pieces.setdefault(piece, len(self.pieces))

    def __call__(self, text, add_special_tokens=False):
        texts = [text] if isinstance(text, str) else text
        ids = [[self._id(p) for p in self._split(t)] for t in texts]
        return {"input_ids": ids[0] if isinstance(text, str) else ids}

    def decode(self, ids):
        by_id = {v: k for k, v in self.pieces.items()}
        return "".join(by_id[i] for i in ids)


LOG2_9, LOG2_10 = math.log2(9), math.log2(10)


def test_random_tokens_carry_log2_of_the_pool_they_are_drawn_from(byte_tokenizer):
    entries = build_task("long_context", byte_tokenizer, 50, random_ratio=1.0)
    ent = target_entropy("long_context", byte_tokenizer, entries, random_ratio=1.0)
    pool = random_token_pool(byte_tokenizer)
    assert pool.size == 256  # the 256 bytes; <|endoftext|> is special and never drawn
    np.testing.assert_allclose(ent.bits, np.full(50, 8.0), rtol=0, atol=1e-12)
    assert "256" in ent.basis


def test_partly_random_text_knows_only_the_replaced_tokens(byte_tokenizer):
    entries = build_task("long_context", byte_tokenizer, 400, random_ratio=0.5, data_seed=3)
    ent = target_entropy("long_context", byte_tokenizer, entries, random_ratio=0.5, data_seed=3)
    natural = build_task("long_context", byte_tokenizer, 400, random_ratio=0.0)
    replaced = np.isfinite(ent.bits)
    assert np.all(ent.bits[replaced] == 8.0)
    # a position differing from the natural text was certainly replaced
    changed = np.asarray(entries[0].target_ids) != np.asarray(natural[0].target_ids)
    assert np.all(replaced[changed])
    assert 0.4 < replaced.mean() < 0.6


def test_natural_text_and_paper_files_have_unknown_entropy(byte_tokenizer, tmp_path):
    entries = build_task("long_context", byte_tokenizer, 30, random_ratio=0.0)
    ent = target_entropy("long_context", byte_tokenizer, entries, random_ratio=0.0)
    assert np.isnan(ent.bits).all() and len(ent.bits) == 30 and "unknown" in ent.basis
    book = tmp_path / "PB.jsonl"
    book.write_text('{"query": "A B:", "target": "1234567890"}\n' * 3)
    entries = build_task("phonebook", byte_tokenizer, 25, source=book)
    ent = target_entropy("phonebook", byte_tokenizer, entries, source=book)
    assert np.isnan(ent.bits).all() and len(ent.bits) == 25


def test_single_digit_tokens_carry_log2_9_then_log2_10(byte_tokenizer):
    entries = build_task("phonebook", byte_tokenizer, 25)  # 10 + 10 + a truncated 5
    ent = target_entropy("phonebook", byte_tokenizer, entries)
    number = [LOG2_9] + [LOG2_10] * 9
    np.testing.assert_allclose(ent.bits, number + number + number[:5], rtol=0, atol=1e-12)
    assert "singly" in ent.basis


def test_grouped_digits_carry_the_entropy_of_their_group():
    tok = DigitChunkTokenizer(sizes=(3,))
    entries = build_task("phonebook", tok, 6)  # "123","456","789","0" per number
    ent = target_entropy("phonebook", tok, entries)
    expected = [math.log2(900), math.log2(1000), math.log2(1000), LOG2_10]
    np.testing.assert_allclose(ent.bits, expected + expected[:2], rtol=0, atol=1e-12)
    assert sum(expected) == pytest.approx(LOG2_9 + 9 * LOG2_10, abs=1e-12)


def test_value_dependent_digit_merges_give_unknown_entropy():
    tok = DigitChunkTokenizer(merge_zeros=True)
    entries = build_task("phonebook", tok, 40)
    ent = target_entropy("phonebook", tok, entries)
    assert np.isnan(ent.bits).all() and "value-dependent" in ent.basis


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, tiny_sweep):
    """A two-step tiny sweep: one cell per task, written with entropy_bits."""
    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "modules": ["mlp@2"],
            "ranks": [1],
            "lengths": [20],
            "seeds": [0],
        },
        train={"max_steps": 2, "log_every": 1},
    )
    out = tmp_path_factory.mktemp("entropy_sweep")
    run_sweep(config_from_dict(raw), out, progress=False, merge_to=out / "d.nc")
    return xr.load_dataset(out / "d.nc")


def test_sweep_records_entropy_in_cells_and_merged_dataset(tiny_dataset):
    ds = tiny_dataset
    assert ds["entropy_bits"].dims == ds["p_after"].dims
    assert ds["entropy_bits"].attrs["units"] == "bits"
    cell = dict(model="tiny-random", objective="sft", modules="mlp@2", rank=1, length=20)
    cell.update(seed=0, data_seed=0)
    lc = ds["entropy_bits"].sel({"task": "long_context", "random_ratio": 1.0, **cell}).values
    np.testing.assert_allclose(lc, np.full(20, 8.0))
    pb = ds["entropy_bits"].sel({"task": "phonebook", "random_ratio": 0.0, **cell}).values
    np.testing.assert_allclose(pb, ([LOG2_9] + [LOG2_10] * 9) * 2)
    bases = json.loads(ds.attrs["entropy_basis"])
    assert any("uniform over 256" in b for b in bases.values())


def test_old_collect_datasets_derive_entropy_from_their_metadata(tiny_dataset):
    new = tiny_dataset
    old = new.drop_vars("entropy_bits")
    old.attrs.pop("entropy_basis")
    recorded, derived = (
        lawfit.information.information_bits(new),
        lawfit.information.information_bits(old),
    )
    assert recorded.entropy_source.startswith("recorded")
    assert derived.entropy_source.startswith("derived from the task metadata")
    assert any("derived from its task metadata" in n for n in derived.notes)
    assert len(derived.cells) == int((new["status"] == "ok").sum())
    assert derived.cells["entropy_known"].all()
    np.testing.assert_allclose(
        derived.cells["bits_stored"], recorded.cells["bits_stored"], rtol=0, atol=1e-9
    )


def test_smollm2_entropies(smollm2_tokenizer):
    tok = smollm2_tokenizer
    lc = build_task("long_context", tok, 8, random_ratio=1.0)
    ent = target_entropy("long_context", tok, lc, random_ratio=1.0)
    np.testing.assert_allclose(ent.bits, math.log2(random_token_pool(tok).size), atol=1e-12)
    assert random_token_pool(tok).size == 49135  # 49,152 ids less special and added ones
    pb = build_task("phonebook", tok, 20)
    ent = target_entropy("phonebook", tok, pb)
    np.testing.assert_allclose(ent.bits, ([LOG2_9] + [LOG2_10] * 9) * 2, atol=1e-12)
    assert "singly" in ent.basis
