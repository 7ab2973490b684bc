import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lawfit
from lawfit.data import as_frame
from lawfit.errors import LawfitError
from lawfit.testing import synthetic_dataset


@pytest.fixture
def ds():
    return synthetic_dataset(rng=0, seeds=2)


def test_dataset_to_frame(ds):
    frame, excl = as_frame(ds)
    assert len(frame) == ds.sizes["rank"] * ds.sizes["length"] * ds.sizes["seed"]
    assert {"rank", "length", "seed", "loss_reduction", "loss_after"} <= set(frame.columns)
    assert len(excl) == 0


def test_dataframe_accepted(ds):
    df = ds[["loss_reduction"]].to_dataframe().reset_index()
    frame, _ = as_frame(df)
    assert len(frame) == len(df)


def test_status_excluded_with_reason():
    ds = synthetic_dataset(rng=1, failed_fraction=0.1)
    frame, excl = as_frame(ds)
    n_bad = int((ds.status != "ok").sum())
    assert n_bad > 0 and len(excl) == n_bad
    assert set(excl["reason"]) == {"status=diverged"}


def test_not_run_cells_excluded():
    ds = synthetic_dataset(rng=1)
    ds["status"][0, 0, 0] = "not_run"
    ds["loss_reduction"][0, 0, 0] = np.nan
    _, excl = as_frame(ds)
    assert list(excl["reason"]) == ["status=not_run"]


def test_empty_dataset():
    with pytest.raises(LawfitError, match="empty"):
        as_frame(xr.Dataset())


def test_empty_dataframe():
    with pytest.raises(LawfitError, match="empty"):
        as_frame(pd.DataFrame(columns=["rank", "length", "loss_reduction"]))


def test_nan_in_ok_cell(ds):
    ds["loss_reduction"][1, 1, 0] = np.nan
    with pytest.raises(LawfitError, match="NaN/inf in 'loss_reduction'"):
        as_frame(ds)


def test_inf_in_ok_cell(ds):
    ds["loss_reduction"][1, 1, 0] = np.inf
    with pytest.raises(LawfitError, match="status 'ok' have NaN/inf"):
        as_frame(ds)


def test_missing_dim(ds):
    with pytest.raises(LawfitError, match=r"lacks the dim\(s\)/coordinate\(s\) \['length'\]"):
        as_frame(ds.isel(length=0, drop=True))


def test_missing_variable(ds):
    with pytest.raises(LawfitError, match=r"lacks the variable\(s\) \['loss_reduction'\]"):
        as_frame(ds.drop_vars("loss_reduction"))


def test_missing_column():
    df = pd.DataFrame({"rank": [1, 2], "loss_reduction": [0.1, 0.2]})
    with pytest.raises(LawfitError, match=r"lacks column\(s\) \['length'\]"):
        as_frame(df)


def test_nonpositive_rank(ds):
    ds = ds.assign_coords(rank=np.arange(ds.sizes["rank"]))
    with pytest.raises(LawfitError, match="'rank' must be positive"):
        as_frame(ds)


def test_nonpositive_length():
    df = pd.DataFrame({"rank": [1, 2, 4], "length": [0, 10, 20], "loss_reduction": [1.0] * 3})
    with pytest.raises(LawfitError, match="'length' must be positive"):
        as_frame(df)


def test_single_length_cannot_identify_beta(ds):
    with pytest.raises(LawfitError, match="only a single length .* cannot identify beta"):
        lawfit.fit(ds.isel(length=[2]), exclude=None)


def test_single_rank_cannot_identify_alpha(ds):
    with pytest.raises(LawfitError, match="only a single rank .* cannot identify alpha"):
        lawfit.fit(ds.isel(rank=[3]), exclude=None)


