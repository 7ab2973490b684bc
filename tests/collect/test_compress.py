"""`collect compress` and the compressed files collect writes: lossless, smaller, safe."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from collect import compress as compress_module
from collect.cli import main
from collect.compress import compress_file, compress_paths, compressible_files
from collect.config import CellKey
from collect.errors import CollectError
from collect.store import (
    CHECKSUM_ATTR,
    COMPRESS_ABOVE,
    GZIP_MAGIC,
    data_checksum,
    load_state_file,
    read_state,
    save_dataset,
    state_path,
    write_state,
)


def _cell_like(steps: int = 3001, tokens: int = 1024, seed: int = 0) -> xr.Dataset:
    """A dataset shaped like a cell file: scalars, per-token arrays and a loss curve."""
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(
        {
            "loss_before": ((), 13.2),
            "status": ((), "ok"),
            "p_after": (("token",), np.r_[rng.uniform(size=tokens - 8), np.full(8, np.nan)]),
            "entry": (("token",), np.arange(tokens, dtype=np.int64) // 4),
            "loss_curve": (("step",), 13.2 * np.exp(-np.arange(steps) / 900.0)),
        },
        coords={"step": np.arange(steps, dtype=np.int64)},
        attrs={"key": '{"rank": 1}', "stop_reason": "converged", "resumed_from_step": 1460},
    )
    ds.attrs[CHECKSUM_ATTR] = data_checksum(ds)
    return ds


def _uncompressed(path: Path, **kwargs) -> Path:
    """Write a cell-like file the way collect wrote cells before it compressed them."""
    _cell_like(**kwargs).to_netcdf(path, engine="netcdf4")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compressing_keeps_every_value_and_attribute_and_shrinks_the_file(tmp_path):
    path = _uncompressed(tmp_path / "cell.nc")
    with xr.open_dataset(path) as ds:
        original = ds.load()
    done = compress_file(path)
    assert done.replaced
    assert done.after == path.stat().st_size < done.before
    with xr.open_dataset(path) as ds:
        rewritten = ds.load()
        assert ds["loss_curve"].encoding.get("zlib") is True
    xr.testing.assert_identical(rewritten, original)
    assert rewritten.attrs[CHECKSUM_ATTR] == data_checksum(rewritten)
    assert not list(tmp_path.glob(".*")), "no temporary copy is left beside the file"


def test_a_netcdf3_file_from_a_machine_without_netcdf4_becomes_compressed_netcdf4(tmp_path):
    path = tmp_path / "gpu_cell.nc"
    _cell_like().to_netcdf(path, engine="scipy")  # int64 stored as int32 there
    done = compress_file(path)
    assert done.replaced and done.after < done.before
    with xr.open_dataset(path) as ds:
        assert ds["loss_curve"].encoding.get("zlib") is True
        assert data_checksum(ds.load()) == _cell_like().attrs[CHECKSUM_ATTR]


def test_a_file_already_compressed_is_kept_byte_for_byte(tmp_path):
    path = _uncompressed(tmp_path / "cell.nc")
    compress_file(path)
    digest = _sha(path)
    again = compress_file(path)
    assert not again.replaced and again.after == again.before
    assert _sha(path) == digest


def test_collect_writes_large_variables_compressed_and_small_ones_contiguous(tmp_path):
    ds = _cell_like(steps=COMPRESS_ABOVE + 1, tokens=COMPRESS_ABOVE)
    path = save_dataset(ds, tmp_path / "d.nc")
    with xr.open_dataset(path) as ds:
        assert ds["loss_curve"].encoding.get("zlib") is True  # 513 elements
        assert not ds["p_after"].encoding.get("zlib")  # 512: the chunk index would cost more
        assert not ds["loss_before"].encoding.get("zlib")


def test_a_file_rewritten_while_it_was_compressed_is_left_as_the_writer_left_it(
    tmp_path, monkeypatch
):
    path = _uncompressed(tmp_path / "cell.nc")
    writer = compress_module._netcdf_writer

    def racing_writer(ds):
        write = writer(ds)

        def write_and_race(copy):
            write(copy)
            _uncompressed(path, seed=1)  # a worker replaces the file meanwhile
            os.utime(path, ns=(1, 1))

        return write_and_race

    monkeypatch.setattr(compress_module, "_netcdf_writer", racing_writer)
    done = compress_file(path)
    assert not done.replaced
    with xr.open_dataset(path) as ds:  # the worker's file, not the compressed older one
        np.testing.assert_array_equal(ds["p_after"].values, _cell_like(seed=1)["p_after"].values)
        assert not ds["loss_curve"].encoding.get("zlib")


def test_folders_are_searched_and_each_file_is_compressed_once(tmp_path):
    cells = tmp_path / "sweep" / "cells"
    cells.mkdir(parents=True)
    a = _uncompressed(cells / "a.nc")
    _uncompressed(cells / "b.nc", seed=2)
    (cells / "a.log").write_text("neither NetCDF nor a state")
    assert compressible_files([tmp_path / "sweep", a]) == [a, cells / "b.nc"]
    done = compress_paths([tmp_path / "sweep", a], progress=False)
    assert [d.replaced for d in done] == [True, True]
    assert (cells / "a.log").read_text() == "neither NetCDF nor a state"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.nc", "does not exist"),
        (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "is neither a NetCDF"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no .nc or .pt file"),
    ],
)
def test_a_bad_path_is_refused_before_any_file_is_touched(tmp_path, make, message):
    good = _uncompressed(tmp_path / "good.nc")
    digest = _sha(good)
    with pytest.raises(CollectError, match=message):
        compress_paths([good, make(tmp_path)], progress=False)
    assert _sha(good) == digest


@pytest.mark.parametrize(
    ("name", "content"),
    [("bad.nc", b"\x89HDF\r\n\x1a\n truncated"), ("x.state.pt", b"PK\x03\x04 truncated")],
)
def test_an_unreadable_file_is_named_and_left_as_it_was(tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(CollectError, match=f"{name} could not be read"):
        compress_file(bad)
    assert bad.read_bytes() == content


def test_without_netcdf4_compressing_is_refused_with_how_to_fix(tmp_path, monkeypatch):
    good = _uncompressed(tmp_path / "good.nc")
    monkeypatch.setattr(compress_module, "netcdf_engine", lambda: "scipy")
    with pytest.raises(CollectError, match="needs the netCDF4 package.*pip install netCDF4"):
        compress_paths([good], progress=False)


def test_the_command_line_reports_the_sizes_and_fails_cleanly_on_bad_input(tmp_path, capsys):
    _uncompressed(tmp_path / "a.nc")
    assert main(["compress", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (
        "compressed 1 of 1 files (0 kept: compressed already or not smaller)" in out
        and "MiB ->" in out
    )
    assert main(["compress", str(tmp_path / "nope.nc"), "--no-progress"]) == 2
    assert "nope.nc does not exist" in capsys.readouterr().err


KEY = CellKey("m", "long_context", 1.0, "sft", "mlp@2", 1, 20, 0)


def _state() -> dict:
    """A training state like a cell's: adapter tensors (bf16 too), AdamW moments, numbers."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(64, 8, generator=gen), torch.randn(8, 64, generator=gen)]
    moments = {0: {"exp_avg": torch.zeros(64, 8), "step": torch.tensor(7.0)}}
    return {
        "params": params + [torch.tensor([float("nan"), 1.0]).to(torch.bfloat16)],
        "optimizer": {"state": moments, "param_groups": [{"lr": 0.01, "params": [0, 1]}]},
        "step": 7,
        "losses": [13.2, 12.9, float("nan")],
    }


