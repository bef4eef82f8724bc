"""expected_gradients and expected_integrated_gradients: closed forms, completeness, convergence, transforms."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

import jaxig
from jaxig._pytree import static_field
from jaxig._quadrature.base import AbstractRule

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
REFS = jnp.array([[0.1, 0.2, -0.3, 0.0, 0.5], [1.0, -1.0, 0.0, 0.5, 0.2], [-0.4, 0.3, 0.8, -1.0, 0.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0]])
KEY = jax.random.key(0)


def linear(x):
    return x @ W + 0.7


def smooth(x):  # a nonlinear smooth model with a known IG per reference (single-index)
    return jnp.tanh(x @ W)


def single_index_ig(x, b):
    """Closed form IG of tanh(w.x) from baseline b: w_i (x_i - b_i) (tanh(u) - tanh(ub)) / (u - ub)."""
    u, ub = x @ W, b @ W
    return W * (x - b) * ((jnp.tanh(u) - jnp.tanh(ub)) / (u - ub))[:, None]


MLP = {"w1": jax.random.normal(jax.random.key(1), (5, 8)) / 2, "b1": jnp.linspace(-0.5, 0.5, 8),
       "w2": jax.random.normal(jax.random.key(2), (8, 3)) / 2}


def mlp(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def fixed_draws(batch, n, n_refs, seed=0, noise_scale=0.0, shape=(5,)):
    rng = np.random.default_rng(seed)
    noise = None
    if noise_scale:
        noise = jnp.asarray(noise_scale * rng.standard_normal((batch, n) + shape), jnp.float32)
    return jaxig.ExpectedGradientsDraws(index=jnp.asarray(rng.integers(0, n_refs, (batch, n)), jnp.int32),
                                        alpha=jnp.asarray(rng.uniform(size=(batch, n)), jnp.float32), noise=noise)


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("rule", [jaxig.GaussLegendre(), jaxig.Trapezoid(), jaxig.RiemannLeft(), jaxig.Simpson()],
                         ids=lambda r: type(r).__name__)
def test_eig_of_a_linear_model_is_w_times_x_minus_mean_reference(rule):
    attr, info = jaxig.expected_integrated_gradients(linear, X, REFS, n_steps=5, rule=rule, return_info=True)
    np.testing.assert_allclose(attr, W * (X - REFS.mean(0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)
    assert info.n_evals == 5 * len(REFS)


def test_eig_of_a_single_index_model_is_the_mean_of_closed_form_igs():
    attr = jaxig.expected_integrated_gradients(smooth, X, REFS, n_steps=32)
    expected = jnp.mean(jnp.stack([single_index_ig(X, b) for b in REFS]), 0)
    np.testing.assert_allclose(attr, expected, atol=2e-6)


def test_eg_of_a_linear_model_with_injected_draws_is_w_times_x_minus_drawn_references():
    draws = fixed_draws(3, 6, len(REFS), noise_scale=0.3)
    attr, info = jaxig.expected_gradients(linear, X, REFS, draws=draws, return_info=True)
    # alpha does not matter for a linear model; the noise enters through x~ = x + e
    x_tilde = X[:, None] + draws.noise
    expected = jnp.mean(W * (x_tilde - REFS[draws.index]), 1)
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)  # F(x~) - F(b) is exactly sum w (x~ - b) per draw
    assert info.n_evals == 6


class _FixedNodes(AbstractRule):
    """A test rule: the given alphas with weights 1/n (to replay EG's alphas through integrated_gradients)."""

    nodes: tuple = static_field(default=())

    def nodes_and_weights(self, n):
        return np.asarray(self.nodes), np.full(n, 1.0 / n)


def test_eg_with_one_reference_equals_ig_at_the_drawn_alphas():
    # one example, one reference: EG is IG whose nodes are the drawn alphas (an independent code path)
    x, ref = X[:1], REFS[:1]
    alphas = (0.1, 0.35, 0.8, 0.95)
    draws = jaxig.ExpectedGradientsDraws(index=jnp.zeros((1, 4), jnp.int32), alpha=jnp.asarray([alphas], jnp.float32))
    f = functools.partial(mlp, MLP)
    eg = jaxig.expected_gradients(f, x, ref, draws=draws, target=2)
    ig = jaxig.integrated_gradients(f, x, ref[0], target=2, n_steps=4, rule=_FixedNodes(alphas))
    np.testing.assert_allclose(eg, ig, rtol=1e-5, atol=1e-7)


def test_eg_delta_is_sum_minus_the_mean_drawn_gap():
    f = functools.partial(mlp, MLP)
    draws = fixed_draws(3, 5, len(REFS), seed=3, noise_scale=0.2)
    attr, info = jaxig.expected_gradients(f, X, REFS, draws=draws, target=1, return_info=True)
    x_tilde = X[:, None] + draws.noise
    gap = jnp.mean(jax.vmap(lambda xs, b: f(xs)[:, 1] - f(b)[:, 1], in_axes=1)(x_tilde, REFS[draws.index]), 0)
    np.testing.assert_allclose(info.delta, attr.sum(1) - gap, atol=1e-5)


# ---------------------------------------------------------------- completeness and convergence


def test_eig_completeness_against_the_mean_reference_output():
    f = functools.partial(mlp, MLP)
    attr, info = jaxig.expected_integrated_gradients(f, X, REFS, target=0, n_steps=24, return_info=True)
    gap = f(X)[:, 0] - jnp.mean(f(REFS)[:, 0])
    np.testing.assert_allclose(attr.sum(1), gap, atol=1e-5)
    np.testing.assert_allclose(info.delta, attr.sum(1) - gap, atol=1e-6)
    assert np.max(np.abs(gap)) > 0.05  # the test is not vacuous


@pytest.mark.parametrize("batch_size", [1, 3, None])
def test_eig_is_the_mean_of_integrated_gradients_over_references_for_any_chunking(batch_size):
    f = functools.partial(mlp, MLP)
    refs = jnp.concatenate([REFS, REFS[:1] + 0.3])  # R = 5: chunks of 3 pad the last one
    attr = jaxig.expected_integrated_gradients(f, X, refs, target=2, n_steps=8, baseline_batch_size=batch_size)
    expected = jnp.mean(jnp.stack([jaxig.integrated_gradients(f, X, b, target=2, n_steps=8) for b in refs]), 0)
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)


