"""Training protocols: learning-rate schedules, LoRA dropout and target-content replicates."""

import hashlib
import json

import numpy as np
import pytest
import torch

from collect.config import CellKey, config_from_dict
from collect.errors import CollectError
from collect.probe import TrainConfig, run_cell
from collect.tasks import build_task

KW = dict(task="long_context", method="sft", modules="mlp@2", rank=2, seed=0)


def _run(tiny, train, entries=None, **kw):
    model, tok = tiny
    entries = entries or build_task("long_context", tok, 40, random_ratio=1.0)
    result, _ = run_cell(model, tok, entries, train=train, device="cpu", **{**KW, **kw})
    assert result.status == "ok", result.error
    return result


def test_linear_schedule_decays_to_zero_over_the_budget():
    train = TrainConfig(lr=0.02, max_steps=200, schedule="linear")
    assert [train.lr_at(s) for s in (0, 50, 100, 200)] == pytest.approx([0.02, 0.015, 0.01, 0])
    decayed = TrainConfig(lr=0.02, schedule="plateau_decay", decay_factor=0.1)
    assert decayed.lr_at(123, decays=2) == pytest.approx(0.02 * 0.01)
    assert TrainConfig(lr=0.02).lr_at(10**6) == 0.02


def test_cooldown_is_the_constant_run_then_a_linear_decay_to_zero():
    cool = TrainConfig(lr=0.02, max_steps=200, schedule="cooldown", cooldown_steps=50)
    constant, linear = TrainConfig(lr=0.02), TrainConfig(lr=0.02, max_steps=50, schedule="linear")
    assert [cool.lr_at(s) for s in range(151)] == [constant.lr_at(s) for s in range(151)]
    # the last 50 steps are the 50-step linear schedule, step for step
    assert [cool.lr_at(150 + s) for s in range(51)] == pytest.approx(
        [linear.lr_at(s) for s in range(51)], rel=1e-12
    )
    assert cool.lr_at(200) == 0.0
    whole = TrainConfig(lr=0.02, max_steps=200, schedule="cooldown", cooldown_steps=200)
    full = TrainConfig(lr=0.02, max_steps=200, schedule="linear")
    assert [whole.lr_at(s) for s in range(201)] == pytest.approx(
        [full.lr_at(s) for s in range(201)], rel=1e-12
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"schedule": "linear"},
        {"schedule": "plateau_decay", "patience": 3, "min_delta": 0.5},
        {"lora_dropout": 0.3},
        {"schedule": "cooldown", "cooldown_steps": 10},
        {"autocast": "bfloat16"},
    ],
    ids=["linear", "plateau_decay", "dropout", "cooldown", "autocast"],
)
def test_each_protocol_is_deterministic_given_its_seeds(tiny, settings):
    train = TrainConfig(max_steps=15, log_every=1, lr=3e-2, stop_when_memorized=False, **settings)
    first, second = _run(tiny, train), _run(tiny, train)
    np.testing.assert_array_equal(first.loss_curve, second.loss_curve)
    np.testing.assert_array_equal(first.p_after, second.p_after)
    assert first.loss_after == second.loss_after
    # and the setting does change training, so the comparison above can fail
    plain = _run(tiny, TrainConfig(max_steps=15, log_every=1, lr=3e-2, stop_when_memorized=False))
    assert not np.array_equal(first.loss_curve[1:], plain.loss_curve[1:])


def test_dropout_acts_on_training_steps_only(tiny):
    train = TrainConfig(max_steps=10, log_every=1, lr=3e-2, lora_dropout=0.5)
    with_dropout = _run(tiny, train)
    plain = _run(tiny, TrainConfig(max_steps=10, log_every=1, lr=3e-2))
    # the measurement before training sees the base model, with or without dropout
    assert with_dropout.loss_before == plain.loss_before
    np.testing.assert_array_equal(with_dropout.p_before, plain.p_before)
    # after training, the measurement is deterministic: a second forward gives the same loss
    # (dropout is off), i.e. loss_after is -mean log p_after
    np.testing.assert_allclose(
        with_dropout.loss_after, -np.log(with_dropout.p_after).mean(), rtol=1e-5
    )


