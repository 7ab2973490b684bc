"""Budget extension: a sweep at N steps, extended to 2N, equals a direct run at 2N."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
import xarray as xr

from collect.cli import main as collect_main
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.launch import launch
from collect.objectives import budget_dependent
from collect.probe import LATER_TRAIN_SETTINGS, TrainConfig, run_cell
from collect.store import cell_path, load_state_file, merge, state_path
from collect.sweep import run_sweep
from collect.tasks import build_task

N = 12  # old budget; the extension and the direct run use 2N
METHODS = ["sft", "memft_ot", "memft_sw"]


def _raw(tiny_sweep, max_steps=N, **train):
    # lr, patience and min_delta chosen so that at N some cells memorize, some plateau and some
    # stop at the budget, and some of the latter memorize between N and 2N
    settings = {"max_steps": max_steps, "log_every": 5, "patience": 4, "min_delta": 0.1}
    settings.update(lr=3e-2, **train)
    raw = tiny_sweep(
        train=settings,
        grid=[
            {"tasks": ["long_context"], "random_ratios": [1.0], "methods": METHODS},
            {"tasks": ["phonebook"], "methods": METHODS},
        ],
    )
    raw["defaults"]["ranks"] = [1, 4, 16]
    return raw


def _cells(out, config):
    """Attributes and stop reason of every cell file in ``out``."""
    found = {}
    for key in config.cells():
        with xr.open_dataset(cell_path(out, key)) as ds:
            found[key] = dict(ds.attrs)
    return found


def _assert_same_dataset(got, want):
    """Every variable equal (wall_time aside: it is compute time, not a result)."""
    assert dict(got.sizes) == dict(want.sizes)
    assert set(got.data_vars) == set(want.data_vars)
    for name in want.data_vars:
        if name == "wall_time":
            continue
        a, b = got[name].values, want[name].values
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    for name in want.coords:
        np.testing.assert_array_equal(got[name].values, want[name].values)
    for attr in ("n_cells", "n_cells_done", "complete", "fingerprint", "config"):
        assert got.attrs[attr] == want.attrs[attr]


@pytest.fixture(scope="module")
def extended(tmp_path_factory, tiny_sweep):
    """Old sweep at N, its extension to 2N through the CLI, and a direct run at 2N."""
    root = tmp_path_factory.mktemp("extend")
    old, new, direct = root / "old", root / "new", root / "direct"
    old_cfg, new_cfg = config_from_dict(_raw(tiny_sweep)), config_from_dict(_raw(tiny_sweep, 2 * N))
    run_sweep(old_cfg, old, progress=False)
    cfg_file = root / "new.json"
    cfg_file.write_text(json.dumps(_raw(tiny_sweep, 2 * N)))
    argv = ["run", str(cfg_file), "--out", str(new), "--extend-from", str(old), "--no-progress"]
    assert collect_main(argv) == 0
    reference = run_sweep(new_cfg, direct, progress=False, merge_to=direct / "dataset.nc")
    return old_cfg, new_cfg, old, new, reference


def test_extension_equals_direct_run_for_sft_and_memft_ot(extended):
    old_cfg, new_cfg, old, new, reference = extended
    got = xr.open_dataset(new / "dataset.nc").load()
    _assert_same_dataset(got, reference)  # every method, every variable
    sel = {"objective": ["sft", "memft_ot"]}
    _assert_same_dataset(got.sel(sel), reference.sel(sel))
    before, after = _cells(old, old_cfg), _cells(new, new_cfg)
    how = {k: a.get("extension") for k, a in after.items() if k.method in ("sft", "memft_ot")}
    # the run really copied early stops and resumed budget stops, and some resumed cells then
    # stopped early between N and 2N: both paths and the stop check at step N were exercised
    assert {"copied", "resumed"} <= set(how.values())
    assert any(before[k]["stop_reason"] == "plateau" for k, h in how.items() if h == "copied")
    assert any(before[k]["stop_reason"] == "memorized" for k, h in how.items() if h == "copied")
    resumed = [k for k, h in how.items() if h == "resumed"]
    assert {after[k]["stop_reason"] for k in resumed} >= {"budget", "memorized"}
    for attrs in after.values():
        if attrs.get("extension"):
            assert int(attrs["extended_from"]) == N
            assert attrs["fingerprint"] == new_cfg.fingerprint()


def test_a_carrier_written_without_training_is_copied_not_written_again(tmp_path, tiny_sweep):
    """A Memory³ sparse KV cell has no steps: any budget writes it the same way."""

    def raw(max_steps):
        grid = [{"tasks": ["long_context"], "random_ratios": [1.0], "modules": ["skv:8@all"]}]
        grid[0].update(ranks=[1], lengths=[20])
        return tiny_sweep(train={"max_steps": max_steps, "log_every": 5}, grid=grid)

    old, new = tmp_path / "old", tmp_path / "new"
    old_cfg = config_from_dict(raw(N))
    run_sweep(old_cfg, old, progress=False)
    (key,) = old_cfg.cells()
    with xr.open_dataset(cell_path(old, key)) as cell:
        assert cell.attrs["stop_reason"] == "written"
    cfg_file = tmp_path / "new.json"
    cfg_file.write_text(json.dumps(raw(2 * N)))
    argv = ["run", str(cfg_file), "--out", str(new), "--extend-from", str(old), "--no-progress"]
    assert collect_main(argv) == 0
    with xr.open_dataset(cell_path(new, key)) as cell:
        assert cell.attrs["extension"] == "copied" and int(cell.attrs["extended_from"]) == N


def test_memft_sw_phonebook_is_rerun_and_equals_direct_run(extended):
    _, new_cfg, _, new, reference = extended
    after = _cells(new, new_cfg)
    for key, attrs in after.items():
        if key.method == "memft_sw" and key.task == "phonebook":
            assert "extended_from" not in attrs and "extension" not in attrs  # from scratch
    # its curriculum depends on max_steps; the window variant (long context) does not
    assert budget_dependent("memft_sw", "phonebook")
    assert not budget_dependent("memft_sw", "long_context")
    assert any(a.get("extension") for k, a in after.items() if k.method == "memft_sw")
    got = xr.open_dataset(new / "dataset.nc").load()
    sel = {"objective": ["memft_sw"]}
    _assert_same_dataset(got.sel(sel), reference.sel(sel))


def test_state_files_only_for_budget_stopped_extendable_cells(extended):
    old_cfg, new_cfg, old, new, _ = extended
    for cfg, out in ((old_cfg, old), (new_cfg, new)):
        n_states = 0
        for key, attrs in _cells(out, cfg).items():
            wanted = attrs["stop_reason"] == "budget" and not budget_dependent(key.method, key.task)
            assert state_path(out, key).exists() == wanted, key
            n_states += wanted
        assert n_states > 0
    # small: the adapter's tensors and AdamW's moments only, never the base model's weights
    key = next(k for k in old_cfg.cells() if state_path(old, k).exists())
    payload = load_state_file(state_path(old, key))
    state = payload["state"]
    n_params = int(xr.open_dataset(cell_path(old, key))["n_params"])
    assert sum(t.numel() for t in state["params"]) == n_params
    moments = [t for s in state["optimizer"]["state"].values() for t in s.values()]
    assert sum(t.numel() for t in moments) == 2 * n_params + len(state["params"])
    assert state["step"] == N and len(state["history"]) == N
    assert payload["meta"]["fingerprint_without_budget"] == old_cfg.fingerprint_without_budget()


def test_rerunning_an_extension_resumes_it(extended, tiny_sweep):
    _, new_cfg, old, new, _ = extended
    stamp = {p: p.stat().st_mtime_ns for p in (new / "cells").glob("*")}
    run_sweep(new_cfg, new, progress=False, extend_from=old)
    assert {p: p.stat().st_mtime_ns for p in (new / "cells").glob("*")} == stamp


def test_plan_shows_what_an_extension_does(extended, tmp_path, capsys):
    _, new_cfg, old, _, _ = extended
    cfg_file = tmp_path / "new.json"
    cfg_file.write_text(json.dumps({"name": "tiny", **_raw_from(new_cfg)}))
    assert (
        collect_main(
            ["plan", str(cfg_file), "--out", str(tmp_path / "o"), "--extend-from", str(old)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert f"(max_steps {N})" in text and "copied" in text and "resumed" in text
    assert not (tmp_path / "o").exists()


def _raw_from(config):
    data = config.to_dict()
    return {"grid": data["grids"], "train": data["train"], "data": {"threads": 1}}


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"max_steps": 2 * N, "lr": 1e-2}, r"\[train\] lr: 0.03 before, 0.01 now"),
        ({"max_steps": 2 * N, "patience": 9}, r"\[train\] patience: 4 before, 9 now"),
        ({"max_steps": N - 1}, "smaller than its budget 12"),
    ],
)
def test_mismatching_settings_fail_before_any_training(
    extended, tmp_path, tiny_sweep, train, message
):
    _, _, old, _, _ = extended
    raw = _raw(tiny_sweep)
    raw["train"].update(train)
    with pytest.raises(CollectError, match=message):
        run_sweep(config_from_dict(raw), tmp_path / "new", progress=False, extend_from=old)
    assert not (tmp_path / "new").exists()  # nothing written, nothing trained


def test_other_data_settings_and_bad_sources_are_named(extended, tmp_path, tiny_sweep):
    _, _, old, _, _ = extended
    raw = _raw(tiny_sweep, 2 * N)
    raw["data"] = {"threads": 1, "data_seed": 7}
    with pytest.raises(CollectError, match=r"\[data\] data_seed: 0 before, 7 now"):
        run_sweep(config_from_dict(raw), tmp_path / "a", progress=False, extend_from=old)
    config = config_from_dict(_raw(tiny_sweep, 2 * N))
    with pytest.raises(CollectError, match="no sweep.json"):
        run_sweep(config, tmp_path / "b", progress=False, extend_from=tmp_path / "nowhere")
    with pytest.raises(CollectError, match="output directory itself"):
        run_sweep(config, old, progress=False, extend_from=old)
    cfg_file = tmp_path / "bad.json"
    raw["data"] = {"threads": 1}
    raw["train"]["lr"] = 1.0
    cfg_file.write_text(json.dumps(raw))
    argv = ["run", str(cfg_file), "--out", str(tmp_path / "c"), "--extend-from", str(old)]
    assert collect_main(argv) == 2
    assert not (tmp_path / "c").exists()


def test_a_constant_sweep_extends_to_a_cooldown_equal_to_a_direct_run(
    extended, tmp_path, tiny_sweep
):
    old_cfg, _, old, _, constant = extended
    raw = _raw(tiny_sweep, 2 * N, schedule="cooldown", cooldown_steps=N)
    cool_cfg = config_from_dict(raw)
    got = run_sweep(
        cool_cfg, tmp_path / "new", progress=False, extend_from=old, merge_to=tmp_path / "new.nc"
    )
    direct = run_sweep(
        cool_cfg, tmp_path / "direct", progress=False, merge_to=tmp_path / "direct.nc"
    )
    _assert_same_dataset(got, direct)
    after = _cells(tmp_path / "new", cool_cfg)
    resumed = [k for k, a in after.items() if a.get("extension") == "resumed"]
    assert resumed and all(json.loads(after[k]["protocol"])["cooldown_steps"] == N for k in resumed)
    # the decayed steps change the resumed cells: the comparison above could fail
    sel = {"objective": "sft"}
    assert not np.allclose(
        got.sel(sel)["loss_after"], constant.sel(sel)["loss_after"], equal_nan=True
    )


def test_a_constant_sweep_extends_to_a_convergence_stop_equal_to_a_direct_run(
    extended, tmp_path, tiny_sweep
):
    """Old cells resumed under converge_from = N stop where a direct run stops them."""
    _, _, old, _, _ = extended
    raw = _raw(tiny_sweep, 3 * N, converge_from=N, converge_tol=0.05, converge_window=0.25)
    config = config_from_dict(raw)
    got = run_sweep(
        config, tmp_path / "new", progress=False, extend_from=old, merge_to=tmp_path / "new.nc"
    )
    direct = run_sweep(config, tmp_path / "direct", progress=False, merge_to=tmp_path / "d.nc")
    _assert_same_dataset(got, direct)
    after = _cells(tmp_path / "new", config)
    resumed = {k: a for k, a in after.items() if a.get("extension") == "resumed"}
    reasons = {a["stop_reason"] for a in resumed.values()}
    # the test means something only if the stop fired on some resumed cells, at N and later
    assert "converged" in reasons, reasons
    steps = set()
    for key in resumed:
        with xr.open_dataset(cell_path(tmp_path / "new", key)) as cell:
            steps.add(int(cell["steps"].values))
    assert N in steps and max(steps) > N, steps


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"schedule": "cooldown", "cooldown_steps": N + 2}, rf"ran step {N - 1} at lr 0.03"),
        ({"schedule": "linear"}, "ran step 1 at lr 0.03"),
        ({"schedule": "plateau_decay"}, "under schedule 'plateau_decay'"),
        ({"converge_from": N - 2}, "could have stopped them elsewhere"),
    ],
    ids=["cooldown_too_long", "linear", "plateau_decay", "converge_before_old_budget"],
)
def test_an_lr_that_differs_on_steps_already_run_is_refused(
    extended, tmp_path, tiny_sweep, train, message
):
    _, _, old, _, _ = extended
    config = config_from_dict(_raw(tiny_sweep, 2 * N, **train))
    with pytest.raises(CollectError, match=message):
        run_sweep(config, tmp_path / "new", progress=False, extend_from=old)
    assert not (tmp_path / "new").exists()


def test_launcher_extends_too(extended, tmp_path):
    _, new_cfg, old, _, reference = extended
    launch(new_cfg, tmp_path, cluster="debug", jobs=2, wait=True, extend_from=old)
    _assert_same_dataset(merge(new_cfg, tmp_path), reference)


def test_resume_pays_only_the_extra_steps(tiny, monkeypatch):
    """run_cell from a state at N takes only the optimizer steps after N."""
    model, tok = tiny
    entries = build_task("phonebook", tok, 40)
    kw = {"task": "phonebook", "method": "sft", "modules": "mlp@2", "rank": 1, "seed": 0}
    cpu = torch.device("cpu")
    first, model = run_cell(
        model, tok, entries, train=TrainConfig(max_steps=N), device=cpu, keep_state=True, **kw
    )
    assert first.stop_reason == "budget" and first.state["step"] == N
    calls = []
    original = torch.optim.AdamW.step

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    more, model = run_cell(
        model,
        tok,
        entries,
        train=TrainConfig(max_steps=3 * N),
        device=cpu,
        resume=first.state,
        **kw,
    )
    assert len(calls) == more.steps - N > 0
    assert more.loss_before == first.loss_before  # measured before training, as usual
    np.testing.assert_array_equal(more.loss_curve[: len(first.loss_curve)], first.loss_curve)


def test_fingerprint_is_unchanged_by_the_extension_code(tiny_sweep):
    """Existing sweep directories stay valid: the fingerprint is the same hash as before."""
    config = config_from_dict(_raw(tiny_sweep))
    earlier = dataclasses.asdict(config.train)
    for name in LATER_TRAIN_SETTINGS:  # settings added later, at the value cells had before
        del earlier[name]
    legacy = {
        "train": earlier,
        "data_seed": config.data_seed,
        "source": config.source,
        "dtype": config.dtype,
    }
    digest = hashlib.sha1(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:12]
    assert config.fingerprint() == digest
    longer = config_from_dict(_raw(tiny_sweep, 2 * N))
    assert longer.fingerprint() != config.fingerprint()
    assert longer.fingerprint_without_budget() == config.fingerprint_without_budget()


def test_memft_sw_window_state_is_carried_over(tiny):
    """MemFT-SW (long context) keeps its anchor and window across the resume."""
    model, tok = tiny
    # longer than the initial window (50 tokens), so its growth changes the weights
    entries = build_task("long_context", tok, 120, random_ratio=1.0)
    kw = {"task": "long_context", "method": "memft_sw", "modules": "mlp@2", "rank": 1, "seed": 0}
    cpu = torch.device("cpu")
    first, model = run_cell(
        model, tok, entries, train=TrainConfig(max_steps=N), device=cpu, keep_state=True, **kw
    )
    assert first.state["objective"]["mult"] > 1.0  # the window grew: there is state to carry
    more, model = run_cell(
        model,
        tok,
        entries,
        train=TrainConfig(max_steps=2 * N),
        device=cpu,
        resume=first.state,
        **kw,
    )
    direct, model = run_cell(
        model, tok, entries, train=TrainConfig(max_steps=2 * N), device=cpu, **kw
    )
    assert more.steps == direct.steps and more.stop_reason == direct.stop_reason
    for name in ("p_after", "loss_curve", "frac_above_curve", "greedy_correct"):
        np.testing.assert_array_equal(getattr(more, name), getattr(direct, name), err_msg=name)


def test_cells_shared_from_another_sweep_resume_from_its_state(extended, tmp_path, tiny_sweep):
    """A cell copied in from another sweep left its state there; the extension finds it."""
    old_cfg, new_cfg, old, _, reference = extended
    borrower = tmp_path / "borrower"
    run_sweep(
        old_cfg, borrower, progress=False, share_with=[old]
    )  # every cell copied, none trained
    assert not list(borrower.glob("cells/*.state.pt"))
    got = run_sweep(
        new_cfg, tmp_path / "new", progress=False, extend_from=borrower, merge_to=tmp_path / "n.nc"
    )
    _assert_same_dataset(got, reference)
    after = _cells(tmp_path / "new", new_cfg)
    assert any(a.get("extension") == "resumed" for a in after.values())
