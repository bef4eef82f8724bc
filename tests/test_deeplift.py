"""DeepLift (rescale rule) and DeepLiftSHAP: closed forms, summation-to-delta, transforms, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxig

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Each test draws the same numbers whatever ran before it."""
    global RNG
    RNG = np.random.default_rng(0)


def _arr(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(np.float32)


def test_linear_model_gives_weight_times_difference():
    w, x, b = _arr(5), _arr(4, 5), _arr(4, 5)
    attr = jaxig.deeplift(lambda z: z @ w + 0.7, x, b)
    np.testing.assert_allclose(attr, w * (x - b), rtol=1e-6, atol=1e-6)


def test_single_relu_unit_closed_form():
    # relu(w.x + c): every feature shares the multiplier (relu(z) - relu(z')) / (z - z').
    w, c = _arr(6), np.float32(0.1)
    x = np.array([np.abs(w) * 0.5, -np.abs(w) * 0.5, np.sign(w) * 0.3], np.float32)
    b = np.array([-np.abs(w) * 0.2, np.abs(w) * 0.1, np.sign(w) * -0.4], np.float32)
    z, zb = x @ w + c, b @ w + c
    secant = (np.maximum(z, 0) - np.maximum(zb, 0)) / (z - zb)
    attr = jaxig.deeplift(lambda u: jax.nn.relu(u @ w + c), x, b)
    np.testing.assert_allclose(attr, secant[:, None] * w * (x - b), rtol=1e-5, atol=1e-6)


def test_one_hidden_layer_relu_net_by_hand():
    w1, c1, w2 = _arr(4, 7), _arr(7), _arr(7, 3)
    x, b = _arr(5, 4), _arr(5, 4)
    f = lambda u: jnp.maximum(u @ w1 + c1, 0.0) @ w2
    h, hb = x @ w1 + c1, b @ w1 + c1
    s = (np.maximum(h, 0) - np.maximum(hb, 0)) / (h - hb)           # (5, 7) rescale multipliers
    expected = np.einsum("ij,bj,j->bi", w1, s, w2[:, 2]) * (x - b)  # m_i = sum_j w1_ij s_j w2_j
    attr = jaxig.deeplift(f, x, b, target=2)
    np.testing.assert_allclose(attr, expected, rtol=1e-4, atol=1e-6)


def test_secant_falls_back_to_the_gradient_where_input_and_baseline_agree():
    x = np.array([[0.5, -1.0]], np.float32)
    attr = jaxig.deeplift(lambda u: jnp.sum(jnp.tanh(u), axis=1), x, x, multiply_by_inputs=False)
    np.testing.assert_allclose(attr, 1 - np.tanh(x) ** 2, rtol=1e-6)


ACTS = [jax.nn.relu, jnp.tanh, jax.nn.sigmoid, jax.nn.softplus, jax.nn.elu, jax.nn.leaky_relu,
        jax.nn.silu, jax.nn.gelu, lambda z: jnp.clip(z, -1.0, 1.0), lambda z: z * jnp.exp(-z * z)]


@pytest.mark.parametrize("act", ACTS, ids=[getattr(a, "__name__", "lambda") for a in ACTS])
def test_summation_to_delta_on_random_mlps(act):
    w1, c1, w2, c2, w3 = _arr(6, 16), _arr(16), _arr(16, 8), _arr(8), _arr(8, 3)
    f = lambda u: act(act(u @ w1 + c1) @ w2 + c2) @ w3
    x, b = _arr(10, 6), _arr(10, 6)
    attr, info = jaxig.deeplift(f, x, b, target="all", return_info=True)
    assert attr.shape == (3, 10, 6) and info.delta.shape == (3, 10)
    scale = np.max(np.abs(f(x) - f(b)))
    assert np.max(np.abs(info.delta)) <= 1e-5 * scale
    sums = np.asarray(attr).sum(-1)
    np.testing.assert_allclose(sums, (f(x) - f(b)).T, atol=1e-5 * scale)


def test_products_and_quotients_of_input_dependent_values_are_complete():
    # LayerNorm-like normalisation and a gated unit: the bilinear and division rules are exact.
    w = _arr(5, 5)

    def f(u):
        h = u @ w
        mu = h.mean(-1, keepdims=True)
        h = (h - mu) / jnp.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + 1e-3)
        return jnp.sum(h * jax.nn.sigmoid(u) + jnp.maximum(h, u), axis=-1)

    x, b = _arr(6, 5), _arr(6, 5)
    _, info = jaxig.deeplift(f, x, b, return_info=True)
    assert np.max(np.abs(info.delta)) <= 1e-4 * np.max(np.abs(f(x) - f(b)))


