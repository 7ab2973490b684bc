"""Coverage of the p* confidence interval of lawfit.phase_transition on planted thresholds.

Simulates `--reps` token datasets (lawfit.testing.tokens, PhoneBook-like entries of 8
tokens, ranks 1-64, lengths 64-256, 3 seeds: 63 runs) with a planted p*, and counts how
often the 95 % bootstrap interval (runs resampled) covers it. Run:

    python benchmarks/threshold_coverage.py --reps 100
    python benchmarks/threshold_coverage.py --study informative --reps 400

``--study informative`` asks how many informative runs (runs holding both recalled and
missed intact-prefix tokens, the only ones that locate p*) the run bootstrap needs: long-
context-like targets (one entry per run, 36 runs), planted p* = 0.1 under sufficiency, the
capacity offset ``x0`` drawn from [0, 3] and the base model's mean logit from {-3, -6} so
that anywhere from 1 to about 30 runs are informative; coverage is tabulated by that count
(lawfit.transition.MIN_INFORMATIVE_RUNS flags fewer than 5).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from lawfit.testing.tokens import synthetic_token_dataset
from lawfit.transition import phase_transition

GRID = dict(ranks=(1, 2, 4, 8, 16, 32, 64), lengths=(64, 128, 256), seeds=(0, 1, 2))
#: the informative-runs study: long-context-like runs, as in the shipped law sweep
LONG_GRID = dict(ranks=(1, 2, 4, 8, 16, 32), lengths=(64, 128, 256), seeds=(0, 1))
#: bins of the number of informative runs
BINS = [0, 2, 4, 6, 9, 14, 100]
LABELS = ["1-2", "3-4", "5-6", "7-9", "10-14", "15+"]


def informative_runs_study(reps: int, bootstrap: int, p_star: float = 0.1) -> pd.DataFrame:
    """One row per simulated dataset: informative runs, coverage of each interval, width."""
    rows = []
    for rep in range(reps):
        gen = np.random.default_rng(20_000 + rep)
        ds = synthetic_token_dataset(
            p_star=p_star,
            slope=3.0,
            sufficient=True,
            x0=float(gen.uniform(0.0, 3.0)),
            before_mean=float(gen.choice([-3.0, -6.0])),
            rng=gen,
            **LONG_GRID,
        )
        res = phase_transition(ds, bootstrap=bootstrap, rng=rep, orders=())
        t = res.token_fit
        if t is None:  # no run with both outcomes: nothing to locate p*
            continue
        rows.append(
            {
                "informative": t.n_runs_informative,
                "profile": t.ci_profile[0] <= p_star <= t.ci_profile[1],
                "bootstrap": t.ci_bootstrap[0] <= p_star <= t.ci_bootstrap[1],
                "delta": t.ci_delta[0] <= p_star <= t.ci_delta[1],
                "isotonic": t.ci_isotonic[0] <= p_star <= t.ci_isotonic[1],
                "isotonic_bootstrap": t.ci_isotonic_bootstrap[0]
                <= p_star
                <= t.ci_isotonic_bootstrap[1],
                "width_profile": t.ci_profile[1] - t.ci_profile[0],
                "width": t.ci_bootstrap[1] - t.ci_bootstrap[0],
                "estimate": t.threshold,
                "estimate_isotonic": t.threshold_isotonic,
                "flagged": "threshold_not_logistic" in {f.code for f in res.flags},
            }
        )
    return pd.DataFrame(rows)


def print_informative(table: pd.DataFrame) -> None:
    """Coverage of the 95 % intervals by the number of informative runs."""
    table = table.assign(bin=pd.cut(table["informative"], BINS, labels=LABELS))
    out = table.groupby("bin", observed=True).agg(
        datasets=("informative", "size"),
        profile=("profile", "mean"),
        bootstrap=("bootstrap", "mean"),
        delta=("delta", "mean"),
        isotonic=("isotonic", "mean"),
        isotonic_bootstrap=("isotonic_bootstrap", "mean"),
        width_profile=("width_profile", "median"),
        width=("width", "median"),
        estimate=("estimate", "median"),
        estimate_isotonic=("estimate_isotonic", "median"),
        flagged=("flagged", "mean"),
    )
    head = "| informative runs | datasets | coverage: profile | bootstrap | delta | isotonic LR |"
    head += " isotonic bootstrap | median width: profile | bootstrap | median p* |"
    print(head + " median isotonic | misfit flagged |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, r in out.iterrows():
        print(
            f"| {label} | {r['datasets']:.0f} | {r['profile']:.2f} | {r['bootstrap']:.2f} | "
            f"{r['delta']:.2f} | {r['isotonic']:.2f} | {r['isotonic_bootstrap']:.2f} | "
            f"{r['width_profile']:.4f} | "
            f"{r['width']:.4f} | {r['estimate']:.4f} | {r['estimate_isotonic']:.4f} | "
            f"{r['flagged']:.2f} |"
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--bootstrap", type=int, default=300)
    p.add_argument("--study", choices=["planted", "informative"], default="planted")
    p.add_argument("--save", default=None, help="informative study: also write its rows (CSV)")
    a = p.parse_args(argv)
    t0 = time.time()
    if a.study == "informative":
        table = informative_runs_study(a.reps, a.bootstrap)
        print_informative(table)
        if a.save:
            table.to_csv(a.save, index=False)
        print(f"\n({a.reps} datasets, {time.time() - t0:.0f} s)")
        return
    print(
        "| planted p* | sufficient | logistic p* (mean) | coverage: profile | bootstrap | "
        "delta | mean CI width: profile | bootstrap | isotonic crossing (mean) | "
        "isotonic coverage: LR | bootstrap | crossings differ (paired CI) | misfit flagged "
        "(link test) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p_star, sufficient in ((0.5, False), (0.3, False), (0.3, True), (0.45, True)):
        est, cov_p, cov_b, cov_d, width_p, width = [], [], [], [], [], []
        iso, cov_i, cov_ib, differ, flag = [], [], [], [], []
        for rep in range(a.reps):
            ds = synthetic_token_dataset(
                p_star=p_star,
                slope=3.0,
                entry_tokens=8,
                sufficient=sufficient,
                rng=10_000 + rep,
                **GRID,
            )
            res = phase_transition(ds, bootstrap=a.bootstrap, rng=rep, orders=())
            t = res.token_fit
            est.append(t.threshold)
            cov_p.append(t.ci_profile[0] <= p_star <= t.ci_profile[1])
            cov_b.append(t.ci_bootstrap[0] <= p_star <= t.ci_bootstrap[1])
            cov_d.append(t.ci_delta[0] <= p_star <= t.ci_delta[1])
            width_p.append(t.ci_profile[1] - t.ci_profile[0])
            width.append(t.ci_bootstrap[1] - t.ci_bootstrap[0])
            iso.append(t.threshold_isotonic)
            cov_i.append(t.ci_isotonic[0] <= p_star <= t.ci_isotonic[1])
            cov_ib.append(t.ci_isotonic_bootstrap[0] <= p_star <= t.ci_isotonic_bootstrap[1])
            differ.append(not (t.ci_difference[0] <= 0 <= t.ci_difference[1]))
            flag.append("threshold_not_logistic" in {f.code for f in res.flags})
        print(
            f"| {p_star} | {sufficient} | {np.mean(est):.4f} | {np.mean(cov_p):.2f} | "
            f"{np.mean(cov_b):.2f} | {np.mean(cov_d):.2f} | {np.mean(width_p):.4f} | "
            f"{np.mean(width):.4f} | {np.nanmean(iso):.4f} | "
            f"{np.mean(cov_i):.2f} | {np.mean(cov_ib):.2f} | {np.mean(differ):.2f} | "
            f"{np.mean(flag):.2f} |"
        )
    print(f"\n({a.reps} datasets per row, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
