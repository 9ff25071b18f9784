"""Laws are parsed with `ast` against a whitelist, never executed, and the same parsed law gives
the same numbers on torch, JAX and NumPy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activescope.engine.errors import SpecError
from activescope.models.law import jax_ops, numpy_ops, parse_law, parse_prior, torch_ops

PRIORS = {"a": "Normal(1, 2)", "t": "Uniform(0, 10)", "s": "Gamma(2, 0.05)"}
LAW = "a * minimum(x, t) + where(x > t, log(1 + x / s), 0) - sqrt(abs(y)) ** 2 / -2"


def test_one_law_gives_the_same_values_in_torch_jax_and_numpy():
    import jax.numpy as jnp

    law = parse_law(LAW, PRIORS, ["x", "y"])
    ops_jax = jax_ops()  # switches JAX to float64
    assert law.descriptors == ("x", "y") and set(law.parameters) == {"a", "t", "s"}
    x, y = np.linspace(0, 12, 25), np.linspace(-3, 3, 25)
    params = {"a": 0.7, "t": 6.0, "s": 40.0}
    expected = 0.7 * np.minimum(x, 6) + np.where(x > 6, np.log(1 + x / 40), 0) + np.abs(y) / 2
    values_np = law(numpy_ops(), {"x": x, "y": y} | params)
    values_torch = law(torch_ops(), {"x": torch.tensor(x), "y": torch.tensor(y)} | {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()})
    values_jax = law(ops_jax, {"x": jnp.asarray(x), "y": jnp.asarray(y)} | params)
    np.testing.assert_allclose(values_np, expected, rtol=1e-12)
    np.testing.assert_allclose(values_torch.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(values_jax), expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("law", "fragment"),
    [
        ("a * (x +", "does not parse"),
        ("__import__('os').system('true')", "is not allowed"),
        ("open('x')", "unknown function 'open'"),
        ("x.real * a", "'x.real' is not allowed"),
        ("(lambda: a)()", "is not allowed"),
        ("a * z", "'z' is neither a descriptor (x) nor a parameter with a prior (a)"),
        ("a * x + b", "'b' is neither a descriptor"),
        ("exp * x", "'exp' is a function"),
    ],
)
def test_bad_laws_are_refused_with_the_reason(law, fragment):
    with pytest.raises(SpecError) as err:
        parse_law(law, {"a": "Normal(0, 1)"}, ["x"])
    assert fragment in str(err.value)


def test_priors_parse_and_bad_priors_are_refused():
    assert parse_prior("Normal(-4, 2)", "E").args == (-4.0, 2.0)
    assert parse_prior("Gamma(2, 0.05)", "s").center == pytest.approx(40.0)
    for text, fragment in [("Cauchy(0, 1)", "is not a prior"), ("Normal(0)", "takes 2"), ("Normal(0, -1)", "invalid"),
                           ("Uniform(2, 1)", "invalid"), ("Normal(a, 1)", "must be numbers")]:  # fmt: skip
        with pytest.raises(SpecError, match="prior of 'E'") as err:
            parse_prior(text, "E")
        assert fragment in str(err.value)
    with pytest.raises(SpecError, match="prior given for 'k', which the law does not use"):
        parse_law("a * x", {"a": "Normal(0, 1)", "k": "Normal(0, 1)"}, ["x"])