def test_a_ratio_law_is_identified_at_one_rank_over_several_lengths():
    """C (r/l)^gamma at rank 1 over lengths: the ratio varies, so gamma is identified."""
    rng = np.random.default_rng(3)
    lengths = np.repeat([64.0, 128.0, 256.0, 512.0, 1024.0], 3)
    truth_c, truth_gamma = 140.0, 0.57
    dl = truth_c * (1 / lengths) ** truth_gamma * np.exp(rng.normal(0, 0.02, lengths.size))
    frame = pd.DataFrame(
        {"rank": 1.0, "length": lengths, "loss_reduction": dl, "seed": np.tile([0, 1, 2], 5)}
    )
    res = lawfit.fit(frame, form="ratio_no_offset", exclude=None, bootstrap=200, unit="seed", rng=0)
    assert res.params["gamma"] == pytest.approx(truth_gamma, abs=0.02)
    low, high = res.conf_int().loc["gamma"]
    assert low < res.params["gamma"] < high
    assert res.boot.counts["unidentifiable"] == 0
    # the power law separates r^alpha from l^-beta: one rank still cannot identify alpha
    with pytest.raises(LawfitError, match="only a single rank .* cannot identify alpha"):
        lawfit.fit(frame, exclude=None, bootstrap=0)


def test_design_identifies_reads_the_jacobian_rank():
    from lawfit.data import design_identifies
    from lawfit.forms import get_form

    one_rank = pd.DataFrame({"rank": [1.0] * 4, "length": [64.0, 128.0, 256.0, 512.0]})
    fixed_ratio = pd.DataFrame({"rank": [1.0, 2.0, 4.0], "length": [64.0, 128.0, 256.0]})
    assert design_identifies(get_form("ratio_no_offset"), one_rank)
    assert not design_identifies(get_form("power_law"), one_rank)
    assert not design_identifies(get_form("ratio_no_offset"), fixed_ratio)  # one ratio only


def test_the_summary_tells_not_run_cells_from_excluded_ones(ds):
    partial = ds.copy()
    partial["status"] = partial["status"].where(partial["rank"] != partial["rank"][0], "not_run")
    res = lawfit.fit(partial, bootstrap=0)
    n_not_run = int((partial["status"] == "not_run").sum())
    assert n_not_run > 0
    assert f"(+{n_not_run} not run)" in res.summary().as_text()


def test_duplicated_coordinates(ds):
    dup = xr.concat([ds.isel(rank=[0]), ds], dim="rank")
    with pytest.raises(LawfitError, match="coordinate 'rank' has duplicated values"):
        as_frame(dup)


def test_duplicated_rows():
    df = pd.DataFrame({"rank": [1, 1, 2], "length": [10, 10, 20], "loss_reduction": [1.0] * 3})
    with pytest.raises(LawfitError, match="duplicated cells"):
        as_frame(df)


def test_string_ranks(ds):
    ds = ds.assign_coords(rank=[str(r) for r in ds["rank"].values])
    with pytest.raises(LawfitError, match="'rank' must be numeric"):
        as_frame(ds)


def test_every_point_excluded(ds):
    ds["status"][:] = "failed"
    with pytest.raises(LawfitError, match="every cell was excluded"):
        as_frame(ds)


def test_every_point_memorized():
    ds = synthetic_dataset(rng=0)
    ds["loss_after"] = 0.5 + 0 * ds["loss_after"]  # every cell below ln 2, physically valid
    ds["loss_before"] = ds["loss_after"] + ds["loss_reduction"]
    with pytest.raises(LawfitError, match="every cell is memorized"):
        lawfit.fit(ds)


def test_memorized_threshold_reads_every_rule_alike():
    from lawfit.data import LN2, memorized_mask, memorized_threshold

    assert memorized_threshold(None) is None
    assert memorized_threshold("memorized") == LN2
    assert memorized_threshold(0.25) == 0.25
    frame = pd.DataFrame({"loss_after": [0.1, LN2, 0.7, 2.0]})
    assert memorized_mask(frame, memorized_threshold("memorized")).tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_unknown_form(ds):
    with pytest.raises(LawfitError, match="unknown form 'nope'; available forms"):
        lawfit.fit(ds, "nope")


def test_grouping_dim_needs_by():
    ds = synthetic_dataset(rng=0, groups={"model": ["a", "b"]})
    with pytest.raises(LawfitError, match=r"not named in by=.*pass by=\['model'\].*ds.sel"):
        as_frame(ds)
    frame, _ = as_frame(ds, by="model")
    assert set(frame["model"]) == {"a", "b"}


