"""Coverage of lawfit's 95 % confidence intervals for alpha and beta on synthetic sweeps.

Each scenario simulates N independent sweeps with known (C, alpha, beta, b), fits
each, and counts how often the interval contains the truth. A calibrated method
covers ~95 %; the Monte-Carlo standard error of a coverage p over N datasets is
sqrt(p (1 - p) / N) (about 1 point at N = 500).

Besides alpha and beta, each row gives the coverage of three derived intervals where the
scenario's method has them: ``rank needed`` (predict_capacity's rank that reaches
ΔL = 0.2 at length 512), ``mean law`` (the law's mean ΔL at rank 16, length 1,024) and
``new cell`` (one cell at that point on a new sequence: a run the fit has not seen, drawn
from the same simulation, so it carries its own run effects and noise); for the
cluster-robust rows also ``known seq.`` (seed 0's own cell at that point, held out of a
refit, predicted as a new cell of seed 0: ``law_prediction_interval(in_cluster=0)``).

Scenarios
---------
default         independent log-normal noise, lawfit.fit's defaults (space="auto":
                log space when Breusch-Pagan says the noise is multiplicative), case
                bootstrap (percentile)
default-additive  additive homoscedastic noise (sd 0.1 x median ΔL), defaults (auto
                stays in linear space unless the test says otherwise)
case-boot       independent log-normal noise, linear-space L2, case bootstrap (percentile)
case-boot-additive  additive noise, linear space, case bootstrap (percentile)
case-boot-log   same noise, log-space fit, case bootstrap (percentile)
case-bca-log    same, BCa intervals
profile-log     same, profile likelihood (F cutoff)
wald-log        same, Wald (t) intervals
case-boot/run20     per-run correlated noise, 20 seeds, case bootstrap (ignores clustering)
cluster/run20       per-run correlated noise, 20 seeds, cluster bootstrap over seeds
cluster-bca/run20   same, BCa (jackknife over seeds)
cluster/run50       same with 50 seeds
cluster/run10       same with 10 seeds
cluster/run3        same with 3 seeds (too few clusters: intervals too narrow)
cluster-t/run3      per-run correlated noise, 3 seeds, no bootstrap: conf_int("cluster"),
                    the CR2 sandwich over seeds with Bell-McCaffrey t dof (lawfit.robust)
cluster-t/run5, cluster-t/run10, cluster-t/run20   the same with 5, 10, 20 seeds
cluster-t/independent  independent noise, 3 seeds: the clustered interval when cells
                    are not correlated within a seed (it should not undercover)
cluster-t/unbalanced3  per-run noise, 3 seeds, but seeds 1-2 only at ranks <= 2 and
                    lengths <= 512 (like the CPU law sweep: long targets on one sequence)
cr1-t/run3, cr1-t/unbalanced3   the same data, the usual CR1 sandwich with t(G - 1)
                    quantiles instead (computed here, for comparison: lawfit ships CR2)

Usage::

    python benchmarks/calibration.py --n 500 --boot 400 --jobs 2
    python benchmarks/calibration.py --quick          # a few datasets per scenario
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

TRUTH = {"C": 1.0, "alpha": 0.6, "beta": 0.5, "b": 0.02}
RANKS = (1, 2, 4, 8, 16, 32, 64, 128)
LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096)
#: Capacity query: the rank that reaches ΔL = 0.2 at length 512 (truth: 10.39).
CAPACITY_QUERY = {"length": 512.0, "target": 0.2}
TRUE_RANK = (
    (CAPACITY_QUERY["target"] - TRUTH["b"]) * CAPACITY_QUERY["length"] ** TRUTH["beta"] / TRUTH["C"]
) ** (1 / TRUTH["alpha"])
#: Mean-law query: the law's ΔL at rank 16, length 1024, inside the fitted ranges.
MEAN_QUERY = {"rank": [16.0], "length": [1024.0]}
TRUE_MEAN = (
    TRUTH["C"] * MEAN_QUERY["rank"][0] ** TRUTH["alpha"] * MEAN_QUERY["length"][0] ** -TRUTH["beta"]
    + TRUTH["b"]
)

SCENARIOS = {
    # name: (synthetic kwargs, fit kwargs, conf_int method)
    "default": ({"seeds": 3, "noise": 0.1}, {}, "bootstrap"),
    "default-additive": ({"seeds": 3, "noise": 0.1, "noise_model": "additive"}, {}, "bootstrap"),
    "case-boot": ({"seeds": 3, "noise": 0.1}, {"unit": "cell", "space": "linear"}, "bootstrap"),
    "case-boot-additive": (
        {"seeds": 3, "noise": 0.1, "noise_model": "additive"},
        {"unit": "cell", "space": "linear"},
        "bootstrap",
    ),
    "case-boot-log": ({"seeds": 3, "noise": 0.1}, {"unit": "cell", "space": "log"}, "bootstrap"),
    "case-bca-log": (
        {"seeds": 3, "noise": 0.1},
        {"unit": "cell", "space": "log", "ci_method": "bca"},
        "bootstrap",
    ),
    "profile-log": ({"seeds": 3, "noise": 0.1}, {"space": "log", "boot": False}, "profile"),
    "wald-log": ({"seeds": 3, "noise": 0.1}, {"space": "log", "boot": False}, "wald"),
    "case-boot/run20": (
        {"seeds": 20, "noise": 0.05, "noise_kind": "run"},
        {"unit": "cell", "space": "log"},
        "bootstrap",
    ),
    "cluster/run20": (
        {"seeds": 20, "noise": 0.05, "noise_kind": "run"},
        {"unit": "seed", "space": "log"},
        "bootstrap",
    ),
    "cluster-bca/run20": (
        {"seeds": 20, "noise": 0.05, "noise_kind": "run"},
        {"unit": "seed", "space": "log", "ci_method": "bca"},
        "bootstrap",
    ),
    "cluster/run50": (
        {"seeds": 50, "noise": 0.05, "noise_kind": "run"},
        {"unit": "seed", "space": "log"},
        "bootstrap",
    ),
    "cluster/run10": (
        {"seeds": 10, "noise": 0.05, "noise_kind": "run"},
        {"unit": "seed", "space": "log"},
        "bootstrap",
    ),
    "cluster/run3": (
        {"seeds": 3, "noise": 0.05, "noise_kind": "run"},
        {"unit": "seed", "space": "log"},
        "bootstrap",
    ),
    **{
        f"cluster-t/run{g}": (
            {"seeds": g, "noise": 0.05, "noise_kind": "run"},
            {"space": "log", "boot": False},
            "cluster",
        )
        for g in (3, 5, 10, 20)
    },
    "cluster-t/independent": (
        {"seeds": 3, "noise": 0.1},
        {"space": "log", "boot": False},
        "cluster",
    ),
    "cluster-t/unbalanced3": (
        {"seeds": 3, "noise": 0.05, "noise_kind": "run"},
        {"space": "log", "boot": False, "unbalanced": True},
        "cluster",
    ),
    "cr1-t/run3": (
        {"seeds": 3, "noise": 0.05, "noise_kind": "run"},
        {"space": "log", "boot": False},
        "cr1",
    ),
    "cr1-t/unbalanced3": (
        {"seeds": 3, "noise": 0.05, "noise_kind": "run"},
        {"space": "log", "boot": False, "unbalanced": True},
        "cr1",
    ),
}


def unbalanced(ds):
    """Keep seed 0 everywhere and seeds 1+ only at ranks <= 2 and lengths <= 512 (a frame)."""
    df = ds[["loss_reduction", "loss_after"]].to_dataframe().reset_index()
    keep = (df["seed"] == 0) | ((df["rank"] <= 2) & (df["length"] <= 512))
    return df.loc[keep, ["rank", "length", "seed", "loss_reduction", "loss_after"]]


def cr1_interval(res, cluster, level=0.95):
    """The usual CR1 sandwich with t(G - 1) quantiles, the alternative to lawfit's CR2."""
    import pandas as pd
    from scipy import stats

    from lawfit.robust import linearised

    J, e = linearised(res)
    _, g = np.unique(res.points[cluster].to_numpy(), return_inverse=True)
    G, (n, k) = int(g.max()) + 1, J.shape
    scores = np.array([J[g == c].T @ e[g == c] for c in range(G)])
    bread = np.linalg.pinv(J.T @ J)
    cov = G / (G - 1) * (n - 1) / (n - k) * bread @ scores.T @ scores @ bread
    half = stats.t.ppf(0.5 + level / 2, G - 1) * np.sqrt(np.diag(cov))
    return pd.DataFrame({"low": res.theta - half, "high": res.theta + half}, index=res.param_names)