@pytest.mark.parametrize("order", ["relu-pool", "pool-relu"])
def test_maxpool_keeps_summation_to_delta(order):
    k, w = _arr(3, 2, 3, 3), _arr(3 * 3 * 3, 2)
    pool = lambda z: lax.reduce_window(z, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def f(u):
        z = lax.conv_general_dilated(u, k, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        z = pool(jax.nn.relu(z)) if order == "relu-pool" else jax.nn.relu(pool(z))
        return z.reshape(z.shape[0], -1) @ w

    x, b = _arr(4, 2, 6, 6), _arr(4, 2, 6, 6)
    attr, info = jaxig.deeplift(f, x, b, target=1, return_info=True)
    assert np.max(np.abs(info.delta)) <= 1e-5 * np.max(np.abs(f(x) - f(b)))
    assert np.count_nonzero(np.asarray(attr)) > 0


def test_maxpool_routes_each_window_to_the_larger_side():
    # One window [x0, x1]: y - y' goes to x's argmax if y >= y', else to the baseline's argmax.
    f = lambda u: lax.reduce_window(u, -jnp.inf, lax.max, (1, 2), (1, 2), "VALID")[:, 0]
    x = np.array([[3.0, 1.0], [0.0, 1.0]], np.float32)
    b = np.array([[0.0, 2.0], [2.0, 4.0]], np.float32)
    attr = jaxig.deeplift(f, x, b)
    np.testing.assert_allclose(attr, [[1.0, 0.0], [0.0, -3.0]], atol=1e-6)


def test_pytree_inputs_args_and_callable_target():
    w = {"a": _arr(3, 2), "b": _arr(4, 2)}
    f = lambda u, s: jnp.tanh(u["a"] @ w["a"] + u["b"] @ w["b"]) * s
    x = {"a": _arr(5, 3), "b": _arr(5, 4)}
    attr, info = jaxig.deeplift(f, x, 0.5, args=(2.0,), target=lambda out: out.sum(-1), return_info=True)
    assert jax.tree.structure(attr) == jax.tree.structure(x)
    assert np.max(np.abs(info.delta)) <= 1e-5


def test_jit_vmap_and_grad_wrt_parameters():
    w1, w2 = jnp.asarray(_arr(4, 6)), jnp.asarray(_arr(6))
    x, b = _arr(3, 4), _arr(3, 4)
    apply = lambda p, u: jax.nn.relu(u @ p[0]) @ p[1]
    f = jax.tree_util.Partial(apply, (w1, w2))
    eager = jaxig.deeplift(f, x, b)
    np.testing.assert_allclose(jax.jit(lambda u: jaxig.deeplift(f, u, b))(x), eager, rtol=1e-5, atol=1e-7)
    per_example = jax.vmap(lambda u, v: jaxig.deeplift(f, u[None], v[None])[0])(x, b)
    np.testing.assert_allclose(per_example, eager, rtol=1e-5, atol=1e-7)

    # d/dw2 of sum(attributions) = F(x) - F(x') summed: relu(x w1) - relu(b w1), summed over the batch.
    loss = lambda p: jnp.sum(jaxig.deeplift(jax.tree_util.Partial(apply, p), x, b))
    g = jax.grad(loss)((w1, w2))
    h = np.maximum(x @ np.asarray(w1), 0) - np.maximum(b @ np.asarray(w1), 0)
    np.testing.assert_allclose(g[1], h.sum(0), rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(g[0]))


def test_new_weights_compile_nothing():
    from helpers import count_compiles

    x, b = _arr(3, 4), _arr(3, 4)
    jaxig.deeplift(lambda u, w=jnp.asarray(_arr(4)): jnp.tanh(u @ w), x, b)
    with count_compiles() as seen:
        jaxig.deeplift(lambda u, w=jnp.asarray(_arr(4)): jnp.tanh(u @ w), x, b)
    assert len(seen) == 0


def test_deeplift_shap_is_the_mean_over_baselines():
    w1, w2 = _arr(4, 6), _arr(6, 2)
    f = lambda u: jax.nn.sigmoid(u @ w1) @ w2
    x, refs = _arr(3, 4), _arr(5, 4)
    mean = np.mean([jaxig.deeplift(f, x, r, target=1) for r in refs], axis=0)
    attr, info = jaxig.deeplift_shap(f, x, refs, target=1, return_info=True)
    np.testing.assert_allclose(attr, mean, rtol=1e-5, atol=1e-7)
    expected = np.asarray(attr).sum(-1) - (f(x)[:, 1] - f(refs)[:, 1].mean())
    np.testing.assert_allclose(info.delta, expected, atol=1e-5)
    assert np.max(np.abs(info.delta)) <= 1e-5 and info.n_evals == 5
    per_example = np.broadcast_to(refs[:, None], (5, 3, 4))
    np.testing.assert_allclose(jaxig.deeplift_shap(f, x, per_example, target=1), attr, rtol=1e-6)


def test_unsupported_primitives_raise_naming_them():
    x = _arr(2, 3)
    with pytest.raises(TypeError, match="reduce_max"):
        jaxig.deeplift(lambda u: jax.nn.softmax(u)[:, 0], x)
    with pytest.raises(TypeError, match="sort"):
        jaxig.deeplift(lambda u: jnp.sort(u, axis=1)[:, 0], x)
    with pytest.raises(TypeError, match="scan"):
        jaxig.deeplift(lambda u: lax.scan(lambda c, _: (jnp.tanh(c), None), u, None, length=2)[0].sum(1), x)


def test_bad_baselines_and_settings_raise():
    f = lambda u: jnp.tanh(u).sum(1)
    x = _arr(4, 3)
    with pytest.raises(ValueError, match="baseline shape"):
        jaxig.deeplift(f, x, _arr(4, 5))
    with pytest.raises(ValueError, match="eps"):
        jaxig.deeplift(f, x, eps=-1.0)
    with pytest.raises(ValueError, match="needs baselines"):
        jaxig.deeplift_shap(f, x, None)
    with pytest.raises(ValueError, match=r"\(R,\)"):
        jaxig.deeplift_shap(f, x, _arr(3, 5))


def test_float32_secants_of_close_inputs_stay_near_float64():
    """Where z and z' nearly coincide, (g(z) - g(z')) / (z - z') is mostly rounding in float32 (Captum
    keeps it: 9.6e-4 off float64 on the benchmark CNN); the midpoint derivative is used there instead."""
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(16, 32)), rng.normal(size=32), rng.normal(size=(32,))
    x_ref = rng.normal(size=(8, 16)).astype(np.float32)
    x = (x_ref + 3e-4 * rng.normal(size=(8, 16))).astype(np.float32)  # hidden units move by ~1e-3

    def net(dtype):
        p = [jnp.asarray(a, dtype) for a in (w1, b1, w2)]
        return lambda z: jnp.tanh(jax.nn.softplus(z @ p[0] + p[1]) - 1.0) @ p[2]

    with jax.enable_x64(True):
        want = np.asarray(jaxig.deeplift(net(jnp.float64), jnp.asarray(x, jnp.float64),
                                         jnp.asarray(x_ref, jnp.float64)))  # the same float32 inputs
    got = np.asarray(jaxig.deeplift(net(jnp.float32), jnp.asarray(x), jnp.asarray(x_ref)))
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
