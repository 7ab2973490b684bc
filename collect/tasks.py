"""Memorization targets: the (key -> target tokens) pairs an adapter is trained to recall.

Two tasks (DESIGN.md section 1), each sized by ``length`` = the total number of target
tokens under the model's own tokenizer:

``"phonebook"``
    Many short entries ``"First Last:" -> "9100672710"`` (10 random digits, first non-zero),
    generated deterministically from ``data_seed``, or read from the paper's PhoneBook
    ``.jsonl`` file.
``"long_context"``
    One entry: a fixed instruction -> the first ``length`` tokens of a natural text, with a
    ``random_ratio`` share of its tokens replaced by uniformly random vocabulary tokens.

Both are *nested* in ``length``: for the same tokenizer, source and ``data_seed``, the
concatenated target token stream for ``l1 < l2`` is a prefix of the one for ``l2``, so a
length sweep grows one target set instead of drawing unrelated ones. To hit ``length``
exactly, the last phonebook entry's target may be truncated (a partial phone number).
See ``docs/tasks.md``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources as _resources
from pathlib import Path
from typing import Any

import numpy as np

from collect.errors import CollectError

__all__ = [
    "TASKS",
    "LONG_CONTEXT_KEY",
    "DEFAULT_TEXT",
    "Entry",
    "build_task",
    "validate_task",
    "random_token_pool",
    "load_names",
    "load_default_text",
    "TargetEntropy",
    "target_entropy",
]

#: Task names accepted by :func:`build_task` and :func:`validate_task`.
TASKS: tuple[str, ...] = ("phonebook", "long_context")

#: Key (conditioning text) of the long-context entry when the source gives no question.
LONG_CONTEXT_KEY = "Recite the passage word for word:"

#: File name (under ``collect/resources/``) of the default natural text for long_context.
DEFAULT_TEXT = "us_founding_documents.txt"

_FIRST_NAMES = "first_names.txt"
_SURNAMES = "surnames.txt"

# Salts that separate the independent random streams derived from one data_seed.
_SALT_NAMES = 0x5048_4E41  # "PHNA"
_SALT_NUMBERS = 0x5048_4E55  # "PHNU"
_SALT_NOISE = 0x4C43_4E4F  # "LCNO"

# Fixed block sizes of the random streams: the values for entry/position t never depend on
# how many are requested, which is what makes the tasks nested in length.
_NUMBER_BLOCK = 1024
_NOISE_BLOCK = 4096


@dataclass(frozen=True)
class Entry:
    """One memorization pair.

    Attributes
    ----------
    key : str
        Conditioning text the model sees before the target, e.g. ``"Jerry Becerra:"`` or
        the long-context instruction. Never trained on.
    target_ids : tuple of int
        Target token ids under the model's tokenizer, without special tokens.
    """

    key: str
    target_ids: tuple[int, ...]


# --------------------------------------------------------------------------- resources


def _read_resource(name: str) -> str:
    return _resources.files("collect").joinpath("resources", name).read_text(encoding="utf-8")


@cache
def load_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the shipped first-name and surname lists.

    Returns
    -------
    first_names, surnames : tuple of str
        Unique names in file order (blank lines and ``#`` comments skipped).
    """

    def _names(file: str) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for line in _read_resource(file).splitlines():
            name = line.strip()
            if name and not name.startswith("#"):
                seen.setdefault(name, None)
        return tuple(seen)

    return _names(_FIRST_NAMES), _names(_SURNAMES)


@cache
def load_default_text() -> str:
    """Return the shipped public-domain text used by ``long_context`` by default.

    Returns
    -------
    str
        The Declaration of Independence followed by the US Constitution (Articles I-VII);
        see ``collect/resources/README.md`` for its provenance.
    """
    return _read_resource(DEFAULT_TEXT)


# --------------------------------------------------------------------------- tokenizer helpers


