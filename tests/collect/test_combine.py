"""`collect combine`: sweeps under different settings in one dataset, each cell traceable."""

import json

import numpy as np
import pytest
import xarray as xr

from collect.cli import main as collect_main
from collect.combine import combine
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.sweep import run_sweep


def _sweep(tiny_sweep, tmp_path, name, lr, ranks, methods, max_steps=4):
    raw = tiny_sweep(
        name=name,
        train={"max_steps": max_steps, "log_every": 1, "lr": lr},
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0], "methods": methods}],
    )
    raw["defaults"].update(ranks=ranks, lengths=[20])
    out = tmp_path / name
    return run_sweep(config_from_dict(raw), out, progress=False, merge_to=out / "dataset.nc")


@pytest.fixture(scope="module")
def two_sweeps(tiny_sweep, tmp_path_factory):
    """Rank 1 under both lrs; rank 8 and MemFT-OT only under the larger one."""
    tmp = tmp_path_factory.mktemp("combine")
    small = _sweep(tiny_sweep, tmp, "small", 1e-2, [1], ["sft"])
    large = _sweep(tiny_sweep, tmp, "large", 3e-2, [1, 8], ["sft", "memft_ot"])
    return small, large, tmp


def test_each_cell_comes_from_the_first_dataset_that_finished_it(two_sweeps):
    small, large, _ = two_sweeps
    out = combine([small, large], ["small.nc", "large.nc"])
    assert list(out["objective"].values) == ["memft_ot", "sft"]  # no value cut to 'mem'
    cell = dict(objective="sft", rank=1)
    for first, name, lr in (
        (out, "small.nc", 0.01),
        (combine([large, small], ["l", "s"]), "l", 0.03),
    ):
        got = first.sel(cell).squeeze()
        assert str(got["source"].values) == name
        assert json.loads(str(got["protocol"].values))["lr"] == lr
    src = small.sel(cell).squeeze()
    assert float(out["loss_reduction"].sel(cell).squeeze()) == float(src["loss_reduction"])
    np.testing.assert_array_equal(
        out["loss_curve"].sel(cell).squeeze().values, src["loss_curve"].values.squeeze()
    )
    only_large = out.sel(objective="memft_ot", rank=8).squeeze()
    assert str(only_large["source"].values) == "large.nc" and only_large["status"] == "ok"
    taken = {p["name"]: p["cells_taken"] for p in json.loads(out.attrs["combined_from"])}
    assert taken == {"small.nc": 1, "large.nc": 3}
    assert out.attrs["n_cells_done"] == 4 and out.attrs["n_cells"] == 4
    shared = json.loads(out.attrs["protocol"])  # what every cell ran under: not the lr
    assert "lr" not in shared and shared["max_steps"] == 4
    assert int(out["n_params"].sel(rank=8).max()) > int(out["n_params"].sel(rank=1).max()) > 0


def test_combine_command_writes_a_dataset_lawfit_reads(two_sweeps, capsys):
    import lawfit

    _, _, tmp = two_sweeps
    files = [str(tmp / "small" / "dataset.nc"), str(tmp / "large" / "dataset.nc")]
    assert collect_main(["combine", *files, "-o", str(tmp / "both.nc")]) == 0
    assert "wrote" in capsys.readouterr().out
    ds = lawfit.data.open_dataset(tmp / "both.nc")
    table = lawfit.convergence(ds)
    assert len(table) == 4 and set(table["objective"]) == {"sft", "memft_ot"}


def test_different_budgets_or_targets_are_refused(two_sweeps, tiny_sweep, tmp_path):
    small, large, _ = two_sweeps
    longer = _sweep(tiny_sweep, tmp_path, "longer", 1e-2, [1], ["sft"], max_steps=6)
    with pytest.raises(CollectError, match="one step budget.*max_steps 4.*max_steps 6"):
        combine([small, longer], ["small", "longer"])
    other = large.copy(deep=True)
    other["entry"][..., 0] = other["entry"][..., 0] + 1  # another target at the same coords
    with pytest.raises(CollectError, match="memorized different targets"):
        combine([small, other], ["small", "other"])
    with pytest.raises(CollectError, match="two or more datasets"):
        combine([small], ["small"])
    assert isinstance(small, xr.Dataset)  # the inputs are left as they were
    assert "source" not in small


