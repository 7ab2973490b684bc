"""The model bound to a design: values, Jacobian and linear basis, batched."""

from __future__ import annotations

import numpy as np


class Model:
    """A form bound to a design (inputs of one data set)."""

    def __init__(self, func, jac, X, names, lin, lower, upper):
        self.func = func
        self.jac = jac
        self.X = tuple(np.asarray(x, float) for x in X)
        self.n = self.X[0].shape[0]
        self.names = tuple(names)
        self.k = len(self.names)
        self.lin = np.array([self.names.index(p) for p in lin], int)
        self.nl = np.array([j for j in range(self.k) if j not in set(self.lin.tolist())], int)
        self.lower = np.asarray(lower, float)
        self.upper = np.asarray(upper, float)

    def with_inputs(self, X):
        """Same form and bounds on another design."""
        return Model(
            self.func,
            self.jac,
            X,
            self.names,
            [self.names[j] for j in self.lin],
            self.lower,
            self.upper,
        )

    def _kw(self, theta):
        return {nm: theta[:, j : j + 1] for j, nm in enumerate(self.names)}

    def f(self, theta):
        theta = np.atleast_2d(theta)
        with np.errstate(all="ignore"):
            out = self.func(*self.X, **self._kw(theta))
        return np.broadcast_to(np.asarray(out, float), (theta.shape[0], self.n))

    def jacobian(self, theta, f0=None):
        """d m / d theta, shape (R, n, k)."""
        theta = np.atleast_2d(theta)
        R = theta.shape[0]
        J = np.empty((R, self.n, self.k))
        if self.jac is not None:
            with np.errstate(all="ignore"):
                cols = self.jac(*self.X, **self._kw(theta))
            for j, c in enumerate(cols):
                J[:, :, j] = np.broadcast_to(np.asarray(c, float), (R, self.n))
            return J
        if f0 is None:
            f0 = self.f(theta)
        for j in range(self.k):
            th = theta.copy()
            if j in self.lin:
                h = np.ones(R)
            else:
                h = 1.5e-8 * np.maximum(np.abs(theta[:, j]), 1.0)
                flip = theta[:, j] + h > self.upper[j]
                h = np.where(flip, -h, h)
            th[:, j] += h
            J[:, :, j] = (self.f(th) - f0) / h[:, None]
        return J

    def basis(self, theta):
        """Offset g0 (R, n) and linear basis Phi (R, n, p) at theta's nonlinear part."""
        theta = np.atleast_2d(theta)
        R = theta.shape[0]
        p = self.lin.size
        if p == 0:
            return self.f(theta), np.empty((R, self.n, 0))
        th = theta.copy()
        th[:, self.lin] = 0.0
        if self.jac is not None:
            g0 = np.array(self.f(th))
            Phi = self.jacobian(th)[:, :, self.lin]
            return g0, Phi
        g0 = np.array(self.f(th))
        Phi = np.empty((R, self.n, p))
        for a, j in enumerate(self.lin):
            t = th.copy()
            t[:, j] = 1.0
            Phi[:, :, a] = self.f(t) - g0
        return g0, Phi
