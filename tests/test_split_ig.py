"""split_integrated_gradients against closed forms on saturating models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from tests.helpers import count_compiles

A = jnp.array([2.0, -1.0, 0.5, 3.0])
# the first two examples' outputs increase along the line, the third's decreases
X = jnp.array([[1.0, -2.0, 1.5, 0.7], [0.3, 1.0, -1.0, 2.0], [-1.0, 0.5, 0.2, -0.6]])
BASE = jnp.array([0.0, 0.1, -0.2, 0.0])


def additive(x):
    """Each feature saturates on its own: F(x) = sum_i tanh(a_i x_i)."""
    return jnp.sum(jnp.tanh(A * x), -1)


def additive_parts(x, b, r):
    """Float64 NumPy: the split point of the line (first crossing, by bisection) and both parts.

    On an additive model IG over [s, t] of feature i is exactly tanh(a_i p_i(t)) - tanh(a_i p_i(s)).
    """
    x, b, a = (np.asarray(v, np.float64) for v in (x, b, A))
    along = lambda t: np.tanh(a * (b + t * (x - b)))
    out = lambda t: float(np.sum(along(t)))
    level = out(0) + r * (out(1) - out(0))
    sign = 1.0 if out(1) >= out(0) else -1.0
    grid = np.linspace(0, 1, 4001)
    k = int(np.argmax([sign * (out(t) - level) >= 0 for t in grid]))
    lo, hi = grid[max(k - 1, 0)], grid[k]
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if sign * (out(mid) - level) >= 0 else (mid, hi)
    return along(hi) - along(0), along(1) - along(hi), hi


class Squared(jaxig.AbstractPath):
    """The straight line traversed as gamma(a) = x' + a^2 (x - x'): same curve, another speed."""

    def __call__(self, alpha, x, baseline):
        return jax.tree.map(lambda xi, bi: bi + (alpha**2).astype(xi.dtype) * (xi - bi), x, baseline)


@pytest.mark.parametrize("threshold", [0.5, 0.95])
def test_additive_model_both_parts_match_the_closed_form(threshold):
    rule = jaxig.GaussLegendre()
    unsat, info = jaxig.split_integrated_gradients(additive, X, BASE, threshold=threshold, n_steps=33, rule=rule,
                                                   return_info=True)
    sat, sat_info = jaxig.split_integrated_gradients(additive, X, BASE, threshold=threshold, n_steps=33,
                                                     rule=rule, saturated=True, return_info=True)
    tol = 2e-6  # float32 round-off: 33 Gauss nodes on each part have converged
    parts = [additive_parts(xi, BASE, threshold) for xi in X]
    np.testing.assert_allclose(unsat, np.stack([p[0] for p in parts]), atol=tol)
    np.testing.assert_allclose(sat, np.stack([p[1] for p in parts]), atol=tol)
    # each part is complete for its own stretch of the path, and the unsaturated one covers r of the change
    change = additive(X) - additive(BASE[None])
    np.testing.assert_allclose(unsat.sum(1), threshold * change, atol=2 * tol)
    np.testing.assert_allclose(sat.sum(1), (1 - threshold) * change, atol=2 * tol)
    assert float(jnp.max(jnp.abs(info.delta))) < 2 * tol and float(jnp.max(jnp.abs(sat_info.delta))) < 2 * tol
    # the split is early for these saturating examples: the unsaturated part is not a uniform share of IG
    assert max(p[2] for p in parts) < 0.9
    assert not np.allclose(unsat, threshold * (unsat + sat), atol=1e-2)


def test_clipped_sum_split_point_and_parts_in_closed_form():
    # F = min(sum x, 1) from a zero baseline with s = sum x > 1: F reaches r at a* = r / s, and the
    # unsaturated part is a* x_i; the gradient vanishes past 1 / s, so the saturated part is (1 - r) x_i / s.
    f = lambda x: jnp.minimum(jnp.sum(x, -1), 1.0)
    x = jnp.array([[0.5, 1.0, 1.5], [2.0, -0.5, 0.75]])
    s = x.sum(1, keepdims=True)
    r = 0.8
    # the gradient is constant on [0, a*]: any rule mapped onto it is exact (Simpson's nodes include both ends)
    unsat = jaxig.split_integrated_gradients(f, x, threshold=r, n_steps=9, rule=jaxig.Simpson())
    np.testing.assert_allclose(unsat, r * x / s, rtol=1e-5)
    # the saturated part integrates across the kink at 1 / s: first-order accurate only
    sat = jaxig.split_integrated_gradients(f, x, threshold=r, n_steps=64, saturated=True, rule=jaxig.RiemannMidpoint())
    np.testing.assert_allclose(sat, (1 - r) * x / s, atol=1e-2)


def test_single_index_model_unsaturated_part_is_r_times_ig():
    # F = tanh(w.x) changes only through u = w.x, so every stretch of the line gives IG's proportions
    w = jnp.array([0.8, -1.5, 0.3, 2.0])
    f = lambda x: jnp.tanh(x @ w)
    unsat = jaxig.split_integrated_gradients(f, X, BASE, threshold=0.7, n_steps=33)
    u, ub = X @ w, BASE @ w
    ig = w * (X - BASE) * ((jnp.tanh(u) - jnp.tanh(ub)) / (u - ub))[:, None]
    np.testing.assert_allclose(unsat, 0.7 * ig, rtol=1e-4, atol=1e-6)


def test_threshold_extremes_and_a_reparameterised_path():
    zero = jaxig.split_integrated_gradients(additive, X, BASE, threshold=0.0, n_steps=33)
    np.testing.assert_array_equal(zero, 0.0)
    # r = 1: IG up to the *first* point where F reaches F(x). Examples 0 and 2 get there only at x (all of
    # IG); example 1's output overshoots and comes back, so its split is early: the first crossing counts.
    whole = jaxig.split_integrated_gradients(additive, X, BASE, threshold=1.0, n_steps=33)
    parts = [additive_parts(xi, BASE, 1.0) for xi in X]
    np.testing.assert_allclose(whole, np.stack([p[0] for p in parts]), atol=2e-6)
    ig = jnp.tanh(A * X) - jnp.tanh(A * BASE)
    np.testing.assert_allclose(whole[::2], ig[::2], atol=2e-6)
    assert parts[1][2] < 0.5 and not np.allclose(whole[1], ig[1], atol=1e-2)
    # the split is a point of the curve, not of its parameterisation
    squared = jaxig.split_integrated_gradients(additive, X, BASE, threshold=0.5, n_steps=33, path=Squared())
    expected = np.stack([additive_parts(xi, BASE, 0.5)[0] for xi in X])
    np.testing.assert_allclose(squared, expected, atol=5e-6)


def test_target_all_gives_each_output_its_own_split():
    two = lambda x: jnp.stack([additive(x), -2.0 * jnp.tanh(x[:, 0])], axis=1)
    every = jaxig.split_integrated_gradients(two, X, BASE, threshold=0.5, n_steps=33, target="all")
    assert every.shape == (2,) + X.shape
    # output 1 depends on x_0 alone, which therefore carries the whole unsaturated half of its change
    half = 0.5 * (two(X)[:, 1] - two(BASE[None])[:, 1])
    np.testing.assert_allclose(every[1], jnp.zeros_like(X).at[:, 0].set(half), atol=2e-6)
    np.testing.assert_allclose(every[0], np.stack([additive_parts(xi, BASE, 0.5)[0] for xi in X]), atol=2e-6)


def test_jit_compiles_once_for_new_thresholds_vmap_works_and_grad_follows_the_split():
    run = jax.jit(lambda x, r: jaxig.split_integrated_gradients(additive, x, BASE, threshold=r, n_steps=33))
    run(X, 0.5)
    with count_compiles() as compiles:
        out = run(X, 0.95)
    assert len(compiles) == 0
    np.testing.assert_allclose(out, np.stack([additive_parts(xi, BASE, 0.95)[0] for xi in X]), atol=2e-6)
    rows = jax.jit(jax.vmap(lambda xi: jaxig.split_integrated_gradients(additive, xi[None], BASE, threshold=0.95,
                                                                        n_steps=33)[0]))(X)
    np.testing.assert_allclose(rows, out, rtol=1e-5, atol=2e-6)

    # d/dw of the attributions includes the split point's motion (implicit function theorem):
    # on tanh(w.x) the unsaturated part is r w_i (x_i - x'_i) (tanh(u) - tanh(u')) / (u - u').
    def split(w):
        return jnp.sum(jaxig.split_integrated_gradients(lambda x: jnp.tanh(x @ w), X, BASE, threshold=0.7,
                                                        n_steps=33) * X)

    def closed(w):
        u, ub = X @ w, BASE @ w
        return jnp.sum(0.7 * w * (X - BASE) * ((jnp.tanh(u) - jnp.tanh(ub)) / (u - ub))[:, None] * X)

    w = jnp.array([0.8, -1.5, 0.3, 2.0])
    np.testing.assert_allclose(jax.grad(split)(w), jax.grad(closed)(w), rtol=1e-4, atol=1e-6)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
        jaxig.split_integrated_gradients(additive, X, BASE, threshold=1.5)
    with pytest.raises(ValueError, match="shape"):
        jaxig.split_integrated_gradients(additive, X, BASE, threshold=jnp.ones((2,)) * 0.5)
    with pytest.raises(ValueError, match="n_search"):
        jaxig.split_integrated_gradients(additive, X, BASE, n_search=0)
    with pytest.raises(TypeError, match="saturated"):
        jaxig.split_integrated_gradients(additive, X, BASE, saturated="yes")
    with pytest.raises(ValueError, match="key=jax.random.key"):
        jaxig.split_integrated_gradients(additive, X, BASE, rule=jaxig.MonteCarlo())
