"""Gauss–Lobatto, Clenshaw–Curtis, Monte Carlo and quasi-Monte Carlo rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from jaxig import ClenshawCurtis, GaussLobatto, MonteCarlo, QuasiMonteCarlo


@pytest.mark.parametrize("rule, degree", [(GaussLobatto(), lambda n: 2 * n - 3),
                                          (ClenshawCurtis(), lambda n: n - 1)])
@pytest.mark.parametrize("n", [2, 3, 5, 8, 33])
def test_polynomial_exactness_and_endpoints(rule, degree, n):
    a, w = rule.nodes_and_weights(n)
    assert a.shape == w.shape == (n,)
    assert a.min() == 0.0 and a.max() == 1.0 and np.all(w > 0)
    for p in range(degree(n) + 1):
        np.testing.assert_allclose(w @ a**p, 1.0 / (p + 1), rtol=1e-12, atol=1e-14)
    # the next even power (odd ones vanish by symmetry) is not integrated exactly
    q = degree(n) + 1 + (degree(n) + 1) % 2
    true = 0.5**q / (q + 1)
    assert n > 8 or abs(w @ (a - 0.5) ** q - true) > 1e-6 * true


def test_known_tables():
    a, w = GaussLobatto().nodes_and_weights(5)  # +-1, +-sqrt(3/7), 0 on [-1, 1]
    np.testing.assert_allclose(2 * a - 1, [-1, -np.sqrt(3 / 7), 0, np.sqrt(3 / 7), 1], atol=1e-14)
    np.testing.assert_allclose(2 * w, [1 / 10, 49 / 90, 32 / 45, 49 / 90, 1 / 10], atol=1e-14)
    a, w = ClenshawCurtis().nodes_and_weights(3)  # Simpson
    np.testing.assert_allclose(w, [1 / 6, 4 / 6, 1 / 6], atol=1e-15)


def test_large_n_is_stable():
    for rule in (GaussLobatto(), ClenshawCurtis()):
        a, w = rule.nodes_and_weights(4096)
        assert np.all(np.diff(a) > 0) and np.all(w > 0)
        np.testing.assert_allclose(w @ np.exp(a), np.e - 1, rtol=1e-13)


def test_random_rules_need_key_and_are_unbiased():
    with pytest.raises(ValueError, match="key"):
        MonteCarlo().nodes_and_weights(4)
    with pytest.raises(ValueError, match=r"pass key=jax.random.key\(0\)"):
        jaxig.integrated_gradients(lambda z: z.sum(-1), jnp.ones((1, 3)), rule=MonteCarlo())
    f = lambda z: jnp.tanh(z @ jnp.array([1.0, -2.0, 0.5]))
    x = jnp.array([[1.0, 0.5, 2.0]])
    ref = jaxig.integrated_gradients(f, x, n_steps=64)
    run = jax.jit(lambda k: jaxig.integrated_gradients(f, x, n_steps=16, rule=MonteCarlo(), key=k))
    draws = jax.vmap(run)(jax.random.split(jax.random.key(0), 400))
    mean, sem = draws.mean(0), draws.std(0) / np.sqrt(400)
    assert np.all(np.abs(mean - ref) < 4 * sem + 1e-6)
    assert np.all(draws.std(0) > 1e-3)  # genuinely random


def test_qmc_is_a_shifted_grid_and_beats_mc():
    k = jax.random.key(3)
    a, w = QuasiMonteCarlo().nodes_and_weights(8, k)
    gaps = np.diff(np.sort(np.asarray(a)))
    np.testing.assert_allclose(gaps, 1 / 8, atol=1e-6)
    np.testing.assert_allclose(np.sum(w), 1.0, rtol=1e-6)
    f = lambda z: jax.nn.relu(z @ jnp.array([1.0, -2.0, 0.5]) - 0.3)
    x = jnp.array([[1.0, -0.5, 2.0]])
    ref = jaxig.integrated_gradients(f, x, n_steps=4096, rule=jaxig.RiemannMidpoint())
    keys = jax.random.split(jax.random.key(1), 64)
    err = {}
    for rule in (MonteCarlo, QuasiMonteCarlo):
        draws = jax.vmap(lambda kk, rule=rule: jaxig.integrated_gradients(f, x, n_steps=64, rule=rule(), key=kk))(keys)
        err[rule] = float(np.sqrt(np.mean((np.asarray(draws) - np.asarray(ref)) ** 2)))
    assert err[QuasiMonteCarlo] < err[MonteCarlo] / 3
