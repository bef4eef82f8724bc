"""saliency and gradient_x_input against closed forms: linear, single-index and additive pytree models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

import jaxig

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
WK = jnp.array([[0.8, -1.5, 0.3], [2.0, -0.2, 0.4], [0.1, 0.9, -1.1], [-0.6, 0.5, 1.3], [1.2, 0.0, -0.7]])
BK = jnp.array([0.3, -0.1, 0.2])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
BASE = jnp.array([0.1, 0.2, -0.3, 0.0, 0.5])


def linear(x):
    return x @ W + 0.7


def linear_k(x):
    return x @ WK + BK


def single_index(x):
    return jnp.tanh(x @ W)


def test_saliency_of_linear_model_is_abs_weights():
    attr, info = jaxig.saliency(linear, X, return_info=True)
    np.testing.assert_allclose(attr, jnp.broadcast_to(jnp.abs(W), X.shape), rtol=1e-6)
    signed = jaxig.saliency(linear, X, absolute=False)
    np.testing.assert_allclose(signed, jnp.broadcast_to(W, X.shape), rtol=1e-6)
    assert info.n_evals == 1 and info.delta is None


def test_saliency_of_single_index_model():
    expected = (1 - jnp.tanh(X @ W) ** 2)[:, None] * W
    np.testing.assert_allclose(jaxig.saliency(single_index, X, absolute=False), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jaxig.saliency(single_index, X), jnp.abs(expected), rtol=1e-5, atol=1e-7)


def test_saliency_ignores_baseline_and_key():
    ref = jaxig.saliency(single_index, X)
    np.testing.assert_array_equal(jaxig.saliency(single_index, X, BASE, key=jax.random.key(3)), ref)
    np.testing.assert_array_equal(jaxig.saliency(single_index, X, 5.0), ref)


def test_gradient_x_input_of_linear_model_is_weights_times_input():
    attr, info = jaxig.gradient_x_input(linear, X, return_info=True)
    np.testing.assert_allclose(attr, W * X, rtol=1e-6)
    # complete for linear f: sum_i w_i x_i = F(x) - F(0)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)
    assert info.n_evals == 1


def test_gradient_x_input_with_baseline_equals_ig_for_linear_model():
    attr, info = jaxig.gradient_x_input(linear, X, BASE, return_info=True)
    np.testing.assert_allclose(attr, W * (X - BASE), rtol=1e-6)
    np.testing.assert_allclose(attr, jaxig.integrated_gradients(linear, X, BASE, n_steps=4), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)


def test_gradient_x_input_delta_is_the_completeness_gap_for_nonlinear_f():
    attr, info = jaxig.gradient_x_input(single_index, X, BASE, return_info=True)
    grad = (1 - jnp.tanh(X @ W) ** 2)[:, None] * W
    np.testing.assert_allclose(attr, grad * (X - BASE), rtol=1e-5, atol=1e-7)
    gap = attr.sum(1) - (single_index(X) - single_index(BASE[None]))
    np.testing.assert_allclose(info.delta, gap, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(info.delta))) > 1e-2  # nonlinear: one gradient is not complete


@pytest.mark.parametrize("method", [jaxig.saliency, jaxig.gradient_x_input])
def test_integer_targets_and_all(method):
    per_k = [method(linear_k, X, target=k) for k in range(3)]
    for k, attr in enumerate(per_k):
        col = WK[:, k]
        expected = jnp.abs(col) if method is jaxig.saliency else col * X
        np.testing.assert_allclose(attr, jnp.broadcast_to(expected, X.shape), rtol=1e-6)
    all_k = method(linear_k, X, target="all")
    assert all_k.shape == (3,) + X.shape
    np.testing.assert_allclose(all_k, jnp.stack(per_k), rtol=1e-6)
    mixed = method(linear_k, X, target=jnp.array([2, 0, 1]))
    np.testing.assert_allclose(mixed, jnp.stack([per_k[2][0], per_k[0][1], per_k[1][2]]), rtol=1e-6)


def test_gradient_x_input_all_targets_delta_shape():
    attr, info = jaxig.gradient_x_input(linear_k, X, BASE, target="all", return_info=True)
    assert attr.shape == (3,) + X.shape and info.delta.shape == (3, X.shape[0])
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)


def test_pytree_inputs():
    wa, wb = jnp.array([1.0, -2.0]), jnp.array([[0.5], [3.0], [-1.0]])

    def additive(x):
        return x["a"] @ wa + (x["b"] @ wb)[:, 0] ** 2

    x = {"a": X[:, :2], "b": X[:, 2:]}
    sal = jaxig.saliency(additive, x, absolute=False)
    u = (x["b"] @ wb)[:, 0]
    np.testing.assert_allclose(sal["a"], jnp.broadcast_to(wa, x["a"].shape), rtol=1e-6)
    np.testing.assert_allclose(sal["b"], 2 * u[:, None] * wb[:, 0], rtol=1e-5)
    gxi, info = jaxig.gradient_x_input(additive, x, {"a": 0.0 * x["a"], "b": x["b"][:1]}, return_info=True)
    np.testing.assert_allclose(gxi["a"], wa * x["a"], rtol=1e-6)
    np.testing.assert_allclose(gxi["b"], sal["b"] * (x["b"] - x["b"][:1]), rtol=1e-5, atol=1e-7)
    assert info.delta.shape == (X.shape[0],)


@pytest.mark.parametrize("method", [jaxig.saliency, jaxig.gradient_x_input])
def test_jit_and_vmap(method):
    eager = method(single_index, X, target=None)
    np.testing.assert_allclose(jax.jit(lambda x: method(single_index, x))(X), eager, rtol=1e-6)
    stacked = jnp.stack([X, 2 * X, -X])
    batched = jax.vmap(lambda x: method(single_index, x))(stacked)
    for v in range(3):
        np.testing.assert_allclose(batched[v], method(single_index, stacked[v]), rtol=1e-5, atol=1e-7)


def test_grad_with_respect_to_parameters():
    def through_jaxig(w):
        return jnp.sum(jaxig.saliency(lambda x: jnp.tanh(x @ w), X, absolute=False) ** 2) + jnp.sum(
            jaxig.gradient_x_input(lambda x: jnp.tanh(x @ w), X, BASE))

    def by_hand(w):
        sal = (1 - jnp.tanh(X @ w) ** 2)[:, None] * w
        return jnp.sum(sal ** 2) + jnp.sum(sal * (X - BASE))

    np.testing.assert_allclose(jax.grad(through_jaxig)(W), jax.grad(by_hand)(W), rtol=1e-5, atol=1e-6)


def test_new_weights_compile_nothing_and_are_followed():
    def make(w):
        return lambda x: jnp.tanh(x @ w)

    w2 = 2 * W
    jaxig.saliency(make(W), X, absolute=False)
    with count_compiles() as compiles:
        attr = jaxig.saliency(make(w2), X, absolute=False)
    assert len(compiles) == 0
    np.testing.assert_allclose(attr, (1 - jnp.tanh(X @ w2) ** 2)[:, None] * w2, rtol=1e-5, atol=1e-7)


def test_errors():
    with pytest.raises(ValueError, match="out of range"):
        jaxig.saliency(linear_k, X, target=3)
    with pytest.raises(ValueError, match="out of range"):
        jaxig.gradient_x_input(linear_k, X, target=jnp.array([0, 5, 1]))
    with pytest.raises(ValueError, match="say which to explain"):
        jaxig.saliency(linear_k, X)
    with pytest.raises(ValueError, match="baseline shape"):
        jaxig.gradient_x_input(linear, X, jnp.zeros(4))
    with pytest.raises(TypeError, match="callable"):
        jaxig.saliency("not a model", X)
    with pytest.raises(TypeError, match="float inputs"):
        jaxig.gradient_x_input(linear, X.astype(jnp.int32))
