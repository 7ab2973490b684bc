"""The loss (l2 or Huber), its IRLS weights, the fit space and the objective."""

from __future__ import annotations

import numpy as np

_TINY = 1e-300


def rho(r, loss, delta):
    if loss == "l2":
        return r * r
    a = np.abs(r)
    return np.where(a <= delta, r * r, 2.0 * delta * a - delta * delta)


def irls_weights(r, loss, delta):
    if loss == "l2":
        return np.ones_like(r)
    a = np.abs(r)
    return np.where(a <= delta, 1.0, delta / np.maximum(a, _TINY))


def transform(f, space):
    if space == "log":
        with np.errstate(all="ignore"):
            return np.where(f > 0, np.log(np.where(f > 0, f, 1.0)), np.nan)
    return f


def objective(model, theta, Z, W, space, loss, delta):
    m = transform(model.f(theta), space)
    r = Z - m
    s = np.sum(W * rho(r, loss, delta), axis=1)
    return np.where(np.isfinite(s), s, np.inf), r