def _two_models_two_placements():
    """Two models, each with its adapter at its own place (what collect combine writes)."""
    ds = synthetic_dataset(rng=0, groups={"model": ["a", "b"], "modules": ["x@2", "y@5"]})
    nested = (ds["model"] == "a") == (ds["modules"] == "x@2")  # a at x@2, b at y@5
    for name in ("loss_before", "loss_after", "loss_reduction", "exact_match"):
        ds[name] = ds[name].where(nested)
    ds["status"] = xr.where(nested, ds["status"], "not_run")
    return ds


def test_a_dim_nested_in_the_groups_is_not_a_second_setting():
    ds = _two_models_two_placements()
    frame, excluded = as_frame(ds, by="model")
    assert set(zip(frame["model"], frame["modules"], strict=True)) == {("a", "x@2"), ("b", "y@5")}
    alone, _ = as_frame(ds.sel(model="a"))  # its other placement holds nothing: dropped
    assert "modules" not in alone.columns and len(alone) == len(frame) // 2
    assert len(excluded) == 0  # the other model's placement is no "not run" cell of this one
    fits = lawfit.fit(ds, by="model")
    separate = lawfit.fit(ds.sel(model="a", modules="x@2"))
    assert fits[("a",)].params == pytest.approx(separate.params)
    with pytest.raises(LawfitError, match=r"not named in by=.*'modules'"):
        as_frame(
            synthetic_dataset(rng=0, groups={"model": ["a", "b"], "modules": ["x", "y"]}),
            by="model",
        )  # both placements hold cells of one model: two settings


def test_size_one_grouping_dim_is_fine():
    ds = synthetic_dataset(rng=0, groups={"model": ["a"]})
    frame, _ = as_frame(ds)
    assert "model" not in frame.columns


def test_grouping_column_needs_by():
    df = synthetic_dataset(rng=0, groups={"task": ["x", "y"]})[["loss_reduction"]]
    df = df.to_dataframe().reset_index()
    with pytest.raises(LawfitError, match="grouping column"):
        as_frame(df)


def test_token_dims_are_dropped(ds):
    ds["p_after"] = ds["loss_reduction"].expand_dims(token=3).copy()
    frame, _ = as_frame(ds)
    assert "token" not in frame.columns


def test_n_params_capacity(ds):
    frame, _ = as_frame(ds, capacity="n_params")
    # each cell carries the parameter count of its own rank
    want = ds["n_params"].sel(rank=frame["rank"].to_numpy()).values
    np.testing.assert_array_equal(frame["n_params"].to_numpy(), want)
    assert frame["n_params"].nunique() == ds.sizes["rank"]


def test_bad_capacity(ds):
    with pytest.raises(LawfitError, match="capacity must be 'rank' or 'n_params'"):
        as_frame(ds, capacity="params")


def test_log_space_needs_positive(ds):
    ds["loss_reduction"][0, 0, 0] = 0.0  # ΔL < 0 would be excluded (flagged) by as_frame
    ds["loss_after"][0, 0, 0] = ds["loss_before"][0, 0, 0]
    with pytest.raises(LawfitError, match="space='log' needs loss_reduction > 0"):
        lawfit.fit(ds, space="log", exclude=None)


def test_by_names_unknown_dim(ds):
    with pytest.raises(LawfitError, match="not a dim of the dataset"):
        as_frame(ds, by="model")


def _contract_like():
    """A dataset shaped like collect's merge: all dims, token/step variables, not_run."""
    ds = synthetic_dataset(rng=5, seeds=2)
    ds = (
        ds.drop_vars("n_params")
        .expand_dims(
            model=["smollm2"],
            task=["long_context"],
            random_ratio=[1.0],
            method=["sft"],
            modules=["mlp@20"],
        )
        .transpose("model", "task", "random_ratio", "method", "modules", "rank", "length", "seed")
    )
    ds["n_params"] = (
        ("model", "modules", "rank"),
        (ds["rank"].values * 1000)[None, None, :].astype(np.int64),
    )
    ds["p_after"] = ds["loss_reduction"].expand_dims(token=np.arange(5), axis=-1) * 0 + 0.5
    ds["loss_curve"] = ds["loss_after"].expand_dims(step=np.arange(3), axis=-1)
    status = ds["status"].values.astype(object)
    status[..., 0, 0, 1] = "not_run"
    ds["status"] = (ds["status"].dims, status.astype(str))
    for v in ("loss_reduction", "loss_after", "loss_before"):
        ds[v] = ds[v].where(ds["status"] == "ok")
    return ds


