"""Quadrature rules: tables, exactness degrees and convergence orders against exact integrals."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxig

ALL_RULES = (
    jaxig.RiemannLeft(),
    jaxig.RiemannRight(),
    jaxig.RiemannMidpoint(),
    jaxig.Trapezoid(),
    jaxig.Simpson(),
    jaxig.GaussLegendre(),
)


def _integrate_monomial(rule, n, p):
    alphas, weights = rule.nodes_and_weights(n)
    return float(np.sum(weights * alphas**p))


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize("n", [3, 4, 5, 16, 51])
def test_table_is_a_partition_of_unity_on_unit_interval(rule, n):
    alphas, weights = rule.nodes_and_weights(n)
    assert alphas.shape == weights.shape == (n,)
    assert np.all((alphas >= 0) & (alphas <= 1))
    assert np.all(weights > 0)
    assert abs(weights.sum() - 1.0) < 1e-14


def test_trapezoid_integrates_constants_exactly_unlike_captum():
    # Captum's riemann_trapezoid uses weights 1/n with halved ends: they sum to (n-1)/n.
    n = 10
    _, weights = jaxig.Trapezoid().nodes_and_weights(n)
    captum_like = np.full(n, 1.0 / n)
    captum_like[[0, -1]] *= 0.5
    assert abs(weights.sum() - 1.0) < 1e-15
    assert abs(captum_like.sum() - (n - 1) / n) < 1e-15


# (rule, highest polynomial degree integrated exactly for a given n)
EXACT_DEGREE = (
    (jaxig.RiemannLeft(), lambda n: 0),
    (jaxig.RiemannRight(), lambda n: 0),
    (jaxig.RiemannMidpoint(), lambda n: 1),
    (jaxig.Trapezoid(), lambda n: 1),
    (jaxig.Simpson(), lambda n: 3),
    (jaxig.GaussLegendre(), lambda n: 2 * n - 1),
)


@pytest.mark.parametrize("rule,degree", EXACT_DEGREE, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("n", [4, 5, 8])
def test_exact_degree_and_not_beyond(rule, degree, n):
    d = degree(n)
    for p in range(d + 1):
        assert _integrate_monomial(rule, n, p) == pytest.approx(1.0 / (p + 1), abs=1e-14)
    # the next degree is not integrated exactly: the exactness claim is sharp
    assert abs(_integrate_monomial(rule, n, d + 1) - 1.0 / (d + 2)) > 1e-12


@pytest.mark.parametrize(
    "rule,order",
    [
        (jaxig.RiemannLeft(), 1),
        (jaxig.RiemannRight(), 1),
        (jaxig.RiemannMidpoint(), 2),
        (jaxig.Trapezoid(), 2),
        (jaxig.Simpson(), 4),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, int) else str(v),
)
@pytest.mark.parametrize("parity", [0, 1])
def test_convergence_order_on_smooth_integrand(rule, order, parity):
    # integral_0^1 exp(a) da = e - 1; doubling the intervals divides the error by 2**order.
    def err(n):
        a, w = rule.nodes_and_weights(n)
        return abs(np.sum(w * np.exp(a)) - (np.e - 1.0))

    n = 17 + parity  # odd and even node counts (Simpson's 3/8 variant for even)
    m = 2 * (n - 1) + 1 + parity if isinstance(rule, (jaxig.Trapezoid, jaxig.Simpson)) else 2 * n
    ratio = err(n) / err(m)
    assert 2**order * 0.7 < ratio < 2**order * 1.4


@given(n=st.integers(1, 12), coefs=st.lists(st.floats(-3, 3), min_size=1, max_size=24))
@settings(max_examples=60, deadline=None)
def test_gauss_legendre_exact_for_any_polynomial_up_to_degree_2n_minus_1(n, coefs):
    coefs = np.asarray(coefs[: 2 * n])
    a, w = jaxig.GaussLegendre().nodes_and_weights(n)
    approx = np.sum(w * np.polyval(coefs[::-1], a))
    exact = sum(c / (p + 1) for p, c in enumerate(coefs))
    assert approx == pytest.approx(exact, abs=1e-11 * max(1.0, np.abs(coefs).sum()))


def test_gauss_legendre_matches_captum_table():
    # Captum: alphas = 0.5 * (1 + t), step sizes = 0.5 * w, t, w = numpy leggauss(n).
    t, v = np.polynomial.legendre.leggauss(7)
    a, w = jaxig.GaussLegendre().nodes_and_weights(7)
    np.testing.assert_allclose(a, 0.5 * (1 + t), rtol=0, atol=0)
    np.testing.assert_allclose(w, 0.5 * v, rtol=0, atol=0)


@pytest.mark.parametrize(
    "rule,bad_n,needed",
    [(jaxig.GaussLegendre(), 0, 1), (jaxig.Trapezoid(), 1, 2), (jaxig.Simpson(), 2, 3), (jaxig.RiemannLeft(), -3, 1)],
)
def test_too_few_steps_is_a_clear_error(rule, bad_n, needed):
    with pytest.raises(ValueError, match=rf"n_steps >= {needed}, got n_steps={bad_n}"):
        rule.nodes_and_weights(bad_n)


@pytest.mark.parametrize("bad_n", [2.5, "50", True, None])
def test_non_int_steps_is_a_type_error(bad_n):
    with pytest.raises(TypeError, match="n_steps must be a Python int"):
        jaxig.GaussLegendre().check_steps(bad_n)


class _ClenshawCurtisLike(jaxig.AbstractRule):
    """A user's own rule: Newton–Cotes with 3 nodes (Simpson on one interval), any n >= 3 ignored."""

    min_steps = 3

    def nodes_and_weights(self, n):
        self.check_steps(n)
        return np.array([0.0, 0.5, 1.0]), np.array([1.0, 4.0, 1.0]) / 6.0


def test_a_users_rule_plugs_in_without_other_changes():
    w = jnp.array([1.0, -2.0, 0.5])
    f = lambda x: (x @ w) ** 3  # integrand along the line is quadratic in alpha: Simpson is exact
    x = jnp.array([[0.3, 0.1, -0.4]])
    attr = jaxig.integrated_gradients(f, x, rule=_ClenshawCurtisLike(), n_steps=3)
    u = x @ w
    expected = w * x * (u**3) / u  # single-index closed form with a zero baseline
    np.testing.assert_allclose(attr, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="n_steps >= 3"):
        jaxig.integrated_gradients(f, x, rule=_ClenshawCurtisLike(), n_steps=2)


def test_rules_of_different_classes_do_not_share_a_compiled_program():
    # Field-less rules have treedefs that jax compares equal; the cache must still tell them apart.
    f = lambda x: jnp.exp(x).sum(1)
    x = jnp.ones((1, 1))
    results = {type(r).__name__: float(jaxig.integrated_gradients(f, x, rule=r, n_steps=4)[0, 0]) for r in ALL_RULES}
    exact = np.e - 1.0
    assert results["RiemannLeft"] < exact < results["RiemannRight"]
    assert len(set(results.values())) == len(ALL_RULES)
