"""Alternative scaling forms that :func:`lawfit.compare` ranks against the paper's law.

Importing this module registers them with :func:`lawfit.register_form`:

=========================  ==========================================================
name                       law (ΔL as a function of rank r or parameters N, length ℓ)
=========================  ==========================================================
``power_law``              C r^α ℓ^−β + b (the paper; registered by :mod:`lawfit.forms`)
``power_law_no_offset``    C r^α ℓ^−β (nested in ``power_law``: b = 0)
``ratio``                  C (r/ℓ)^α + b: one variable, the capacity per target token
                           (nested in ``power_law``: β = α). With a free exponent γ on ℓ,
                           ``(r/ℓ^γ)^α`` is only a reparametrisation of ``power_law``.
``ratio_no_offset``        C (r/ℓ)^γ: the one-variable law without offset (2 parameters;
                           nested in ``ratio``, ``power_law_no_offset`` and ``power_law``)
``saturating``             L₀ (1 − exp(−e^{c} r^α ℓ^−β)) + b with L₀ the data's
                           ``loss_before``: ΔL can never exceed what there is to learn
``additive``               E + A r^a + B ℓ^−b': Chinchilla-style, separable in r and ℓ
``power_law_nparams``      C N^α ℓ^−β + b with N = ``n_params``: pools adapters placed on
                           different modules (or models) into one law
``broken_power_law``       C r^α₁ (1 + r/r_b)^(α₂−α₁) ℓ^−β + b: the rank exponent
                           bends from α₁ to α₂ around r_b = e^{log_rb}
=========================  ==========================================================

Every function is plain numpy with positional inputs and keyword-only parameters, and
broadcasts parameters of shape (R, 1) against inputs of shape (n,).
"""

from __future__ import annotations

import numpy as np

from lawfit.forms import available_forms, get_form, register_form

__all__ = ["BUILTIN_CANDIDATES", "NESTED"]

#: Default candidates of :func:`lawfit.compare`, in order.
BUILTIN_CANDIDATES = (
    "power_law",
    "power_law_no_offset",
    "ratio",
    "ratio_no_offset",
    "saturating",
    "additive",
    "power_law_nparams",
    "broken_power_law",
)

#: Nested pairs (restricted, general, restriction, valid) for LR tests. ``valid`` False:
#: nested, but Wilks' chi-square does not apply (no p-value). Pairs not listed are
#: treated as non-nested (Vuong test).
NESTED = (
    ("power_law_no_offset", "power_law", "b = 0", True),
    ("ratio", "power_law", "beta = alpha", True),
    ("ratio_no_offset", "ratio", "b = 0", True),
    ("ratio_no_offset", "power_law_no_offset", "beta = alpha", True),
    ("ratio_no_offset", "power_law", "beta = alpha, b = 0", True),
    # r_b is not identified under alpha2 = alpha1: Wilks' theorem does not apply
    ("power_law", "broken_power_law", "alpha2 = alpha1", False),
    ("power_law_no_offset", "broken_power_law", "alpha2 = alpha1, b = 0", False),
    ("ratio", "broken_power_law", "alpha2 = alpha1, beta = alpha1", False),
)

_EXP = (-2.0, 4.0)


def _no_offset(rank, length, *, C, alpha, beta):
    return C * np.exp(alpha * np.log(rank) - beta * np.log(length))


def _ratio(rank, length, *, C, alpha, b):
    return C * np.exp(alpha * (np.log(rank) - np.log(length))) + b


def _ratio_no_offset(rank, length, *, C, gamma):
    return C * np.exp(gamma * (np.log(rank) - np.log(length)))


def _saturating(rank, length, loss_before, *, c, alpha, beta, b):
    z = np.exp(np.clip(c + alpha * np.log(rank) - beta * np.log(length), -700, 700))
    return loss_before * (-np.expm1(-z)) + b


def _additive(rank, length, *, E, A, a, B, bl):
    return E + A * np.exp(a * np.log(rank)) + B * np.exp(-bl * np.log(length))


