"""Step 11 - which pending cells of a sweep pin the law's exponents down fastest (issue 10).

    python analysis/11_next_cells.py DATA.nc [--sweep SWEEP.toml] [--out CELLS_DIR]
        [--share-cells-with DIR ...] [--prior PRIOR.nc ...] [--theta ...] [--propose]
        [--top N] [--markdown]

DATA is the sweep's merged cells so far (``collect merge SWEEP --out CELLS_DIR -o DATA.nc``);
the defaults are the shipped law sweep (sweeps/law_cpu_converged.toml, data/law_cpu_converged).
Pending cells that a ``--share-cells-with`` directory finished are copied by ``collect run``,
not trained, so they are left out. For each setting of the sweep's pending SFT cells (task,
random ratio, carrier: a LoRA placement sized by rank, or a carrier kind of
``lawfit.carriers.carrier_of`` sized by its knob, e.g. ``kv:1@27``, ``kv:4@27`` as ``kv@27``
with m in the rank column; within a carrier the trainable scalars are proportional to the
knob, so the exponents are those of the law in n_params):

1. the law's current estimate: ΔL = C·r^α·ℓ^(−β) + b fitted on DATA's finished cells of the
   setting, or, where they do not identify it yet, the fit of the same setting in the first
   PRIOR that does (default: the 600-step pilot data/smollm2_cpu.nc, then the first law sweep's
   data/law_cpu.nc); its RMSE is the per-cell σ;
2. each pending cell's predicted ΔL and loss_after (the setting's mean loss_before minus
   ΔL̂): a cell predicted memorized (loss_after ≤ ln 2), or at a (rank, length) where a cell
   of DATA or PRIOR already memorized, is excluded by the fit and adds nothing to the
   exponents (it shows where recall switches on: it goes last here, with the reason). A
   prediction within --margin nats of ln 2 (default 1) counts as memorized: the shipped
   prior was fitted at a 600-step budget, where ΔL is 8-14 % below its converged value
   (about 1 nat at ΔL ≈ 12), so such a cell most likely memorizes at 3,000 steps;
3. its cost: the FLOPs of the steps it has left to the budget (from its checkpoint, if any;
   ``collect.cost``), in hours at the seconds per FLOP measured on DATA's finished cells;
4. the order of ``lawfit.next_cells``: greedily, the cell that lowers var(α) + var(β) most per
   hour, given the cells before it (local A-optimal design; lawfit/design.py says what it
   does not see), with the standard errors of α and β and their correlation once it is in;
5. the same quantities in the sweep's own order, after the same hours, for comparison;
6. with several target sequences, the degrees of freedom the cluster-robust interval of α
   and β would have (``conf_int("cluster")``; they depend on the design only): near 1 when
   one sequence alone carries a parameter, G − 1 when the sequences cover it equally.

With ``--propose`` the order also holds cells one step beyond the sweep's grid (its sizes,
the sizes between them and twice the largest, its lengths and twice the longest, on its
target sequences and one new one: a fourth sequence raises the cluster-robust interval's
dof, which ``cluster_width`` values), marked
``in_sweep`` False, and the sweep-order column keeps the sweep's own cells only.

The standard errors treat cells as independent with one σ; replicate target sequences share
content, so read them as a lower bound on the uncertainty and the order as the useful part.
"""

from __future__ import annotations

import math
import os
import sys
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ROOT, header, markdown, parser  # noqa: E402

import lawfit  # noqa: E402
from lawfit.carriers import carrier_of, knob_value  # noqa: E402
from lawfit.data import LN2  # noqa: E402

SWEEP = os.path.join(ROOT, "sweeps", "law_cpu_converged.toml")
CELLS = os.path.join(ROOT, "data", "law_cpu_converged")
PRIORS = [os.path.join(ROOT, "data", f) for f in ("smollm2_cpu.nc", "law_cpu.nc")]
CHECKPOINTS = (5.0, 10.0, 20.0)  # hours of one worker at which the two orders are compared


