"""Two kinds of replicate: the initialisation (seed) and the target content (data_seed)."""

import pytest
import xarray as xr

import lawfit
from lawfit.data import as_frame
from lawfit.testing import synthetic_dataset

RANKS, LENGTHS = (1, 2, 4, 8), (64, 128, 256, 512, 1024)


def _sequences(n_sequences: int, seeds: int = 1, effect: float = 0.15) -> xr.Dataset:
    """A sweep over ``n_sequences`` target sequences, each with its own random effects.

    Every sequence shifts log C and the slopes on log r and log l for all of its cells (the
    content is easier or harder to memorize), so cells of one sequence are correlated.
    """
    parts = []
    for k in range(n_sequences):
        ds = synthetic_dataset(
            ranks=RANKS,
            lengths=LENGTHS,
            seeds=seeds,
            noise=0.02,
            noise_kind="run",
            run_effect={"log_C": effect, "alpha": effect / 2, "beta": effect / 2},
            rng=k,
        )
        parts.append(ds.expand_dims(data_seed=[k]))
    return xr.concat(parts, dim="data_seed")


def test_data_seed_is_a_replicate_dim_not_a_setting():
    ds = _sequences(3, seeds=2)
    frame, _ = as_frame(ds)
    assert set(frame["data_seed"]) == {0, 1, 2}
    # a run is one (seed, data_seed) pair
    assert frame.groupby(["seed", "data_seed"])["run"].nunique().eq(1).all()
    assert frame["run"].nunique() == 6
    fit = lawfit.fit(ds)  # no by= needed: target sequences are replicates
    assert fit.n_obs == len(frame)


@pytest.mark.parametrize(("unit", "clusters"), [("data_seed", 3), ("run", 6), ("seed", 2)])
def test_the_cluster_bootstrap_resamples_the_chosen_replicates(unit, clusters):
    fit = lawfit.fit(_sequences(3, seeds=2), bootstrap=20, unit=unit, rng=0)
    assert fit.boot.n_clusters == clusters


def test_a_tidy_frame_with_target_replicates_is_not_duplicated():
    frame, _ = as_frame(_sequences(2))
    again, _ = as_frame(frame.drop(columns="run"))  # a user's own table
    assert len(again) == len(frame) and again["run"].nunique() == 2


def test_the_report_clusters_the_law_over_target_sequences():
    from lawfit.report import build_report

    report = build_report(_sequences(3), bootstrap=20, rng=0)
    assert report.results["all cells"]["law"].boot.unit == "data_seed"
    assert "clustered over the 3 target sequences" in report.to_markdown()
