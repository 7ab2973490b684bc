import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from collect.cli import main as collect_main
from collect.config import config_from_dict, load_config
from collect.errors import CollectError
from collect.launch import chunk, launch
from collect.store import cell_path, merge, state_path, write_state
from collect.sweep import run_sweep

CONTRACT_DIMS = {
    "model",
    "task",
    "random_ratio",
    "objective",
    "modules",
    "rank",
    "length",
    "seed",
    "token",
    "step",
}
CELL_VARS = {
    "loss_before",
    "loss_after",
    "loss_reduction",
    "exact_match",
    "token_accuracy",
    "steps",
    "wall_time",
    "status",
}
TOKEN_VARS = {"p_before", "p_after", "greedy_correct"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_sweep):
    out = tmp_path_factory.mktemp("sweep")
    config = config_from_dict(tiny_sweep())
    ds = run_sweep(config, out, progress=False, merge_to=out / "dataset.nc")
    return config, out, ds


def test_dataset_follows_the_contract(finished):
    _, out, ds = finished
    ds = xr.open_dataset(out / "dataset.nc")
    assert CONTRACT_DIMS <= set(ds.dims)
    assert CELL_VARS | TOKEN_VARS | {"entry", "n_params", "loss_curve", "frac_above_curve"} <= set(
        ds.data_vars
    )
    for name in CELL_VARS:
        assert ds[name].dims == (
            "model",
            "task",
            "random_ratio",
            "objective",
            "modules",
            "rank",
            "length",
            "seed",
            "data_seed",
        )
    assert ds["n_params"].dims == ("model", "modules", "rank")
    # each cell says why it stopped and where it ran; the sweep's protocol is recorded
    ok = ds["status"] == "ok"
    assert set(np.unique(ds["stop_reason"].values[ok.values])) <= {"memorized", "plateau", "budget"}
    assert (ds["dtype"].values[ok.values] == "float32").all()
    assert (
        json.loads(ds.attrs["protocol"])["max_steps"]
        == json.loads(ds.attrs["config"])["train"]["max_steps"]
    )
    assert sum(json.loads(ds.attrs["cell_stop_reasons"]).values()) == int(ok.sum())
    for attr in ("schema_version", "config", "versions", "git_revision", "created", "synthetic"):
        assert attr in ds.attrs
    assert json.loads(ds.attrs["config"])["name"] == "tiny"
    assert "torch" in json.loads(ds.attrs["versions"])
    assert ds.attrs["complete"] == "true"


def test_values_are_consistent(finished):
    _, _, ds = finished
    ok = ds["status"] == "ok"
    assert int(ok.sum()) == 12  # 4 long-context cells + 8 phonebook (2 methods)
    diff = ds["loss_before"] - ds["loss_after"] - ds["loss_reduction"]
    assert float(abs(diff.where(ok)).max()) == 0.0
    # cells outside the union of blocks are marked, not dropped
    assert set(np.unique(ds["status"].values)) == {"ok", "not_run"}
    assert np.isnan(ds["loss_reduction"].where(~ok)).all()
    # padding beyond `length` is NaN for token variables
    cell = ds.sel(task="long_context", random_ratio=1.0, objective="sft", rank=8, length=20, seed=0)
    p = cell["p_after"].squeeze()
    assert np.isfinite(p[:20]).all() and np.isnan(p[20:]).all()
    assert (ds["entry"].sel(task="long_context", length=20).squeeze()[:20] == 0).all()


def test_resume_skips_finished_cells(finished):
    config, out, _ = finished
    stamp = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.nc")}
    run_sweep(config, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*.nc")} == stamp


def test_other_settings_cannot_mix_into_a_sweep(finished, tiny_sweep):
    _, out, _ = finished
    other = config_from_dict(tiny_sweep(train={"max_steps": 41, "log_every": 5}))
    with pytest.raises(CollectError, match="other training/data settings"):
        run_sweep(other, out, progress=False)


def _strip(ds):
    return ds.drop_vars(["wall_time"]).assign_attrs(created="", git_revision="")


def test_kill_and_resume_equals_uninterrupted(tmp_path, finished, tiny_sweep):
    """Start a sweep in a subprocess, kill it mid-way, resume: same dataset as one clean run."""
    _, _, reference = finished
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_sweep()))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "collect", "run", str(cfg), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "cells").glob("*.nc"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list((out / "cells").glob("*.nc")))
    assert 3 <= n_before < 12, "the kill must land mid-way"
    partial = merge(load_config(cfg), out)
    assert partial.attrs["complete"] == "false" and partial.attrs["n_cells_done"] == n_before
    assert collect_main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    resumed = xr.open_dataset(out / "dataset.nc")
    xr.testing.assert_identical(_strip(resumed.load()), _strip(reference))