def setting_cells(ds, model: str, task: str, random_ratio: float, carrier: str) -> pd.DataFrame:
    """The finished SFT cells of one setting and carrier, sized by the carrier's knob.

    ``carrier`` is a label of :func:`lawfit.carriers.carrier_of`: a LoRA placement
    (``mlp_block@20``, sized by rank) or a carrier kind (``kv@27``: ``kv:1@27``, ``kv:2@27``,
    ... sized by m). The knob stands in the ``rank`` column: within one carrier the trainable
    scalars are proportional to it, so the law's exponents are the same in either.
    """
    cols = ["loss_reduction", "loss_after", "loss_before", "status"]
    empty = pd.DataFrame(columns=["rank", "length", "data_seed", *cols])
    sel = {"model": model, "task": task, "random_ratio": random_ratio, "objective": "sft"}
    if any(k in ds.dims and v not in ds[k].values for k, v in sel.items()):
        return empty
    sub = ds.sel({k: v for k, v in sel.items() if k in ds.dims})
    modules = [m for m in np.atleast_1d(sub["modules"].values) if carrier_of(str(m))[0] == carrier]
    if not modules:
        return empty
    if "modules" in sub.dims:
        sub = sub.sel(modules=modules)
    df = sub[cols].to_dataframe().reset_index()
    df = df[df["status"] == "ok"].reset_index(drop=True)
    if "modules" in df:
        rank = df["rank"] if "rank" in df else pd.Series(1.0, index=df.index)
        df["rank"] = [knob_value(m, r) for m, r in zip(df["modules"], rank, strict=True)]
        df = df.drop(columns="modules")
    return df


def estimate(
    done: pd.DataFrame, priors: list[tuple[str, pd.DataFrame]]
) -> tuple[dict, float, str] | None:
    """The law's parameters and σ: from the finished cells, else the first prior's (or None)."""
    for source, cells in [("this sweep's finished cells", done), *priors]:
        if not len(cells):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = lawfit.fit(cells, "power_law")
        except lawfit.LawfitError as exc:
            print(f"law not identified on {source} ({len(cells)} cells): {exc}")
            continue
        sigma = res.gof["rmse"] * math.sqrt(res.gof["n_obs"] / max(res.gof["dof"], 1))
        return dict(res.params), float(sigma), f"{source} ({res.gof['n_obs']} cells fitted)"
    return None


def given_theta(text: str | None) -> tuple[dict, float, str] | None:
    """Parse ``--theta C=..,alpha=..,beta=..,b=..,sigma=..`` (None when not given)."""
    if not text:
        return None
    try:
        values = {k.strip(): float(v) for k, v in (p.split("=") for p in text.split(","))}
    except ValueError:
        values = {}
    need = {*lawfit.get_form("power_law").params, "sigma"}
    if set(values) != need:
        raise SystemExit(
            f"--theta expects {', '.join(sorted(need))} as name=value pairs separated by "
            f"commas, e.g. C=100,alpha=0.6,beta=0.5,b=0,sigma=0.2; got {text!r}."
        )
    sigma = values.pop("sigma")
    return values, sigma, "--theta"


def memorized_points(known: pd.DataFrame) -> set[tuple[int, int]]:
    """(rank, length) points where a collected cell already memorized (loss_after ≤ ln 2).

    The law sweep's budget is at least that of the data and the prior, and more training
    only lowers the loss, so such a point is taken as memorized on every target sequence.
    """
    hit = known[known["loss_after"] <= LN2]
    return {(int(r), int(n)) for r, n in zip(hit["rank"], hit["length"], strict=True)}


def candidates(
    keys, config, out, rate: float, theta: dict, loss_before: float, memorized: set, margin: float
) -> pd.DataFrame:
    """Pending cells with predicted ΔL, whether the fit would use them, and hours left."""
    from collect.cost import sweep_cell_flops
    from collect.store import checkpoint_step

    rows = []
    for position, k in keys:
        left = max(config.train.max_steps - checkpoint_step(out, k), 0)
        flops = sweep_cell_flops(k, config, left)
        dl = float(
            lawfit.get_form("power_law").func(knob_value(k.modules, k.rank), k.length, **theta)
        )
        rows.append(
            dict(
                sweep_order=position,
                rank=knob_value(k.modules, k.rank),
                length=k.length,
                data_seed=k.data_seed,
                seed=k.seed,
                predicted_dL=dl,
                informative=loss_before - dl > LN2 + margin and (k.rank, k.length) not in memorized,
                why_not=(
                    "measured memorized"
                    if (k.rank, k.length) in memorized
                    else "law: (near) memorized"
                    if loss_before - dl <= LN2 + margin
                    else ""
                ),
                hours=flops * rate / 3600,
            )
        )
    return pd.DataFrame(rows)


def compare_orders(greedy: pd.DataFrame, given: pd.DataFrame, now: dict | None) -> pd.DataFrame:
    """SE(α), SE(β) after the first N hours of each order.

    Before an order's first informative cell finishes, its values are ``now``'s (the
    finished cells' own standard errors; infinite where they do not identify the law).
    """
    rows = []
    total = given["hours"].sum()
    for h in [*(c for c in CHECKPOINTS if c < total), total]:
        row = {"hours": h}
        for name, order in (("next_cells", greedy), ("sweep order", given)):
            spent = order["hours"].cumsum() <= h + 1e-9
            last = order[spent & order["informative"]].tail(1)
            for col in [c for c in SHOWN_AFTER if c in order]:
                if len(last):
                    row[f"{col} ({name})"] = last[col].iloc[0]
                else:
                    unidentified = np.inf if col.startswith("se_") else np.nan
                    row[f"{col} ({name})"] = (now or {}).get(col, unidentified)
        rows.append(row)
    return pd.DataFrame(rows)