def test_eig_with_a_random_rule_uses_fresh_alphas_per_reference_and_is_unbiased():
    attr, _ = jaxig.expected_integrated_gradients(smooth, X, REFS, n_steps=4, rule=jaxig.MonteCarlo(), key=KEY,
                                                  return_info=True)
    exact = jaxig.expected_integrated_gradients(smooth, X, REFS, n_steps=32)
    assert not np.allclose(attr, exact, atol=1e-4)  # really random
    one = lambda k: jaxig.expected_integrated_gradients(smooth, X, REFS, n_steps=4, rule=jaxig.MonteCarlo(), key=k)
    many = jax.jit(jax.vmap(one))(jax.random.split(KEY, 200))
    se = many.std(0) / np.sqrt(200)
    assert np.max(np.abs(many.mean(0) - exact) / (se + 1e-6)) < 5
    # chunking the references must not change which alphas each reference gets
    chunked = jaxig.expected_integrated_gradients(smooth, X, REFS, n_steps=4, rule=jaxig.MonteCarlo(), key=KEY,
                                                  baseline_batch_size=3)
    np.testing.assert_allclose(chunked, attr, rtol=1e-5, atol=1e-7)


def test_eg_converges_to_eig_within_its_standard_error():
    f = functools.partial(mlp, MLP)
    exact = jaxig.expected_integrated_gradients(f, X, REFS, target=0, n_steps=32)
    errors = []
    for n in (500, 8000):
        attr, info = jaxig.expected_gradients(f, X, REFS, target=0, key=KEY, n_samples=n, return_info=True)
        z = np.abs(np.asarray(attr - exact)) / np.asarray(info.error)
        assert np.max(z) < 5, f"n_samples={n}: max |z| = {np.max(z):.2f}"
        errors.append(np.asarray(info.error))
    # the standard error shrinks like n ** -1/2: 16x the samples, ~1/4 the error
    ratio = np.median(errors[1] / errors[0])
    assert 0.2 < ratio < 0.3


