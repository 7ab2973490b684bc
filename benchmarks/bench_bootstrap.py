"""Speed of lawfit's batched bootstrap vs Python loops of lmfit / scipy curve_fit fits.

Design: 16 ranks x 13 lengths x 3 seeds (624 cells), case bootstrap with 2,000
replicates. lawfit is timed end to end: ``lawfit.fit(..., bootstrap=2000)`` with the
point estimate (validation, global grid, polish, covariance) and all replicates
(multinomial counts reduced to per-design-point sums, one shared Gauss-Newton step
as a warm start, a vectorised LM on all replicates; see docs/lawfit.md).

The loops refit the *same* resampled data sets (the first ``--loop-subset`` of
lawfit's own 2,000 replicates, regenerated from the same seed) one at a time, with the
same objective: least squares in the space lawfit's ``space="auto"`` chose (here log
space, log ΔL against the log of the law, since the noise is multiplicative):

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
        [--boot 2000] [--loop-subset 200] [--repeat 5] [--space auto|linear|log]
"""

from __future__ import annotations

import argparse
import dataclasses
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


def _parse(argv):
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
    ap.add_argument(
        "--space",
        choices=["auto", "linear", "log"],
        default="auto",
        help="lawfit.fit's fit space (default auto, lawfit's default: log here); the loops "
        "fit in the space lawfit used",
    )
    return ap.parse_args(argv)