def test_a_cell_killed_mid_training_resumes_from_its_checkpoint(tmp_path, finished, tiny_sweep):
    """Kill a sweep while a cell is between checkpoints; the resumed sweep is unchanged."""
    _, _, reference = finished
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_sweep(data={"threads": 1, "checkpoint_minutes": 0.0005})))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "collect", "run", str(cfg), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )

    def unfinished_checkpoints():  # a finished cell may still show its checkpoint briefly
        names = [p.name.removesuffix(".partial.pt") for p in out.glob("cells/*.partial.pt")]
        return [n for n in names if not (out / "cells" / f"{n}.nc").exists()]

    deadline = time.time() + 120
    while time.time() < deadline and not (
        len(list((out / "cells").glob("*.nc"))) >= 2 and unfinished_checkpoints()
    ):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_cells = unfinished_checkpoints()
    assert killed_cells, "the kill must land inside a cell that has a checkpoint"
    killed = killed_cells[0]
    assert collect_main(["run", str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert not list((out / "cells").glob("*.partial.pt"))
    resumed = xr.open_dataset(out / "dataset.nc").load()
    configs = [json.loads(d.attrs["config"]) for d in (resumed, reference)]
    assert [c.pop("checkpoint_minutes") for c in configs] == [0.0005, 10.0]
    assert configs[0] == configs[1]  # a speed setting: recorded, and the only difference
    same = {"config": ""}
    xr.testing.assert_identical(
        _strip(resumed).assign_attrs(same), _strip(reference).assign_attrs(same)
    )
    cell = xr.load_dataset(out / "cells" / f"{killed}.nc")
    assert 0 < cell.attrs["resumed_from_step"] <= int(cell["steps"])  # not rerun from step 0


def test_a_finished_cell_with_a_leftover_checkpoint_counts_as_finished(
    tmp_path, finished, tiny_sweep, capsys
):
    """A kill between writing a cell and deleting its checkpoint leaves both: finished."""
    config, done, reference = finished
    out = tmp_path / "run"
    shutil.copytree(done, out)
    key = config.cells()[0]
    cell = cell_path(out, key)
    write_state(out, key, {"step": 3}, {"fingerprint": config.fingerprint()}, kind="partial")
    mtime = cell.stat().st_mtime_ns
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_sweep()))
    assert collect_main(["plan", str(cfg), "--out", str(out)]) == 0
    assert ", 0 pending" in capsys.readouterr().out
    assert merge(config, out).attrs["complete"] == "true"
    run_sweep(config, out, progress=False)
    assert cell.stat().st_mtime_ns == mtime  # not rerun
    assert not state_path(out, key, "partial").exists()  # the stale checkpoint is gone
    assert "nothing to do" in capsys.readouterr().err


def test_collect_run_shows_progress_inside_a_cell(tmp_path, tiny_sweep, capsys):
    """Per logged step: step count, loss and the share above 0.5; a line per cell; a summary."""
    raw = tiny_sweep(defaults={**tiny_sweep()["defaults"], "ranks": [1], "lengths": [20]})
    raw["grid"] = raw["grid"][:1]
    raw["train"] = {"max_steps": 20, "log_every": 5, "stop_when_memorized": False}
    cfg = tmp_path / "one.json"
    cfg.write_text(json.dumps(raw))
    assert collect_main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    steps = [int(s) for s in re.findall(r"(\d+)/20 \[[^]]*, loss \d+\.\d+, above 0\.5: \d+%", err)]
    assert sorted(set(steps)) == [0, 5, 10, 15, 20]  # every logged step was shown
    assert "long_context sft mlp@2 r=1 l=20 s=0: ok (budget at step 20), ΔL " in err
    assert "done in " in err and "1 budget" in err
    assert "tiny cells" in err  # the bar's label is the sweep's name


