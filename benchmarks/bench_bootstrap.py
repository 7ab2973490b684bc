"""Speed of lawfit's batched bootstrap vs Python loops of lmfit / scipy curve_fit fits.

Design: 16 ranks x 13 lengths x 3 seeds (624 cells), case bootstrap with 2,000
replicates. lawfit is timed end to end: ``lawfit.fit(..., bootstrap=2000)`` with the
point estimate (validation, global grid, polish, covariance) and all replicates
(multinomial counts reduced to per-design-point sums, one shared Gauss-Newton step
as a warm start, a vectorised LM on all replicates; see docs/lawfit.md).

The loops refit the *same* resampled data sets (the first ``--loop-subset`` of
lawfit's own 2,000 replicates, regenerated from the same seed) one at a time:

* lmfit ``Model.fit`` started at the full-data estimate (its best case);
* scipy ``curve_fit`` started at the full-data estimate (its best case);
* scipy ``curve_fit`` with its default start (p0 = all ones, default ``maxfev``),
  what a typical script writes; replicates that raise (``maxfev`` reached) or end
  away from lawfit's estimate are counted and printed.

Loop times are measured on the subset and extrapolated linearly to 2,000 (printed as
such). Every time is the best of ``--repeat`` runs; all runs and the load average are
printed. Agreement with lawfit's replicate estimates is printed per loop.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_bootstrap.py \\
        [--boot 2000] [--loop-subset 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np


def _best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def _load():
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument(
        "--loop-subset",
        type=int,
        default=200,
        help="replicates timed for the lmfit/curve_fit loops (extrapolated)",
    )
    ap.add_argument("--repeat", type=int, default=5, help="every timing: best of N")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import lmfit
    from scipy.optimize import curve_fit

    import lawfit
    from lawfit.bootstrap import bootstrap_weights
    from lawfit.testing import synthetic_dataset

    ranks = tuple(2**i for i in range(16))
    lengths = tuple(int(v) for v in np.geomspace(64, 16384, 13).round())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = synthetic_dataset(
            C=0.05,
            alpha=0.6,
            beta=0.5,
            b=0.02,
            ranks=ranks,
            lengths=lengths,
            seeds=3,
            noise=0.05,
            loss_before=1e3,
            rng=0,
        )
    n = ds.sizes["rank"] * ds.sizes["length"] * ds.sizes["seed"]
    print(
        f"design: {ds.sizes['rank']} ranks x {ds.sizes['length']} lengths x "
        f"{ds.sizes['seed']} seeds = {n} cells; {a.boot} case-bootstrap replicates"
    )
    print(
        f"cpu count visible: {os.cpu_count()}; affinity: "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
        f"load average at start: {_load()}"
    )

    # --- lawfit, end to end -------------------------------------------------------
    lawfit.fit(ds, exclude=None, bootstrap=50, rng=0, profile=False)  # warm-up (imports)

    def run_lawfit():
        return lawfit.fit(ds, exclude=None, bootstrap=a.boot, rng=a.seed, profile=False)

    t_law, law_runs, res = _best(run_lawfit, a.repeat)
    t_pt, pt_runs, _ = _best(lambda: lawfit.fit(ds, exclude=None, profile=False), a.repeat)
    print(
        f"lawfit.fit(bootstrap={a.boot}) incl. point estimate: best {t_law:.4f} s "
        f"(runs: {', '.join(f'{t:.4f}' for t in law_runs)}); failed replicates: "
        f"{res.boot.n_failed}"
    )
    print(f"  of which point estimate alone (bootstrap=0): best {t_pt:.4f} s")

    # --- the same resampled data sets, one fit each --------------------------------
    df = res.points
    x, ell, y = (
        df["rank"].to_numpy(float),
        df["length"].to_numpy(float),
        df["loss_reduction"].to_numpy(float),
    )
    W = bootstrap_weights(a.boot, np.arange(n), np.random.default_rng(a.seed))
    m = min(a.loop_subset, a.boot)
    idx = [np.repeat(np.arange(n), W[i].astype(int)) for i in range(m)]
    law_draws = res.draws.iloc[:m][["C", "alpha", "beta", "b"]].to_numpy(float)
    p = res.params
    p_hat = [p["C"], p["alpha"], p["beta"], p["b"]]

    def law(xl, C, alpha, beta, b):
        return C * xl[0] ** alpha * xl[1] ** (-beta) + b

    def cf_loop(p0, maxfev):
        out = np.full((m, 4), np.nan)
        n_err = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, j in enumerate(idx):
                try:
                    kw = {} if maxfev is None else {"maxfev": maxfev}
                    out[i], _ = curve_fit(law, np.vstack([x[j], ell[j]]), y[j], p0=p0, **kw)
                except RuntimeError:  # "Optimal parameters not found" (maxfev reached)
                    n_err += 1
        return out, n_err

    def lm_loop():
        def law2(r, ell, C, alpha, beta, b):
            return C * r**alpha * ell ** (-beta) + b

        model = lmfit.Model(law2, independent_vars=["r", "ell"])
        params = model.make_params(C=p["C"], alpha=p["alpha"], beta=p["beta"], b=p["b"])
        out = np.full((m, 4), np.nan)
        for i, j in enumerate(idx):
            fit = model.fit(y[j], params, r=x[j], ell=ell[j])
            out[i] = [fit.params[k].value for k in ("C", "alpha", "beta", "b")]
        return out

    loops = [
        ("lmfit Model.fit loop, start = full-data estimate", lm_loop),
        (
            "scipy curve_fit loop, p0 = full-data estimate (best case), maxfev=20000",
            lambda: cf_loop(p_hat, 20000),
        ),
        (
            "scipy curve_fit loop, default p0 (all ones) and maxfev (typical script)",
            lambda: cf_loop(None, None),
        ),
    ]
    rows = []
    for name, fn in loops:
        t, runs, out = _best(fn, a.repeat)
        est, n_err = out if isinstance(out, tuple) else (out, 0)
        t_full = t / m * a.boot
        ok = np.all(np.isfinite(est), axis=1)
        dev = np.abs(est[ok][:, 1:3] - law_draws[ok][:, 1:3])
        away = int(np.sum(np.any(dev > 1e-4, axis=1)))
        rows.append((name, t_full, t_full / t_law))
        print(
            f"{name}:\n  {t_full:.3f} s for {a.boot} (timed {m} replicates, best of "
            f"{a.repeat}: {', '.join(f'{r:.3f}' for r in runs)} s, x{a.boot / m:g} "
            f"extrapolated linearly); raised (maxfev): {n_err}; ended > 1e-4 from "
            f"lawfit in alpha/beta: {away}; max |d alpha|, |d beta| vs lawfit on the "
            f"others: {dev.max(axis=0) if dev.size else 'n/a'}"
        )
    print(f"load average at end: {_load()}")
    print("speed-up of lawfit (end to end, best of runs) vs each loop (extrapolated):")
    for name, _t_full, ratio in rows:
        flag = "meets" if ratio >= 30 else "below"
        print(f"  {ratio:7.1f}x  ({flag} 30x)  {name}")
    print(f"  lawfit under 2 s: {'yes' if t_law < 2 else 'NO'} ({t_law:.4f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