def test_eg_standard_error_matches_the_spread_over_keys():
    f = functools.partial(mlp, MLP)
    run = lambda k: jaxig.expected_gradients(f, X, REFS, target=0, key=k, n_samples=64, return_info=True)
    attrs, infos = jax.jit(jax.vmap(run))(jax.random.split(KEY, 300))
    spread = attrs.std(0)
    np.testing.assert_allclose(np.median(infos.error / spread), 1.0, atol=0.15)


def test_eg_noise_is_added_to_the_input_with_the_given_stdev():
    # for a linear model EG = w (x + mean noise - mean reference): the noise spread is visible
    one = lambda k: jaxig.expected_gradients(linear, X, REFS[3:], key=k, n_samples=4, stdev=0.5)
    attrs = jax.jit(jax.vmap(one))(jax.random.split(KEY, 2000))
    # a single reference of zeros: attr = w (x + mean_s e_s), mean_s e_s ~ N(0, 0.25 / 4)
    np.testing.assert_allclose(attrs.mean(0), W * X, atol=0.05)
    np.testing.assert_allclose(attrs.std(0), np.abs(W) * 0.25 * np.ones_like(X), rtol=0.1)


def test_eg_per_leaf_stdev_and_sampler_references():
    x = {"a": X[:, :2], "b": X[:, 2:]}
    f = lambda d: d["a"] @ W[:2] + d["b"] @ W[2:]
    calls = []

    def sampler(key, n):
        calls.append(n)
        rows = jax.random.randint(key, (n,), 0, len(REFS))
        return {"a": REFS[rows, :2], "b": REFS[rows, 2:]}

    one = lambda k: jaxig.expected_gradients(f, x, sampler, key=k, n_samples=8, stdev={"a": 0.0, "b": 1.0})
    attrs = jax.jit(jax.vmap(one))(jax.random.split(KEY, 500))
    assert calls == [3 * 8]  # traced once under vmap, with n = B * n_samples
    np.testing.assert_array_equal(attrs["a"].std(0) > 0.01, True)  # references vary
    mean_ref = REFS.mean(0)
    np.testing.assert_allclose(attrs["a"].mean(0), W[:2] * (X[:, :2] - mean_ref[:2]), atol=0.06)
    np.testing.assert_allclose(attrs["b"].mean(0), W[2:] * (X[:, 2:] - mean_ref[2:]), atol=0.12)


# ---------------------------------------------------------------- targets, pytrees, transforms


def test_target_all_stacks_every_output_for_both_methods():
    f = functools.partial(mlp, MLP)
    eig = jaxig.expected_integrated_gradients(f, X, REFS, target="all", n_steps=6)
    draws = fixed_draws(3, 4, len(REFS))
    eg, info = jaxig.expected_gradients(f, X, REFS, target="all", draws=draws, return_info=True)
    assert eig.shape == eg.shape == (3,) + X.shape and info.delta.shape == (3, 3)
    for k in range(3):
        np.testing.assert_allclose(eig[k], jaxig.expected_integrated_gradients(f, X, REFS, target=k, n_steps=6),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(eg[k], jaxig.expected_gradients(f, X, REFS, target=k, draws=draws),
                                   rtol=1e-5, atol=1e-7)


def test_pytree_inputs_match_the_flat_computation():
    f = functools.partial(mlp, MLP)
    tree_f = lambda d: f(jnp.concatenate([d["u"], d["v"]], 1))
    split = lambda a: {"u": a[..., :2], "v": a[..., 2:]}
    draws = fixed_draws(3, 5, len(REFS), noise_scale=0.1)
    tree_draws = draws.replace(noise=split(draws.noise))
    for method, kw in ((jaxig.expected_integrated_gradients, {"n_steps": 6}), (jaxig.expected_gradients, {})):
        flat = method(f, X, REFS, target=1, **kw, **({} if kw else {"draws": draws}))
        tree = method(tree_f, split(X), split(REFS), target=1, **kw, **({} if kw else {"draws": tree_draws}))
        np.testing.assert_allclose(jnp.concatenate([tree["u"], tree["v"]], 1), flat, rtol=1e-5, atol=1e-7)


def test_jit_and_vmap_over_keys_and_inputs():
    f = functools.partial(mlp, MLP)
    keys = jax.random.split(KEY, 3)
    eg = lambda k: jaxig.expected_gradients(f, X, REFS, target=0, key=k, n_samples=6)
    batched = jax.jit(jax.vmap(eg))(keys)
    looped = jnp.stack([eg(k) for k in keys])
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-7)
    assert not np.allclose(looped[0], looped[1])  # different keys, different draws
    eig = lambda x: jaxig.expected_integrated_gradients(f, x, REFS, target=0, n_steps=6)
    per_example = jax.jit(jax.vmap(lambda xi: eig(xi[None])[0]))(X)
    np.testing.assert_allclose(per_example, eig(X), rtol=1e-5, atol=1e-7)


