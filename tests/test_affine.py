"""Tests of jaxig._jaxpr.affine.split_affine_prefix: f = g o A with A affine, and IG through the split."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxig._jaxpr.affine import split_affine_prefix

jax.config.update("jax_enable_x64", False)

N_STEPS = 16


def _gl(n):
    t, w = np.polynomial.legendre.leggauss(n)
    return jnp.asarray((t + 1) / 2, jnp.float32), jnp.asarray(w / 2, jnp.float32)


def _lerp(x, b, a):
    return jax.tree.map(lambda u, v: v + a * (u - v), x, b)


@functools.partial(jax.jit, static_argnums=(0, 3))
def ig_plain(F, x, b, n=N_STEPS):
    """Gauss-Legendre IG of sum_batch F, straight line b -> x, by vmap over alphas."""
    alphas, weights = _gl(n)
    grads = jax.vmap(lambda a: jax.grad(lambda z: F(z).sum())(_lerp(x, b, a)))(alphas)
    mean = jax.tree.map(lambda t: jnp.tensordot(weights, t, 1), grads)
    return jax.tree.map(lambda u, v, m: (u - v) * m, x, b, mean)


@functools.partial(jax.jit, static_argnums=(0, 3))
def ig_split(F, x, b, n=N_STEPS):
    """The same IG through split_affine_prefix: integrate on the hidden line, pull back once."""
    split = split_affine_prefix(F, x)
    assert split is not None
    A, g = split
    hx, pullback = jax.vjp(A, x)
    hb = A(b)
    alphas, weights = _gl(n)
    grads = jax.vmap(lambda a: jax.grad(lambda h: g(h).sum())(_lerp(hx, hb, a)))(alphas)
    (mean,) = pullback(jax.tree.map(lambda t: jnp.tensordot(weights, t, 1), grads))
    return jax.tree.map(lambda u, v, m: (u - v) * m, x, b, mean)


def _normal(key, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.key(key), shape, jnp.float32)


# --- models -------------------------------------------------------------------------------------

W1, B1, W2 = _normal(1, (6, 16), 0.5), _normal(2, (16,)), _normal(3, (16,), 0.5)
MU, SD = _normal(4, (6,)), 1.0 + jnp.abs(_normal(5, (6,)))


def mlp_standardized(x):
    """(x - mu) / sd, dense, tanh, dense: the affine part is the standardisation and the first layer."""
    h = ((x - MU) / SD) @ W1 + B1
    return jnp.tanh(h) @ W2


K_CONV = _normal(6, (4, 3, 5, 5), 0.2)
B_CONV = _normal(7, (4,))
W_HEAD = _normal(8, (4 * 11 * 11, 2), 0.05)


def cnn(x):
    """NCHW conv (padded, strided) + bias, softplus, flatten, dense; returns class 1."""
    y = lax.conv_general_dilated(x, K_CONV, (2, 2), ((1, 1), (1, 1)),
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    y = jax.nn.softplus(y + B_CONV[None, :, None, None])
    return (y.reshape(y.shape[0], -1) @ W_HEAD)[:, 1]


W_R = _normal(9, (2 * 12 + 4, 8), 0.3)


def reshape_prefix(x):
    """transpose, reshape, pad, slice, concatenate with a constant, scale, then a dense layer."""
    z = jnp.transpose(x, (0, 2, 1)).reshape(x.shape[0], -1)  # (B, 24)
    z = jnp.pad(z, ((0, 0), (1, 1)))[:, 1:-1]
    z = jnp.concatenate([2.0 * z, jnp.ones((x.shape[0], 4))], axis=1)
    return jnp.sin(z @ W_R).sum(axis=1)


@jax.jit
def _inner(x):
    return x @ W1 + B1


def nested_jit(x):
    """The first layer lives inside a nested jit (pjit equation), then a ReLU."""
    return jax.nn.relu(_inner(x)) @ W2


def skip(x):
    """x feeds both a dense layer and a nonlinearity directly: the cut holds x itself."""
    return jnp.tanh(x @ W1 + B1) @ W2 + jnp.sin(x).sum(axis=1)


def two_leaves(xs):
    """A dict input: each leaf through its own dense layer, summed, then tanh."""
    return jnp.tanh(xs["a"] @ W1 + xs["b"] @ W1[:4]) @ W2


MODELS = {
    "mlp_standardized": (mlp_standardized, (5, 6)),
    "cnn": (cnn, (3, 3, 24, 24)),
    "reshape_prefix": (reshape_prefix, (5, 12, 2)),
    "nested_jit": (nested_jit, (5, 6)),
    "skip": (skip, (5, 6)),
}


def _inputs(shape, key=10):
    return _normal(key, shape), 0.3 * _normal(key + 1, shape)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_split_reproduces_f(name):
    f, shape = MODELS[name]
    x, _ = _inputs(shape)
    A, g = split_affine_prefix(f, x)
    np.testing.assert_allclose(jax.jit(lambda z: g(A(z)))(x), jax.jit(f)(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_affine_part_is_affine_along_a_line(name):
    f, shape = MODELS[name]
    x, b = _inputs(shape)
    A, _ = split_affine_prefix(f, x)
    A = jax.jit(A)
    hx, hb = A(x), A(b)
    for a in (0.13, 0.5, 0.91):
        for got, u, v in zip(A(_lerp(x, b, a)), hx, hb):
            np.testing.assert_allclose(got, v + a * (u - v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ig_through_split_equals_plain_ig(name):
    f, shape = MODELS[name]
    x, b = _inputs(shape)
    want = ig_plain(f, x, b)
    got = ig_split(f, x, b)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * float(jnp.abs(want).max()))


def test_pytree_input():
    xs = {"a": _normal(20, (5, 6)), "b": _normal(21, (5, 4))}
    bs = jax.tree.map(jnp.zeros_like, xs)
    A, g = split_affine_prefix(two_leaves, xs)
    np.testing.assert_allclose(g(A(xs)), two_leaves(xs), rtol=1e-6)
    want, got = ig_plain(two_leaves, xs, bs), ig_split(two_leaves, xs, bs)
    for k in xs:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-6)


def test_linear_model_closed_form():
    """f(x) = x @ w + c entirely affine: IG = w * (x - b) exactly, whatever the rule."""
    w = _normal(30, (6,))
    f = lambda x: x @ w + 3.0  # noqa: E731
    x, b = _inputs((4, 6))
    got = ig_split(f, x, b, n=3)
    np.testing.assert_allclose(got, w * (x - b), rtol=1e-5, atol=1e-6)


def test_split_inside_jit_and_grad():
    """The split works on tracers, and IG through it is differentiable in closed-over weights."""
    x, b = _inputs((5, 6))

    def loss(w1, via_split):
        F = lambda z: jnp.tanh(z @ w1 + B1) @ W2  # noqa: E731
        return jnp.sum((ig_split if via_split else ig_plain)(F, x, b) ** 2)

    g_split = jax.jit(jax.grad(loss), static_argnums=1)(W1, True)
    g_plain = jax.jit(jax.grad(loss), static_argnums=1)(W1, False)
    np.testing.assert_allclose(g_split, g_plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "f, splits",
    [
        (lambda x: jnp.tanh(x) @ W2[:6], False),  # nonlinearity first
        (lambda x: ((x * x) @ W1).sum(1), False),  # product of two affine values first
        (lambda x: (x.reshape(x.shape[0], 3, 2) * 2.0).sum((1, 2)), False),  # nothing to save
        (lambda x: jnp.exp(x).sum(1) / (x @ W1).sum(1), True),  # dense layer read by a division
        (lambda x: jnp.diagonal((x @ W1) @ (x @ W1).T), True),  # two dense layers, then product
    ],
    ids=["tanh_first", "square_first", "cheap_affine", "denominator", "product_of_denses"],
)
def test_which_functions_split(f, splits):
    x, b = _inputs((5, 6))
    split = split_affine_prefix(f, x)
    assert (split is not None) == splits
    if splits:
        A, g = split
        np.testing.assert_allclose(jax.jit(lambda z: g(A(z)))(x), f(x), rtol=1e-6)
        want = ig_plain(f, x, b)
        np.testing.assert_allclose(ig_split(f, x, b), want, rtol=2e-5,
                                   atol=2e-6 * float(jnp.abs(want).max()))


def test_integer_input_returns_none():
    f = lambda x: (x.astype(jnp.float32) @ W1).sum(1)  # noqa: E731
    assert split_affine_prefix(f, jnp.ones((5, 6), jnp.int32)) is None


def _two_outputs(x):
    h = jnp.tanh(((x - MU) / SD) @ W1 + B1)
    return jnp.stack([h @ W2, jnp.sin(h).sum(1)], axis=1)  # (B, 2)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_public_ig_matches_reference_on_splittable_models(name):
    """jaxig.integrated_gradients on models with an affine first part (guards the core's use of the split)."""
    import jaxig

    f, shape = MODELS[name]
    x, b = _inputs(shape)
    want = ig_plain(f, x, b)
    for chunk in (None, 5):
        got = jaxig.integrated_gradients(f, x, b, n_steps=N_STEPS, alpha_batch_size=chunk)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * float(jnp.abs(want).max()))


