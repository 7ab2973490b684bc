"""Issue 14: `collect plan` checks what `run` would reject, from the model's config only."""

import re
from pathlib import Path

import pytest

from collect.cli import main
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.preflight import estimate_cell, preflight

BASE = ["--model", "tiny-random", "--ranks", "1", "--seeds", "0", "--modules", "mlp@2"]


def _plan(tmp_path, *flags):
    return main(["plan", *BASE, "--out", str(tmp_path / "out"), *flags])


def test_plan_prints_count_and_estimate(tmp_path, capsys):
    assert _plan(tmp_path, "--lengths", "20", "40", "--task", "phonebook") == 0
    out = capsys.readouterr().out
    assert "2 cells, 2 pending" in out.splitlines()[0]
    assert "estimate (rough upper bound):" in out and "FLOP for 2 cell(s)" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--modules", "foo_proj@2"], "no module matches 'foo_proj'"),
        (["--modules", "mlp@9"], "names layer 9, but the model has 4 layers"),
        (["--model", "/no/such/model"], "could not load model '/no/such/model'"),
        (
            ["--task", "long_context", "--random-ratio", "0", "--lengths", "10000000"],
            "at least length=10000000 target tokens",
        ),
        (
            ["--lengths", "1000000", "--max-cell-memory", "4"],
            r"estimated above the memory ceiling of 4.0 GiB",
        ),
        (["--max-cell-memory", "-1"], "--max-cell-memory must be a number of GiB > 0"),
        (["--ranks", "1", "65"], r"rank 65 exceeds 64, the largest rank an update of .*down_proj"),
        (
            ["--ranks", "65", "--modules", "mlp_block@2"],
            r"rank 65 exceeds 64, the largest rank an update of a 64 x 64 map",
        ),
    ],
)
def test_plan_refuses_what_run_would(tmp_path, capsys, flags, message):
    args = ["--lengths", "20", "--task", "phonebook", *flags]
    assert _plan(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_missing_source_file(tiny_sweep, tmp_path):
    config = config_from_dict(tiny_sweep(data={"source": str(tmp_path / "missing.txt")}))
    with pytest.raises(CollectError, match="missing.txt"):
        preflight(config, config.cells())


def test_estimate_grows_with_length(tiny_sweep):
    from collect.models import load_skeleton

    config = config_from_dict(tiny_sweep())
    loaded = load_skeleton("tiny-random")
    short, long = (
        k for k in config.cells() if k.task == "phonebook" and k.rank == 1 and k.method == "sft"
    )
    a, b = estimate_cell(loaded, short, config), estimate_cell(loaded, long, config)
    assert b.batch_tokens > a.batch_tokens and b.memory_bytes > a.memory_bytes
    assert b.flop == pytest.approx(a.flop * b.batch_tokens / a.batch_tokens)
    # weights alone are a floor: 164,480 float32 parameters
    assert a.memory_bytes > 164_480 * 4


def test_batch_tokens_count_the_prompts_a_cell_trains_on(tiny_sweep):
    """Long context: one prompt before the target; PhoneBook: a prompt per entry."""
    from collect.models import load_skeleton
    from collect.preflight import batch_tokens
    from collect.probe import prompt_ids
    from collect.tasks import build_task

    config = config_from_dict(tiny_sweep())  # both tasks, lengths 20 and 40
    loaded = load_skeleton("tiny-random")
    for key in config.cells():
        got = batch_tokens(loaded, key, config)
        if key.task == "long_context":
            entries = build_task("long_context", loaded.tokenizer, key.length, random_ratio=1.0)
            assert got == key.length + len(prompt_ids(loaded.tokenizer, entries[0].key))
        else:  # the names and the chat template outweigh the digits
            assert got > 2 * key.length


@pytest.mark.parametrize(
    ("modules", "rank", "copies"),
    [
        ("mlp@2", 8, 4),  # peft LoRA
        ("mlp_block@1", 2, 4),  # the paper's block adapter
        ("memtok:3@1", 1, 4),
        ("kv:2@1", 1, 4),
        ("skv:5@0,2", 1, 1),  # written without training: stored once, no gradient or moments
    ],
)
def test_the_estimate_counts_the_state_the_real_adapter_holds(tiny, modules, rank, copies):
    """Value, gradient and AdamW's two moments of what the cell trains, counted on the skeleton."""
    from collect.adapters import attach
    from collect.models import load_skeleton
    from collect.preflight import trainable_state_bytes

    model, tokenizer = tiny
    real = attach(model, modules, rank, seed=0, tokenizer=tokenizer)
    skeleton = load_skeleton("tiny-random")
    weights = [p.shape for p in skeleton.model.parameters()]
    assert trainable_state_bytes(skeleton, modules, rank) == copies * real.n_bytes > 0
    assert [p.shape for p in skeleton.model.parameters()] == weights  # left as it was


def test_a_wider_adapter_raises_the_estimate_by_its_state(tiny_sweep):
    from collect.models import load_skeleton
    from collect.preflight import trainable_state_bytes

    config = config_from_dict(tiny_sweep())
    loaded = load_skeleton("tiny-random")
    one, eight = (
        k for k in config.cells() if k.task == "long_context" and k.length == 20 and k.seed == 0
    )
    grown = estimate_cell(loaded, eight, config).memory_bytes
    grown -= estimate_cell(loaded, one, config).memory_bytes
    assert grown == trainable_state_bytes(loaded, "mlp@2", 8) - trainable_state_bytes(
        loaded, "mlp@2", 1
    )


def _peak_rss(tmp_path, length):
    """Peak RSS (bytes) of a 3-step `collect run` of one tiny PhoneBook cell, in a subprocess.

    Read as the process's own high-water mark (``VmHWM``), not ``ru_maxrss``: Linux carries
    the peak of the memory a process had before ``exec`` into ``ru_maxrss``, so a child of a
    test process that had grown past both runs' peaks reported that same peak twice.
    """
    import subprocess
    import sys

    code = (
        "import re, sys; from collect.cli import main; main(sys.argv[1:]); "
        "status = open('/proc/self/status').read(); "
        "print('MAXRSS', re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1))"
    )
    argv = ["run", *BASE, "--task", "phonebook", "--lengths", str(length), "--max-steps", "3"]
    argv += ["--out", str(tmp_path / f"r{length}"), "--no-progress"]
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    ).stdout
    return 1024 * int(out.split("MAXRSS")[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_memory_estimate_bounds_a_measured_run(tmp_path):
    from collect.models import load_skeleton

    grown = _peak_rss(tmp_path, 20_000) - _peak_rss(tmp_path, 20)
    config = config_from_dict(
        {
            "defaults": {
                "models": ["tiny-random"],
                "modules": ["mlp@2"],
                "ranks": [1],
                "lengths": [20_000],
                "seeds": [0],
                "tasks": ["phonebook"],
            },
            "train": {"max_steps": 3},
        }
    )
    est = estimate_cell(load_skeleton("tiny-random"), config.cells()[0], config)
    assert grown < est.memory_bytes < 3 * grown


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        'name = "s"\n[defaults]\nmodels = ["tiny-random"]\nmodules = ["mlp@2"]\nseeds = [0]\n'
        "[[grid]]\nranks = [1]\nlengths = [20]\n"
    )
    return path


@pytest.mark.parametrize("flag", [["--ranks", "4"], ["--max-steps", "9"], ["--model", "x"]])
def test_a_grid_flag_beside_a_sweep_file_is_refused_not_ignored(sweep_file, tmp_path, capsys, flag):
    assert main(["plan", str(sweep_file), *flag, "--out", str(tmp_path / "o")]) == 2
    assert f"{flag[0]} cannot be combined with the sweep file" in capsys.readouterr().err


def test_max_steps_zero_is_refused_not_replaced_by_the_default(tmp_path, capsys):
    assert _plan(tmp_path, "--lengths", "20", "--max-steps", "0") == 2
    assert "--max-steps must be >= 1" in capsys.readouterr().err


def test_a_single_grid_table_says_to_write_double_brackets(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text('name = "s"\n[grid]\nranks = [1]\nlengths = [20]\n')
    assert main(["plan", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "write [[grid]] with two brackets" in capsys.readouterr().err


def test_an_out_that_is_a_file_or_a_merge_of_a_folder_without_cells_is_refused(
    sweep_file, tmp_path, capsys
):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["run", str(sweep_file), "--out", str(a_file)]) == 2
    assert "is a file; expected a sweep folder" in capsys.readouterr().err
    out = tmp_path / "m.nc"
    assert main(["merge", str(sweep_file), "--out", str(tmp_path / "none"), "-o", str(out)]) == 2
    assert "holds no collected cells" in capsys.readouterr().err
    assert not out.exists()


def test_writing_over_a_folder_is_refused_and_leaves_no_temporary_file(tmp_path):
    from collect.store import _write_atomic

    folder = tmp_path / "results"
    folder.mkdir()
    with pytest.raises(CollectError, match="is a folder; expected a file name"):
        _write_atomic(folder, lambda tmp: tmp.write_text("x"))

    def failing(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _write_atomic(tmp_path / "d.nc", failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_a_shard_beyond_the_workers_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", *BASE, "--lengths", "20", "--out", str(out), "--shard", "3/2"]) == 2
    assert "with 0 <= I < N; got '3/2'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "spec, what", [("memtok:0", "memory tokens"), ("kv:-1@2", "key/value"), ("skv:0@all", "kept")]
)
def test_a_carrier_of_size_zero_is_named_as_such(tmp_path, capsys, spec, what):
    assert _plan(tmp_path, "--lengths", "20", "--modules", spec) == 2
    err = capsys.readouterr().err
    assert "size must be a whole number >= 1" in err and what in err