def _design():
    """The benchmark's synthetic sweep: 16 ranks x 13 lengths x 3 seeds of a known law."""
    from lawfit.testing import synthetic_dataset

    ranks = tuple(2**i for i in range(16))
    lengths = tuple(int(v) for v in np.geomspace(64, 16384, 13).round())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return synthetic_dataset(
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


def _print_setup(ds, n: int, boot: int) -> None:
    print(
        f"design: {ds.sizes['rank']} ranks x {ds.sizes['length']} lengths x "
        f"{ds.sizes['seed']} seeds = {n} cells; {boot} case-bootstrap replicates"
    )
    print(
        f"cpu count visible: {os.cpu_count()}; affinity: "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
        f"load average at start: {_load()}"
    )


def _time_lawfit(ds, a):
    """Time lawfit.fit with the bootstrap, and the point estimate alone; return (s, result)."""
    import lawfit

    kw = dict(exclude=None, profile=False, space=a.space)
    lawfit.fit(ds, bootstrap=50, rng=0, **kw)  # warm-up (imports)
    t_law, law_runs, res = _best(
        lambda: lawfit.fit(ds, bootstrap=a.boot, rng=a.seed, **kw), a.repeat
    )
    t_pt, _, _ = _best(lambda: lawfit.fit(ds, **kw), a.repeat)
    print(
        f"lawfit.fit(bootstrap={a.boot}) incl. point estimate: best {t_law:.4f} s "
        f"(runs: {', '.join(f'{t:.4f}' for t in law_runs)}); failed replicates: "
        f"{res.boot.n_failed}"
    )
    print(f"  of which point estimate alone (bootstrap=0): best {t_pt:.4f} s")
    print(f"  fit space: {res.space} (space={a.space!r}); the loops fit the same objective")
    return t_law, res


@dataclasses.dataclass
class _Resamples:
    """The first m of lawfit's bootstrap data sets, as row indices into the cells."""

    x: np.ndarray
    ell: np.ndarray
    y: np.ndarray
    idx: list[np.ndarray]
    p: dict
    space: str  # lawfit's fit space: the loops fit the same objective (log y in log space)

    @property
    def p_hat(self) -> list[float]:
        return [self.p[k] for k in ("C", "alpha", "beta", "b")]


def _resamples(res, n: int, boot: int, m: int, seed: int) -> _Resamples:
    """Regenerate lawfit's resampled data sets (same seed) for the one-fit-each loops."""
    from lawfit.bootstrap import bootstrap_weights

    df = res.points
    W = bootstrap_weights(boot, np.arange(n), np.random.default_rng(seed))
    return _Resamples(
        x=df["rank"].to_numpy(float),
        ell=df["length"].to_numpy(float),
        y=df["loss_reduction"].to_numpy(float),
        idx=[np.repeat(np.arange(n), W[i].astype(int)) for i in range(m)],
        p=dict(res.params),
        space=res.space,
    )


def _law(xl, C, alpha, beta, b):
    return C * xl[0] ** alpha * xl[1] ** (-beta) + b


def _log_law(xl, C, alpha, beta, b):
    return np.log(_law(xl, C, alpha, beta, b))


def _in_space(r: _Resamples):
    """The law and the response in lawfit's fit space (same estimator as lawfit's)."""
    return (_log_law, np.log(r.y)) if r.space == "log" else (_law, r.y)


def _curve_fit_loop(r: _Resamples, p0, maxfev):
    """scipy curve_fit on each resample; return estimates and how many raised."""
    from scipy.optimize import curve_fit

    out = np.full((len(r.idx), 4), np.nan)
    n_err = 0
    kw = {} if maxfev is None else {"maxfev": maxfev}
    law, y = _in_space(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, j in enumerate(r.idx):
            try:
                out[i], _ = curve_fit(law, np.vstack([r.x[j], r.ell[j]]), y[j], p0=p0, **kw)
            except RuntimeError:  # "Optimal parameters not found" (maxfev reached)
                n_err += 1
    return out, n_err


def _lmfit_loop(r: _Resamples):
    """lmfit Model.fit on each resample, started at the full-data estimate."""
    import lmfit

    law, y = _in_space(r)

    def law2(r_, ell, C, alpha, beta, b):
        return law((r_, ell), C, alpha, beta, b)

    model = lmfit.Model(law2, independent_vars=["r_", "ell"])
    params = model.make_params(**r.p)
    out = np.full((len(r.idx), 4), np.nan)
    for i, j in enumerate(r.idx):
        fit = model.fit(y[j], params, r_=r.x[j], ell=r.ell[j])
        out[i] = [fit.params[k].value for k in ("C", "alpha", "beta", "b")]
    return out, 0


def _time_loop(name, fn, law_draws, a, m: int) -> float:
    """Time one loop, print its agreement with lawfit, return its time for all replicates."""
    t, runs, (est, n_err) = _best(fn, a.repeat)
    t_full = t / m * a.boot
    ok = np.all(np.isfinite(est), axis=1)
    dev = np.abs(est[ok][:, 1:3] - law_draws[ok][:, 1:3])
    away = int(np.sum(np.any(dev > 1e-4, axis=1)))
    print(
        f"{name}:\n  {t_full:.3f} s for {a.boot} (timed {m} replicates, best of "
        f"{a.repeat}: {', '.join(f'{r:.3f}' for r in runs)} s, x{a.boot / m:g} "
        f"extrapolated linearly); raised (maxfev): {n_err}; ended > 1e-4 from "
        f"lawfit in alpha/beta: {away}; max |d alpha|, |d beta| vs lawfit on the "
        f"others: {dev.max(axis=0) if dev.size else 'n/a'}"
    )
    return t_full


def main(argv=None):
    a = _parse(argv)
    ds = _design()
    n = ds.sizes["rank"] * ds.sizes["length"] * ds.sizes["seed"]
    _print_setup(ds, n, a.boot)
    t_law, res = _time_lawfit(ds, a)
    m = min(a.loop_subset, a.boot)
    r = _resamples(res, n, a.boot, m, a.seed)
    law_draws = res.draws.iloc[:m][["C", "alpha", "beta", "b"]].to_numpy(float)
    loops = [
        ("lmfit Model.fit loop, start = full-data estimate", lambda: _lmfit_loop(r)),
        (
            "scipy curve_fit loop, p0 = full-data estimate (best case), maxfev=20000",
            lambda: _curve_fit_loop(r, r.p_hat, 20000),
        ),
        (
            "scipy curve_fit loop, default p0 (all ones) and maxfev (typical script)",
            lambda: _curve_fit_loop(r, None, None),
        ),
    ]
    ratios = [(name, _time_loop(name, fn, law_draws, a, m) / t_law) for name, fn in loops]
    print(f"load average at end: {_load()}")
    print("speed-up of lawfit (end to end, best of runs) vs each loop (extrapolated):")
    for name, ratio in ratios:
        flag = "meets" if ratio >= 30 else "below"
        print(f"  {ratio:7.1f}x  ({flag} 30x)  {name}")
    print(f"  lawfit under 2 s: {'yes' if t_law < 2 else 'NO'} ({t_law:.4f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
