from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from collect.errors import CollectError
from collect.tasks import (
    LONG_CONTEXT_KEY,
    TASKS,
    Entry,
    build_task,
    load_default_text,
    load_names,
    random_token_pool,
    validate_task,
)

# The paper's benchmark files live outside the repo (never copied into it).
REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
PAPER = REFERENCE / "parametric-memory-law" / "datasets"
LENGTHS = [1, 2, 3, 9, 10, 11, 57, 100, 999, 1000, 2500]


def stream(entries: list[Entry]) -> list[int]:
    return [i for e in entries for i in e.target_ids]


def total(entries: list[Entry]) -> int:
    return sum(len(e.target_ids) for e in entries)


@pytest.fixture(params=["byte", "smollm2"])
def tok(request, byte_tokenizer):
    if request.param == "byte":
        return byte_tokenizer
    return request.getfixturevalue("smollm2_tokenizer")


# ----------------------------------------------------------------------------- resources


def test_tasks_tuple():
    assert TASKS == ("phonebook", "long_context")


def test_name_lists_are_realistic_unique_and_large():
    firsts, lasts = load_names()
    assert len(firsts) >= 300 and len(lasts) >= 300
    assert len(set(firsts)) == len(firsts) and len(set(lasts)) == len(lasts)
    assert len(firsts) * len(lasts) >= 10_000
    for name in firsts + lasts:
        assert name.isalpha() and name[0].isupper(), name


