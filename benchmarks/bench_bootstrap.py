"""Speed of lawfit's batched bootstrap vs a Python loop of lmfit / scipy curve_fit fits.

Design: 16 ranks x 13 lengths x 3 seeds (624 cells), case bootstrap with 2,000
replicates. lawfit fits all replicates at once (multinomial weights on one design,
local variable-projection grid by matrix products, then a vectorised LM polish).
The loops refit each resampled data set with lmfit.Model.fit and with
scipy.optimize.curve_fit, started from the full-data estimate (their best case); they
are timed on a subset of replicates and extrapolated linearly to 2,000 (printed).

Usage::

    python benchmarks/bench_bootstrap.py [--boot 2000] [--loop-subset 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--loop-subset", type=int, default=100,
                    help="replicates timed for the lmfit/curve_fit loops (extrapolated)")
    ap.add_argument("--repeat", type=int, default=3, help="lawfit timings: best of N")
    a = ap.parse_args(argv)

    import lmfit
    from scipy.optimize import curve_fit

    import lawfit
    from lawfit.testing import synthetic_dataset

    ranks = tuple(2 ** i for i in range(16))
    lengths = tuple(int(v) for v in np.geomspace(64, 16384, 13).round())
    ds = synthetic_dataset(C=0.05, alpha=0.6, beta=0.5, b=0.02, ranks=ranks, lengths=lengths,
                           seeds=3, noise=0.05, loss_before=1e3, rng=0)
    n = ds.sizes["rank"] * ds.sizes["length"] * ds.sizes["seed"]
    print(f"design: {ds.sizes['rank']} ranks x {ds.sizes['length']} lengths x "
          f"{ds.sizes['seed']} seeds = {n} cells; {a.boot} case-bootstrap replicates")
    print(f"cpu count visible: {os.cpu_count()}; affinity: "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}")

    lawfit.fit(ds, exclude=None, bootstrap=50, rng=0, profile=False)  # warm-up
    times = []
    for rep in range(a.repeat):
        t0 = time.perf_counter()
        res = lawfit.fit(ds, exclude=None, bootstrap=a.boot, rng=rep, profile=False)
        times.append(time.perf_counter() - t0)
    t_law = min(times)
    print(f"lawfit.fit(bootstrap={a.boot}) incl. point estimate: best {t_law:.3f} s "
          f"(all runs: {', '.join(f'{t:.3f}' for t in times)}); failed replicates: "
          f"{res.boot['n_failed']}")

    df = res.points
    x, ell, y = (df["rank"].to_numpy(float), df["length"].to_numpy(float),
                 df["loss_reduction"].to_numpy(float))
    p = res.params
    rng = np.random.default_rng(0)
    idx = rng.integers(0, n, size=(a.loop_subset, n))

    def law(xl, C, alpha, beta, b):
        return C * xl[0] ** alpha * xl[1] ** (-beta) + b

    # scipy curve_fit loop
    p0 = [p["C"], p["alpha"], p["beta"], p["b"]]
    t0 = time.perf_counter()
    cf = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(a.loop_subset):
            j = idx[i]
            popt, _ = curve_fit(law, np.vstack([x[j], ell[j]]), y[j], p0=p0, maxfev=20000)
            cf.append(popt)
    t_cf = (time.perf_counter() - t0) / a.loop_subset * a.boot

    # lmfit loop
    def law2(r, ell, C, alpha, beta, b):
        return C * r ** alpha * ell ** (-beta) + b

    model = lmfit.Model(law2, independent_vars=["r", "ell"])
    params = model.make_params(C=p["C"], alpha=p["alpha"], beta=p["beta"], b=p["b"])
    t0 = time.perf_counter()
    lm = []
    for i in range(a.loop_subset):
        j = idx[i]
        out = model.fit(y[j], params, r=x[j], ell=ell[j])
        lm.append([out.params[k].value for k in ("C", "alpha", "beta", "b")])
    t_lm = (time.perf_counter() - t0) / a.loop_subset * a.boot

    print(f"scipy curve_fit loop: {t_cf:.2f} s for {a.boot} (timed {a.loop_subset} replicates, "
          "extrapolated linearly)")
    print(f"lmfit loop:           {t_lm:.2f} s for {a.boot} (timed {a.loop_subset} replicates, "
          "extrapolated linearly)")
    print(f"speed-up: {t_cf / t_law:.0f}x vs curve_fit, {t_lm / t_law:.0f}x vs lmfit")
    # sanity: same answers (bootstrap SDs agree)
    sd_law = res.draws.loc[res.draws.converged, ["alpha", "beta"]].std().to_numpy()
    sd_cf = np.std(np.array(cf)[:, 1:3], axis=0, ddof=1)
    print(f"bootstrap SD of (alpha, beta): lawfit {sd_law.round(5)}, curve_fit subset "
          f"{sd_cf.round(5)} (subset of {a.loop_subset}: agrees within its MC error)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
