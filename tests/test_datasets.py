"""Synthetic datasets and closed-form functions: their stated ground truth, checked independently."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from jaxig import datasets

KEY = jax.random.key(0)
IG = functools.partial(jaxig.integrated_gradients, n_steps=64)


def test_pos_neg_noise_recipe():
    X, y, coefs = datasets.pos_neg_noise(KEY, 500)
    assert X.shape == (500, 96) and y.shape == (500,) and coefs.shape == (96,)
    np.testing.assert_allclose(coefs[:32], np.arange(1, 33) / 32)
    np.testing.assert_allclose(coefs[32:64], -np.arange(1, 33) / 32)
    np.testing.assert_array_equal(coefs[64:], 0.0)
    assert float(X.min()) >= -1.0 and float(X.max()) <= 1.0 and float(X.std()) > 0.5  # uniform(-1, 1): sd 0.577
    # y from the recipe's own formula, in NumPy
    Xn = np.asarray(X, np.float64)
    i = np.arange(1, 33)
    y_ref = Xn[:, :32] @ (i / 32) - Xn[:, 32:64] @ (i / 32)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    X2, _, _ = datasets.pos_neg_noise(KEY, 500)
    np.testing.assert_array_equal(X, X2)


def test_pos_neg_noise_sizes_and_errors():
    X, y, coefs = datasets.pos_neg_noise(KEY, 7, n_pos=2, n_neg=3, n_noise=0)
    assert X.shape == (7, 5)
    np.testing.assert_allclose(coefs, [0.5, 1.0, -1 / 3, -2 / 3, -1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="n_samples"):
        datasets.pos_neg_noise(KEY, 0)
    with pytest.raises(ValueError, match="at least one feature"):
        datasets.pos_neg_noise(KEY, 3, 0, 0, 0)


def test_ig_of_the_generating_function_is_coef_times_input():
    X, y, coefs = datasets.pos_neg_noise(KEY, 16)
    attr = IG(lambda x: x @ coefs, X)
    np.testing.assert_allclose(attr, coefs * X, atol=1e-6)


def test_time_series_planted_cells():
    X, y, coefs = datasets.time_series(KEY, 10, n_steps=12, n_features=3, n_planted=5)
    assert X.shape == (10, 12, 3) and coefs.shape == (12, 3)
    assert int((coefs != 0).sum()) == 5
    mags = np.abs(np.asarray(coefs))[np.asarray(coefs) != 0]
    assert mags.min() >= 0.5 and mags.max() <= 1.5
    np.testing.assert_allclose(y, (np.asarray(X) * np.asarray(coefs)).sum(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    b = jnp.full((12, 3), 0.2)
    attr = IG(lambda x: jnp.einsum("btf,tf->b", x, coefs), X, b)
    np.testing.assert_allclose(attr, coefs * (X - b), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(attr)[:, np.asarray(coefs) == 0], 0.0)
    with pytest.raises(ValueError, match="exceeds"):
        datasets.time_series(KEY, 2, n_steps=2, n_features=2, n_planted=5)


def test_image_planted_patches():
    X, y, coefs = datasets.image(KEY, 4, height=8, width=6, channels=2, patch=2)
    assert X.shape == (4, 8, 6, 2) and coefs.shape == (8, 6, 2)
    c = np.asarray(coefs)
    np.testing.assert_allclose(c[:2, :2], 1 / 8)
    np.testing.assert_allclose(c[-2:, -2:], -1 / 8)
    assert np.count_nonzero(c) == 16
    Xn = np.asarray(X)
    np.testing.assert_allclose(y, Xn[:, :2, :2].mean(axis=(1, 2, 3)) - Xn[:, -2:, -2:].mean(axis=(1, 2, 3)),
                               rtol=1e-5, atol=1e-6)
    attr = IG(lambda x: jnp.einsum("bhwc,hwc->b", x, coefs), X)
    np.testing.assert_allclose(attr, coefs * X, atol=1e-6)
    with pytest.raises(ValueError, match="too large"):
        datasets.image(KEY, 1, height=4, width=4, patch=3)


# ---- closed forms


W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
X5 = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
B5 = jnp.array([0.1, 0.2, -0.3, 0.0, 0.5])
A = jnp.array(np.random.default_rng(0).normal(size=(5, 5)), jnp.float32)

CLOSED = {
    "single_index_tanh": datasets.single_index(W),
    "single_index_softplus": datasets.single_index(W, jax.nn.softplus),
    "additive_sin": datasets.additive(W),
    "additive_cube": datasets.additive(W, lambda z: z**3),
    "quadratic": datasets.quadratic(A, c=W),
}


def _numpy_ig(f, x, b, n=20001):
    """IG by a composite trapezoid on n nodes with central-difference gradients in float64 NumPy."""
    x, b = np.asarray(x, np.float64), np.asarray(b, np.float64)
    alphas = np.linspace(0, 1, n)
    h = 1e-4
    out = np.zeros_like(x)
    for i in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[i] = h
        pts = b[None] + alphas[:, None, None] * (x - b)[None]  # (n, B, D)
        g = (f(pts + e) - f(pts - e)) / (2 * h)  # (n, B)
        out[:, i] = (x[:, i] - b[:, i]) * np.trapezoid(g, alphas, axis=0)
    return out


NUMPY_F = {
    "single_index_tanh": lambda p: np.tanh(p @ np.asarray(W, np.float64)),
    "single_index_softplus": lambda p: np.logaddexp(0, p @ np.asarray(W, np.float64)),
    "additive_sin": lambda p: np.sin(p) @ np.asarray(W, np.float64),
    "additive_cube": lambda p: (p**3) @ np.asarray(W, np.float64),
    "quadratic": lambda p: np.einsum("...i,ij,...j->...", p, np.asarray(A, np.float64), p)
    + p @ np.asarray(W, np.float64),
}


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_closed_form_matches_independent_numpy_integral(name):
    cf = CLOSED[name]
    b = jnp.broadcast_to(B5, X5.shape)
    exact = cf.attributions(X5, B5)
    np.testing.assert_allclose(exact, _numpy_ig(NUMPY_F[name], X5, b), rtol=1e-4, atol=1e-5)
    # completeness of the closed form itself
    np.testing.assert_allclose(exact.sum(1), cf.f(X5) - cf.f(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_closed_form_matches_high_step_ig(name):
    cf = CLOSED[name]
    np.testing.assert_allclose(IG(cf.f, X5, B5), cf.attributions(X5, B5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(IG(cf.f, X5), cf.attributions(X5), rtol=1e-4, atol=1e-5)


def test_single_index_degenerate_direction():
    """w.(x - x') = 0: the gradient is constant along the path and IG_i = (x_i - x'_i) w_i g'(w.x')."""
    cf = datasets.single_index(W)
    b = jnp.zeros(5)
    x = jnp.array([[1.5, 0.8, 0.0, 0.0, 0.0]])  # 0.8*1.5 - 1.5*0.8 = 0
    expected = x * W * (1 - jnp.tanh(0.0) ** 2)
    np.testing.assert_allclose(cf.attributions(x, b), expected, atol=1e-6)
    assert np.all(np.isfinite(cf.attributions(x, b)))
    np.testing.assert_allclose(IG(cf.f, x, b), expected, atol=1e-5)


def test_closed_form_errors():
    with pytest.raises(ValueError, match="vector"):
        datasets.single_index(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="square"):
        datasets.quadratic(jnp.ones((2, 3)))


# ---- entry validation: keys, counts, closed-form arguments

GENERATORS = {
    "pos_neg_noise": lambda key, n=3, **kw: datasets.pos_neg_noise(key, n, n_pos=2, n_neg=1, n_noise=1, **kw),
    "time_series": lambda key, n=3, **kw: datasets.time_series(key, n, n_steps=3, n_features=2, n_planted=2, **kw),
    "image": lambda key, n=3, **kw: datasets.image(key, n, height=4, width=4, patch=2, **kw),
}


@pytest.mark.parametrize("gen", sorted(GENERATORS))
@pytest.mark.parametrize("key", [0, 0.5, None, "0", np.array([0, 0], np.int32), jnp.zeros(2)])
def test_generators_refuse_non_keys(gen, key):
    with pytest.raises(TypeError, match=r"key=.* is not a PRNG key; pass key=jax.random.key\(0\)"):
        GENERATORS[gen](key)


def test_both_key_styles_give_the_same_draw():
    new = datasets.pos_neg_noise(jax.random.key(3), 3, 2, 1, 1)[0]
    old = datasets.pos_neg_noise(jax.random.PRNGKey(3), 3, 2, 1, 1)[0]
    np.testing.assert_array_equal(new, old)  # same bits, same draw


@pytest.mark.parametrize("gen", sorted(GENERATORS))
def test_generators_refuse_key_batches(gen):
    with pytest.raises(ValueError, match=r"pass a single key.*jax.vmap"):
        GENERATORS[gen](jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match=r"pass a single key.*jax.vmap"):
        GENERATORS[gen](jnp.zeros((2, 2), jnp.uint32))


def test_generators_vmap_over_keys():
    keys = jax.random.split(KEY, 2)
    X = jax.vmap(lambda k: GENERATORS["pos_neg_noise"](k)[0])(keys)
    np.testing.assert_array_equal(X[1], GENERATORS["pos_neg_noise"](keys[1])[0])


@pytest.mark.parametrize("gen", sorted(GENERATORS))
@pytest.mark.parametrize(("n", "err", "msg"), [
    (None, TypeError, r"n_samples=None of type NoneType is not an integer"),
    (np.float64(3.0), TypeError, r"n_samples=np.float64\(3.0\) .*not an integer.*\(e.g. n_samples=3\)"),
    (3.0, TypeError, r"n_samples=3.0 .*not an integer.*\(e.g. n_samples=3\)"),
    (2.5, TypeError, r"n_samples=2.5 of type float is not an integer; pass an int >= 1$"),
    ("3", TypeError, r"n_samples='3' of type str"),
    (True, TypeError, r"n_samples=True is a bool"),
    (np.bool_(True), TypeError, r"n_samples=np.True_ is a bool"),
    (-1, ValueError, r"n_samples=-1; pass an integer >= 1"),
    (0, ValueError, r"n_samples=0; pass an integer >= 1"),
])
def test_generators_refuse_bad_counts(gen, n, err, msg):
    with pytest.raises(err, match=msg):
        GENERATORS[gen](KEY, n)


def test_generators_accept_numpy_and_0d_integer_counts():
    a = GENERATORS["pos_neg_noise"](KEY, np.int64(3))[0]
    b = GENERATORS["pos_neg_noise"](KEY, np.array(3))[0]
    c = GENERATORS["pos_neg_noise"](KEY, 3)[0]
    assert a.shape[0] == b.shape[0] == 3
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, c)


def test_every_count_argument_is_checked():
    with pytest.raises(TypeError, match=r"n_noise=1.0 .*\(e.g. n_noise=1\)"):
        datasets.pos_neg_noise(KEY, 2, n_noise=1.0)
    with pytest.raises(ValueError, match=r"n_pos=-2; pass an integer >= 0"):
        datasets.pos_neg_noise(KEY, 2, n_pos=-2)
    with pytest.raises(TypeError, match=r"n_neg=False is a bool"):
        datasets.pos_neg_noise(KEY, 2, n_neg=False)
    with pytest.raises(TypeError, match=r"n_planted=2.0"):
        datasets.time_series(KEY, 2, n_planted=2.0)
    with pytest.raises(TypeError, match=r"n_steps=None"):
        datasets.time_series(KEY, 2, n_steps=None)
    with pytest.raises(ValueError, match=r"n_features=0"):
        datasets.time_series(KEY, 2, n_features=0)
    for name in ("height", "width", "channels", "patch"):
        with pytest.raises(TypeError, match=rf"{name}=2.0"):
            datasets.image(KEY, 2, **{name: 2.0})


def test_traced_count_under_jit_says_make_it_static():
    with pytest.raises(TypeError, match=r"n_samples is a traced value.*static"):
        jax.jit(lambda n: datasets.pos_neg_noise(KEY, n))(3)
    X = jax.jit(datasets.pos_neg_noise, static_argnums=(1, 2, 3, 4))(KEY, 3, 2, 1, 1)[0]
    assert X.shape == (3, 4)


def test_closed_form_argument_errors():
    with pytest.raises(TypeError, match=r"g='tanh' is not callable; pass an elementwise jnp function"):
        datasets.single_index(W, "tanh")
    with pytest.raises(TypeError, match=r"g=None is not callable"):
        datasets.additive(W, None)
    with pytest.raises(TypeError, match=r"coefs='ab' is not an array of real numbers"):
        datasets.additive("ab")
    with pytest.raises(TypeError, match=r"w has dtype bool"):
        datasets.single_index(np.array([True, False]))
    with pytest.raises(TypeError, match=r"w=None"):
        datasets.single_index(None)
    with pytest.raises(ValueError, match=r"c has shape \(3,\) but A is \(2, 2\)"):
        datasets.quadratic(jnp.eye(2), c=jnp.ones(3))


def test_closed_form_integer_weights_are_cast_to_float():
    cf = datasets.additive([1, -2, 3, 0, 1])
    np.testing.assert_allclose(cf.attributions(X5), np.array([1, -2, 3, 0, 1]) * np.sin(X5), rtol=1e-6)
    assert cf.attributions(X5).dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_closed_form_attributions_check_x_and_baseline(name):
    cf = CLOSED[name]
    with pytest.raises(ValueError, match=r"x has shape \(5,\); pass a batch of shape \(B, 5\); .*x\[None\]"):
        cf.attributions(X5[0])
    with pytest.raises(ValueError, match=r"x has shape \(3, 4\); pass a batch of shape \(B, 5\)"):
        cf.attributions(X5[:, :4])
    with pytest.raises(TypeError, match=r"x has dtype int32"):
        cf.attributions(jnp.ones((2, 5), jnp.int32))
    with pytest.raises(ValueError, match=r"baseline shape \(4,\) does not match x of shape \(3, 5\)"):
        cf.attributions(X5, jnp.zeros(4))
    # scalar, (D,), (1, D) and (B, D) baselines all mean the same thing
    b = jnp.full((3, 5), 0.25)
    for bb in (0.25, jnp.full(5, 0.25), jnp.full((1, 5), 0.25), b):
        np.testing.assert_allclose(cf.attributions(X5, bb), cf.attributions(X5, b), rtol=1e-6)
