import dataclasses

import numpy as np
import pytest

import lawfit
from lawfit.errors import LawfitError
from lawfit.forms import Form
from lawfit.testing import synthetic_dataset


def test_power_law_spec():
    f = lawfit.get_form("power_law")
    assert isinstance(f, Form)
    assert f.params == ("C", "alpha", "beta", "b")
    assert f.inputs == ("rank", "length")
    assert f.linear == ("C", "b")
    assert "power_law" in lawfit.available_forms()
    assert f(np.array([4.0]), np.array([16.0]), C=2.0, alpha=0.5, beta=0.5, b=1.0) == 2.0
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        f.name = "x"  # frozen
    assert lawfit.get_form("power_law").name == "power_law"


def test_power_law_jac_matches_numeric():
    f = lawfit.get_form("power_law")
    x, ell = np.array([1.0, 8.0, 64.0]), np.array([100.0, 300.0, 5000.0])
    p = {"C": 1.3, "alpha": 0.6, "beta": 0.4, "b": 0.1}
    jac = f.jac(x, ell, **p)
    for j, name in enumerate(f.params):
        h = 1e-6
        q = dict(p)
        q[name] += h
        num = (f.func(x, ell, **q) - f.func(x, ell, **p)) / h
        assert np.allclose(jac[j], num, rtol=1e-4, atol=1e-6)


def test_register_errors():
    with pytest.raises(LawfitError, match="already registered"):
        lawfit.register_form("power_law", lambda r, ell, *, a: a)
    with pytest.raises(LawfitError, match="no keyword-only parameters"):
        lawfit.register_form("bad1", lambda r, ell, a: a)
    with pytest.raises(LawfitError, match="unknown parameter"):
        lawfit.register_form("bad2", lambda r, ell, *, a: a, linear=("z",))
    with pytest.raises(LawfitError, match="no search range"):
        lawfit.register_form("bad3", lambda r, ell, *, a: r**a)
    with pytest.raises(LawfitError, match="low < high"):
        lawfit.register_form("bad4", lambda r, ell, *, a: r**a, bounds={"a": (1, 0)})


def chinchilla(n_params, length, *, E, A, a, B, b):
    return E + A / n_params**a + B / length**b


def test_chinchilla_form_fit_bootstrap_predict():
    lawfit.register_form(
        "chinchilla_t",
        chinchilla,
        linear=("E", "A", "B"),
        bounds={"a": (0.0, 2.0), "b": (0.0, 2.0)},
        overwrite=True,
        latex=r"E + A N^{-a} + B \ell^{-b}",
    )
    truth = {"E": 0.2, "A": 30.0, "a": 0.5, "B": 8.0, "b": 0.3}
    ds = synthetic_dataset(
        form="chinchilla_t",
        params=truth,
        noise=0.01,
        rng=0,
        ranks=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    )
    res = lawfit.fit(ds, "chinchilla_t", exclude=None, bootstrap=100, rng=0)
    assert res.inputs == ("n_params", "length")
    assert res.params["a"] == pytest.approx(0.5, abs=0.05)
    assert res.params["b"] == pytest.approx(0.3, abs=0.05)
    pred = res.predict(n_params=[5000.0, 1e5], length=512)
    assert {"mean", "low", "high", "extrapolated"} <= set(pred.columns)
    assert (pred["low"] <= pred["mean"]).all() and (pred["mean"] <= pred["high"]).all()


def nolinear(rank, length, *, logC, alpha, beta):
    return np.exp(logC) * rank**alpha * length ** (-beta)


def test_form_without_linear_params_fits_globally():
    lawfit.register_form(
        "nolin_t",
        nolinear,
        bounds={"logC": (-5, 5), "alpha": (-1, 3), "beta": (-1, 3)},
        overwrite=True,
    )
    ds = synthetic_dataset(C=1.0, alpha=0.6, beta=0.5, b=0.0, noise=0.03, rng=1)
    res = lawfit.fit(ds, "nolin_t", exclude=None, bootstrap=50, rng=0)
    assert res.params["alpha"] == pytest.approx(0.6, abs=0.03)
    assert res.params["logC"] == pytest.approx(0.0, abs=0.15)
    base = lawfit.fit(ds, "nolin_t", exclude=None, profile=False)
    other = lawfit.fit(
        ds, "nolin_t", exclude=None, profile=False, p0={"logC": 4.0, "alpha": 2.5, "beta": -0.5}
    )
    assert np.allclose(list(base.params.values()), list(other.params.values()), rtol=1e-6)


