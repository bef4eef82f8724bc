"""idgi: the linear closed form, completeness of both forms, and the paper's algorithm transcribed in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
BASE = jnp.array([0.1, 0.2, -0.3, 0.0, 0.5])

rng = np.random.default_rng(0)
W1 = rng.normal(size=(5, 6)).astype(np.float32)
B1 = rng.normal(size=(6,)).astype(np.float32)
V = rng.normal(size=(6,)).astype(np.float32)


def linear(x):
    return x @ W + 0.7


def mlp(x):
    return jnp.tanh(x @ W1 + B1) @ V


def mlp_grad_numpy(x):
    """The gradient of ``mlp`` for one example, by hand."""
    h = np.tanh(x @ W1 + B1)
    return W1 @ (V * (1 - h**2))


def paper_idgi_numpy(x, baseline, n):
    """Algorithm 1 of Yang et al. (CVPR 2023) on the straight line with n + 1 points, in NumPy."""
    points = [baseline + k / n * (x - baseline) for k in range(n + 1)]
    outputs = [float(np.tanh(p @ W1 + B1) @ V) for p in points]
    result = np.zeros_like(x)
    for k in range(n):  # the gradient at the last point (x itself) is not used
        g = mlp_grad_numpy(points[k])
        result += g**2 / np.sum(g**2) * (outputs[k + 1] - outputs[k])
    return result


class Squared(jaxig.AbstractPath):
    """The straight line traversed as gamma(a) = x' + a^2 (x - x'): same curve, another speed."""

    def __call__(self, alpha, x, baseline):
        return jax.tree.map(lambda xi, bi: bi + (alpha**2).astype(xi.dtype) * (xi - bi), x, baseline)


rule_id = lambda r: type(r).__name__


@pytest.mark.parametrize(("rule", "finite_difference"), [
    (jaxig.GaussLegendre(), False), (jaxig.Simpson(), False), (jaxig.RiemannLeft(), True), (jaxig.Trapezoid(), True)],
    ids=["GaussLegendre", "Simpson", "RiemannLeft-fd", "Trapezoid-fd"])
def test_linear_model_gives_squared_weight_shares_of_the_output_change(rule, finite_difference):
    # g = w everywhere, so each node hands dF to the features in proportion to w_i^2, whatever x - x'.
    attr, info = jaxig.idgi(linear, X, BASE, n_steps=5, rule=rule, finite_difference=finite_difference,
                            return_info=True)
    expected = W**2 / jnp.sum(W**2) * (linear(X) - linear(BASE[None]))[:, None]
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=2e-6)
    assert not np.allclose(attr, W * (X - BASE), atol=1e-2)  # and it is not IG


def test_finite_difference_form_is_complete_to_rounding_whatever_the_rule():
    # Gauss-Legendre nodes include neither end: the first gradient covers [0, a_2], the last [a_n, 1].
    attr, info = jaxig.idgi(mlp, X, BASE, n_steps=8, finite_difference=True, return_info=True)
    gap = attr.sum(1) - (mlp(X) - mlp(BASE[None]))
    np.testing.assert_allclose(info.delta, gap, atol=1e-6)
    assert float(jnp.max(jnp.abs(gap))) < 2e-6


def test_derivative_form_sums_to_what_ig_sums_to_with_the_same_rule():
    # sum_i g_i^2/||g||^2 * <g, x - x'> = <g, x - x'>: IDGI's total is IG's total node by node, so its
    # completeness gap is IG's quadrature error (large with 3 left-Riemann nodes, and equal).
    rule = jaxig.RiemannLeft()
    attr, info = jaxig.idgi(mlp, X, BASE, n_steps=3, rule=rule, return_info=True)
    ig, ig_delta = jaxig.integrated_gradients(mlp, X, BASE, n_steps=3, rule=rule, return_delta=True,
                                              completeness_rtol=None)
    np.testing.assert_allclose(attr.sum(1), ig.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(info.delta, ig_delta, atol=1e-5)
    assert float(jnp.max(jnp.abs(info.delta))) > 1e-2


def test_matches_a_numpy_transcription_of_the_papers_algorithm():
    n = 16
    attr, info = jaxig.idgi(mlp, X, BASE, n_steps=n, rule=jaxig.RiemannLeft(), finite_difference=True,
                            return_info=True)
    assert float(jnp.max(jnp.abs(info.delta))) < 2e-6  # exactly complete, as the paper claims
    expected = np.stack([paper_idgi_numpy(np.asarray(xi, np.float64), np.asarray(BASE, np.float64), n)
                         for xi in X])
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(np.asarray(attr) - expected)) / scale < 1e-4
    assert not np.allclose(attr, jaxig.integrated_gradients(mlp, X, BASE), atol=1e-2)


def test_both_forms_converge_to_the_same_integral():
    # the paper's finite differences on 128 points against the derivative form with 24 Gauss nodes
    exact = jaxig.idgi(mlp, X, BASE, n_steps=24)
    crude = jaxig.idgi(mlp, X, BASE, n_steps=128, rule=jaxig.RiemannLeft(), finite_difference=True)
    err = float(jnp.max(jnp.abs(crude - exact))) / float(jnp.max(jnp.abs(exact)))
    assert err < 5e-3  # measured 1.7e-3


def test_any_path_the_integral_does_not_depend_on_the_speed_along_the_curve():
    # The derivative form is int g_i^2/||g||^2 dF/da da: a reparameterisation of the same curve leaves it.
    straight = jaxig.idgi(mlp, X, BASE, n_steps=24)
    squared, info = jaxig.idgi(mlp, X, BASE, n_steps=24, path=Squared(), return_info=True)
    np.testing.assert_allclose(squared, straight, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(info.delta))) < 1e-4


def test_chunked_nodes_equal_one_vmap():
    # the finite-difference form sums its own chunks (padded with zero output changes); the derivative
    # form goes through the rule's integrate, as integrated_gradients does
    whole = jaxig.idgi(mlp, X, BASE, n_steps=8, finite_difference=True)
    chunked = jaxig.idgi(mlp, X, BASE, n_steps=8, finite_difference=True, alpha_batch_size=3)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_targets_all_index_and_callable_agree_and_pytrees_work():
    two = lambda x: jnp.stack([mlp(x), linear(x)], axis=1)
    every = jaxig.idgi(two, X, BASE, n_steps=8, target="all")
    assert every.shape == (2,) + X.shape
    np.testing.assert_allclose(every[0], jaxig.idgi(mlp, X, BASE, n_steps=8), rtol=1e-5, atol=1e-6)
    linear_idgi = W**2 / jnp.sum(W**2) * (linear(X) - linear(BASE[None]))[:, None]
    np.testing.assert_allclose(every[1], linear_idgi, rtol=1e-5, atol=1e-6)
    picked = jaxig.idgi(two, X, BASE, n_steps=8, target=lambda out: out[:, 0])
    np.testing.assert_allclose(picked, every[0], rtol=1e-5, atol=1e-6)
    # a pytree splits one gradient norm over all its leaves
    tree = jaxig.idgi(lambda d: linear(jnp.concatenate([d["a"], d["b"]], 1)), {"a": X[:, :2], "b": X[:, 2:]},
                      {"a": BASE[:2], "b": BASE[2:]}, n_steps=5)
    np.testing.assert_allclose(jnp.concatenate([tree["a"], tree["b"]], 1), linear_idgi, rtol=1e-5, atol=1e-6)


def test_jit_vmap_and_grad_with_respect_to_weights():
    eager = jaxig.idgi(mlp, X, BASE, n_steps=8, finite_difference=True)
    # one program for both: jit of a vmap over examples, each explained as a batch of one
    rows = jax.jit(jax.vmap(lambda xi: jaxig.idgi(mlp, xi[None], BASE, n_steps=8, finite_difference=True)[0]))(X)
    np.testing.assert_allclose(rows, eager, rtol=1e-5, atol=1e-6)

    def loss(w):
        return jnp.sum(jaxig.idgi(lambda x: x @ w, X, BASE, n_steps=4) * X)

    def closed(w):  # the linear closed form
        return jnp.sum(w**2 / jnp.sum(w**2) * ((X - BASE) @ w)[:, None] * X)

    np.testing.assert_allclose(jax.grad(loss)(W), jax.grad(closed)(W), rtol=1e-4, atol=1e-5)


def test_random_rules_need_a_key_and_bad_settings_raise():
    with pytest.raises(ValueError, match="key=jax.random.key"):
        jaxig.idgi(mlp, X, BASE, rule=jaxig.MonteCarlo())
    attr = jaxig.idgi(mlp, X, BASE, rule=jaxig.MonteCarlo(), n_steps=8, key=jax.random.key(0),
                      finite_difference=True)
    np.testing.assert_allclose(attr.sum(1), mlp(X) - mlp(BASE[None]), atol=2e-6)  # complete whatever the nodes
    with pytest.raises(TypeError, match="AbstractRule"):
        jaxig.idgi(mlp, X, BASE, rule="gauss")
    with pytest.raises(TypeError, match="AbstractPath"):
        jaxig.idgi(mlp, X, BASE, path=None)
    with pytest.raises(TypeError, match="finite_difference"):
        jaxig.idgi(mlp, X, BASE, finite_difference="yes")
    with pytest.raises(ValueError, match="n_steps"):
        jaxig.idgi(mlp, X, BASE, n_steps=1, rule=jaxig.Trapezoid())