def _encode(tokenizer: Any, text: str) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def _encode_batch(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    out = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [[int(i) for i in ids] for ids in out]


def random_token_pool(tokenizer: Any) -> np.ndarray:
    """Token ids that random replacement may draw from.

    The tokenizer's vocabulary without its special tokens (``all_special_ids``) and without
    added tokens (``get_added_vocab()``, e.g. chat-template markers).

    Parameters
    ----------
    tokenizer : transformers tokenizer
        The model's tokenizer.

    Returns
    -------
    numpy.ndarray
        Sorted unique int64 ids.

    Raises
    ------
    CollectError
        If the tokenizer exposes no vocabulary or nothing is left after the exclusions.
    """
    try:
        vocab_ids = set(int(i) for i in tokenizer.get_vocab().values())
    except (AttributeError, TypeError) as exc:
        raise CollectError(
            "expected a Hugging Face tokenizer with get_vocab(); got "
            f"{type(tokenizer).__name__}. Pass the model's transformers tokenizer."
        ) from exc
    excluded = set(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []))
    try:
        excluded |= set(int(i) for i in tokenizer.get_added_vocab().values())
    except (AttributeError, TypeError):
        pass
    pool = np.array(sorted(vocab_ids - excluded), dtype=np.int64)
    if pool.size == 0:
        raise CollectError(
            f"expected a tokenizer with ordinary (non-special) tokens; got {len(vocab_ids)} "
            "ids, all special or added. Use the model's real tokenizer."
        )
    return pool


# --------------------------------------------------------------------------- phonebook


def _name_order(data_seed: int) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    firsts, lasts = load_names()
    rng = np.random.default_rng([_SALT_NAMES, data_seed])
    order = rng.permutation(len(firsts) * len(lasts))
    return firsts, lasts, order


def _generated_phonebook(data_seed: int) -> Iterator[tuple[str, str]]:
    """Yield (key, target_text) in the fixed order for this data_seed, all names unique."""
    firsts, lasts, order = _name_order(data_seed)
    number_rng = np.random.default_rng([_SALT_NUMBERS, data_seed])
    n_surnames = len(lasts)
    for start in range(0, order.size, _NUMBER_BLOCK):
        digits = number_rng.integers(0, 10, size=(_NUMBER_BLOCK, 10))
        digits[:, 0] = number_rng.integers(1, 10, size=_NUMBER_BLOCK)
        for row, combo in zip(digits, order[start : start + _NUMBER_BLOCK], strict=False):
            first, last = divmod(int(combo), n_surnames)
            yield f"{firsts[first]} {lasts[last]}:", "".join(str(int(d)) for d in row)


def _phonebook_capacity() -> int:
    firsts, lasts = load_names()
    return len(firsts) * len(lasts)