def _nparams(n_params, length, *, C, alpha, beta, b):
    return C * np.exp(alpha * np.log(n_params) - beta * np.log(length)) + b


def _broken(rank, length, *, C, alpha1, alpha2, log_rb, beta, b):
    lr = np.log(rank)
    bend = (alpha2 - alpha1) * np.logaddexp(0.0, lr - log_rb)
    return C * np.exp(alpha1 * lr + bend - beta * np.log(length)) + b


def _register():
    have = set(available_forms())
    specs = [
        dict(
            name="power_law_no_offset",
            func=_no_offset,
            inputs=("rank", "length"),
            bounds={"alpha": _EXP, "beta": _EXP},
            linear=("C",),
            latex=r"\Delta L = C\, r^{\alpha}\, \ell^{-\beta}",
            text="ΔL = C · r^α · ℓ^(−β)",
            description="paper's law without offset: C * r**alpha * length**(-beta)",
        ),
        dict(
            name="ratio",
            func=_ratio,
            inputs=("rank", "length"),
            bounds={"alpha": _EXP},
            linear=("C", "b"),
            latex=r"\Delta L = C\, (r/\ell)^{\alpha} + b",
            text="ΔL = C · (r/ℓ)^α + b",
            description="one variable, capacity per token: C * (rank/length)**alpha + b",
        ),
        dict(
            name="ratio_no_offset",
            func=_ratio_no_offset,
            inputs=("rank", "length"),
            bounds={"gamma": _EXP},
            linear=("C",),
            latex=r"\Delta L = C\, (r/\ell)^{\gamma}",
            text="ΔL = C · (r/ℓ)^γ",
            description="one variable, no offset: C * (rank/length)**gamma",
        ),
        dict(
            name="saturating",
            func=_saturating,
            inputs=("rank", "length", "loss_before"),
            bounds={"c": (-30.0, 30.0), "alpha": _EXP, "beta": _EXP},
            search={"c": (-8, 8)},
            linear=("b",),
            latex=r"\Delta L = L_0\,(1 - e^{-e^{c} r^{\alpha} \ell^{-\beta}}) + b",
            text="ΔL = L₀ · (1 − exp(−e^c · r^α · ℓ^(−β))) + b",
            description="saturates at loss_before: L0 * (1 - exp(-e^c r^alpha l^-beta)) + b",
        ),
        dict(
            name="additive",
            func=_additive,
            inputs=("rank", "length"),
            bounds={"a": (0.01, 2.0), "bl": (0.01, 3.0)},
            linear=("E", "A", "B"),
            latex=r"\Delta L = E + A\, r^{a} + B\, \ell^{-b'}",
            text="ΔL = E + A · r^a + B · ℓ^(−b')",
            description="Chinchilla-style additive: E + A * rank**a + B * length**(-bl)",
        ),
        dict(
            name="power_law_nparams",
            func=_nparams,
            inputs=("n_params", "length"),
            bounds={"alpha": _EXP, "beta": _EXP},
            linear=("C", "b"),
            latex=r"\Delta L = C\, N^{\alpha}\, \ell^{-\beta} + b",
            text="ΔL = C · N^α · ℓ^(−β) + b",
            description="law in trainable parameters N (pools modules/models)",
        ),
        dict(
            name="broken_power_law",
            func=_broken,
            inputs=("rank", "length"),
            bounds={"alpha1": _EXP, "alpha2": _EXP, "log_rb": (-1.0, 8.0), "beta": _EXP},
            linear=("C", "b"),
            latex=(
                r"\Delta L = C\, r^{\alpha_1} (1 + r/r_b)^{\alpha_2-\alpha_1}"
                r"\, \ell^{-\beta} + b"
            ),
            text="ΔL = C · r^α₁ · (1 + r/r_b)^(α₂ − α₁) · ℓ^(−β) + b",
            description="rank exponent bends from alpha1 to alpha2 around r_b = exp(log_rb)",
        ),
    ]
    for spec in specs:
        if spec["name"] not in have:
            register_form(**spec)


_register()
_ = get_form