def test_collect_writes_states_compressed_and_reads_them_back_bit_for_bit(tmp_path):
    write_state(tmp_path, KEY, _state(), {"fingerprint": "f"}, kind="partial")
    path = state_path(tmp_path, KEY, "partial")
    assert path.read_bytes()[:2] == GZIP_MAGIC
    loaded = read_state(tmp_path, KEY, "partial")
    assert compress_module._same_payload(loaded["state"], _state())
    assert loaded["meta"]["fingerprint"] == "f"


def test_the_payload_comparison_sees_one_flipped_bit(tmp_path):
    changed = _state()
    changed["params"][0][3, 2] = torch.nextafter(changed["params"][0][3, 2], torch.tensor(9.0))
    assert compress_module._same_payload(_state(), _state())
    assert not compress_module._same_payload(_state(), changed)
    assert not compress_module._same_payload(_state(), {**_state(), "step": 8})


def test_an_older_uncompressed_state_is_compressed_and_still_resumes(tmp_path):
    write_state(tmp_path, KEY, _state(), {"fingerprint": "f"})
    path = state_path(tmp_path, KEY)
    torch.save(load_state_file(path), path)  # as collect wrote states before it compressed them
    assert path.read_bytes()[:2] != GZIP_MAGIC
    done = compress_file(path)
    assert done.replaced and done.after < done.before
    assert path.read_bytes()[:2] == GZIP_MAGIC
    assert compress_module._same_payload(read_state(tmp_path, KEY)["state"], _state())
    digest = _sha(path)
    assert not compress_file(path).replaced and _sha(path) == digest  # compressed already