def test_default_text_is_long_natural_english(byte_tokenizer, smollm2_tokenizer):
    text = load_default_text()
    assert len(text.split()) >= 3000
    assert text.isascii() or sum(not c.isascii() for c in text) < 50
    n = len(smollm2_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n >= 4000


# ----------------------------------------------------------------------------- phonebook


def test_phonebook_exact_length_and_nesting(tok):
    prev: list[int] = []
    for length in LENGTHS:
        entries = build_task("phonebook", tok, length)
        assert total(entries) == length
        s = stream(entries)
        assert s[: len(prev)] == prev
        prev = s
        assert all(isinstance(i, int) and not isinstance(i, bool) for i in s)
        assert all(len(e.target_ids) > 0 for e in entries)


def test_phonebook_entries_are_names_and_ten_digit_numbers(tok):
    entries = build_task("phonebook", tok, 5000)
    keys = [e.key for e in entries]
    assert len(set(keys)) == len(keys)
    firsts, lasts = set(load_names()[0]), set(load_names()[1])
    for e in entries[:-1]:  # the last one may be truncated
        first, last = e.key[:-1].split(" ")
        assert e.key.endswith(":") and first in firsts and last in lasts
        number = tok.decode(list(e.target_ids))
        assert len(number) == 10 and number.isdigit() and number[0] != "0"
    firsts_seen = {e.key.split(" ")[0] for e in entries}
    assert len(firsts_seen) > 100  # diverse, not one first name repeated


def test_phonebook_last_entry_truncated_prefix(byte_tokenizer):
    full = build_task("phonebook", byte_tokenizer, 30)  # 3 whole numbers
    cut = build_task("phonebook", byte_tokenizer, 24)
    assert [e.key for e in cut] == [e.key for e in full]
    assert cut[-1].target_ids == full[-1].target_ids[:4]


def test_phonebook_deterministic_and_seed_dependent(byte_tokenizer):
    a = build_task("phonebook", byte_tokenizer, 500, data_seed=3)
    b = build_task("phonebook", byte_tokenizer, 500, data_seed=3)
    c = build_task("phonebook", byte_tokenizer, 500, data_seed=4)
    assert a == b
    assert [e.key for e in a] != [e.key for e in c]
    assert stream(a) != stream(c)


def test_phonebook_large_all_names_unique(smollm2_tokenizer):
    entries = build_task("phonebook", smollm2_tokenizer, 120_000)  # 12,000 entries
    assert total(entries) == 120_000
    assert len({e.key for e in entries}) == len(entries) == 12_000


def test_phonebook_too_long_for_names(byte_tokenizer):
    firsts, lasts = load_names()
    too_long = len(firsts) * len(lasts) * 10 + 1
    with pytest.raises(CollectError, match=r"only \d+ under this tokenizer.*Lower `length`"):
        build_task("phonebook", byte_tokenizer, too_long)


# ----------------------------------------------------------------------------- long context


def test_long_context_exact_length_nesting_and_key(tok):
    natural = tok(load_default_text(), add_special_tokens=False)["input_ids"]
    prev: list[int] = []
    for length in LENGTHS + [4000]:
        entries = build_task("long_context", tok, length)
        assert len(entries) == 1 and entries[0].key == LONG_CONTEXT_KEY
        s = stream(entries)
        assert s == natural[:length]
        assert s[: len(prev)] == prev
        prev = s


@pytest.mark.parametrize("ratio", [0.1, 0.4, 1.0])
def test_long_context_noise_nested_across_length(tok, ratio):
    prev: list[int] = []
    for length in [1, 7, 100, 4095, 4096, 4097, 5000]:
        s = stream(build_task("long_context", tok, length, random_ratio=ratio, data_seed=1))
        assert len(s) == length and s[: len(prev)] == prev
        prev = s


def test_long_context_ratio_share_and_specials(smollm2_tokenizer):
    tok = smollm2_tokenizer
    length = 4000
    natural = np.array(stream(build_task("long_context", tok, length)))
    pool = set(random_token_pool(tok).tolist())
    specials = set(tok.all_special_ids) | set(tok.get_added_vocab().values())
    assert specials and not specials & pool
    noisy = np.array(stream(build_task("long_context", tok, length, random_ratio=0.4)))
    changed = (noisy != natural).mean()
    assert 0.36 < changed < 0.44  # ~0.4 (a random draw may equal the natural token)
    rand = np.array(stream(build_task("long_context", tok, length, random_ratio=1.0)))
    assert (rand != natural).mean() > 0.99
    assert not set(rand.tolist()) & specials
    assert len(set(rand.tolist())) > 3000  # spread over the vocabulary
    assert set(rand.tolist()) <= pool


def test_long_context_replaced_positions_nested_in_ratio(byte_tokenizer):
    natural = np.array(stream(build_task("long_context", byte_tokenizer, 3000)))
    lo = np.array(stream(build_task("long_context", byte_tokenizer, 3000, random_ratio=0.2)))
    hi = np.array(stream(build_task("long_context", byte_tokenizer, 3000, random_ratio=0.6)))
    # A position replaced at ratio 0.2 is replaced (by the same token) at 0.6.
    assert np.array_equal(hi[lo != natural], lo[lo != natural])


def test_long_context_random_excludes_byte_tokenizer_eos(byte_tokenizer):
    ids = stream(build_task("long_context", byte_tokenizer, 20_000, random_ratio=1.0))
    assert 256 not in ids and set(ids) == set(range(256))


def test_long_context_seed(byte_tokenizer):
    a = build_task("long_context", byte_tokenizer, 500, random_ratio=0.5, data_seed=0)
    b = build_task("long_context", byte_tokenizer, 500, random_ratio=0.5, data_seed=0)
    c = build_task("long_context", byte_tokenizer, 500, random_ratio=0.5, data_seed=1)
    assert a == b and a != c
    # data_seed does not change natural text
    assert build_task("long_context", byte_tokenizer, 50, data_seed=5) == build_task(
        "long_context", byte_tokenizer, 50
    )


def test_long_context_txt_source(tmp_path, byte_tokenizer):
    p = tmp_path / "story.txt"
    p.write_text("Once upon a time there was a tokenizer.", encoding="utf-8")
    (e,) = build_task("long_context", byte_tokenizer, 9, source=str(p))
    assert e.key == LONG_CONTEXT_KEY and byte_tokenizer.decode(list(e.target_ids)) == "Once upon"
    with pytest.raises(CollectError, match=r"has only 39 tokens.*Lower `length`"):
        build_task("long_context", byte_tokenizer, 40, source=p)
    with pytest.raises(CollectError, match=r"has only 39 tokens"):
        validate_task("long_context", byte_tokenizer, 40, source=p)
    validate_task("long_context", byte_tokenizer, 39, source=p)
    # pure random tokens need no text
    validate_task("long_context", byte_tokenizer, 1000, random_ratio=1.0, source=p)
    (e,) = build_task("long_context", byte_tokenizer, 1000, random_ratio=1.0, source=p)
    assert len(e.target_ids) == 1000


def test_long_context_too_long_default(byte_tokenizer):
    with pytest.raises(CollectError, match=r"built-in text.*has only \d+ tokens"):
        build_task("long_context", byte_tokenizer, 10_000_000)
    with pytest.raises(CollectError, match=r"built-in text.*has only \d+ tokens"):
        validate_task("long_context", byte_tokenizer, 10_000_000)


def test_jsonl_sources_written_here(tmp_path, byte_tokenizer):
    lc = tmp_path / "lc.jsonl"
    lc.write_text(json.dumps({"question": "Q?", "matching": "abcdef"}) + "\n")
    (e,) = build_task("long_context", byte_tokenizer, 4, source=lc)
    assert e.key == "Q?" and e.target_ids == tuple(b"abcd")
    pb = tmp_path / "pb.jsonl"
    pb.write_text(
        "\n".join(json.dumps({"id": i, "query": f"N{i}:", "target": "12345"}) for i in range(3))
    )
    entries = build_task("phonebook", byte_tokenizer, 12, source=pb)
    assert [e.key for e in entries] == ["N0:", "N1:", "N2:"]
    assert entries[-1].target_ids == tuple(b"12")
    validate_task("phonebook", byte_tokenizer, 15, source=pb)
    with pytest.raises(CollectError, match=r"has only 15 tokens.*more entries"):
        validate_task("phonebook", byte_tokenizer, 16, source=pb)
    with pytest.raises(CollectError, match=r"has only 15 under this tokenizer"):
        build_task("phonebook", byte_tokenizer, 16, source=pb)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn", [build_task, validate_task])
@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"task": "phone_book"}, r"one of phonebook, long_context; got 'phone_book'"),
        ({"length": 0}, r"positive integer.*got 0"),
        ({"length": -5}, r"positive integer.*got -5"),
        ({"length": 2.5}, r"positive integer.*got 2.5"),
        ({"length": True}, r"positive integer.*got True"),
        ({"random_ratio": 1.5}, r"random_ratio in \[0, 1\].*got 1.5"),
        ({"random_ratio": -0.1}, r"random_ratio in \[0, 1\].*got -0.1"),
        ({"random_ratio": float("nan")}, r"random_ratio in \[0, 1\].*got nan"),
        ({"random_ratio": "x"}, r"random_ratio in \[0, 1\].*got 'x'"),
        ({"task": "phonebook", "random_ratio": 0.4}, r"random_ratio=0 for task 'phonebook'"),
        ({"tokenizer": None}, r"callable Hugging Face tokenizer; got NoneType"),
        ({"source": "/nonexistent/file.txt"}, r"existing file.*does not exist"),
    ],
)
def test_bad_input_messages(byte_tokenizer, fn, kwargs, pattern):
    args = {"task": "long_context", "tokenizer": byte_tokenizer, "length": 10} | kwargs
    with pytest.raises(CollectError, match=pattern):
        fn(**args)