def test_a_memory_written_without_training_has_no_step_bar(tmp_path, tiny_sweep, capsys):
    raw = tiny_sweep(defaults={**tiny_sweep()["defaults"], "ranks": [1], "lengths": [20]})
    raw["grid"] = [{"tasks": ["long_context"], "random_ratios": [1.0], "modules": ["skv:4@all"]}]
    raw["train"] = {"max_steps": 20, "log_every": 5}
    cfg = tmp_path / "skv.json"
    cfg.write_text(json.dumps(raw))
    assert collect_main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "/20 [" not in err  # no "0/20 steps" bar that never moves
    assert "skv:4@all" in err and "done in " in err


def test_run_cell_reports_every_logged_step(tiny):
    import torch

    from collect.probe import TrainConfig, run_cell
    from collect.tasks import build_task

    model, tokenizer = tiny
    entries = build_task("long_context", tokenizer, 20, random_ratio=1.0, data_seed=0)
    seen = []
    train = TrainConfig(max_steps=12, log_every=4, stop_when_memorized=False)
    result, _ = run_cell(
        model,
        tokenizer,
        entries,
        task="long_context",
        method="sft",
        modules="mlp@2",
        rank=1,
        seed=0,
        train=train,
        device=torch.device("cpu"),
        progress=lambda *a: seen.append(a),
    )
    assert [s for s, _, _ in seen] == [0, 4, 8, 12] == result.curve_steps.tolist()
    assert [loss for _, loss, _ in seen] == pytest.approx(result.loss_curve.tolist())
    assert [f for _, _, f in seen] == pytest.approx(result.frac_above_curve.tolist())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {
                "defaults": {
                    "models": ["tiny-random"],
                    "modules": ["mlp@2"],
                    "ranks": [0],
                    "lengths": [20],
                    "seeds": [0],
                }
            },
            "ranks must be positive integers, got 0",
        ),
        ({"grid": [{"tasks": ["poetry"]}]}, "unknown task 'poetry'"),
        ({"grid": [{"models": ["tiny-randon"]}]}, "unknown model 'tiny-randon'; did you mean"),
        ({"grid": [{"models": ["smolm2"]}]}, "did you mean 'smollm2'\\? Known names"),
        ({"grid": [{"tasks": ["phonebook"], "methods": ["dpo"]}]}, "unknown method 'dpo'"),
        ({"grid": [{"tasks": ["phonebook"], "modules": ["mlp"]}]}, "PARTS@LAYERS"),
        ({"train": {"max_steps": 10, "learning_rate": 1}}, "unknown \\[train\\] keys"),
        ({"data": {"seed": 3}}, "unknown \\[data\\] keys \\['seed'\\]; known: .*data_seed"),
        ({"data": {"pack_prompts": "yes"}}, "pack_prompts must be true or false; got 'yes'"),
        ({"data": {"checkpoint_minutes": -1}}, "checkpoint_minutes must be a number of minutes"),
    ],
)
def test_bad_configs_fail_at_parse_time(override, message, tiny_sweep):
    with pytest.raises(CollectError, match=message):
        config_from_dict(tiny_sweep(**override))


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ([{"tasks": ["phonebook"], "modules": ["foo_proj@1"]}], "no module matches 'foo_proj'"),
        ([{"tasks": ["phonebook"], "modules": ["mlp@7"]}], "names layer 7"),
        ([{"tasks": ["long_context"], "random_ratios": [0.0], "lengths": [10**6]}], "tokens"),
    ],
)
def test_bad_configs_fail_before_any_training(tmp_path, grid, message, tiny_sweep):
    config = config_from_dict(tiny_sweep(grid=grid))
    with pytest.raises(CollectError, match=message):
        run_sweep(config, tmp_path, progress=False)
    assert not list(tmp_path.glob("cells/*.nc"))


