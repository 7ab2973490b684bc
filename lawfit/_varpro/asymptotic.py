"""The asymptotic covariance at an estimate (Wald; sandwich for Huber)."""

from __future__ import annotations

import numpy as np

from lawfit._varpro.loss import transform


def covariance(model, theta, Y, W, space, loss, delta, dof):
    """Asymptotic covariance at theta (1, k) and sigma^2 (fit space).

    l2: s^2 (J' W J)^-1 with s^2 = S / dof. huber: sandwich A^-1 B A^-1 with
    A = J' W psi'(r) J, B = J' W psi(r)^2 J, scaled by n / dof.
    """
    f = np.array(model.f(theta))
    J = model.jacobian(theta, f)[0]
    if space == "log":
        J = J / f[0][:, None]
    with np.errstate(all="ignore"):
        Z = np.log(Y) if space == "log" else Y
    r = (np.broadcast_to(Z, f.shape) - transform(f, space))[0]
    w = np.broadcast_to(W, f.shape)[0]
    if loss == "l2":
        s2 = float(np.sum(w * r * r) / dof)
        A = (J * w[:, None]).T @ J
        cov = s2 * np.linalg.pinv(A)
    else:
        inside = np.abs(r) <= delta
        psi = np.clip(r, -delta, delta)
        A = (J * (w * inside)[:, None]).T @ J
        B = (J * (w * psi * psi)[:, None]).T @ J
        Ai = np.linalg.pinv(A)
        n = float(np.sum(w))
        cov = Ai @ B @ Ai * n / dof
        s2 = float(np.sum(w * r * r) / dof)
    return cov, s2, r