def test_bad_source_files(tmp_path, byte_tokenizer):
    txt = tmp_path / "a.txt"
    txt.write_text("hello")
    with pytest.raises(CollectError, match=r"\.jsonl source for task 'phonebook'; got 'a.txt'"):
        validate_task("phonebook", byte_tokenizer, 3, source=txt)
    csv = tmp_path / "a.csv"
    csv.write_text("x")
    with pytest.raises(CollectError, match=r"\.txt or \.jsonl source.*got 'a.csv'"):
        build_task("long_context", byte_tokenizer, 3, source=csv)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    with pytest.raises(CollectError, match=r"line 1 is not valid JSON"):
        build_task("phonebook", byte_tokenizer, 3, source=bad)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"name": "x", "phone": "1"}) + "\n")
    with pytest.raises(CollectError, match=r"'query' and 'target'.*\['name', 'phone'\]"):
        build_task("phonebook", byte_tokenizer, 3, source=wrong)
    with pytest.raises(CollectError, match=r"'question' and 'matching'"):
        build_task("long_context", byte_tokenizer, 3, source=wrong)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(CollectError, match=r"at least one JSON record"):
        validate_task("long_context", byte_tokenizer, 3, source=empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n")
    with pytest.raises(CollectError, match=r"non-empty text"):
        build_task("long_context", byte_tokenizer, 3, source=blank)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_data_seed(byte_tokenizer, seed):
    with pytest.raises(CollectError, match=r"data_seed to be a non-negative integer"):
        build_task("phonebook", byte_tokenizer, 10, data_seed=seed)


@pytest.mark.parametrize(
    ("task", "length", "ratio"),
    [("phonebook", 100, 0.0), ("long_context", 100, 0.4), ("long_context", np.int64(100), 1)],
)
def test_validate_accepts_good_specs(byte_tokenizer, task, length, ratio):
    # accepted (returns, raises nothing), and rightly so: the task builds at that length
    assert validate_task(task, byte_tokenizer, length, random_ratio=ratio) is None
    assert total(build_task(task, byte_tokenizer, length, random_ratio=ratio)) == length


# ----------------------------------------------------------------------------- paper files


def _paper(rel: str) -> Path:
    path = PAPER / rel
    if not path.is_file():
        pytest.skip(f"reference file {path} absent (needs ../shared/reference)")
    return path


@pytest.mark.reference
def test_paper_phonebook_reader(smollm2_tokenizer):
    path = _paper("phonebook/pb_train_random/llama/PB1000.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    entries = build_task("phonebook", smollm2_tokenizer, 1005, source=path)
    assert total(entries) == 1005
    assert [e.key for e in entries] == [r["query"] for r in records[: len(entries)]]
    assert entries[0].key == "Jerry Becerra:"
    assert smollm2_tokenizer.decode(list(entries[0].target_ids)) == "9100672710"
    assert len(entries[-1].target_ids) == 5  # 100 whole numbers of 10 digit tokens + 5
    validate_task("phonebook", smollm2_tokenizer, 2500, source=path)
    with pytest.raises(CollectError, match=r"has only 2500 tokens"):
        validate_task("phonebook", smollm2_tokenizer, 2501, source=path)


@pytest.mark.reference
def test_paper_long_context_reader(smollm2_tokenizer):
    path = _paper("long_context/sample_0_tok29709_noise_0.jsonl")
    rec = json.loads(path.read_text().splitlines()[0])
    (e,) = build_task("long_context", smollm2_tokenizer, 3000, source=path)
    assert e.key == rec["question"]
    ids = smollm2_tokenizer(rec["matching"], add_special_tokens=False)["input_ids"]
    assert list(e.target_ids) == ids[:3000]
    (n,) = build_task("long_context", smollm2_tokenizer, 3000, random_ratio=0.4, source=path)
    assert 0.35 < np.mean(np.array(n.target_ids) != np.array(e.target_ids)) < 0.45
    validate_task("long_context", smollm2_tokenizer, 20_000, source=path)