def test_autocast_trains_in_bf16_and_measures_in_float32(tiny):
    model, _ = tiny
    assert next(model.parameters()).dtype == torch.float32
    plain = _run(tiny, TrainConfig(max_steps=30, log_every=1, lr=3e-2))
    calls = []  # (gradients on, autocast on) of every pass through the LM head
    hook = model.get_output_embeddings().register_forward_hook(
        lambda *_: calls.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu")))
    )
    try:
        mixed = _run(tiny, TrainConfig(max_steps=30, log_every=1, lr=3e-2, autocast="bfloat16"))
    finally:
        hook.remove()
    # training steps (gradients on) run under autocast, measurements (no gradients) never do
    assert {on for grad, on in calls if grad} == {True}
    assert {on for grad, on in calls if not grad} == {False}
    # the measurement before training is the float32 model's, bit for bit
    assert mixed.loss_before == plain.loss_before
    np.testing.assert_array_equal(mixed.p_before, plain.p_before)
    # the training steps' losses are bf16 products: within 2 % of the starting loss of
    # float32's all along, never equal to them
    assert not np.array_equal(mixed.loss_curve[1:], plain.loss_curve[1:])
    np.testing.assert_allclose(mixed.loss_curve, plain.loss_curve, atol=0.02 * plain.loss_before)
    # loss_after is -mean log p_after of that measurement, not the last step's training loss
    np.testing.assert_allclose(mixed.loss_after, -np.log(mixed.p_after).mean(), rtol=1e-6)
    assert mixed.loss_reduction == pytest.approx(plain.loss_reduction, rel=5e-2)
    assert model.dtype == torch.float32  # the model is left in float32


def test_autocast_loads_a_float32_model_and_refuses_another_dtype(tiny_sweep):
    config = config_from_dict(tiny_sweep(train={"max_steps": 10, "autocast": "bfloat16"}))
    assert config.dtype == "float32"
    plain = config_from_dict(tiny_sweep(train={"max_steps": 10}))
    assert plain.dtype is None and plain.fingerprint() != config.fingerprint()
    raw = tiny_sweep(train={"max_steps": 10, "autocast": "bfloat16"})
    raw["data"] = {**raw.get("data", {}), "dtype": "bfloat16"}
    with pytest.raises(CollectError, match=r'computes down from a float32 model.*dtype = "bf'):
        config_from_dict(raw)


def test_plateau_decay_continues_the_constant_run_past_its_plateau(tiny):
    stop = dict(max_steps=400, log_every=1, lr=3e-2, patience=3, min_delta=0.05)
    constant = _run(tiny, TrainConfig(**stop))
    assert constant.stop_reason == "plateau"
    decayed = _run(tiny, TrainConfig(**stop, schedule="plateau_decay", max_decays=1))
    assert decayed.stop_reason == "plateau" and decayed.lr_decays == 1
    assert decayed.steps > constant.steps
    # up to the first plateau, the two runs are one trajectory
    n = len(constant.loss_curve)
    np.testing.assert_array_equal(decayed.loss_curve[:n], constant.loss_curve)


