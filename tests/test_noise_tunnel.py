"""noise_tunnel against closed forms: linear models (exact for any noise), a quadratic (expectations)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
WK = jnp.array([[0.8, -1.5, 0.3], [2.0, -0.2, 0.4], [0.1, 0.9, -1.1], [-0.6, 0.5, 1.3], [1.2, 0.0, -0.7]])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
BASE = jnp.array([0.1, 0.2, -0.3, 0.0, 0.5])
A = jnp.array([[1.0, 0.3, -0.2, 0.0, 0.1], [0.3, -0.5, 0.4, 0.2, 0.0], [-0.2, 0.4, 0.8, -0.3, 0.2],
               [0.0, 0.2, -0.3, 0.6, 0.1], [0.1, 0.0, 0.2, 0.1, -0.9]])  # symmetric
KEY = jax.random.key(0)
# XLA takes ~1 s of CPU to compile a draw of normals, so tests that are not about the key inject
# noise (the ``noise=`` path skips the draw) and keyed calls are kept few.
EPS = 0.5 * jax.random.normal(jax.random.key(7), (7,) + X.shape)
SIGNED = functools.partial(jaxig.saliency, absolute=False)
IG16 = functools.partial(jaxig.integrated_gradients, n_steps=16)


def linear(x):
    return x @ W + 0.7


def linear_k(x):
    return x @ WK


def quadratic(x):
    return jnp.einsum("bi,ij,bj->b", x, A, x)


def single_index(x):
    return jnp.tanh(x @ W)


@pytest.mark.parametrize("sample_batch_size", [None, 3])
def test_linear_model_smoothgrad_is_the_weights_for_any_noise(sample_batch_size):
    for reduce, expected in (("smoothgrad", W), ("smoothgrad_sq", W ** 2), ("vargrad", 0 * W)):
        tunnel = jaxig.noise_tunnel(SIGNED, n_samples=7, reduce=reduce, sample_batch_size=sample_batch_size)
        attr = tunnel(linear, X, noise=6.0 * EPS)
        np.testing.assert_allclose(attr, jnp.broadcast_to(expected, X.shape), rtol=1e-5, atol=1e-6)


def test_injected_noise_gives_the_closed_form_of_a_quadratic():
    tunnel = jaxig.noise_tunnel(SIGNED, n_samples=7, stdev=1.0)
    eps = EPS
    grads = jnp.einsum("ij,sbj->sbi", 2 * A, X[None] + eps)  # grad x^T A x = 2 A x, per sample
    np.testing.assert_allclose(tunnel(quadratic, X, noise=eps), grads.mean(0), rtol=1e-5, atol=1e-5)
    for reduce, expected in (("smoothgrad_sq", (grads ** 2).mean(0)), ("vargrad", grads.var(0))):
        t = jaxig.noise_tunnel(SIGNED, n_samples=7, reduce=reduce)
        np.testing.assert_allclose(t(quadratic, X, noise=eps), expected, rtol=1e-4, atol=1e-5)


def test_quadratic_converges_to_its_expectations():
    # x_s = x + eps, eps ~ N(0, s^2 I): E[2A x_s] = 2Ax, Var_i = 4 s^2 sum_j A_ij^2.
    n, s = 4096, 0.4
    mean = 2 * X @ A
    var = 4 * s ** 2 * jnp.sum(A ** 2, 1)
    kw = dict(n_samples=n, stdev=s, sample_batch_size=1024)
    sg = jaxig.noise_tunnel(SIGNED, **kw)
    eps = sg.draw_noise(KEY, X)  # one draw, shared by the three reductions
    sg = sg(quadratic, X, noise=eps)
    stderr = jnp.sqrt(var / n)
    assert float(jnp.max(jnp.abs(sg - mean) / stderr)) < 5.0
    vg = jaxig.noise_tunnel(SIGNED, reduce="vargrad", **kw)(quadratic, X, noise=eps)
    np.testing.assert_allclose(vg, jnp.broadcast_to(var, X.shape), rtol=0.15)  # chi^2: sd ~ sqrt(2/n)=2%
    sq = jaxig.noise_tunnel(SIGNED, reduce="smoothgrad_sq", **kw)(quadratic, X, noise=eps)
    np.testing.assert_allclose(sq, mean ** 2 + var, rtol=0.15, atol=0.05)
    # the tolerance can tell: the noiseless gradient is far from the expectation of the square
    assert float(jnp.max(jnp.abs(sq - mean ** 2))) > 0.3


def test_draw_noise_is_what_the_key_draws_and_has_the_stated_scale():
    tunnel = jaxig.noise_tunnel(IG16, n_samples=4, stdev=0.3)
    eps = tunnel.draw_noise(KEY, X)
    assert eps.shape == (4,) + X.shape
    np.testing.assert_allclose(tunnel(single_index, X, key=KEY), tunnel(single_index, X, key=KEY, noise=eps),
                               rtol=1e-6, atol=1e-7)
    big = jaxig.noise_tunnel(SIGNED, n_samples=4000, stdev=0.3).draw_noise(KEY, X)
    assert abs(float(jnp.std(big)) - 0.3) < 0.01 and abs(float(jnp.mean(big))) < 0.01


def test_stdev_spread_is_relative_to_each_examples_range_per_leaf():
    x = {"a": X, "b": 100.0 * X[:, :2]}
    eps = jaxig.noise_tunnel(SIGNED, n_samples=3000, stdev_spread=0.2).draw_noise(KEY, x)
    for name, leaf in x.items():
        span = leaf.max(1) - leaf.min(1)
        np.testing.assert_allclose(eps[name].std(axis=(0, 2)), 0.2 * span, rtol=0.05)
    default = jaxig.noise_tunnel(SIGNED, n_samples=3000)  # neither given: PAIR's 15% spread
    assert default.stdev is None and default.stdev_spread == 0.15
    np.testing.assert_allclose(default.draw_noise(KEY, X).std(axis=(0, 2)), 0.15 * (X.max(1) - X.min(1)), rtol=0.05)


def test_composes_with_integrated_gradients_and_reports_info():
    n = 7
    tunnel = jaxig.noise_tunnel(IG16, n_samples=n, stdev=0.2)
    eps = 0.4 * EPS
    attr, info = tunnel(single_index, X, BASE, noise=eps, return_info=True)
    per_sample = [jaxig.integrated_gradients(single_index, X + eps[s], BASE, n_steps=16, return_info=True)
                  for s in range(n)]
    np.testing.assert_allclose(attr, jnp.mean(jnp.stack([a for a, _ in per_sample]), 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, jnp.mean(jnp.stack([i.delta for _, i in per_sample]), 0), atol=1e-6)
    assert info.n_evals == 16 * n
    _, vinfo = jaxig.noise_tunnel(IG16, n_samples=n, reduce="vargrad")(single_index, X, noise=eps, return_info=True)
    assert vinfo.delta is None and vinfo.n_evals == 16 * n
    _, sinfo = jaxig.noise_tunnel(jaxig.saliency, n_samples=n)(single_index, X, noise=eps, return_info=True)
    assert sinfo.delta is None and sinfo.n_evals == n


@pytest.mark.parametrize("reduce", jaxig._wrappers.noise_tunnel.REDUCES)
def test_sample_batch_size_changes_only_rounding(reduce):
    method = jaxig.gradient_x_input  # nonlinear f: the samples differ, and it reports delta
    ref, ref_info = jaxig.noise_tunnel(method, n_samples=7, reduce=reduce)(single_index, X, noise=EPS,
                                                                          return_info=True)
    for size in (1, 3, 100):  # scan only; scan + remainder; one chunk
        t = jaxig.noise_tunnel(method, n_samples=7, reduce=reduce, sample_batch_size=size)
        attr, info = t(single_index, X, noise=EPS, return_info=True)
        np.testing.assert_allclose(attr, ref, rtol=1e-5, atol=1e-6)
        assert info.n_evals == ref_info.n_evals
        if reduce == "smoothgrad":
            np.testing.assert_allclose(info.delta, ref_info.delta, atol=1e-6)


def test_targets_and_pytree_inputs():
    tunnel = jaxig.noise_tunnel(jaxig.gradient_x_input, n_samples=7, stdev=0.5)
    eps = EPS
    all_k = tunnel(linear_k, X, noise=eps, target="all")
    assert all_k.shape == (3,) + X.shape
    # linear: mean_s W_k * (x + eps_s) = W_k * (x + mean eps)
    np.testing.assert_allclose(all_k, WK.T[:, None, :] * (X + eps.mean(0))[None], rtol=1e-5, atol=1e-6)
    picked = tunnel(linear_k, X, noise=eps, target=jnp.array([2, 0, 1]))
    np.testing.assert_allclose(picked, all_k[jnp.array([2, 0, 1]), jnp.arange(3)], rtol=1e-6)
    callable_target = tunnel(linear_k, X, noise=eps, target=lambda out: out[:, 0] + out[:, 1])
    np.testing.assert_allclose(callable_target, all_k[0] + all_k[1], rtol=1e-5, atol=1e-6)

    x = {"a": X[:, :2], "b": X[:, 2:]}
    tree_fn = lambda t: t["a"] @ W[:2] + t["b"] @ W[2:]
    tree = jaxig.noise_tunnel(SIGNED, n_samples=7, stdev=0.5)(tree_fn, x, noise={"a": EPS[..., :2], "b": EPS[..., 2:]})
    np.testing.assert_allclose(tree["a"], jnp.broadcast_to(W[:2], x["a"].shape), rtol=1e-6)
    np.testing.assert_allclose(tree["b"], jnp.broadcast_to(W[2:], x["b"].shape), rtol=1e-6)


def test_args_reach_f():
    tunnel = jaxig.noise_tunnel(SIGNED, n_samples=7, stdev=0.1)
    scaled = tunnel(lambda x, c: (x @ W) * c, X, args=(jnp.array([1.0, 2.0, -3.0]),), noise=EPS)
    np.testing.assert_allclose(scaled, jnp.array([1.0, 2.0, -3.0])[:, None] * W, rtol=1e-6)


def test_jit_vmap_and_grad():
    tunnel = jaxig.noise_tunnel(IG16, n_samples=7, stdev=0.2)
    eager = tunnel(single_index, X, key=KEY)
    np.testing.assert_allclose(jax.jit(lambda x, k: tunnel(single_index, x, key=k))(X, KEY), eager,
                               rtol=1e-5, atol=1e-6)
    stacked = jnp.stack([X, -X])
    batched = jax.vmap(lambda x: tunnel(single_index, x, noise=EPS))(stacked)
    for v in range(2):
        np.testing.assert_allclose(batched[v], tunnel(single_index, stacked[v], noise=EPS), rtol=1e-5, atol=1e-6)

    sal = jaxig.noise_tunnel(SIGNED, n_samples=7, stdev=0.2)
    eps = EPS

    def through_jaxig(w):
        return jnp.sum(sal(lambda x: jnp.tanh(x @ w), X, noise=eps) ** 2)

    def by_hand(w):
        xs = X[None] + eps
        return jnp.sum(jnp.mean((1 - jnp.tanh(xs @ w) ** 2)[..., None] * w, 0) ** 2)

    np.testing.assert_allclose(jax.grad(through_jaxig)(W), jax.grad(by_hand)(W), rtol=1e-4, atol=1e-6)


def test_random_inner_method_gets_its_own_key_per_sample():
    mc = functools.partial(jaxig.integrated_gradients, n_steps=4, rule=jaxig.MonteCarlo())
    tunnel = jaxig.noise_tunnel(mc, n_samples=3, stdev=0.0)  # no noise: samples differ only by alphas
    spread = jaxig.noise_tunnel(mc, n_samples=3, stdev=0.0, reduce="vargrad")(single_index, X, key=KEY)
    assert float(jnp.max(spread)) > 1e-6  # different keys per sample
    assert tunnel(single_index, X, key=KEY).shape == X.shape
    with pytest.raises(ValueError, match="PRNG key"):
        tunnel(single_index, X, noise=jnp.zeros((3,) + X.shape))


def test_errors():
    with pytest.raises(TypeError, match="attribution method"):
        jaxig.noise_tunnel("saliency")
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        jaxig.noise_tunnel(SIGNED, n_samples=0)
    with pytest.raises(TypeError, match="n_samples must be a positive int"):
        jaxig.noise_tunnel(SIGNED, n_samples=2.5)
    with pytest.raises(ValueError, match="stdev must be finite and >= 0"):
        jaxig.noise_tunnel(SIGNED, stdev=-0.1)
    with pytest.raises(ValueError, match="stdev_spread must be finite"):
        jaxig.noise_tunnel(SIGNED, stdev_spread=float("nan"))
    with pytest.raises(ValueError, match="at most one of stdev"):
        jaxig.noise_tunnel(SIGNED, stdev=0.1, stdev_spread=0.1)
    with pytest.raises(ValueError, match="reduce='smooth' is not one of"):
        jaxig.noise_tunnel(SIGNED, reduce="smooth")
    with pytest.raises(ValueError, match="sample_batch_size must be at least 1"):
        jaxig.noise_tunnel(SIGNED, sample_batch_size=0)
    tunnel = jaxig.noise_tunnel(SIGNED, n_samples=3)
    with pytest.raises(ValueError, match="pass key=jax.random.key"):
        tunnel(linear, X)
    with pytest.raises(ValueError, match=r"pass shape \(3, 3, 5\)"):
        tunnel(linear, X, noise=jnp.zeros((2,) + X.shape))
    with pytest.raises(ValueError, match="out of range"):
        tunnel(linear_k, X, target=3, key=KEY)
    with pytest.raises(ValueError, match="say which to explain"):
        tunnel(linear_k, X, key=KEY)


def test_new_weights_compile_nothing_and_are_followed():
    from helpers import count_compiles

    tunnel = jaxig.noise_tunnel(SIGNED, n_samples=7)
    w2 = -3.0 * W
    tunnel(lambda x: x @ W, X, noise=EPS)
    with count_compiles() as compiles:
        attr = tunnel(lambda x: x @ w2, X, noise=EPS)  # a new lambda, new weights, same structure
    assert len(compiles) == 0
    np.testing.assert_allclose(attr, jnp.broadcast_to(w2, X.shape), rtol=1e-6)