def test_public_ig_all_targets_on_splittable_model():
    import jaxig

    x, b = _inputs((5, 6))
    got = jaxig.integrated_gradients(_two_outputs, x, b, target="all", n_steps=N_STEPS)
    for k in range(2):
        want = ig_plain(lambda z, k=k: _two_outputs(z)[:, k], x, b)
        np.testing.assert_allclose(got[k], want, rtol=2e-5, atol=2e-6 * float(jnp.abs(want).max()))


def test_prng_keys_inside_f_do_not_stop_the_split():
    # key<fry> values have an extended dtype; classifying them must not raise
    def noisy(x):
        noise = jax.random.normal(jax.random.key(0), (W1.shape[1],))
        return jnp.tanh(x @ W1 + noise).sum(1)

    x = jnp.ones((5, W1.shape[0]))
    assert split_affine_prefix(noisy, x) is not None


def test_a_failing_split_warns_and_falls_back_to_the_unsplit_result(monkeypatch):
    """The split only saves time: if it breaks, IG is still right, and the user is told."""
    import jaxig
    import jaxig._methods.integrated as ig_module

    w = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    f = lambda z: jnp.tanh(z @ w).sum(-1)  # noqa: E731
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 5))
    want = jaxig.integrated_gradients(f, x, n_steps=16)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(ig_module, "split_affine_prefix", broken)
    # another structure (a new lambda of the same body would share the compiled program)
    g = lambda z: jnp.tanh(z @ w).sum(-1) * 1.0  # noqa: E731
    with pytest.warns(RuntimeWarning, match="simulated bug"):
        got = jaxig.integrated_gradients(g, x, n_steps=16)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
