"""Step 2 - fit the Parametric Memory Law ΔL = C·r^α·ℓ^(−β) + b on the SFT cells.

For every setting (task × random_ratio × ...): the paper's fit (linear space, memorized
cells with loss_after ≤ ln 2 excluded) with a bootstrap over cells (over whole target
sequences, data_seed clusters, when the cells span 2+ of them, with the cluster-robust
interval beside it), its profile-likelihood intervals, the same law in log space
(multiplicative errors) as a check, the test of alpha = beta (the one-variable law
C·(r/ℓ)^γ; cluster-robust over target sequences where there are 2+) and γ itself, and the
training-budget check (cells still improving
at the budget; the law refitted at smaller budgets read back from the trajectories; the law
at twice the budget, extrapolated from each cell's curve, beside that extrapolation's
backtest from half the budget). With
--save DIR each fit is saved as JSON (reload it with lawfit.load).

    python analysis/02_fit.py [DATA.nc] [--bootstrap 1000] [--save runs/fits]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load, parser, quiet, sft_settings  # noqa: E402

import lawfit  # noqa: E402
from lawfit.data import target_unit  # noqa: E402


def print_difference_by_budget(bs, unit: str) -> None:
    """Print alpha - beta of the law refitted at each budget (the same cells, cut shorter)."""
    cluster = None if unit == "cell" else unit
    print(f"\nalpha - beta by budget ({'asymptotic' if cluster is None else f'CR2 over {unit}'}):")
    for budget, fit in bs.fits.items():
        d = fit.contrast({"alpha": 1, "beta": -1}, cluster=cluster)
        print(
            f"  {budget:>6} steps: {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], "
            f"{d['dof']:.2f} dof, p = {d['pvalue']:.2g}"
        )


def print_gamma(cells, unit: str, bootstrap: int) -> None:
    """Print gamma, the exponent of the one-variable law C·(r/ℓ)^γ, with its interval."""
    try:
        one = lawfit.fit(cells, "ratio_no_offset", bootstrap=bootstrap, unit=unit, rng=0)
    except lawfit.LawfitError as exc:
        print(f"\none-variable law C·(r/ℓ)^γ not fitted: {exc}")
        return
    kind = "wald" if unit == "cell" else "cluster"
    ci = one.conf_int(kind, cluster=None if unit == "cell" else unit)
    low, high = ci.loc["gamma", "low"], ci.loc["gamma", "high"]
    print(
        f"\none-variable law C·(r/ℓ)^γ: γ = {one.params['gamma']:.3f} [{low:.3f}, {high:.3f}] "
        f"({'Wald' if unit == 'cell' else f'CR2 over {unit}'}), R² = {one.r2:.4f}"
    )


def main():
    ap = parser(__doc__)
    ap.add_argument("--save", help="folder for the fits as JSON (e.g. runs/fits)")
    args = ap.parse_args()
    quiet()
    ds = load(args)
    for label, _sub, cells in sft_settings(ds):
        try:
            unit = target_unit(cells)
            res = lawfit.fit(cells, "power_law", bootstrap=args.bootstrap, unit=unit, rng=0)
        except lawfit.LawfitError as exc:
            print(f"law not fitted: {exc}\n")
            continue
        print(
            f"bootstrap resamples: {'target sequences (data_seed)' if unit != 'cell' else 'cells'}"
        )
        print(res.summary())
        print("\nProfile-likelihood intervals:")
        print(res.conf_int("profile").to_string())
        if unit != "cell":  # few target sequences: the interval calibrated for them
            print(
                f"\nCluster-robust intervals over {unit} (CR2 sandwich, Bell-McCaffrey t "
                "dof; calibrated at 3+ clusters, where the cluster bootstrap is too narrow):"
            )
            print(res.conf_int("cluster", cluster=unit).to_string())
        diff = res.contrast({"alpha": 1, "beta": -1}, cluster=None if unit == "cell" else unit)
        print(
            f"\nalpha - beta = {diff['estimate']:.3f} [{diff['low']:.3f}, {diff['high']:.3f}], "
            f"t = {diff['t']:.2f} on {diff['dof']:.2f} dof, p = {diff['pvalue']:.2g} "
            f"({'asymptotic' if unit == 'cell' else f'CR2 over {unit}'}): "
            + (
                "alpha = beta is rejected"
                if diff["pvalue"] < 0.05
                else "alpha = beta is not rejected"
            )
            + " at 0.05"
        )
        print_gamma(cells, unit, args.bootstrap)
        try:
            print("\n" + str(lawfit.lack_of_fit(res).summary()))
        except lawfit.LawfitError as exc:
            print(f"\nlack of fit not tested: {exc}")
        print(
            f"\nexcluded cells: {res.n_excluded} "
            f"({res.exclusions['reason'].value_counts().to_dict() if res.n_excluded else {}})"
        )
        print("paper: alpha ≈ 0.6, beta ≈ 0.5, R² > 0.98 (Llama-3.1-8B, Qwen3-8B)")
        try:
            log_res = lawfit.fit(
                cells, "power_law", space="log", bootstrap=args.bootstrap, unit=unit, rng=0
            )
            ci = log_res.conf_int()
            print(
                "\nlog-space fit (multiplicative errors): "
                + ", ".join(
                    f"{k} = {v:.4g} [{ci.loc[k, 'low']:.4g}, {ci.loc[k, 'high']:.4g}]"
                    for k, v in log_res.params.items()
                )
                + f"; R² = {log_res.r2:.4f}"
            )
        except lawfit.LawfitError as exc:
            print(f"\nlog-space fit not possible: {exc}")
        if "loss_curve" in cells:
            try:
                bs = lawfit.budget_sensitivity(cells, bootstrap=args.bootstrap, rng=0, unit=unit)
                print("\nTraining budget:\n" + bs.summary())
                print_difference_by_budget(bs, unit)
                ext = lawfit.budget_extrapolation(cells, horizon=2.0, unit=unit)
                print("\nPast the budget (a sensitivity analysis, with its backtest):")
                print(ext.summary())
            except lawfit.LawfitError as exc:
                print(f"\nbudget check not possible: {exc}")
        if args.save:
            os.makedirs(args.save, exist_ok=True)
            tag = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in label)
            path = os.path.join(args.save, f"fit_{tag}.json")
            res.save(path)
            print(f"\nsaved {path}")
        print()


if __name__ == "__main__":
    main()
