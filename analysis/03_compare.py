"""Step 3 - which functional form describes ΔL(r, ℓ)? Model selection on SFT cells.

lawfit.compare fits the paper's power law and its rivals (no offset, ratio r/ℓ,
saturating, additive, n_params, broken power law) on the same cells, with AICc/BIC
weights, likelihood-ratio and Vuong tests and held-out extrapolation error. With cells on
2+ target sequences the nested and Vuong tests are also made cluster-robust over them
(``cluster="data_seed"``: ``robust_pvalue``). When the residual spread grows with ΔL
(Breusch-Pagan flag) the comparison is repeated in log space, which is then the one to
quote (docs/analyses.md §1).

    python analysis/03_compare.py [DATA.nc]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load, parser, quiet, sft_settings  # noqa: E402

import lawfit  # noqa: E402
from lawfit.compare import SHOWN_COLUMNS as COLS  # noqa: E402
from lawfit.data import target_cluster  # noqa: E402


def show(cmp):
    print(cmp.table[list(COLS)].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if len(cmp.lr_tests):
        print("\nlikelihood-ratio tests (nested pairs):")
        print(cmp.lr_tests.to_string(index=False))
    if cmp.vuong is not None and len(cmp.vuong):
        print("\nVuong tests (non-nested pairs):")
        print(cmp.vuong.head(10).to_string(index=False))
    for n in cmp.notes:
        print("note:", n)


def main():
    args = parser(__doc__).parse_args()
    quiet()
    ds = load(args)
    for _label, _sub, cells in sft_settings(ds):
        try:
            cmp = lawfit.compare(cells, cluster=target_cluster(cells))
        except lawfit.LawfitError as exc:
            print(f"comparison not possible: {exc}\n")
            continue
        print(f"best by AICc: {cmp.best}\n")
        show(cmp)
        if cmp.heteroscedastic:
            print("\n-- heteroscedastic residuals: the same comparison in log space --")
            try:
                show(lawfit.compare(cells, space="log", cluster=target_cluster(cells)))
            except lawfit.LawfitError as exc:
                print(f"log-space comparison not possible: {exc}")
        print()


if __name__ == "__main__":
    main()
