"""Issue 14: cells prove they are whole (checksum); damaged ones are set aside and re-run."""

import shutil

import numpy as np
import pytest
import xarray as xr

from collect.cli import main as collect_main
from collect.config import config_from_dict
from collect.errors import CollectError
from collect.store import (
    CHECKSUM_ATTR,
    DamagedCellWarning,
    cell_path,
    data_checksum,
    merge,
)
from collect.sweep import pending_cells, run_sweep


def _tiny(tiny_sweep):
    raw = tiny_sweep(
        defaults={
            "models": ["tiny-random"],
            "modules": ["mlp@2"],
            "ranks": [1],
            "lengths": [20],
            "seeds": [0],
        },
        grid=[{"tasks": ["long_context"], "random_ratios": [1.0]}],
        train={"max_steps": 10, "log_every": 5},
    )
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def done(tmp_path_factory, tiny_sweep):
    out = tmp_path_factory.mktemp("cells")
    config = _tiny(tiny_sweep)
    run_sweep(config, out, progress=False)
    return config, out


@pytest.fixture()
def sweep(done, tmp_path):
    """A fresh copy of the finished one-cell sweep, to damage."""
    config, out = done
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    return config, copy, cell_path(copy, config.cells()[0])


def _flip_loss_after(path):
    """Change loss_after in the file but keep the stored checksum (a flipped bit)."""
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds["loss_after"] = ds["loss_after"] + 1e-9
    ds.to_netcdf(path)


def _truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def test_cells_carry_a_checksum_of_their_data(sweep):
    _, _, path = sweep
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    assert ds.attrs[CHECKSUM_ATTR] == data_checksum(ds)
    changed = ds.copy(deep=True)
    changed["loss_after"] = changed["loss_after"] + 1e-12
    assert data_checksum(changed) != data_checksum(ds)


@pytest.mark.parametrize("damage", [_flip_loss_after, _truncate])
def test_plan_sets_a_damaged_cell_aside(sweep, damage):
    config, out, path = sweep
    damage(path)
    with pytest.warns(DamagedCellWarning, match=f"{path.name} is damaged.*set aside as"):
        todo = pending_cells(config, out)
    assert todo == config.cells()  # it will be run again
    aside = list(path.parent.glob(f"{path.name}.damaged-*"))
    assert len(aside) == 1 and not path.exists()  # renamed, never deleted


@pytest.mark.parametrize("damage", [_flip_loss_after, _truncate])
def test_merge_sets_aside_and_strict_fails(sweep, damage):
    config, out, path = sweep
    damage(path)
    with pytest.raises(CollectError, match=f"{path.name} is damaged"):
        merge(config, out, strict=True)
    assert path.exists()  # strict leaves it in place
    with pytest.warns(DamagedCellWarning, match=f"{path.name} is damaged.*set aside as"):
        ds = merge(config, out)
    assert ds.attrs["n_cells_done"] == 0 and (ds["status"] == "not_run").all()


def test_merge_cli_strict_exit_code(sweep, tmp_path, capsys):
    config, out, path = sweep
    _truncate(path)
    argv = ["merge", "--model", "tiny-random", "--ranks", "1", "--lengths", "20"]
    argv += ["--modules", "mlp@2", "--task", "long_context", "--random-ratio", "1.0"]
    argv += ["--seeds", "0", "--max-steps", "10", "--out", str(out), "-o", str(tmp_path / "m.nc")]
    assert collect_main([*argv, "--strict"]) == 2
    assert "is damaged" in capsys.readouterr().err


def test_run_reruns_a_damaged_cell(sweep, done):
    config, out, path = sweep
    _, original = done
    _truncate(path)
    with pytest.warns(DamagedCellWarning, match=f"{path.name} is damaged.*set aside as"):
        ds = run_sweep(config, out, progress=False, merge_to=out / "dataset.nc")
    assert ds.attrs["n_cells_done"] == 1
    want = merge(config, original)
    np.testing.assert_array_equal(ds["loss_after"].values, want["loss_after"].values)


def test_cells_without_checksum_still_read(sweep):
    config, out, path = sweep
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    del ds.attrs[CHECKSUM_ATTR]  # written before checksums existed
    ds.to_netcdf(path)
    assert pending_cells(config, out) == []


def test_a_cell_rewritten_as_netcdf3_still_verifies(sweep):
    """Where netCDF4 is absent (a GPU node), cells are NetCDF-3: int64 -> int32, bool -> int8."""
    config, out, path = sweep
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    ds.to_netcdf(path, engine="scipy")  # the same values, narrower integer types
    with xr.open_dataset(path, engine="scipy") as back:
        assert data_checksum(back) == back.attrs[CHECKSUM_ATTR]
    assert pending_cells(config, out) == []  # read as whole, not set aside