def one(args):
    """Simulate and fit one dataset.

    Returns (covered alpha, covered beta, failed draws, fitted in log space, covered
    rank needed, covered mean law, covered new cell, covered known sequence's cell); the
    last four are None for interval types predict_capacity and predict do not give.
    """
    name, i, n_boot, base_seed = args
    import warnings

    import lawfit
    from lawfit.testing import synthetic_dataset

    syn, fkw, method = SCENARIOS[name]
    fkw = dict(fkw)
    boot = fkw.pop("boot", True)
    seed = np.random.SeedSequence([base_seed, sum(map(ord, name)), i])
    rng = np.random.default_rng(seed)
    ds = synthetic_dataset(**TRUTH, ranks=RANKS, lengths=LENGTHS, rng=rng, **syn)
    if fkw.pop("unbalanced", False):
        ds = unbalanced(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(
            ds,
            exclude=None,
            bootstrap=n_boot if boot else 0,
            rng=rng,
            profile=method == "profile",
            **fkw,
        )
        if method == "cr1":
            ci = cr1_interval(res, "seed")
        else:
            ci = res.conf_int(method, cluster="seed" if method == "cluster" else None)
    cov = [bool(ci.loc[p, "low"] <= TRUTH[p] <= ci.loc[p, "high"]) for p in ("alpha", "beta")]
    nf = int(res.boot.n_failed) if res.boot is not None else 0
    return (
        cov[0],
        cov[1],
        nf,
        res.space == "log",
        rank_covered(res, method),
        mean_covered(res, method),
        new_cell_covered(res, method, new_cell(syn, [base_seed, sum(map(ord, name)), i, 1])),
        known_cell_covered(ds, method, fkw),
    )


def rank_covered(res, method):
    """Does predict_capacity's interval of the rank needed contain the true rank?"""
    from lawfit import predict_capacity

    if method not in ("bootstrap", "cluster"):
        return None
    kw = {"cluster": "seed"} if method == "cluster" else {}
    t = predict_capacity(res, **CAPACITY_QUERY, interval=method, **kw).table.iloc[0]
    return bool(t["low"] <= TRUE_RANK <= t["high"])


def mean_covered(res, method):
    """Does the interval of the mean law at MEAN_QUERY contain the true ΔL there?

    ``"bootstrap"``: ``res.predict``'s confidence interval (the bootstrap draws);
    ``"cluster"``: :func:`lawfit.robust.law_mean_interval` over the seeds.
    """
    from lawfit.robust import law_mean_interval

    if method == "bootstrap" and res.boot is not None:
        t = res.predict(**MEAN_QUERY, warn=False).iloc[0]
    elif method == "cluster":
        t = law_mean_interval(res, cluster="seed", **MEAN_QUERY).iloc[0]
    else:
        return None
    return bool(t["low"] <= TRUE_MEAN <= t["high"])


def new_cell(syn, entropy):
    """ΔL at MEAN_QUERY of one cell on a new sequence (a seed the fit has not seen)."""
    from lawfit.testing import synthetic_dataset

    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    ds = synthetic_dataset(**TRUTH, ranks=RANKS, lengths=LENGTHS, rng=rng, **{**syn, "seeds": 1})
    point = {k: v[0] for k, v in MEAN_QUERY.items()}
    return float(ds["loss_reduction"].sel(**point, seed=0))


def new_cell_covered(res, method, value):
    """Does the interval for one new cell at MEAN_QUERY contain a new sequence's cell?

    ``"bootstrap"``: ``res.predict``'s prediction interval (the bootstrap draws plus
    resampled residuals); ``"cluster"``: :func:`lawfit.robust.law_prediction_interval`.
    """
    from lawfit.robust import law_prediction_interval

    if method == "bootstrap" and res.boot is not None:
        t = res.predict(**MEAN_QUERY, interval="prediction", warn=False).iloc[0]
    elif method == "cluster":
        t = law_prediction_interval(res, cluster="seed", **MEAN_QUERY).iloc[0]
    else:
        return None
    return bool(t["low"] <= value <= t["high"])


def known_cell_covered(ds, method, fkw):
    """Refit without seed 0's cell at MEAN_QUERY; does its new-cell-of-seed-0 interval hold it?"""
    import warnings

    import lawfit
    from lawfit.robust import law_prediction_interval

    if method != "cluster":
        return None
    df = ds if not hasattr(ds, "to_dataframe") else ds.to_dataframe().reset_index()
    df = df[["rank", "length", "seed", "loss_reduction", "loss_after"]]
    point = {k: v[0] for k, v in MEAN_QUERY.items()}
    held = (df["rank"] == point["rank"]) & (df["length"] == point["length"]) & (df["seed"] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lawfit.fit(df[~held], exclude=None, profile=False, **fkw)
    t = law_prediction_interval(res, cluster="seed", in_cluster=0, **MEAN_QUERY).iloc[0]
    return bool(t["low"] <= float(df.loc[held, "loss_reduction"].iloc[0]) <= t["high"])


def run(n, n_boot, jobs, scenarios, base_seed=2026):
    rows = []
    for name in scenarios:
        t0 = time.perf_counter()
        tasks = [(name, i, n_boot, base_seed) for i in range(n)]
        if jobs > 1:
            with ProcessPoolExecutor(jobs) as ex:
                out = list(ex.map(one, tasks, chunksize=max(1, n // (4 * jobs))))
        else:
            out = [one(t) for t in tasks]
        a = np.array([o[0] for o in out])
        b = np.array([o[1] for o in out])
        nf = sum(o[2] for o in out)
        log_share = float(np.mean([o[3] for o in out]))
        ranks = [o[4] for o in out if o[4] is not None]
        means = [o[5] for o in out if o[5] is not None]
        news = [o[6] for o in out if o[6] is not None]
        knowns = [o[7] for o in out if o[7] is not None]
        row = {
            "scenario": name,
            "n_datasets": n,
            "cover_alpha": a.mean(),
            "cover_beta": b.mean(),
            "cover_rank": float(np.mean(ranks)) if ranks else float("nan"),
            "cover_mean_law": float(np.mean(means)) if means else float("nan"),
            "cover_new_cell": float(np.mean(news)) if news else float("nan"),
            "cover_known_sequence": float(np.mean(knowns)) if knowns else float("nan"),
            "mc_se": float(np.sqrt(0.95 * 0.05 / n)),
            "failed_replicates": nf,
            "log_space_share": log_share,
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(
            f"{name:<18} n={n:<5} alpha {100 * row['cover_alpha']:5.1f}%  beta "
            f"{100 * row['cover_beta']:5.1f}%  rank needed {100 * row['cover_rank']:5.1f}%  "
            f"mean law {100 * row['cover_mean_law']:5.1f}%  "
            f"new cell {100 * row['cover_new_cell']:5.1f}%  "
            f"known seq. {100 * row['cover_known_sequence']:5.1f}%  "
            f"(MC SE {100 * row['mc_se']:.1f})  failed "
            f"replicates {nf}  log space {100 * log_share:.0f}%  [{row['seconds']:.0f}s]",
            flush=True,
        )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=500, help="datasets per scenario")
    ap.add_argument("--boot", type=int, default=400, help="bootstrap replicates per fit")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    ap.add_argument("--quick", action="store_true", help="--n 40 --boot 200")
    ap.add_argument("--json", default=None, help="write the table as JSON")
    a = ap.parse_args(argv)
    if a.quick:
        a.n, a.boot = 40, 200
    print(
        f"calibration: {a.n} datasets/scenario, {a.boot} bootstrap replicates, truth {TRUTH}, "
        f"grid {len(RANKS)} ranks x {len(LENGTHS)} lengths",
        flush=True,
    )
    rows = run(a.n, a.boot, a.jobs, a.scenarios)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