def test_new_weights_compile_nothing():
    f1, f2 = functools.partial(mlp, MLP), functools.partial(mlp, jax.tree.map(lambda p: p * 1.1, MLP))
    jaxig.expected_integrated_gradients(f1, X, REFS, target=0, n_steps=6)
    jaxig.expected_gradients(f1, X, REFS, target=0, key=KEY)
    refs2, key2 = REFS + 1.0, jax.random.key(5)
    with count_compiles() as compiles:
        jaxig.expected_integrated_gradients(f2, X, refs2, target=0, n_steps=6)
        jaxig.expected_gradients(f2, X, refs2, target=0, key=key2)
    assert len(compiles) == 0


def test_grad_of_eig_with_respect_to_linear_weights_is_closed_form():
    c = jnp.arange(15.0).reshape(3, 5) / 10
    loss = lambda w: jnp.sum(c * jaxig.expected_integrated_gradients(lambda x: x @ w, X, REFS, n_steps=4))
    # EIG = w (x - mean b) so d/dw sum c * EIG = sum_b c (x - mean b)
    np.testing.assert_allclose(jax.grad(loss)(W), jnp.sum(c * (X - REFS.mean(0)), 0), rtol=1e-5)


def test_grad_of_eig_with_respect_to_mlp_params_matches_the_mean_of_ig_grads():
    def loss_eig(p):
        return jnp.sum(jaxig.expected_integrated_gradients(jax.tree_util.Partial(mlp, p), X, REFS, target=0,
                                                           n_steps=6) ** 2)

    def loss_ig(p):
        igs = [jaxig.integrated_gradients(jax.tree_util.Partial(mlp, p), X, b, target=0, n_steps=6) for b in REFS]
        return jnp.sum((sum(igs) / len(REFS)) ** 2)

    g1, g2 = jax.grad(loss_eig)(MLP), jax.grad(loss_ig)(MLP)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g1)) > 1e-3


def test_deterministic_method_ignores_key_and_random_one_needs_it():
    a = jaxig.expected_integrated_gradients(linear, X, REFS, n_steps=4, key=KEY)
    np.testing.assert_allclose(a, jaxig.expected_integrated_gradients(linear, X, REFS, n_steps=4))
    with pytest.raises(ValueError, match=r"key=jax.random.key\(0\)"):
        jaxig.expected_gradients(linear, X, REFS)
    with pytest.raises(ValueError, match="key=jax.random.key"):
        jaxig.expected_integrated_gradients(linear, X, REFS, rule=jaxig.MonteCarlo())


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("method", ["eg", "eig"])
def test_baselines_without_a_reference_axis(method):
    call = _call(method)
    with pytest.raises(ValueError, match=r"\(R,\) \+ \(5,\).*baseline\[None\]"):
        call(REFS[0])
    with pytest.raises(ValueError, match=r"shape \(4, 6\)"):
        call(jnp.zeros((4, 6)))
    with pytest.raises(ValueError, match="R = 0"):
        call(jnp.zeros((0, 5)))
    with pytest.raises(ValueError, match="distribution of reference examples"):
        call(0.0)
    with pytest.raises(ValueError, match="structure"):
        call({"a": REFS, "b": REFS})
    with pytest.raises(TypeError, match="real numbers"):
        call(REFS > 0)