def test_the_command_tells_two_dataset_nc_files_apart(two_sweeps, tiny_sweep, tmp_path, capsys):
    """Both sweeps' files are named dataset.nc (collect run's default): their budgets differ."""
    _, _, tmp = two_sweeps
    _sweep(tiny_sweep, tmp_path, "longer", 1e-2, [1], ["sft"], max_steps=6)
    files = [str(tmp / "small" / "dataset.nc"), str(tmp_path / "longer" / "dataset.nc")]
    assert collect_main(["combine", *files, "-o", str(tmp_path / "both.nc")]) == 2
    err = capsys.readouterr().err
    assert "one step budget" in err and files[0] in err and files[1] in err
    assert not (tmp_path / "both.nc").exists()


def test_the_command_refuses_an_input_twice_an_output_over_an_input_and_a_non_netcdf_file(
    two_sweeps, tmp_path, capsys
):
    _, _, tmp = two_sweeps
    small, large = tmp / "small" / "dataset.nc", tmp / "large" / "dataset.nc"
    before = small.read_bytes()
    assert collect_main(["combine", str(small), str(small), "-o", str(tmp_path / "x.nc")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert collect_main(["combine", str(small), str(large), "-o", str(small)]) == 2
    assert "which writing would destroy" in capsys.readouterr().err
    assert small.read_bytes() == before
    notes = tmp_path / "notes.txt"
    notes.write_text("not a dataset\n")
    assert collect_main(["combine", str(small), str(notes), "-o", str(tmp_path / "x.nc")]) == 2
    assert "is not a NetCDF dataset" in capsys.readouterr().err


def test_a_dataset_merged_before_first_exact_step_combines_as_nan(two_sweeps):
    small, large, _ = two_sweeps
    old = small.drop_vars(["first_exact_step", "first_exact"])
    # a recorded step in every finished cell (4 tiny steps never make a cell exact)
    ok = large["status"] == "ok"
    new = large.assign(
        first_exact_step=xr.where(ok, 3.0, np.nan), first_exact=xr.where(ok, "reached", "")
    )
    for order, names in (([old, new], ["old.nc", "new.nc"]), ([new, old], ["new.nc", "old.nc"])):
        out = combine(order, names)
        step = out["first_exact_step"]
        from_old, from_new = out["source"] == "old.nc", out["source"] == "new.nc"
        assert bool(from_old.any()) == (order[0] is old) and bool(from_new.any())
        assert step.where(from_old).isnull().all()
        assert (step.where(from_new) == 3.0).sum() == from_new.sum()
        # the old file cannot say "never": its NaN reads "unknown"; the new one's step "reached"
        text = out["first_exact"]
        assert (text.where(from_old) == "unknown").sum() == from_old.sum()
        assert (text.where(from_new) == "reached").sum() == from_new.sum()


def test_two_model_families_join_along_model_with_their_names_and_entropies(
    two_sweeps, tiny_sweep, tmp_path
):
    """A second model, a folder of its own, collected by its own sweep (the Gemma route)."""
    import lawfit
    from collect.models import tiny_random_model

    _, _, tmp = two_sweeps
    folder = tmp_path / "a-second-tiny-model-family"
    model, tokenizer = tiny_random_model(seed=1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    raw = tiny_sweep(
        name="second",
        models=[str(folder)],
        train={"max_steps": 4, "log_every": 1, "lr": 1e-2},
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0], "methods": ["sft"]}],
    )
    raw["defaults"].update(ranks=[1], lengths=[20])
    run_sweep(
        config_from_dict(raw),
        tmp_path / "second",
        progress=False,
        merge_to=tmp_path / "second" / "dataset.nc",
    )
    files = [str(tmp / "small" / "dataset.nc"), str(tmp_path / "second" / "dataset.nc")]
    assert collect_main(["combine", *files, "-o", str(tmp_path / "both.nc")]) == 0
    ds = lawfit.data.open_dataset(tmp_path / "both.nc")
    assert sorted(ds["model"].values) == sorted(["tiny-random", str(folder)])  # no name cut
    assert set(json.loads(ds.attrs["entropy_basis"])) == {
        f"{m} long_context random_ratio=1" for m in ("tiny-random", folder)
    }
    assert ds.attrs["n_cells"] == ds.attrs["n_cells_done"] == 2
    assert "prefix_cached_cells" not in ds.attrs  # a count of one sweep's cells, kept per sweep
    per_sweep = json.loads(ds.attrs["combined_from"])
    assert [p["n_cells_done"] for p in per_sweep] == [1, 1]
    for model in ds["model"].values:
        assert int((ds["status"].sel(model=model) == "ok").sum()) == 1
