"""Profile-likelihood intervals (an independent second CI method to the bootstrap).

For parameter j the profile is ``S_j(v) = min over the others of S(theta)`` with
``theta_j = v``. All values v of one parameter are minimised together as a batch.
The interval is ``{v : F(v) <= F_{1, n-k}(level)}`` with the F statistic

    F(v) = (S_j(v) - S_hat) / (S_hat / (n - k)),

the exact small-sample likelihood-ratio test for a linear Gaussian model with
unknown variance (Venzon & Moolgavkar 1988; Bates & Watts 1988, ch. 6). For large n
it equals the chi-square_1 likelihood-ratio cutoff. With the Huber loss S is the
Huber objective and the same cutoff is used (an approximation; prefer the bootstrap).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from lawfit import _varpro as vp

__all__ = ["profile_curves", "profile_interval"]


def profile_curves(
    model, theta_hat, cov, Y, W, *, space, loss, delta, dof, s_hat, n_values=25, max_level=0.999
):
    """Profile every parameter on a grid reaching the ``max_level`` cutoff if possible.

    Returns a dict ``name -> {"values": array, "F": array, "converged": array}``.
    """
    k = model.k
    out = {}
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    cut = stats.f.ppf(max_level, 1, dof)
    for j, name in enumerate(model.names):
        s = se[j] if np.isfinite(se[j]) and se[j] > 0 else 0.1 * max(abs(theta_hat[j]), 1.0)
        width = 1.2 * np.sqrt(cut) * s
        vals_all, F_all, conv_all = [], [], []
        for _ in range(4):
            vals = np.linspace(theta_hat[j] - width, theta_hat[j] + width, n_values)
            vals = np.clip(vals, model.lower[j], model.upper[j])
            vals = np.unique(np.concatenate([vals, [theta_hat[j]]]))
            start = np.tile(theta_hat, (vals.size, 1))
            if np.isfinite(cov).all() and cov[j, j] > 0:
                start += np.outer(vals - theta_hat[j], cov[:, j] / cov[j, j])
            start[:, j] = vals
            start = np.clip(start, model.lower, model.upper)
            fixed = np.zeros(k, bool)
            fixed[j] = True
            th, obj, conv, _ = vp.lm(
                model, start, Y, W, space=space, loss=loss, delta=delta, mode="full", fixed=fixed
            )
            F = (obj - s_hat) / (s_hat / dof)
            vals_all, F_all, conv_all = vals, F, conv
            lo_ok = F[0] >= cut or vals[0] <= model.lower[j]
            hi_ok = F[-1] >= cut or vals[-1] >= model.upper[j]
            if lo_ok and hi_ok:
                break
            width *= 3.0
        out[name] = {
            "values": np.asarray(vals_all),
            "F": np.asarray(F_all, float),
            "converged": np.asarray(conv_all),
        }
    return out


def profile_interval(curve, estimate, level, dof, lower=-np.inf, upper=np.inf):
    """Interval from one profile curve; ``(low, high, closed_low, closed_high)``.

    An end that the profile never crosses within the explored range (flat profile)
    is returned as the bound if the range hit the bound, else as NaN, and reported
    as not closed.
    """
    cut = stats.f.ppf(level, 1, dof)
    v, F = curve["values"], np.maximum(curve["F"], 0.0)  # < 0 only by rounding (or flagged)
    ok = curve["converged"] & np.isfinite(F)
    v, F = v[ok], F[ok]
    res = []
    for side in (-1, 1):
        sel = v < estimate if side < 0 else v > estimate
        vs, Fs = v[sel], F[sel]
        order = np.argsort(np.abs(vs - estimate))
        vs, Fs = vs[order], Fs[order]
        prev_v, prev_F = estimate, 0.0
        found = None
        for vv, ff in zip(vs, Fs, strict=True):
            if ff >= cut:
                # interpolate on the signed root scale (nearly linear in v)
                r0, r1 = np.sqrt(prev_F), np.sqrt(ff)
                t = (np.sqrt(cut) - r0) / (r1 - r0) if r1 > r0 else 1.0
                found = prev_v + t * (vv - prev_v)
                break
            prev_v, prev_F = vv, ff
        if found is None:
            bound = lower if side < 0 else upper
            edge = vs[-1] if vs.size else estimate
            found = bound if np.isfinite(bound) and np.isclose(edge, bound) else np.nan
            res.append((found, False))
        else:
            res.append((found, True))
    return res[0][0], res[1][0], res[0][1], res[1][1]