def test_form_object_can_be_passed_directly():
    f = lawfit.get_form("power_law")
    ds = synthetic_dataset(rng=2)
    assert lawfit.fit(ds, f, exclude=None, profile=False).form.name == "power_law"


def with_base_loss(rank, length, loss_before, *, C, alpha, beta, d):
    return C * rank**alpha * length ** (-beta) + d * loss_before


def test_form_input_from_a_data_variable():
    lawfit.register_form(
        "with_base_loss_t",
        with_base_loss,
        linear=("C", "d"),
        bounds={"alpha": (-1, 3), "beta": (-1, 3)},
        overwrite=True,
    )
    ds = synthetic_dataset(b=0.0, noise=0.02, noise_model="additive", rng=3)
    res = lawfit.fit(ds, "with_base_loss_t", exclude=None, bootstrap=50, rng=0)
    assert res.inputs == ("rank", "length", "loss_before")
    assert res.params["alpha"] == pytest.approx(0.6, abs=0.05)
    assert abs(res.params["d"]) < 0.05
    p = res.predict(rank=8, length=512, loss_before=4.0)
    assert p["mean"].iloc[0] == pytest.approx(with_base_loss(8.0, 512.0, 4.0, **res.params))
    # the data variable is an input of the law: another loss_before, another prediction
    q = res.predict(rank=8, length=512, loss_before=2.0, warn=False)
    assert p["mean"].iloc[0] - q["mean"].iloc[0] == pytest.approx(2.0 * res.params["d"])


def test_latex_to_text_renders_a_formula_for_terminals():
    from lawfit.forms import latex_to_text

    assert (
        latex_to_text(r"\Delta L = C\, r^{\alpha}\, \ell^{-\beta} + b") == "ΔL = C r^α ℓ^(-β) + b"
    )
    got = latex_to_text(r"\mathrm{A} \cdot \frac{r}{\ell^{2}} + x_{12}")
    assert got == "A · (r)/(ℓ^2) + x_(12)"
    assert latex_to_text("") == ""


@pytest.mark.parametrize("name", lawfit.available_forms())
def test_every_registered_form_has_a_plain_text_law(name):
    f = lawfit.get_form(name)
    assert f.text.startswith("ΔL = ") or not f.latex.startswith(r"\Delta L")
    assert not set(f.text) & set("\\{}$"), f.text


def test_form_text_is_given_or_derived_and_travels_with_the_form():
    from lawfit.forms import form_from_spec

    assert lawfit.get_form("power_law").text == "ΔL = C · r^α · ℓ^(−β) + b"
    derived = lawfit.register_form(
        "chinchilla_text",
        chinchilla,
        linear=("E", "A", "B"),
        bounds={"a": (0.0, 2.0), "b": (0.0, 2.0)},
        overwrite=True,
        latex=r"E + A N^{-a} + B \ell^{-b}",
    )
    assert derived.text == "E + A N^(-a) + B ℓ^(-b)"
    given = lawfit.register_form(
        "chinchilla_text",
        chinchilla,
        linear=("E", "A", "B"),
        bounds={"a": (0.0, 2.0), "b": (0.0, 2.0)},
        overwrite=True,
        latex=r"E + A N^{-a} + B \ell^{-b}",
        text="E + A/N^a + B/ℓ^b",
    )
    assert given.text == "E + A/N^a + B/ℓ^b"
    assert form_from_spec(given.to_spec()).text == given.text
    fixed = given.with_fixed({"E": 0.0})
    assert fixed.text == "E + A/N^a + B/ℓ^b  (E = 0)"
    assert form_from_spec(fixed.to_spec()).text == fixed.text
    bare = lawfit.register_form(
        "no_latex_text", lambda r, ell, *, a: r**a, bounds={"a": (0, 1)}, overwrite=True
    )
    assert bare.text == "no_latex_text"