def test_cli_reports_bad_config_cleanly(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[defaults]\nranks = [-1]\nlengths = [8]\n")
    assert collect_main(["plan", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "ranks must be positive integers, got -1" in capsys.readouterr().err


def test_chunking_covers_every_cell_once():
    parts = chunk(list(range(10)), 3)
    assert [len(p) for p in parts] == [4, 3, 3] and sum(parts, []) == list(range(10))
    assert chunk([1, 2], 5) == [[1], [2]]


def test_submitit_launcher_writes_the_same_cells(tmp_path, finished, tiny_sweep):
    _, _, reference = finished
    config = config_from_dict(tiny_sweep())
    jobs = launch(config, tmp_path, cluster="debug", jobs=3, wait=True)
    assert len(jobs) == 3
    xr.testing.assert_identical(_strip(merge(config, tmp_path)), _strip(reference))


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as stop:
        collect_main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for word in ("run", "plan", "merge", "launch", "examples"):
        assert word in text


def test_cli_version_is_the_packages(capsys):
    """``collect --version`` prints the installed lawfit distribution's version, as lawfit's."""
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        collect_main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"collect {version('lawfit')}"


def test_merge_refuses_incomplete_when_asked(tmp_path, tiny_sweep):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_sweep()))
    code = collect_main(
        [
            "merge",
            str(cfg),
            "--out",
            str(tmp_path / "empty"),
            "-o",
            str(tmp_path / "x.nc"),
            "--require-complete",
        ]
    )
    assert code == 2 and not Path(tmp_path / "x.nc").exists()


def test_two_workers_share_one_sweep(tmp_path, tiny_sweep, finished):
    """Two `collect run` processes on one directory split the cells and finish the sweep."""
    _, _, reference = finished
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_sweep()))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "collect", "run", str(cfg), "--out", str(out), "--no-progress"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert not list((out / "cells").glob("*.claim"))
    assert len(list((out / "cells").glob("*.nc"))) == 12
    xr.testing.assert_identical(_strip(merge(load_config(cfg), out)), _strip(reference))


def test_claims_of_live_workers_are_honoured_and_stale_ones_taken_over(tmp_path, tiny_sweep):
    from collect.store import claim_cell, claim_path, release_cell

    key = config_from_dict(tiny_sweep()).cells()[0]
    assert claim_cell(tmp_path, key)
    assert not claim_cell(tmp_path, key)  # held by a live process (this one)
    release_cell(tmp_path, key)
    sleeper = subprocess.Popen([sys.executable, "-c", "pass"])
    sleeper.wait()  # a process that is gone
    claim_path(tmp_path, key).write_text(f"{__import__('socket').gethostname()} {sleeper.pid}")
    assert claim_cell(tmp_path, key)  # stale claim of a dead process: taken over
    claim_path(tmp_path, key).write_text(f"another-host {sleeper.pid}")
    assert not claim_cell(tmp_path, key)  # other hosts' claims are honoured


def test_a_claim_is_never_visible_half_written(tmp_path, tiny_sweep, monkeypatch):
    """A worker killed mid-claim must not leave an empty claim that blocks the cell for a minute."""
    import socket

    from collect.store import claim_cell, claim_path

    key = config_from_dict(tiny_sweep()).cells()[0]
    seen = []
    real_link = os.link

    def link_and_look(src, dst):
        seen.append(Path(src).read_text())  # what the claim holds the instant it appears
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link_and_look)
    assert claim_cell(tmp_path, key)
    assert seen == [f"{socket.gethostname()} {os.getpid()}"]
    assert claim_path(tmp_path, key).read_text() == seen[0]

    def killed(src, dst):
        raise KeyboardInterrupt  # the process dies between writing its draft and claiming

    other = config_from_dict(tiny_sweep()).cells()[1]
    monkeypatch.setattr(os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        claim_cell(tmp_path, other)
    assert not claim_path(tmp_path, other).exists()
    assert sorted(p.name for p in claim_path(tmp_path, key).parent.iterdir()) == [
        claim_path(tmp_path, key).name
    ], "no draft may outlive a claim attempt"


PAPER = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "reference"
    / "parametric-memory-law"
    / "datasets"
)


