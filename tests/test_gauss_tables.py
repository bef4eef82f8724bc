"""Gauss–Legendre and Gauss–Lobatto tables: accuracy against independent references, exactness,
symmetry, speed at large n, caching; and the table checks of ``AbstractRule.integrate``."""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import struct
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxig
from jaxig import GaussLegendre, GaussLobatto
from jaxig._quadrature import gauss

RULES = (GaussLegendre(), GaussLobatto())
DEGREE = {GaussLegendre: lambda n: 2 * n - 1, GaussLobatto: lambda n: 2 * n - 3}
_name = lambda r: type(r).__name__


def _old_lobatto(n):
    """The previous Lobatto table (Golub–Welsch eigenvalues, recurrence weights), as a reference."""
    m = n - 2
    k = np.arange(1, m, dtype=np.float64)
    off = np.sqrt(k * (k + 2) / ((2 * k + 1) * (2 * k + 3)))
    inner = scipy.linalg.eigvalsh_tridiagonal(np.zeros(m), off) if m > 1 else np.zeros(m)
    t = np.concatenate([[-1.0], np.sort(inner), [1.0]])
    p0, p1 = np.ones_like(t), t
    for j in range(1, n - 1):
        p0, p1 = p1, ((2 * j + 1) * t * p1 - j * p0) / (j + 1)
    w = 1.0 / (n * (n - 1) * p1**2)
    return (t + 1) / 2, w


@pytest.mark.parametrize("lo", range(1, 151, 30))
def test_newton_table_matches_leggauss_for_n_up_to_150(lo):
    for n in range(lo, lo + 30):
        a, w = gauss._gauss_legendre_newton(n)
        t, v = np.polynomial.legendre.leggauss(n)
        np.testing.assert_allclose(2 * a - 1, t, rtol=0, atol=1e-14, err_msg=f"n={n}")
        # leggauss's nodes are accurate to ~1e-16 absolute, so its smallest weights (next to the
        # endpoints) only to ~1e-16 / theta^2 relative (1e-11 at n=150): hence the absolute floor.
        np.testing.assert_allclose(w, v / 2, rtol=1e-13, atol=1e-14, err_msg=f"n={n}")


def test_gauss_legendre_keeps_captums_table_up_to_100_and_switches_above():
    for n in (7, 50, 100):
        t, v = np.polynomial.legendre.leggauss(n)
        a, w = GaussLegendre().nodes_and_weights(n)
        assert np.array_equal(a, (t + 1) / 2) and np.array_equal(w, v / 2)
    a, w = GaussLegendre().nodes_and_weights(101)
    a_new, w_new = gauss._gauss_legendre_newton(101)
    assert np.array_equal(a, a_new) and np.array_equal(w, w_new)