def test_plateau_decay_resumes_from_a_checkpoint_to_the_same_cell(tiny):
    train = TrainConfig(
        max_steps=400,
        log_every=1,
        lr=3e-2,
        patience=3,
        min_delta=0.05,
        schedule="plateau_decay",
        max_decays=2,
    )
    snapshots = []
    direct = _run(tiny, train, checkpoint=snapshots.append, checkpoint_every=0.0)
    assert direct.lr_decays >= 1
    # a snapshot taken after the first decay must carry it
    late = next(s for s in snapshots if s["decays"] >= 1)
    resumed = _run(tiny, train, resume=late)
    assert resumed.steps == direct.steps and resumed.lr_decays == direct.lr_decays
    np.testing.assert_array_equal(resumed.loss_curve, direct.loss_curve)
    assert resumed.loss_after == direct.loss_after


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ({"schedule": "cosine"}, "schedule must be one of"),
        ({"lora_dropout": 1.0}, "lora_dropout must be a probability"),
        ({"lora_dropout": -0.1}, "lora_dropout must be a probability"),
        ({"decay_factor": 1.5}, r"decay_factor must be a number in \(0, 1\)"),
        ({"max_decays": -1}, "max_decays must be an integer"),
        ({"schedule": "cooldown"}, "needs cooldown_steps"),
        ({"schedule": "cooldown", "cooldown_steps": 0}, "cooldown_steps must be an integer"),
        ({"schedule": "cooldown", "cooldown_steps": 11}, r"at most max_steps \(10\)"),
        ({"cooldown_steps": 5}, "only applies to schedule = 'cooldown'"),
        ({"autocast": "float16"}, r"autocast must be one of \['none', 'bfloat16'\]"),
    ],
)
def test_bad_protocol_settings_are_refused(tiny_sweep, train, match):
    with pytest.raises(CollectError, match=match):
        config_from_dict(tiny_sweep(train={"max_steps": 10, **train}))


def test_data_seeds_are_a_grid_axis(tiny_sweep):
    raw = tiny_sweep()
    raw["defaults"]["data_seeds"] = [0, 3]
    config = config_from_dict(raw)
    assert {k.data_seed for k in config.cells()} == {0, 3}
    assert len(config.cells()) == 2 * len(config_from_dict(tiny_sweep()).cells())
    # the first sequence keeps the cell names of sweeps written before the axis existed
    legacy = CellKey("m", "long_context", 1.0, "sft", "mlp@2", 1, 20, 0)
    fields = dict(
        model="m",
        task="long_context",
        random_ratio=1.0,
        method="sft",
        modules="mlp@2",
        rank=1,
        length=20,
        seed=0,
    )  # the key before data_seed
    digest = hashlib.sha1(json.dumps(fields).encode()).hexdigest()[:10]
    assert legacy.slug() == f"long_context-rr1-sft-mlp-at-2-r1-l20-s0-{digest}"
    other = CellKey("m", "long_context", 1.0, "sft", "mlp@2", 1, 20, 0, data_seed=3)
    assert "-d3-" in other.slug() and other.slug() != legacy.slug()


def test_a_sweep_wide_data_seed_must_agree_with_the_axis(tiny_sweep):
    raw = tiny_sweep(data={"data_seed": 2})
    assert {k.data_seed for k in config_from_dict(raw).cells()} == {2}
    raw["defaults"]["data_seeds"] = [0, 1]
    with pytest.raises(CollectError, match="use only the axis"):
        config_from_dict(raw)


def test_different_data_seeds_give_different_targets(tiny):
    _, tok = tiny
    a = build_task("long_context", tok, 40, random_ratio=1.0, data_seed=0)
    b = build_task("long_context", tok, 40, random_ratio=1.0, data_seed=1)
    assert [e.target_ids for e in a] != [e.target_ids for e in b]


def test_state_files_written_before_data_seeds_still_resume(tmp_path):
    """A checkpoint's recorded key without data_seed belongs to the first target sequence."""
    import dataclasses

    import torch

    from collect.store import load_state_file, read_state, same_key, state_path, write_state

    key = CellKey("m", "long_context", 1.0, "sft", "mlp@2", 1, 20, 0)
    write_state(tmp_path, key, {"step": 7}, {"fingerprint": "f"}, kind="partial")
    path = state_path(tmp_path, key, "partial")
    payload = load_state_file(path)
    old_key = {k: v for k, v in dataclasses.asdict(key).items() if k != "data_seed"}
    payload["meta"]["key"] = json.dumps(old_key)  # as sessions before the axis wrote it
    torch.save(payload, path)  # uncompressed, as sessions before compressed states wrote it
    assert read_state(tmp_path, key, "partial")["state"]["step"] == 7
    # the recorded key never matches a cell of another target sequence
    assert same_key(json.dumps(old_key), key)
    assert not same_key(json.dumps(old_key), dataclasses.replace(key, data_seed=1))
    assert not same_key("not json", key)