@pytest.mark.reference
def test_sweep_on_the_papers_own_benchmark_files(tmp_path, tiny_sweep):
    """The paper's PhoneBook and long-context files drive a sweep end to end (never copied)."""
    phonebook = PAPER / "phonebook" / "pb_train_random" / "qwen" / "PB1000.jsonl"
    text = PAPER / "long_context" / "sample_0_tok29709_noise_0.jsonl"
    if not (phonebook.exists() and text.exists()):
        pytest.skip("../shared/reference (the paper's benchmark files) is not available")
    raw = tiny_sweep(
        data={"threads": 1, "source": {"phonebook": str(phonebook), "long_context": str(text)}},
        grid=[{"tasks": ["long_context"], "random_ratios": [0.0]}, {"tasks": ["phonebook"]}],
    )
    raw["defaults"]["ranks"] = [4]
    ds = run_sweep(config_from_dict(raw), tmp_path, progress=False, merge_to=tmp_path / "d.nc")
    assert ds.attrs["complete"] == "true"
    assert (ds["status"].sel(task="phonebook", random_ratio=0.0) == "ok").all()
    assert json.loads(ds.attrs["config"])["source"]["phonebook"] == str(phonebook)


def test_source_table_must_name_known_tasks(tiny_sweep):
    with pytest.raises(CollectError, match="table \\{task = path\\}"):
        config_from_dict(tiny_sweep(data={"source": {"poems": "x.txt"}}))


def test_pack_prompts_is_a_speed_setting_outside_the_fingerprint(tiny_sweep):
    packed = config_from_dict(tiny_sweep())
    plain = config_from_dict(tiny_sweep(data={"threads": 1, "pack_prompts": False}))
    assert packed.pack_prompts and not plain.pack_prompts
    assert packed.fingerprint() == plain.fingerprint()
    assert plain.to_dict()["pack_prompts"] is False  # still recorded as provenance


def test_plan_marks_the_cells_live_workers_are_running(tmp_path, capsys, tiny_sweep):
    import socket

    from collect.store import claim_path, write_state

    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps(tiny_sweep()))
    out = tmp_path / "o"
    first, second = load_config(cfg).cells()[:2]
    live, dead = claim_path(out, first), claim_path(out, second)
    live.parent.mkdir(parents=True)
    live.write_text(f"{socket.gethostname()} {os.getpid()}")
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead.write_text(f"{socket.gethostname()} {finished.stdout.strip()}")  # its process is gone
    assert collect_main(["plan", str(cfg), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("pending (1 running now)")
    assert f"{first.slug()} running ({socket.gethostname()} {os.getpid()})" in lines[1]
    assert lines[2].strip() == second.slug()
    # a killed run's checkpoint: the next run continues from its step
    write_state(out, second, {"step": 7}, {"fingerprint": "x"}, kind="partial")
    assert collect_main(["plan", str(cfg), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("pending (1 running now)")  # a checkpoint is not a running cell
    assert lines[2].strip() == f"{second.slug()} checkpoint at step 7/40"


def _one_cell_sweep(tiny_sweep):
    raw = tiny_sweep(grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}])
    raw["defaults"].update(ranks=[1], lengths=[20])
    raw["train"] = {"max_steps": 5, "log_every": 5}
    return config_from_dict(raw)


def test_cells_record_where_they_were_computed(tmp_path, tiny_sweep):
    config = _one_cell_sweep(tiny_sweep)
    ds = run_sweep(config, tmp_path, progress=False, merge_to=tmp_path / "d.nc")
    cell = xr.load_dataset(next((tmp_path / "cells").glob("*.nc")))
    assert cell.attrs["device"] == "cpu" and cell.attrs["dtype"] == "float32"
    assert cell.attrs["collected"].endswith("+00:00") and cell.attrs["torch"]
    assert json.loads(ds.attrs["cell_dtypes"]) == {"float32": 1}
    assert json.loads(ds.attrs["cell_devices"]) == {"cpu": 1}
    assert json.loads((tmp_path / "sweep.json").read_text())["precision"] == "float32"


def test_a_worker_in_another_precision_is_refused_before_training(tmp_path, tiny_sweep):
    config = _one_cell_sweep(tiny_sweep)
    run_sweep(config, tmp_path / "a", progress=False)  # records float32
    meta = tmp_path / "b" / "sweep.json"
    meta.parent.mkdir()
    recorded = json.loads((tmp_path / "a" / "sweep.json").read_text())
    meta.write_text(json.dumps({**recorded, "precision": "bfloat16"}))  # as a GPU worker left it
    with pytest.raises(CollectError, match='computed in bfloat16.*dtype = "bfloat16"'):
        run_sweep(config, tmp_path / "b", progress=False)
    assert not list((tmp_path / "b").glob("cells/*.nc"))
    assert json.loads(meta.read_text())["precision"] == "bfloat16"  # kept by prepare_dir


def test_cells_flag_runs_and_plans_only_the_matching_cells(tmp_path, capsys, tiny_sweep):
    """--cells picks cells by name pattern; a pattern that matches nothing is refused early."""
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps(tiny_sweep(train={"max_steps": 5, "log_every": 5})))
    out = tmp_path / "o"
    cells = load_config(cfg).cells()
    wanted = [k for k in cells if k.task == "long_context" and k.rank == 8]
    pattern = "long_context-*-r8-*"
    assert collect_main(["plan", str(cfg), "--out", str(out), "--cells", pattern]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith(f"tiny: {len(wanted)} cells, {len(wanted)} pending")
    assert [line.strip() for line in listed[1 : 1 + len(wanted)]] == [k.slug() for k in wanted]
    run = ["run", str(cfg), "--out", str(out), "--no-progress", "--cells", pattern]
    assert collect_main(run) == 0
    done = sorted(p.name for p in (out / "cells").glob("*.nc"))
    assert done == sorted(f"{k.slug()}.nc" for k in wanted)
    capsys.readouterr()
    assert collect_main([*run[:-1], "phonebook-*-r3-*"]) == 2  # no rank 3 in this sweep
    assert "--cells 'phonebook-*-r3-*' matches none of the" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "cells").glob("*.nc")) == done  # nothing ran


