"""Step 4 - the p > 0.5 phase transition of verbatim recall (SFT runs).

lawfit.phase_transition: the logistic threshold p* of greedy recall on logit(p_after)
(and the model-free isotonic crossing), the sufficiency check (no token with p > 0.5 and
an intact prefix may fail), the cascade correlation between the earliest sub-threshold
token and the first greedy error (paper: ρ = 0.908 over 155 runs), the entry-level
2 × 2 table, bimodality of token probabilities, and the cell-level critical rank.

    python analysis/04_transition.py [DATA.nc] [--bootstrap 1000]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load, parser, quiet, sft_settings  # noqa: E402

import lawfit  # noqa: E402


def main():
    args = parser(__doc__).parse_args()
    quiet()
    ds = load(args, kind="tokens")
    for _label, _sub, runs in sft_settings(ds):
        try:
            pt = lawfit.phase_transition(runs, bootstrap=args.bootstrap, rng=0)
        except lawfit.LawfitError as exc:
            print(f"not analysable: {exc}\n")
            continue
        print(pt.summary())
        for order, tr in pt.transitions.items():
            print(f"\ncritical rank per length ({order}):")
            print(tr.critical.to_string(index=False))
        if pt.sequence is not None:
            print("\nentries: exact match vs min p > 0.5")
            print(pt.sequence.table.to_string())
        print()


if __name__ == "__main__":
    main()
