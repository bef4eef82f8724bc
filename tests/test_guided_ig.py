"""Guided IG: closed forms of the guided path, its straight-line limit, completeness, batching, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.uniform(0.2, 1.0, size=(3, 6, 6, 1)), jnp.float32)
B = jnp.asarray(RNG.uniform(0.0, 0.1, size=(3, 6, 6, 1)), jnp.float32)
W1 = jnp.asarray(RNG.normal(size=(36, 8)) / 3, jnp.float32)
W2 = jnp.asarray(RNG.normal(size=(8, 3)), jnp.float32)


def mlp(z, w1=W1):
    """A tiny smooth classifier with 3 outputs on (B, 6, 6, 1) images."""
    return jnp.tanh(z.reshape(z.shape[0], -1) @ w1) @ W2


def interaction(z):
    # grad = (x1 + 0.1, x0): at the baseline 0 feature 1 has the smaller |gradient| and keeps it
    # (x0 stays 0) until it reaches its end; then feature 0 moves with gradient x1 + 0.1.
    return z[:, 0] * z[:, 1] + 0.1 * z[:, 0]


KW = dict(target=1, steps=8)  # shared settings: one compiled program serves several tests


def test_linear_model_gets_w_times_displacement_on_any_guided_path():
    w = jnp.asarray(RNG.normal(size=(6, 6, 1)), jnp.float32)
    f = lambda z: jnp.sum(z * w, axis=(1, 2, 3))
    attr, info = jaxig.guided_integrated_gradients(f, X, B, steps=8, max_dist=1.0, return_info=True)
    np.testing.assert_allclose(attr, w * (X - B), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)


def test_unbounded_path_moves_the_low_gradient_feature_first():
    # max_dist=1: feature 1 walks 0 -> x1 with x0 = 0 (earning 0), then feature 0 walks 0 -> x0 at
    # gradient x1 + 0.1, so A = (x0 (x1 + 0.1), 0). With steps a multiple of the L1 shares the switch
    # falls on a step boundary and the Riemann sum is exact. Each example walks its own path.
    x = jnp.array([[1.0, 2.0], [2.0, 1.0]])
    attr = jaxig.guided_integrated_gradients(interaction, x, steps=6, max_dist=1.0)
    # (the straight line would share the product: A = (x0 x1 / 2 + 0.1 x0, x0 x1 / 2) = (1.1, 1) and (1.2, 1))
    np.testing.assert_allclose(attr, [[2.1, 0.0], [2.2, 0.0]], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("setting", [dict(max_dist=0.0), dict(fraction=1.0)], ids=["max_dist=0", "fraction=1"])
def test_straight_settings_reduce_to_left_riemann_ig(setting):
    # max_dist=0 pins every feature to the straight line; fraction=1 moves all of them together.
    attr = jaxig.guided_integrated_gradients(mlp, X, B, **KW, **setting)
    ig = jaxig.integrated_gradients(mlp, X, B, target=1, n_steps=8, rule=jaxig.RiemannLeft(), completeness_rtol=None)
    np.testing.assert_allclose(attr, ig, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(ig))))


def test_completeness_gap_shrinks_with_steps_and_is_reported():
    deltas = []
    for steps in (8, 64):
        attr, info = jaxig.guided_integrated_gradients(mlp, X, B, target=1, steps=steps, return_info=True)
        gap = mlp(X)[:, 1] - mlp(B)[:, 1]
        np.testing.assert_allclose(info.delta, jnp.sum(attr, axis=(1, 2, 3)) - gap, atol=1e-5)
        assert info.n_evals == steps
        deltas.append(np.abs(info.delta))
    assert np.all(deltas[1] < deltas[0] / 4)  # a first-order Riemann sum: about 1 / steps
    assert np.all(deltas[1] <= 5e-2 * np.abs(gap))


def test_batch_equals_examples_walked_one_at_a_time():
    together = jaxig.guided_integrated_gradients(mlp, X, B, **KW)
    for i in range(X.shape[0]):
        alone = jaxig.guided_integrated_gradients(mlp, X[i:i + 1], B[i:i + 1], **KW)
        np.testing.assert_allclose(together[i:i + 1], alone, rtol=1e-5, atol=1e-7)


def test_targets_index_callable_and_all():
    by_index = jaxig.guided_integrated_gradients(mlp, X, B, **KW)
    by_callable = jaxig.guided_integrated_gradients(mlp, X, B, target=lambda out: out[:, 1], steps=8)
    np.testing.assert_allclose(by_callable, by_index, rtol=1e-6, atol=1e-8)
    every, info = jaxig.guided_integrated_gradients(mlp, X, B, target="all", steps=8, return_info=True)
    assert every.shape == (3,) + X.shape and info.delta.shape == (3, X.shape[0])
    np.testing.assert_allclose(every[1], by_index, rtol=1e-5, atol=1e-7)


def test_baseline_equal_to_input_gives_zero():
    np.testing.assert_array_equal(jaxig.guided_integrated_gradients(mlp, X, X, **KW), 0.0)


def test_jit_vmap_and_grad_wrt_parameters():
    eager = jaxig.guided_integrated_gradients(mlp, X, B, **KW)
    jitted = jax.jit(lambda v, b: jaxig.guided_integrated_gradients(mlp, v, b, **KW))(X, B)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-7)
    mapped = jax.vmap(lambda v, b: jaxig.guided_integrated_gradients(mlp, v, b, **KW))(
        jnp.stack([X, X[::-1]]), jnp.stack([B, B[::-1]]))
    np.testing.assert_allclose(mapped[1], eager[::-1], rtol=1e-5, atol=1e-7)
    # The path is the same for F and c F (c > 0 scales every |gradient| alike), so A(c F) = c A(F) and
    # d/dc sum A(c F)^2 = 2 c sum A(F)^2: the derivative flows through the gradients along the path.
    squares = lambda c: jnp.sum(jaxig.guided_integrated_gradients(lambda z: c * mlp(z), X, B, **KW) ** 2)
    np.testing.assert_allclose(jax.grad(squares)(1.5), 3.0 * jnp.sum(eager ** 2), rtol=1e-5)


def test_bad_inputs_and_settings_raise_clear_errors():
    with pytest.raises(TypeError, match="one float array"):
        jaxig.guided_integrated_gradients(lambda d: mlp(d["a"]), {"a": X}, target=1)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        jaxig.guided_integrated_gradients(mlp, X, target=1, steps=0)
    with pytest.raises(TypeError, match="steps must be a Python int"):
        jaxig.guided_integrated_gradients(mlp, X, target=1, steps=8.0)
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="fraction must be in"):
            jaxig.guided_integrated_gradients(mlp, X, target=1, fraction=fraction)
    for max_dist in (-0.01, 1.01):
        with pytest.raises(ValueError, match="max_dist must be in"):
            jaxig.guided_integrated_gradients(mlp, X, target=1, max_dist=max_dist)
    with pytest.raises(ValueError, match="say which to explain"):
        jaxig.guided_integrated_gradients(mlp, X)
