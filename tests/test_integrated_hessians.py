"""integrated_hessians: closed forms (quadratic, triple product), rows summing to IG, the ReLU caveat."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig

rng = np.random.default_rng(1)
M = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
S = M + M.T  # the Hessian of x^T M x
X = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
BASE = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
W1 = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
B1 = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
V = jnp.asarray(rng.normal(size=(6,)), jnp.float32)


def quadratic(x):
    return jnp.sum((x @ M) * x, -1)


def quadratic_interactions(x, b):
    """Gamma_ij = D_i D_j S_ij / 4 off the diagonal; the diagonal adds D_i ((S x')_i + (S D)_i / 4)."""
    d = x - b
    return d[:, :, None] * d[:, None, :] * S / 4 + jnp.eye(4) * (d * (b @ S + (d @ S) / 4))[:, :, None]


def softplus_mlp(x):
    return jax.nn.softplus(x @ W1 + B1) @ V


def relu_mlp(x):
    return jax.nn.relu(x @ W1 + B1) @ V


# Both integrands are polynomials of degree <= 1 for a quadratic model: every rule exact for lines is exact.
@pytest.mark.parametrize(("rule", "inner_rule"), [
    (jaxig.GaussLegendre(), None), (jaxig.Trapezoid(), jaxig.RiemannMidpoint()),
    (jaxig.Simpson(), jaxig.GaussLegendre())],
    ids=["GaussLegendre", "Trapezoid-Midpoint", "Simpson-GaussLegendre"])
def test_quadratic_model_matches_the_closed_form_for_every_rule(rule, inner_rule):
    gamma, info = jaxig.integrated_hessians(quadratic, X, BASE, n_steps=3, rule=rule, inner_rule=inner_rule,
                                            return_info=True)
    assert gamma.shape == (3, 4, 4)
    np.testing.assert_allclose(gamma, quadratic_interactions(X, BASE), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)
    assert info.n_evals == 3 * 3 * 4


def test_triple_product_interactions_are_all_a_ninth_of_the_output():
    # F = x1 x2 x3 from zero: d2F/dx1dx2 = x3 a b along the line, so Gamma_12 = x1 x2 x3 int a^2 int b^2 = F / 9;
    # on the diagonal d2F/dx1^2 = 0 and the main effect x1 int int x2 x3 (a b)^2 = F / 9 as well.
    f = lambda x: x[:, 0] * x[:, 1] * x[:, 2]
    x = jnp.array([[1.0, 2.0, -3.0], [0.5, -1.5, 2.5]])
    gamma = jaxig.integrated_hessians(f, x, n_steps=2)
    np.testing.assert_allclose(gamma, jnp.broadcast_to((f(x) / 9)[:, None, None], (2, 3, 3)), rtol=1e-5)


def test_rows_sum_to_integrated_gradients_on_a_smooth_network():
    gamma, info = jaxig.integrated_hessians(softplus_mlp, X, BASE, n_steps=8, return_info=True)
    ig = jaxig.integrated_gradients(softplus_mlp, X, BASE, n_steps=8)
    scale = float(jnp.max(jnp.abs(ig)))
    assert float(jnp.max(jnp.abs(gamma.sum(-1) - ig))) / scale < 1e-4
    assert float(jnp.max(jnp.abs(info.delta))) < 1e-4 * scale
    # smooth f and converged integrals: the interaction matrix is symmetric
    np.testing.assert_allclose(gamma, jnp.swapaxes(gamma, 1, 2), atol=1e-4 * scale)


def test_relu_network_has_no_interactions_and_warns_softplus_has_them():
    with pytest.warns(RuntimeWarning, match="softplus"):
        gamma, info = jaxig.integrated_hessians(relu_mlp, X, BASE, n_steps=8, return_info=True)
    np.testing.assert_array_equal(gamma * (1 - jnp.eye(4)), 0.0)  # zero Hessian at every node
    # the Hessian's mass sits on the kinks, which the nodes never hit: completeness is lost, not just
    # the interactions (example 2: a gap of 2.6 on an output change of 3.8)
    change = relu_mlp(X) - relu_mlp(BASE[None])
    assert float(jnp.max(jnp.abs(info.delta) / jnp.abs(change))) > 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a smooth network does not warn
        smooth, smooth_info = jaxig.integrated_hessians(softplus_mlp, X, BASE, n_steps=8, return_info=True)
    assert float(jnp.max(jnp.abs(smooth * (1 - jnp.eye(4))))) > 1e-1
    assert float(jnp.max(jnp.abs(smooth_info.delta))) < 1e-4


def test_chunks_and_alpha_batches_do_not_change_the_result_and_features_are_flattened():
    # auto chunk: all 4 columns at once (return_info as in the row-sum test: the same compiled program)
    whole = jaxig.integrated_hessians(softplus_mlp, X, BASE, n_steps=8, return_info=True)[0]
    part = jaxig.integrated_hessians(softplus_mlp, X, BASE, n_steps=8, chunk_size=3, alpha_batch_size=None)
    np.testing.assert_allclose(part, whole, rtol=1e-5, atol=1e-6)  # 2 chunks, the last one padded
    # a pytree with a leaf of shape (B, 3, 1): D = 1 + 3 features, leaves in order, each in C order
    tree = jaxig.integrated_hessians(lambda d: softplus_mlp(jnp.concatenate([d["a"], d["b"][..., 0]], 1)),
                                     {"a": X[:, :1], "b": X[:, 1:, None]}, {"a": BASE[:1], "b": BASE[1:, None]},
                                     n_steps=8)
    np.testing.assert_allclose(tree, whole, rtol=1e-5, atol=1e-6)


def test_targets_all_and_callable():
    two = lambda x: jnp.stack([softplus_mlp(x), quadratic(x)], axis=1)
    every = jaxig.integrated_hessians(two, X, BASE, n_steps=3, target="all")
    assert every.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(every[1], quadratic_interactions(X, BASE), rtol=1e-5, atol=2e-6)
    picked = jaxig.integrated_hessians(two, X, BASE, n_steps=3, target=lambda out: out[:, 0])
    np.testing.assert_allclose(picked, every[0], rtol=1e-5, atol=1e-6)


def test_jit_vmap_and_grad_with_respect_to_weights():
    eager = jaxig.integrated_hessians(quadratic, X, BASE, n_steps=3)
    # one program for both: jit of a vmap over examples, each explained as a batch of one
    rows = jax.jit(jax.vmap(lambda xi: jaxig.integrated_hessians(quadratic, xi[None], BASE, n_steps=3)[0]))(X)
    np.testing.assert_allclose(rows, eager, rtol=1e-5, atol=1e-6)
    probe = jnp.asarray(rng.normal(size=(3, 4, 4)), jnp.float32)

    def loss(m):
        return jnp.sum(jaxig.integrated_hessians(lambda x: jnp.sum((x @ m) * x, -1), X, BASE, n_steps=3) * probe)

    def closed(m):
        s, d = m + m.T, X - BASE
        gamma = d[:, :, None] * d[:, None, :] * s / 4 + jnp.eye(4) * (d * (BASE @ s + (d @ s) / 4))[:, :, None]
        return jnp.sum(gamma * probe)

    np.testing.assert_allclose(jax.grad(loss)(M), jax.grad(closed)(M), rtol=1e-4, atol=1e-4)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="chunk_size"):
        jaxig.integrated_hessians(quadratic, X, BASE, chunk_size=0)
    with pytest.raises(TypeError, match="inner_rule"):
        jaxig.integrated_hessians(quadratic, X, BASE, inner_rule="gauss")
    with pytest.raises(ValueError, match="key=jax.random.key"):
        jaxig.integrated_hessians(quadratic, X, BASE, inner_rule=jaxig.MonteCarlo())
    with pytest.raises(ValueError, match="n_steps"):
        jaxig.integrated_hessians(quadratic, X, BASE, rule=jaxig.Simpson(), n_steps=2)
    # a random outer rule with a key: reproducible, and an unbiased estimate of the closed form
    run = lambda key: jaxig.integrated_hessians(quadratic, X, BASE, n_steps=64, rule=jaxig.MonteCarlo(),
                                                inner_rule=jaxig.GaussLegendre(), inner_n_steps=2, key=key)
    first, again, other = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    exact = quadratic_interactions(X, BASE)
    assert float(jnp.max(jnp.abs(first - exact))) < 0.25 * float(jnp.max(jnp.abs(exact)))