def test_full_contract_shape_fits():
    ds = _contract_like()
    res = lawfit.fit(ds, capacity="n_params", exclude=None, profile=False)
    assert res.inputs == ("n_params", "length")
    assert res.n_excluded == 1  # the not_run cell
    assert set(res.exclusions["reason"]) == {"status=not_run"}
    res2 = lawfit.fit(ds, by=["model", "task"], exclude=None, profile=False)
    assert list(res2) == [("smollm2", "long_context")]


def test_old_file_method_dim_is_migrated_to_objective(tmp_path):
    import pathlib

    from lawfit._tokens import load
    from lawfit.data import open_dataset

    shipped = pathlib.Path(__file__).resolve().parents[2] / "data" / "smollm2_cpu.nc"
    old = xr.load_dataset(shipped)
    if "objective" in old.dims:  # written after the rename: make the file an older one
        old = old.rename({"objective": "method"})
    path = tmp_path / "old.nc"
    old.to_netcdf(path)
    for ds in (open_dataset(path), load(path), load(xr.load_dataset(path))):
        assert "objective" in ds.dims and "method" not in ds.dims
        sft = ds.sel(objective="sft")
        assert "objective" not in sft.dims
        assert int((sft["status"] == "ok").sum()) > 0
    old_frame = _contract_like()  # an old-style dataset passed in memory
    frame, _ = as_frame(old_frame, variables=("loss_reduction",))
    assert "method" not in frame.columns


def test_the_fit_resamples_target_sequences_once_there_are_several():
    import numpy as np
    import xarray as xr

    from lawfit.data import n_targets, target_cluster, target_unit

    status = np.array([["ok", "ok", "ok"], ["ok", "failed", "failed"]])  # rank x data_seed
    ds = xr.Dataset(
        {"status": (("rank", "data_seed"), status)},
        coords={"rank": [1, 2], "data_seed": [0, 1, 2]},
    )
    assert target_unit(ds) == "data_seed"  # ok cells on 3 target sequences
    assert target_unit(ds.isel(data_seed=[0])) == "cell"
    only_one_ok = ds.assign(status=ds["status"].where(ds["data_seed"] == 0, "failed"))
    assert target_unit(only_one_ok) == "cell"  # 3 sequences planned, 1 collected
    assert target_unit(ds.isel(data_seed=0, drop=True)) == "cell"
    # the report's law note counts the same sequences
    assert (n_targets(ds), n_targets(only_one_ok), n_targets(ds.isel(data_seed=0))) == (3, 1, 1)
    # and the cluster-robust tests cluster over the same sequences
    assert [target_cluster(d) for d in (ds, only_one_ok, ds.isel(data_seed=[0]))] == [
        "data_seed",
        None,
        None,
    ]


def test_collected_lengths_are_those_holding_an_ok_cell():
    import numpy as np
    import xarray as xr

    from lawfit.data import collected_lengths, ok_cells

    status = xr.DataArray(
        [["ok", "failed", "not_run"], ["not_run", "ok", "not_run"]],
        dims=("rank", "length"),
        coords={"rank": [1, 2], "length": [64, 128, 2048]},
    )
    dl = xr.where(status == "ok", 1.0, np.nan)
    ds = xr.Dataset({"status": status, "loss_reduction": dl})
    assert collected_lengths(ds).tolist() == [64, 128]  # 2,048 is planned, not collected
    assert int(ok_cells(ds).sum()) == 2
    no_status = ds.drop_vars("status")
    assert collected_lengths(no_status).tolist() == [64, 128]