def _mp_reference(n, alpha, lobatto):
    """Returns (alpha, weight) polished by Newton in 30-digit arithmetic from a float64 start."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    m = n - 1 if lobatto else n

    def legendre(x):  # (P_m, P_m', P_m'') by the recurrence and Legendre's equation
        p0, p1 = mpmath.mpf(1), x
        for k in range(1, m):
            p0, p1 = p1, ((2 * k + 1) * x * p1 - k * p0) / (k + 1)
        d1 = m * (p0 - x * p1) / (1 - x * x)
        return p1, d1, (2 * x * d1 - m * (m + 1) * p1) / (1 - x * x)

    x = 2 * mpmath.mpf(float(alpha)) - 1
    for _ in range(2):
        p, d1, d2 = legendre(x)
        x -= d1 / d2 if lobatto else p / d1
    p, d1, _ = legendre(x)
    w = 1 / (m * (m + 1) * p**2) if lobatto else 1 / ((1 - x * x) * d1**2)
    return float((x + 1) / 2), float(w)


@pytest.mark.parametrize("rule", RULES, ids=_name)
@pytest.mark.parametrize("n, ks", [(150, (0, 1, 2, 40, 74)), (4096, (0, 1, 9, 10, 2047)), (20000, (1,))])
def test_nodes_and_weights_against_30_digit_reference(rule, n, ks):
    # relative accuracy even at the first nodes, where alpha ~ 1e-8 and the weights are smallest
    a, w = rule.nodes_and_weights(n)
    off = 1 if isinstance(rule, GaussLobatto) else 0  # skip Lobatto's endpoint node
    for k in ks:
        ref_a, ref_w = _mp_reference(n, a[k + off], isinstance(rule, GaussLobatto))
        assert abs(a[k + off] - ref_a) <= 1e-13 * ref_a, (k, a[k + off], ref_a)
        assert abs(w[k + off] - ref_w) <= 1e-13 * ref_w, (k, w[k + off], ref_w)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 51, 150, 500])
def test_lobatto_matches_the_old_eigenvalue_table(n):
    a, w = GaussLobatto().nodes_and_weights(n)
    a_old, w_old = _old_lobatto(n)
    np.testing.assert_allclose(a, a_old, rtol=0, atol=1e-15)
    np.testing.assert_allclose(w, w_old, rtol=1e-12, atol=0)


@pytest.mark.parametrize("rule", RULES, ids=_name)
@pytest.mark.parametrize("n", [2, 3, 101, 257, 1024, 4097, 20000])
def test_table_shape_order_symmetry_positivity_and_sum(rule, n):
    a, w = rule.nodes_and_weights(n)
    assert a.shape == w.shape == (n,) and a.dtype == w.dtype == np.float64
    assert np.all(np.diff(a) > 0) and np.all(w > 0)
    assert 0 <= a[0] and a[-1] <= 1
    np.testing.assert_allclose(a + a[::-1], 1.0, rtol=0, atol=2e-16)
    np.testing.assert_array_equal(w, w[::-1])
    assert abs(math.fsum(w) - 1.0) < 1e-14
    if n % 2:
        assert a[n // 2] == 0.5


@pytest.mark.parametrize("rule", RULES, ids=_name)
@pytest.mark.parametrize("n", [101, 257, 1024, 4096, 20000])
def test_exact_on_monomials_and_resolves_fast_oscillation(rule, n):
    a, w = rule.nodes_and_weights(n)
    for p in (1, 2, 3, 5, 8, 13, 40):
        assert abs(w @ a**p - 1 / (p + 1)) < 1e-13, p
    # integral_0^1 cos(omega alpha) = sin(omega) / omega with omega = n / 2: degree ~ n / 2 * e
    # is needed, so every node and weight matters (a 1e-8 error in one would show)
    omega = n / 2
    assert abs(w @ np.cos(omega * a) - math.sin(omega) / omega) < 1e-13


@pytest.mark.parametrize("rule", RULES, ids=_name)
@pytest.mark.parametrize("n", [4, 9, 16])
def test_exactness_degree_is_sharp(rule, n):
    a, w = rule.nodes_and_weights(n)
    d = DEGREE[type(rule)](n)
    # (2 alpha - 1)^q on [0, 1] integrates to 1 / (q + 1) for even q, 0 for odd
    for q in range(d + 1):
        assert abs(w @ (2 * a - 1) ** q - (q % 2 == 0) / (q + 1)) < 1e-14
    q = d + 1 if (d + 1) % 2 == 0 else d + 2
    assert abs(w @ (2 * a - 1) ** q - 1 / (q + 1)) > 1e-11  # 3.6e-10 for GL at n=16, rounding 1e-16


@given(n=st.integers(101, 3000))
@settings(max_examples=15, deadline=None)
def test_any_large_n_gives_a_valid_exact_table(n):
    for rule in RULES:
        a, w = rule.nodes_and_weights(n)
        assert np.all(np.diff(a) > 0) and np.all(w > 0)
        for p in (0, 1, 2, 7):
            assert abs(w @ a**p - 1 / (p + 1)) < 1e-13


@pytest.mark.parametrize("table", [gauss._gauss_legendre_table, gauss._gauss_lobatto_table], ids=["GL", "GLL"])
def test_tables_are_fast_cached_and_read_only(table):
    start = time.perf_counter()
    table.__wrapped__(4096)  # uncached; leggauss took 11-42 s here
    assert time.perf_counter() - start < 1.0
    a, w = table(300)
    assert table(300)[0] is a
    for arr in (a, w):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0.0


def test_integrated_gradients_with_20000_steps():
    f = lambda z: jnp.sum(z**3, axis=-1)
    x = jnp.array([[0.5, -1.0, 2.0]])
    start = time.perf_counter()
    attr = jaxig.integrated_gradients(f, x, n_steps=20000)
    assert time.perf_counter() - start < 20.0  # the table alone took minutes before
    np.testing.assert_allclose(attr, x**3, rtol=1e-5)  # zero baseline: x_i int 3 a^2 x_i^2 da


# -- AbstractRule.integrate checks the table it is given -------------------------------------


class _Table(jaxig.AbstractRule):
    """A user rule returning whatever table ``make(n)`` builds (a plain Python setting)."""

    make: object = struct.field(pytree_node=False, default=None)

    def nodes_and_weights(self, n):
        self.check_steps(n)
        return self.make(n)


def _mid(n):
    return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)


# a concrete jax array is read like a NumPy one; one computed with jnp inside the rule under jit
# would be a tracer, checked by shape only
_JAX_WEIGHTS = jnp.asarray(_mid(8)[1]) * 1.01
_f = lambda z: jnp.tanh(z).sum(-1)
_x = jnp.array([[0.3, -0.2]])


def _ig(make, n=8):
    return jaxig.integrated_gradients(_f, _x, n_steps=n, rule=_Table(make=make))


def _with(index, value, of):
    def make(n):
        table = [np.array(t) for t in _mid(n)]
        table[of][index] = value
        return tuple(table)

    return make


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda n: (_mid(n)[0], _mid(n)[1] / 2), r"_Table.nodes_and_weights\(8\) returned weights summing to 0.5; "
                                                r"weights must sum to 1"),
        (lambda n: (_mid(n)[0] * 2 - 0.5, _mid(n)[1]), r"returned alphas\[0\] = -0.375 outside \[0, 1\]"),
        (_with(3, 1.25, of=0), r"alphas\[3\] = 1.25 outside \[0, 1\]"),
        (_with(5, np.nan, of=1), r"returned weights\[5\] = nan; nodes and weights must be finite"),
        (_with(0, np.inf, of=0), r"returned alphas\[0\] = inf"),
        (lambda n: (_mid(n)[0][:-1], _mid(n)[1][:-1]), r"alphas of shape \(7,\) .* both must have shape \(8,\)"),
        (lambda n: (_mid(n)[0][None], _mid(n)[1]), r"alphas of shape \(1, 8\)"),
        (lambda n: (_mid(n)[0], _JAX_WEIGHTS), r"weights summing to 1.0(1|099999)"),
    ],
    ids=["sum", "below-0", "above-1", "nan", "inf", "short", "2d", "jax-array"],
)
def test_a_bad_table_is_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        _ig(make)


def test_rounding_at_the_ends_and_in_the_sum_is_accepted():
    def make(n):
        a, w = _mid(n)
        a[0], a[-1] = -1e-15, 1 + 1e-15
        w[0] += 1e-9
        return a, w

    assert np.all(np.isfinite(_ig(make)))


def test_traced_tables_are_checked_by_shape_only():
    # MonteCarlo's nodes depend on a traced key under jit: values cannot be checked, shapes can
    run = jax.jit(lambda k: jaxig.integrated_gradients(_f, _x, n_steps=8, rule=jaxig.MonteCarlo(), key=k))
    assert np.all(np.isfinite(run(jax.random.key(0))))

    class _ShortRandom(jaxig.AbstractRandomRule):
        def nodes_and_weights(self, n, key=None):
            a = jax.random.uniform(key, (n - 1,))
            return a, jnp.full((n - 1,), 1.0 / (n - 1))

    bad = jax.jit(lambda k: jaxig.integrated_gradients(_f, _x, n_steps=8, rule=_ShortRandom(), key=k))
    with pytest.raises(ValueError, match=r"_ShortRandom.nodes_and_weights\(8\) returned alphas of shape \(7,\)"):
        bad(jax.random.key(0))