def _call(method):
    if method == "eg":
        return lambda b: jaxig.expected_gradients(linear, X, b, key=KEY)
    return lambda b: jaxig.expected_integrated_gradients(linear, X, b, n_steps=4)


def test_leaves_disagreeing_on_the_number_of_references():
    x = {"a": X[:, :2], "b": X[:, 2:]}
    with pytest.raises(ValueError, match="same leading reference axis"):
        jaxig.expected_integrated_gradients(lambda d: d["a"].sum(1), x, {"a": REFS[:, :2], "b": REFS[:3, 2:]})


@pytest.mark.parametrize("n,err", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_n_samples(n, err):
    with pytest.raises(err, match="n_samples"):
        jaxig.expected_gradients(linear, X, REFS, key=KEY, n_samples=n)


@pytest.mark.parametrize("stdev", [-0.1, float("nan"), (0.1, 0.2)])
def test_bad_stdev(stdev):
    with pytest.raises(ValueError, match="stdev"):
        jaxig.expected_gradients(linear, X, REFS, key=KEY, stdev=stdev)


def test_sampler_returning_wrong_shapes():
    with pytest.raises(ValueError,
                       match=r"returned references has shape \(15, 7\).*must return shape \(15,\) \+ \(5,\)"):
        jaxig.expected_gradients(linear, X, lambda k, n: jnp.zeros((n, 7)), key=KEY)
    with pytest.raises(ValueError, match=r"R = 4 rows for n = 15"):
        jaxig.expected_gradients(linear, X, lambda k, n: REFS, key=KEY)
    with pytest.raises(TypeError, match="draw them from the sampler first"):
        jaxig.expected_integrated_gradients(linear, X, lambda k, n: REFS)


def test_bad_draws():
    draws = fixed_draws(3, 5, len(REFS))
    with pytest.raises(ValueError, match=r"draws.index has shape \(3, 4\); it needs shape \(B, n_samples\) = \(3, 5\)"):
        jaxig.expected_gradients(linear, X, REFS, draws=draws.replace(index=draws.index[:, :4]))
    with pytest.raises(ValueError, match=r"n_samples=6 but draws hold 5"):
        jaxig.expected_gradients(linear, X, REFS, draws=draws, n_samples=6)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 2\)"):
        jaxig.expected_gradients(linear, X, REFS[:2], draws=draws.replace(index=draws.index * 0 + 3))
    with pytest.raises(ValueError, match="noise is draws.noise"):
        jaxig.expected_gradients(linear, X, REFS, draws=draws, stdev=0.1)
    with pytest.raises(ValueError, match=r"draws.noise has shape \(3, 5\)"):
        jaxig.expected_gradients(linear, X, REFS, draws=draws.replace(noise=jnp.zeros((3, 5))))
    with pytest.raises(ValueError, match="sample the references yourself"):
        jaxig.expected_gradients(linear, X, lambda k, n: REFS, draws=draws)
    with pytest.raises(TypeError, match="ExpectedGradientsDraws"):
        jaxig.expected_gradients(linear, X, REFS, draws=(draws.index, draws.alpha))


def test_target_out_of_range_and_bad_batch_sizes():
    f = functools.partial(mlp, MLP)
    with pytest.raises(ValueError, match="out of range"):
        jaxig.expected_gradients(f, X, REFS, target=3, key=KEY)
    with pytest.raises(ValueError, match="out of range"):
        jaxig.expected_integrated_gradients(f, X, REFS, target=3, n_steps=4)
    with pytest.raises(ValueError, match="baseline_batch_size"):
        jaxig.expected_integrated_gradients(f, X, REFS, target=0, baseline_batch_size=0)
    with pytest.raises(ValueError, match="sample_batch_size"):
        jaxig.expected_gradients(f, X, REFS, target=0, key=KEY, sample_batch_size=0)