def standard_errors_now(used: pd.DataFrame, theta: dict, sigma: float) -> dict | None:
    """SE(α), SE(β) and their correlation on the finished cells alone (Fisher, as the order).

    None where the finished cells hold no more distinct points than the law has parameters.
    """
    from lawfit.design import form_jacobian, parameter_se

    form = lawfit.get_form("power_law")
    if len(set(zip(used["rank"], used["length"], strict=True))) <= len(form.params):
        return None
    J = form_jacobian(form, used, theta) / sigma
    return parameter_se(J.T @ J, form.params, ("alpha", "beta"))


def describe_now(now: dict | None) -> str:
    """One line for :func:`standard_errors_now`'s answer."""
    if now is None:
        return "not identified yet (no more distinct points than parameters)"
    return f"alpha {now['se_alpha']:.3g}, beta {now['se_beta']:.3g}, corr {now['corr']:+.3f}"


#: what the design says after each cell (dof: of the cluster-robust interval, lawfit.robust)
SHOWN_AFTER = ["se_alpha", "se_beta", "corr", "dof_alpha", "dof_beta"]
SHOW = ["order", "sweep_order", "rank", "length", "data_seed", "predicted_dL", "why_not"]
SHOW += ["hours", "cum_hours", *SHOWN_AFTER]


def between(knobs: list[float]) -> list[int]:
    """Whole sizes halfway, on a log scale, between neighbouring sizes that lack one.

    The rounded geometric mean of each neighbouring pair, where it is a new size: 3 between
    2 and 4, 6 between 4 and 8, none between 1 and 2. Points inside the range spread the
    design along the size axis, which is what separates the size exponent from the length
    exponent.
    """
    pairs = zip(knobs, knobs[1:], strict=False)
    mids = {round(math.sqrt(a * b)) for a, b in pairs}
    return sorted(m for m in mids if m not in knobs)


def proposed_cells(config, setting: tuple, position: dict) -> list:
    """Cells one step beyond the sweep's grid of this setting (``--propose``).

    Every (knob, length, target sequence) over the sweep's knobs, the sizes between them
    (:func:`between`) and twice the largest, its lengths and twice the longest, and its
    target sequences and the next unused one, that the sweep does not hold, at its first
    init seed and rank (a carrier's knob is in its spec: ``kv:{m}@27``).
    """
    import dataclasses

    mine = [
        k
        for k in position
        if k.method == "sft"
        and (k.model, k.task, k.random_ratio, carrier_of(k.modules)[0]) == setting
    ]
    _, size, template = carrier_of(mine[0].modules)
    knobs = sorted({knob_value(k.modules, k.rank) for k in mine})
    lengths = sorted({k.length for k in mine})
    held = {(knob_value(k.modules, k.rank), k.length, k.data_seed) for k in mine}
    sequences = sorted({k.data_seed for k in mine})
    out = []
    for knob in sorted({*knobs, *between(knobs), 2 * knobs[-1]}):
        for length in [*lengths, 2 * lengths[-1]]:
            for d in [*sequences, sequences[-1] + 1]:
                if (knob, length, d) in held:
                    continue
                change = dict(length=length, data_seed=d)
                if size == "rank":
                    change["rank"] = int(knob)
                else:
                    change["modules"] = template.format(int(knob))
                out.append(dataclasses.replace(mine[0], **change))
    return out


