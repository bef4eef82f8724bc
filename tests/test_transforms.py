"""Composability with jit, vmap and grad; chunked evaluation; compile caching; dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

import jaxig

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])


def mlp(params, x):
    h = jax.nn.softplus(x @ params["w1"] + params["b1"])
    return jnp.tanh(h @ params["w2"])[:, 0]


PARAMS = {
    "w1": jax.random.normal(jax.random.key(0), (5, 7)) / 2,
    "b1": jnp.linspace(-0.5, 0.5, 7),
    "w2": jax.random.normal(jax.random.key(1), (7, 1)),
}


def test_under_jit_equals_eager():
    f = lambda x: mlp(PARAMS, x)
    eager = jaxig.integrated_gradients(f, X)
    jitted = jax.jit(lambda x: jaxig.integrated_gradients(f, x))(X)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


def test_under_vmap_over_a_stack_of_batches():
    f = lambda x: mlp(PARAMS, x)
    stacked = jnp.stack([X, 2 * X])
    batched = jax.vmap(lambda x: jaxig.integrated_gradients(f, x))(stacked)
    np.testing.assert_allclose(batched[1], jaxig.integrated_gradients(f, 2 * X), rtol=1e-5, atol=1e-7)


def test_vmap_over_baselines():
    f = lambda x: mlp(PARAMS, x)
    bases = jnp.stack([jnp.zeros(5), jnp.full(5, 0.3)])
    out = jax.vmap(lambda b: jaxig.integrated_gradients(f, X, b))(bases)
    np.testing.assert_allclose(out[1], jaxig.integrated_gradients(f, X, 0.3), rtol=1e-5, atol=1e-7)


def test_gradient_through_ig_wrt_parameters_matches_finite_differences(x64):
    # An attribution prior: a loss on attributions, differentiated w.r.t. the model's parameters.
    params = jax.tree.map(lambda p: p.astype(jnp.float64), PARAMS)
    x = X.astype(jnp.float64)

    def loss(p):
        attr = jaxig.integrated_gradients(lambda z: mlp(p, z), x, n_steps=16)
        return jnp.sum(attr[:, 0] ** 2) + jnp.sum(jnp.abs(attr[:, 1:]))

    grads = jax.grad(loss)(params)
    # the direction and the shifted parameters in NumPy (float64): as jax ops each leaf shape would
    # compile its own small program (~50 of them, most of this test's time)
    rng = np.random.default_rng(7)
    direction = jax.tree.map(lambda p: rng.standard_normal(p.shape), params)
    eps = 1e-6
    plus = loss(jax.tree.map(lambda p, d: jnp.asarray(np.asarray(p) + eps * d), params, direction))
    minus = loss(jax.tree.map(lambda p, d: jnp.asarray(np.asarray(p) - eps * d), params, direction))
    fd = (float(plus) - float(minus)) / (2 * eps)
    analytic = sum(float(np.vdot(np.asarray(g), d)) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    np.testing.assert_allclose(analytic, fd, rtol=1e-6)
    assert abs(float(analytic)) > 1e-3


def test_gradient_wrt_inputs_of_a_linear_models_attribution():
    # d/dx sum_i w_i x_i (zero baseline) = w: exact for any rule.
    g = jax.grad(lambda x: jaxig.integrated_gradients(lambda z: z @ W, x).sum())(X)
    np.testing.assert_allclose(g, jnp.broadcast_to(W, X.shape), rtol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 16, 50, 200])
@pytest.mark.parametrize("rule", [jaxig.GaussLegendre(), jaxig.Simpson()], ids=lambda r: type(r).__name__)
def test_chunked_equals_unchunked(batch_size, rule):
    f = lambda x: mlp(PARAMS, x)
    full, d_full = jaxig.integrated_gradients(f, X, rule=rule, n_steps=49, alpha_batch_size=49, return_delta=True)
    chunked, d_chunked = jaxig.integrated_gradients(f, X, rule=rule, n_steps=49, alpha_batch_size=batch_size,
                                                    return_delta=True)
    np.testing.assert_allclose(chunked, full, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d_chunked, d_full, atol=1e-6)


def test_chunked_target_all_and_pytrees():
    f = lambda x: jnp.stack([mlp(PARAMS, x["a"]), x["b"].sum(1) ** 2], axis=1)
    x = {"a": X, "b": X[:, :2]}
    full = jaxig.integrated_gradients(f, x, target="all", alpha_batch_size=50)
    chunked = jaxig.integrated_gradients(f, x, target="all", alpha_batch_size=8)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), chunked, full)


def test_second_call_with_new_values_does_not_recompile():
    f = lambda x: jnp.tanh(x @ W)
    jaxig.integrated_gradients(f, X, n_steps=20, return_delta=True)
    x2 = X + 1.0
    with count_compiles() as compiles:
        out = jaxig.integrated_gradients(f, x2, baseline=0.5, n_steps=20, return_delta=True)
    assert len(compiles) == 0
    assert out[0].shape == X.shape
    # other target values are data too: no recompile for a new int target of the same kind
    g = lambda x: jnp.stack([x.sum(1), x[:, 0]], 1)
    jaxig.integrated_gradients(g, X, target=0)
    with count_compiles() as compiles:
        jaxig.integrated_gradients(g, X, target=1)
    assert len(compiles) == 0
    # a new shape does compile again
    x3 = X[:2]
    with count_compiles() as compiles:
        jaxig.integrated_gradients(f, x3, n_steps=20, return_delta=True)
    assert len(compiles) > 0


def test_unhashable_callable_still_works():
    class Model:
        __hash__ = None

        def __call__(self, x):
            return x @ W

    np.testing.assert_allclose(jaxig.integrated_gradients(Model(), X), W * X, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_input_dtype_is_kept(dtype):
    attr, delta = jaxig.integrated_gradients(lambda x: jnp.tanh(x @ W.astype(x.dtype)), X.astype(dtype),
                                             return_delta=True)
    assert attr.dtype == dtype
    np.testing.assert_allclose(np.asarray(attr, np.float32), np.asarray(jaxig.integrated_gradients(
        lambda x: jnp.tanh(x @ W), X)), atol=5e-2)


def test_mixed_precision_pytree_keeps_each_leaf_dtype(x64):
    x = {"a": X.astype(jnp.float64), "b": X.astype(jnp.float32)}
    attr = jaxig.integrated_gradients(lambda z: (z["a"] @ W + z["b"] @ W), x)
    assert attr["a"].dtype == jnp.float64 and attr["b"].dtype == jnp.float32
