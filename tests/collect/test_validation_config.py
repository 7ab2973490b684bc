"""Issue 14, collect side: config values are type/range-checked; malformed files name the line."""

import pytest

from collect.config import config_from_dict, load_config
from collect.errors import CollectError


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            {"grad_clip": -1.0},
            r"\[train\] grad_clip must be a max gradient norm > 0, e.g. 1.0; got -1.0",
        ),
        ({"grad_clip": 0}, r"grad_clip must be a max gradient norm > 0"),
        ({"lr": "fast"}, r"\[train\] lr must be a number > 0, e.g. 1e-2; got 'fast' \(str\)"),
        ({"lr": float("nan")}, r"lr must be a number > 0"),
        ({"patience": -5}, r"\[train\] patience must be an integer number of steps >= 1"),
        ({"patience": 0}, r"patience must be an integer number of steps >= 1"),
        ({"max_steps": 2.5}, r"max_steps must be an integer >= 1"),
        ({"max_steps": True}, r"max_steps must be an integer >= 1"),
        ({"log_every": 0}, r"log_every must be an integer >= 1"),
        ({"weight_decay": -0.1}, r"weight_decay must be a number >= 0"),
        ({"min_delta": "small"}, r"min_delta must be a relative improvement >= 0"),
        ({"stop_when_memorized": "yes"}, r"stop_when_memorized must be true or false"),
        ({"lora_alpha": 0}, r"lora_alpha must be a number > 0"),
    ],
)
def test_train_values_checked(train, message, tiny_sweep):
    with pytest.raises(CollectError, match=message):
        config_from_dict(tiny_sweep(train={"max_steps": 40, **train}))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dtype": "float17"}, r"\[data\] dtype must be one of \['float32'"),
        ({"threads": "two"}, r"\[data\] threads must be an integer >= 1; got 'two'"),
        ({"threads": 0}, r"threads must be an integer >= 1"),
        ({"device": "gpu"}, r"\[data\] device must be a torch device"),
        ({"data_seed": -1}, r"\[data\] data_seed must be an integer >= 0"),
        ({"data_seed": "a"}, r"data_seed must be an integer >= 0"),
    ],
)
def test_data_values_checked(data, message, tiny_sweep):
    with pytest.raises(CollectError, match=message):
        config_from_dict(tiny_sweep(data=data))


def test_good_values_pass(tiny_sweep):
    cfg = config_from_dict(
        tiny_sweep(
            train={
                "max_steps": 40,
                "lr": 1e-2,
                "grad_clip": 1.0,
                "patience": 5,
                "lora_alpha": None,
            },
            data={"dtype": "bfloat16", "threads": 2, "device": "cuda:1", "data_seed": 3},
        )
    )
    assert cfg.train.grad_clip == 1.0 and cfg.dtype == "bfloat16" and cfg.threads == 2


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("dup.toml", 'name = "a"\nname = "b"\n', r"dup.toml: not valid TOML: .*line 2"),
        ("open.toml", "[defaults]\nranks = [1, 2\n", r"open.toml: not valid TOML: .*line"),
        (
            "dup.yaml",
            "name: a\ntrain:\n  lr: 0.1\n  lr: 0.2\n",
            r"dup.yaml:4: not valid YAML: duplicated key 'lr'",
        ),
        ("open.yaml", "defaults:\n  ranks: [1, 2\n", r"open.yaml:\d+: not valid YAML"),
        ("bad.json", '{"name": "a",\n "x": }', r"bad.json:2: not valid JSON"),
        ("list.yaml", "- 1\n- 2\n", r"list.yaml: expected a table of sweep keys"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CollectError, match=message):
        load_config(path)


def test_binary_file(tmp_path):
    path = tmp_path / "x.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CollectError, match="cannot be read as text"):
        load_config(path)