def test_first_exact_tells_never_from_reached(finished):
    """Each finished cell says whether greedy recall became exact, and counts are kept."""
    _, _, ds = finished
    ok = ds["status"] == "ok"
    reached = np.isfinite(ds["first_exact_step"])
    expected = xr.where(reached, "reached", "never").where(ok, "")
    assert (ds["first_exact"] == expected).all()  # cells of today's code: never "unknown"
    counts = json.loads(ds.attrs["cell_first_exact"])
    assert counts == {k: int(((ds["first_exact"] == k) & ok).sum()) for k in counts}
    assert sum(counts.values()) == int(ok.sum()) and "description" in ds["first_exact"].attrs


def test_cells_without_first_exact_step_merge_as_nan(tmp_path, finished):
    """A cell file written before first_exact_step was recorded merges beside newer ones."""
    from collect.store import CHECKSUM_ATTR, data_checksum

    config, out, ds = finished
    assert "first_exact_step" in ds.data_vars
    assert ds["first_exact_step"].attrs["units"] == "steps"
    reached = ds["first_exact_step"]
    assert ((reached >= 0) & (reached <= ds["steps"]) | reached.isnull()).all()
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    key = next(iter(config.cells()))
    path = cell_path(copy, key)
    old = xr.load_dataset(path).drop_vars("first_exact_step")
    del old.attrs["first_exact"]
    old.attrs[CHECKSUM_ATTR] = data_checksum(old)
    path.unlink()
    old.to_netcdf(path)
    merged = merge(config, copy, strict=True)
    at = {("objective" if d == "method" else d): getattr(key, d) for d in key.__dataclass_fields__}
    assert np.isnan(float(merged["first_exact_step"].sel(at)))
    assert str(merged["first_exact"].sel(at).item()) == "unknown"  # not "never": not known
    assert json.loads(merged.attrs["cell_first_exact"])["unknown"] == 1
    for name in ("loss_reduction", "steps"):  # the rest of the cell is unchanged
        assert float(merged[name].sel(at)) == float(ds[name].sel(at))
    had = int(np.isfinite(float(ds["first_exact_step"].sel(at))))
    assert int(merged["first_exact_step"].notnull().sum()) == int(reached.notnull().sum()) - had