def _fill(
    pairs: Iterator[tuple[str, str]], tokenizer: Any, length: int, source_desc: str, fix: str
) -> list[Entry]:
    """Take (key, target_text) pairs in order until `length` target tokens, truncating the last."""
    entries: list[Entry] = []
    total = 0
    batch: list[tuple[str, str]] = []

    def flush() -> bool:
        nonlocal total
        for (key, _), ids in zip(
            batch, _encode_batch(tokenizer, [t for _, t in batch]), strict=True
        ):
            if not ids:
                continue
            take = ids[: length - total]
            entries.append(Entry(key=key, target_ids=tuple(take)))
            total += len(take)
            if total >= length:
                return True
        batch.clear()
        return False

    for pair in pairs:
        batch.append(pair)
        # Small first batches keep tiny lengths cheap; later ones amortize tokenizer calls.
        if len(batch) >= min(256, max(8, (length - total) // 2)) and flush():
            return entries
    if batch and flush():
        return entries
    raise CollectError(
        f"expected a source with at least length={length} target tokens; {source_desc} has "
        f"only {total} under this tokenizer. {fix}"
    )


# --------------------------------------------------------------------------- paper files


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CollectError(
                    f"expected one JSON object per line in {path}; line {lineno} is not valid "
                    f"JSON ({exc.msg}). Fix the file or pass a plain .txt source."
                ) from exc
            if not isinstance(rec, dict):
                raise CollectError(
                    f"expected one JSON object per line in {path}; line {lineno} is a "
                    f"{type(rec).__name__}. Fix the file."
                )
            records.append(rec)
    if not records:
        raise CollectError(f"expected at least one JSON record in {path}; it is empty.")
    return records


def _check_source(source: str | Path, task: str) -> Path:
    path = Path(source).expanduser()
    if not path.is_file():
        raise CollectError(
            f"expected `source` to be an existing file for task {task!r}; got {str(source)!r}, "
            "which does not exist. Fix the path, or omit `source` to use the built-in data."
        )
    suffix = path.suffix.lower()
    allowed = (".jsonl",) if task == "phonebook" else (".txt", ".jsonl")
    if suffix not in allowed:
        raise CollectError(
            f"expected a {' or '.join(allowed)} source for task {task!r}; got {path.name!r}. "
            + (
                "PhoneBook files are the paper's .jsonl format "
                '({"query": "Name:", "target": "digits"} per line).'
                if task == "phonebook"
                else 'Pass plain text as .txt, or the paper\'s {"question", "matching"} .jsonl.'
            )
        )
    return path


def _phonebook_file_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for i, rec in enumerate(_read_jsonl(path), 1):
        if not isinstance(rec.get("query"), str) or not isinstance(rec.get("target"), str | int):
            raise CollectError(
                f"expected PhoneBook records with string fields 'query' and 'target' in "
                f"{path}; record {i} has keys {sorted(rec)}. Use the paper's PB<l>.jsonl format."
            )
        pairs.append((rec["query"], str(rec["target"])))
    return pairs


def _long_context_source(source: str | Path | None) -> tuple[str, str, str]:
    """Return (key, text, description) for the long-context task."""
    if source is None:
        return LONG_CONTEXT_KEY, load_default_text(), f"the built-in text ({DEFAULT_TEXT})"
    path = _check_source(source, "long_context")
    if path.suffix.lower() == ".txt":
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise CollectError(f"expected non-empty text in {path}; the file is empty.")
        return LONG_CONTEXT_KEY, text, str(path)
    rec = _read_jsonl(path)[0]
    if not isinstance(rec.get("question"), str) or not isinstance(rec.get("matching"), str):
        raise CollectError(
            f"expected a long-context record with string fields 'question' and 'matching' in "
            f"{path}; got keys {sorted(rec)}. Use the paper's long_context .jsonl format."
        )
    return rec["question"], rec["matching"], str(path)


# --------------------------------------------------------------------------- long context


def _noise(data_seed: int, n: int, pool_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First n values of the fixed (u_t, pool index_t) stream; prefix-stable in n."""
    rng = np.random.default_rng([_SALT_NOISE, data_seed])
    n_blocks = -(-n // _NOISE_BLOCK)
    us, idx = [], []
    for _ in range(n_blocks):
        us.append(rng.random(_NOISE_BLOCK))
        idx.append(rng.integers(0, pool_size, size=_NOISE_BLOCK))
    if not us:
        return np.empty(0), np.empty(0, dtype=np.int64)
    return np.concatenate(us)[:n], np.concatenate(idx)[:n]


def _long_context(
    tokenizer: Any, length: int, random_ratio: float, data_seed: int, source: str | Path | None
) -> list[Entry]:
    key, text, desc = _long_context_source(source)
    if random_ratio >= 1.0:
        ids = np.zeros(length, dtype=np.int64)  # every position is replaced below
    else:
        tokens = _encode(tokenizer, text)
        if len(tokens) < length:
            raise CollectError(_too_short_message("long_context", length, len(tokens), desc))
        ids = np.asarray(tokens[:length], dtype=np.int64)
    if random_ratio > 0.0:
        pool = random_token_pool(tokenizer)
        u, idx = _noise(data_seed, length, pool.size)
        replace = u < random_ratio
        ids = np.where(replace, pool[idx], ids)
    return [Entry(key=key, target_ids=tuple(int(i) for i in ids))]


def _too_short_message(task: str, length: int, have: int, desc: str) -> str:
    fix = (
        "Lower `length`, or pass a longer `source` (plain .txt)."
        if task == "long_context"
        else "Lower `length`, or pass a PhoneBook .jsonl with more entries."
    )
    return (
        f"expected a source with at least length={length} target tokens for task {task!r}; "
        f"{desc} has only {have} tokens under this tokenizer. {fix}"
    )


# --------------------------------------------------------------------------- content entropy

#: How many generated numbers :func:`_digit_segmentation` tokenizes to learn the tokenizer's
#: split of a 10-digit number (plus the extreme numbers of ``_EDGE_NUMBERS``).
_SEGMENTATION_SAMPLE = 512
_EDGE_NUMBERS = ("1000000000", "9999999999", "1111111111", "1234567890", "9876543210")


@dataclass(frozen=True)
class TargetEntropy:
    """Entropy of each target token's content, in bits (DESIGN.md §1, capacity in bits).

    Attributes
    ----------
    bits : numpy.ndarray
        One value per target token, in the concatenated order of the entries: the entropy of
        the token given the earlier tokens of its entry under the task's generating process.
        NaN where the content's entropy is unknown (natural text).
    basis : str
        How the values were derived (recorded with the cell), e.g. ``"uniform over 49135
        token ids: log2(49135) bits per token"``.
    """

    bits: np.ndarray
    basis: str


def _digit_segmentation(tokenizer: Any) -> tuple[int, ...] | None:
    """Digits covered by each token of a generated 10-digit number, if the same for all.

    Tokenizes a sample of generated numbers (and extreme ones) and decodes each token alone.
    Returns the number of digits each token covers, e.g. ``(1,) * 10`` for a tokenizer that
    splits digits singly or ``(3, 3, 3, 1)`` for one that groups them by three; ``None``
    when the split depends on the digits' values (value-dependent merges) or a token does
    not decode to a part of the number.
    """
    sample = itertools.islice(_generated_phonebook(0), _SEGMENTATION_SAMPLE)
    numbers = [*_EDGE_NUMBERS, *(text for _, text in sample)]
    pattern: tuple[int, ...] | None = None
    for number, ids in zip(numbers, _encode_batch(tokenizer, numbers), strict=True):
        pieces = [tokenizer.decode([i]).strip() for i in ids]
        if "".join(pieces) != number:
            return None
        lengths = tuple(len(piece) for piece in pieces)
        if pattern is None:
            pattern = lengths
        elif lengths != pattern:
            return None
    return pattern


def _phonebook_token_bits(tokenizer: Any) -> tuple[np.ndarray | None, str]:
    """Entropy of each token of a generated number (first digit 1-9, the others 0-9)."""
    pattern = _digit_segmentation(tokenizer)
    if pattern is None:
        return None, (
            "unknown: this tokenizer splits 10-digit numbers at value-dependent places, so the "
            "entropy of each token is not fixed"
        )
    digit_bits = np.full(10, np.log2(10.0))
    digit_bits[0] = np.log2(9.0)
    ends = np.cumsum(pattern)
    bits = np.array([digit_bits[end - n : end].sum() for n, end in zip(pattern, ends, strict=True)])
    split = "singly" if set(pattern) == {1} else f"in groups of {list(pattern)}"
    return bits, (
        f"generated numbers: first digit uniform over 1-9, the other 9 over 0-9; the tokenizer "
        f"splits them {split} (checked on {_SEGMENTATION_SAMPLE + len(_EDGE_NUMBERS)} numbers): "
        f"{' + '.join(f'{b:.4f}' for b in bits)} = {bits.sum():.4f} bits per number"
    )


def _phonebook_entropy(tokenizer: Any, entries: Sequence[Entry], source: Any) -> TargetEntropy:
    n = sum(len(e.target_ids) for e in entries)
    if source is not None:
        return TargetEntropy(
            np.full(n, np.nan),
            f"unknown: numbers read from {source}, whose generating distribution is not known",
        )
    per_token, basis = _phonebook_token_bits(tokenizer)
    if per_token is None:
        return TargetEntropy(np.full(n, np.nan), basis)
    # a truncated last entry keeps the first tokens of its number, with their entropies
    bits = np.concatenate([per_token[: len(e.target_ids)] for e in entries])
    return TargetEntropy(bits, basis)


def _long_context_entropy(
    tokenizer: Any, entries: Sequence[Entry], random_ratio: float, data_seed: int
) -> TargetEntropy:
    n = sum(len(e.target_ids) for e in entries)
    if random_ratio == 0.0:
        return TargetEntropy(np.full(n, np.nan), "unknown: natural text")
    pool = random_token_pool(tokenizer)
    uniform = float(np.log2(pool.size))
    basis = f"uniform over {pool.size} token ids: log2({pool.size}) = {uniform:.6f} bits per token"
    if random_ratio >= 1.0:
        return TargetEntropy(np.full(n, uniform), basis)
    u, _ = _noise(data_seed, n, pool.size)
    return TargetEntropy(
        np.where(u < random_ratio, uniform, np.nan),
        f"replaced tokens: {basis}; natural-text tokens: unknown (NaN)",
    )


def target_entropy(
    task: str,
    tokenizer: Any,
    entries: Sequence[Entry],
    *,
    random_ratio: float = 0.0,
    data_seed: int = 0,
    source: str | Path | None = None,
) -> TargetEntropy:
    """Entropy in bits of each target token of :func:`build_task`'s entries.

    The information an adapter can store about a target is bounded by the entropy of its
    content, not by the base model's loss on it (DESIGN.md §1). Per task:

    - long_context, random tokens: each replaced token is uniform over
      :func:`random_token_pool`, ``log2(pool size)`` bits (not ``log2`` of the vocabulary:
      special and added tokens are never drawn). With ``0 < random_ratio < 1`` the kept
      natural-text tokens are NaN;
    - phonebook, generated: a number's first digit is uniform over 1-9 and the other nine
      over 0-9; each token carries the entropy of the digits it covers, which needs the
      tokenizer to split numbers at fixed places (checked on a sample); otherwise NaN;
    - natural text, or numbers read from a ``source`` file: unknown, NaN.

    Parameters
    ----------
    task, tokenizer, random_ratio, data_seed, source
        As given to :func:`build_task`.
    entries : sequence of Entry
        What :func:`build_task` returned for them.

    Returns
    -------
    TargetEntropy
        ``bits`` (one per target token, in order) and ``basis`` (how they were derived).

    Raises
    ------
    CollectError
        For an unknown task.
    """
    if task == "phonebook":
        return _phonebook_entropy(tokenizer, entries, source)
    if task == "long_context":
        return _long_context_entropy(tokenizer, entries, float(random_ratio), int(data_seed))
    raise CollectError(
        f"expected task to be one of {', '.join(TASKS)}; got {task!r}. Fix the task name."
    )


# --------------------------------------------------------------------------- public API


def _check_common(task: str, tokenizer: Any, length: Any, random_ratio: Any) -> None:
    if task not in TASKS:
        raise CollectError(
            f"expected task to be one of {', '.join(TASKS)}; got {task!r}. "
            "Fix the task name in the config."
        )
    if tokenizer is None or not callable(tokenizer):
        raise CollectError(
            f"expected a callable Hugging Face tokenizer; got {type(tokenizer).__name__}. "
            "Pass the model's tokenizer (AutoTokenizer.from_pretrained(...))."
        )
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length <= 0:
        raise CollectError(
            f"expected length to be a positive integer number of target tokens; got "
            f"{length!r}. Use a length >= 1."
        )
    try:
        ratio = float(random_ratio)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not 0.0 <= ratio <= 1.0:
        raise CollectError(
            f"expected random_ratio in [0, 1] (share of target tokens replaced by random "
            f"tokens); got {random_ratio!r}. Use e.g. 0.0, 0.4 or 1.0."
        )
    if task == "phonebook" and ratio != 0.0:
        raise CollectError(
            f"expected random_ratio=0 for task 'phonebook' (its numbers are already random); "
            f"got {random_ratio!r}. Use random_ratio with task 'long_context' only."
        )


def _check_seed(data_seed: Any) -> None:
    if isinstance(data_seed, bool) or not isinstance(data_seed, int | np.integer) or data_seed < 0:
        raise CollectError(
            f"expected data_seed to be a non-negative integer; got {data_seed!r}. "
            "Use e.g. data_seed=0."
        )


def build_task(
    task: str,
    tokenizer: Any,
    length: int,
    *,
    random_ratio: float = 0.0,
    data_seed: int = 0,
    source: str | Path | None = None,
) -> list[Entry]:
    """Build the memorization entries for one task at one target length.

    Parameters
    ----------
    task : {"phonebook", "long_context"}
        Which task (see :data:`TASKS`).
    tokenizer : transformers tokenizer
        The model's tokenizer; targets are tokenized with
        ``tokenizer(text, add_special_tokens=False)``.
    length : int
        Total number of target tokens over all entries; the result has exactly this many.
    random_ratio : float, default 0.0
        long_context only: share of target tokens replaced by uniformly random non-special
        vocabulary tokens (0 = natural text, 1 = pure random tokens, where no text is
        needed). Must be 0 for phonebook.
    data_seed : int, default 0
        Fixes the generated names/numbers and the random replacement. Ignored for a
        phonebook ``source`` file (its entries are used in file order).
    source : str or Path, optional
        phonebook: the paper's ``PB<l>.jsonl`` (``{"query", "target"}`` per line).
        long_context: a plain ``.txt`` (key = :data:`LONG_CONTEXT_KEY`) or the paper's
        ``.jsonl`` (first record's ``question`` is the key, its ``matching`` the text).
        Default: generated phonebook / the shipped public-domain text.

    Returns
    -------
    list of Entry
        Entries in a fixed order; ``sum(len(e.target_ids)) == length``. Nested: the
        concatenated target stream for a smaller length is a prefix of this one. The last
        phonebook entry's target may be truncated to hit ``length`` exactly.

    Raises
    ------
    CollectError
        On any invalid argument, unreadable source, or a source with fewer than ``length``
        target tokens (the message says how many it has).
    """
    _check_common(task, tokenizer, length, random_ratio)
    _check_seed(data_seed)
    length = int(length)
    if task == "long_context":
        return _long_context(tokenizer, length, float(random_ratio), int(data_seed), source)
    if source is None:
        return _fill(
            _generated_phonebook(int(data_seed)),
            tokenizer,
            length,
            f"the generated phonebook ({_phonebook_capacity()} unique names)",
            "Lower `length` or add names to collect/resources/.",
        )
    path = _check_source(source, "phonebook")
    return _fill(
        iter(_phonebook_file_pairs(path)),
        tokenizer,
        length,
        str(path),
        "Lower `length`, or pass a PhoneBook .jsonl with more entries.",
    )


def validate_task(
    task: str,
    tokenizer: Any,
    length: int,
    *,
    random_ratio: float = 0.0,
    source: str | Path | None = None,
) -> None:
    """Check a task specification cheaply, before any training.

    Parameters
    ----------
    task, tokenizer, length, random_ratio, source
        As in :func:`build_task`.

    Raises
    ------
    CollectError
        Unknown task, ``length <= 0``, ``random_ratio`` outside [0, 1] (or non-zero for
        phonebook), a missing/ill-formed source, or ``length`` longer than the source
        under this tokenizer. Each message says what was expected, what was got, and how
        to fix it.
    """
    _check_common(task, tokenizer, length, random_ratio)
    length = int(length)
    if task == "long_context":
        key, text, desc = _long_context_source(source)
        if float(random_ratio) < 1.0:
            have = len(_encode(tokenizer, text))
            if have < length:
                raise CollectError(_too_short_message("long_context", length, have, desc))
        return
    if source is None:
        # Every entry has >= 1 target token, so up to `capacity` tokens always fit.
        if length > _phonebook_capacity():
            build_task(task, tokenizer, length)
        return
    pairs = _phonebook_file_pairs(_check_source(source, "phonebook"))
    have = sum(len(ids) for ids in _encode_batch(tokenizer, [t for _, t in pairs]))
    if have < length:
        raise CollectError(_too_short_message("phonebook", length, have, str(source)))
