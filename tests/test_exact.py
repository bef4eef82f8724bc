"""Exact IG for piecewise-linear functions against hand-computed and independently computed integrals."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from jaxig._methods.exact import exact_integrated_gradients


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_one_dimensional_breakpoints_known():
    # F(a) = relu(a - 0.3) + 2 relu(a - 0.7): IG = F(1) - F(0) = 0.7 + 0.6, kinks at 0.3 and 0.7.
    f = lambda x: jax.nn.relu(x[:, 0] - 0.3) + 2 * jax.nn.relu(x[:, 0] - 0.7)
    attr, info = exact_integrated_gradients(f, jnp.array([[1.0]]), return_info=True)
    np.testing.assert_allclose(attr, [[1.3]], rtol=0, atol=1e-14)
    np.testing.assert_allclose(info.breakpoints[0], [0.0, 0.3, 0.7, 1.0], atol=1e-14)
    assert info.n_segments.tolist() == [3] and info.n_evals == 3


def _normal(seed, shape):
    """Gaussian draws from NumPy: each jax.random.normal shape would compile a sampler (~1 s here)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _mlp(seed=0, d=6, h=16, k=3):
    w1 = _normal((seed, 1), (d, h))
    b1 = 0.5 * _normal((seed, 2), (h,))
    w2 = _normal((seed, 3), (h, k))
    return (w1, b1, w2), lambda x: jax.nn.relu(x @ w1 + b1) @ w2


def _reference(params, x, base, t):
    """Exact IG of one example from the analytic kinks of a one-hidden-layer ReLU net (NumPy)."""
    w1, b1, w2 = (np.asarray(p) for p in params)
    z0, dz = base @ w1 + b1, (x - base) @ w1
    with np.errstate(divide="ignore", invalid="ignore"):
        kinks = -z0 / dz
    kinks = np.sort(kinks[(kinks > 0) & (kinks < 1)])
    edges = np.concatenate([[0.0], kinks, [1.0]])
    total = np.zeros_like(x)
    for a, b in zip(edges[:-1], edges[1:]):
        active = (z0 + 0.5 * (a + b) * dz) > 0
        total += (b - a) * (w1 @ (active * w2[:, t]))
    return total * (x - base), edges


def test_relu_mlp_matches_analytic_kinks_batched():
    params, f = _mlp()
    x = _normal(1, (4, 6))
    base = _normal(2, (4, 6))
    target = jnp.array([0, 2, 1, 2])
    attr, info = exact_integrated_gradients(f, x, base, target=target, return_info=True)
    for b in range(4):
        ref, edges = _reference(params, np.asarray(x[b]), np.asarray(base[b]), int(target[b]))
        np.testing.assert_allclose(attr[b], ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(info.breakpoints[b], edges, atol=1e-12)
        assert info.n_segments[b] == len(edges) - 1
    assert np.abs(info.delta).max() < 1e-12
    assert info.n_evals == info.n_segments.sum()


def test_target_all_stacks_single_targets():
    _, f = _mlp(seed=3)
    x = _normal(4, (3, 6))
    every = exact_integrated_gradients(f, x, 0.3, target="all")
    assert every.shape == (3, 3, 6)
    for t in range(3):
        np.testing.assert_allclose(every[t], exact_integrated_gradients(f, x, 0.3, target=t), atol=1e-13)


class _CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(3, (3, 3))(x)), (2, 2), (2, 2))
        x = jnp.abs(nn.Conv(2, (3, 3), padding="VALID")(x)).reshape(x.shape[0], -1)
        return jnp.clip(nn.Dense(4)(x), -1.0, 1.0).max(-1) + jax.nn.leaky_relu(x).sum(-1)


def test_small_cnn_against_fine_midpoint_rule():
    model = _CNN()
    x, base = _normal(0, (2, 8, 8, 1)), _normal(1, (2, 8, 8, 1))
    # LeCun-normal kernels and zero biases as flax's init draws them, but from NumPy on the shapes
    # model.init would create: init compiles a truncated-normal sampler per shape (~10 s on 2 cores).
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(2), x)
    rng = np.random.default_rng(2)
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))
                                                if len(s.shape) > 1 else np.zeros(s.shape)), shapes)
    f = lambda z: model.apply(params, z)
    # chunk_size=8: ~145 pieces per example run as many chunks of one compiled shape (this also
    # covers the multi-chunk rounds); the default would compile the round at sizes 8, 64 and 512.
    attr, info = exact_integrated_gradients(f, x, base, return_info=True, chunk_size=8)
    assert np.all(info.n_segments > 100)
    assert np.abs(info.delta).max() < 1e-12
    fine = jaxig.integrated_gradients(f, x, base, n_steps=8000, rule=jaxig.RiemannMidpoint())
    scale = np.abs(attr).max()
    err = np.abs(attr - fine).max() / scale
    assert err < 1e-3
    # and the exact result is much closer to the fine rule than a coarse one is
    coarse = jaxig.integrated_gradients(f, x, base, n_steps=50)
    assert np.abs(coarse - fine).max() / scale > 5 * err


def test_pytree_input_and_float32():
    f = lambda d: jax.nn.relu(d["a"] - 2 * d["b"]).sum(-1) - jnp.maximum(d["a"], 0.5).sum(-1)
    x = {"a": jnp.linspace(-1, 1, 6).reshape(2, 3), "b": jnp.full((2, 3), 0.15)}
    attr, info = exact_integrated_gradients(f, x, return_info=True)
    assert set(attr) == {"a", "b"}
    assert np.abs(info.delta).max() < 1e-13
    x32 = jax.tree.map(lambda v: v.astype(jnp.float32), x)
    attr32, info32 = exact_integrated_gradients(f, x32, return_info=True)
    assert attr32["a"].dtype == jnp.float32
    np.testing.assert_allclose(attr32["a"], attr["a"], atol=1e-5)


@pytest.mark.parametrize("fn, name", [
    (lambda x: jnp.tanh(x).sum(-1), "tanh"),
    (lambda x: jax.nn.softplus(x).sum(-1), "exp"),
    (lambda x: (x * x).sum(-1), "mul"),
])
def test_not_piecewise_linear_raises_naming_primitive(fn, name):
    with pytest.raises(TypeError, match=f"'{name}"):
        exact_integrated_gradients(fn, jnp.ones((2, 3)))


def test_constant_nonlinearity_is_allowed():
    w = jnp.arange(3.0)
    f = lambda x: jax.nn.relu(x @ jnp.tanh(w))  # tanh of a constant does not break linearity
    attr = exact_integrated_gradients(f, jnp.array([[1.0, 2.0, 3.0]]), -1.0)
    np.testing.assert_allclose(attr.sum(), f(jnp.array([[1.0, 2, 3]]))[0] - f(-jnp.ones((1, 3)))[0],
                               atol=1e-13)


def test_under_jit_raises():
    with pytest.raises(TypeError, match="jax.jit"):
        jax.jit(lambda x: exact_integrated_gradients(lambda z: z.sum(-1), x))(jnp.ones((1, 2)))