def order_setting(args, ds, config, setting: tuple, keys: list, position: dict, rate, priors):
    """Print the order of one setting's pending cells (and, with --propose, cells to add)."""
    model, task, rr, carrier = setting
    size = carrier_of(keys[0].modules)[1]
    header(f"Next cells: {model}, {task}, random ratio {rr:g}, {carrier} ({len(keys)} pending)")
    if size != "rank":
        print(f"sized by {size} (shown in the rank column)")
    done = setting_cells(ds, model, task, rr, carrier)
    before_us = [(path, setting_cells(p, model, task, rr, carrier)) for path, p in priors]
    known = pd.concat([done, *(cells for _, cells in before_us)])
    got = given_theta(args.theta) or estimate(done, before_us)
    if got is None:
        print("skipped: neither the data nor a prior identify the law here; give --theta.\n")
        return
    theta, sigma, source = got
    print(f"law estimate from {source}: " + ", ".join(f"{k}={v:.4g}" for k, v in theta.items()))
    print(f"per-cell sigma {sigma:.3g} nats; speed {1e-9 / rate:.1f} GFLOP/s per worker\n")
    extra = proposed_cells(config, setting, position) if args.propose else []
    located = [(position[k], k) for k in keys] + [(np.nan, k) for k in extra]
    before = float(known["loss_before"].mean())
    memorized = memorized_points(known)
    cand = candidates(located, config, args.out, rate, theta, before, memorized, args.margin)
    cand.insert(1, "in_sweep", [not math.isnan(p) for p, _ in located])
    used = done[done["loss_after"] > LN2]
    cluster = "data_seed" if "data_seed" in used.columns else None  # one sequence: none
    criterion = args.criterion if cluster else "variance"
    kw = dict(cost="hours", targets=("alpha", "beta"), cluster=cluster, criterion=criterion)
    greedy = lawfit.next_cells("power_law", theta, sigma, used, cand, **kw)
    in_sweep = cand[cand["in_sweep"]]
    given = lawfit.next_cells("power_law", theta, sigma, used, in_sweep, greedy=False, **kw)
    greedy["cum_hours"] = greedy["hours"].cumsum()
    print(f"finished cells in the fit: {len(used)} (+{len(done) - len(used)} memorized)")
    now = standard_errors_now(used, theta, sigma)
    print(f"standard errors now: {describe_now(now)}")
    what = "pending and proposed (in_sweep False)" if extra else "pending"
    print(f"{what} cells in the order of lawfit.next_cells (first {args.top}):")
    shown = [c for c in SHOW if c in greedy] + (["in_sweep"] if extra else [])
    print(render(greedy[shown].head(args.top), args.markdown))
    print("\nstandard errors after the first N single-core hours, by order:")
    print(render(compare_orders(greedy, given, now), args.markdown) + "\n")


def render(frame: pd.DataFrame, as_markdown: bool) -> str:
    """A table as Markdown or as plain text."""
    return markdown(frame) if as_markdown else frame.to_string(index=False)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--sweep", default=SWEEP, help="sweep config (default: law_cpu_converged)")
    ap.add_argument(
        "--criterion",
        choices=["variance", "cluster_width"],
        default="variance",
        help="what each pick lowers per hour: var(alpha) + var(beta) (default), or their "
        "squared cluster-robust half-widths, which also values spreading them over the "
        "target sequences (lawfit.next_cells)",
    )
    ap.add_argument("--out", default=CELLS, help="the sweep's cell folder (pending cells)")
    ap.add_argument(
        "--prior",
        nargs="+",
        default=PRIORS,
        help="earlier datasets of the setting: the first whose fit identifies the law stands "
        "in for it; all of them say where cells memorized (default: the shipped dataset, "
        "then the first law sweep)",
    )
    ap.add_argument(
        "--theta",
        help="the law's parameters and sigma instead of a fit, e.g. "
        "C=100,alpha=0.6,beta=0.5,b=0,sigma=0.2",
    )
    ap.add_argument(
        "--margin",
        type=float,
        default=1.0,
        help="nats above ln 2 within which a predicted loss_after counts as memorized "
        "(default 1: the shipped prior's 600-step budget leaves dL 8-14 %% short)",
    )
    ap.add_argument(
        "--share-cells-with",
        nargs="+",
        default=[],
        metavar="DIR",
        help="other sweep directories whose finished cells collect run --share-cells-with "
        "copies: they are not pending here",
    )
    ap.add_argument(
        "--propose",
        action="store_true",
        help="also order cells one step beyond the sweep's grid (its sizes, the sizes between "
        "them and twice the largest, its lengths and twice the longest, its target sequences "
        "and the next unused one), marked in_sweep False: what to add to the sweep when its "
        "own cells cannot pin the law down",
    )
    ap.add_argument("--top", type=int, default=15, help="rows of the order to print")
    ap.add_argument("--markdown", action="store_true", help="print tables as Markdown")
    args = ap.parse_args()
    from _common import load

    from collect.config import load_config
    from collect.cost import seconds_per_flop
    from collect.sharing import not_finished_elsewhere
    from collect.sweep import pending_cells

    ds = load(args)
    config = load_config(args.sweep)
    position = {k: i + 1 for i, k in enumerate(config.cells())}
    pending = [k for k in pending_cells(config, args.out) if k.method == "sft"]
    pending, copied = not_finished_elsewhere(config, pending, args.out, args.share_cells_with)
    if copied:
        print(f"{copied} pending cell(s) finished in {', '.join(args.share_cells_with)}: copied")
    rate = float(np.median(seconds_per_flop(ds)))
    priors = [(path, lawfit.data.open_dataset(path)) for path in args.prior]
    groups: dict[tuple, list] = {}
    for k in pending:
        groups.setdefault((k.model, k.task, k.random_ratio, carrier_of(k.modules)[0]), []).append(k)
    for setting, keys in groups.items():
        order_setting(args, ds, config, setting, keys, position, rate, priors)


if __name__ == "__main__":
    main()
