"""jaxig.metrics: closed forms on linear models, the planted datasets, errors, and compilation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

import jaxig
from jaxig import datasets, metrics

# Test arithmetic is done in NumPy: every eager jax operation on a new shape is one more compilation.
B, D = 4, 6
W = np.array([2.0, -1.0, 0.5, 3.0, 0.0, -2.5], np.float32)


def linear(x):
    return x @ W + 0.3


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((B, D)).astype(np.float32)


def _normal(seed, shape, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _drop_subset(key, x, baseline):
    """Removes a random subset S (set to the baseline): I = 1 on S, so I . a is the attribution of S."""
    keep = jax.random.bernoulli(key, 0.6, x.shape)
    return jnp.where(keep, 0.0, 1.0).astype(x.dtype), jnp.where(keep, x, baseline)


# -- infidelity ----------------------------------------------------------------------------------------

def test_infidelity_explicit_matches_formula(x):
    eps, a = _normal(1, (7, B, D), 0.5), _normal(2, (B, D))
    x_np, f = np.asarray(x, np.float64), lambda z: z @ np.asarray(W, np.float64) + 0.3
    dots = np.einsum("pbd,bd->pb", eps, a)
    diffs = f(x_np)[None] - f(x_np[None] - eps)
    expected = np.mean((dots - diffs) ** 2, 0)
    np.testing.assert_allclose(metrics.infidelity(linear, x, a, perturbations=eps), expected, rtol=1e-5)
    beta = np.sum(dots * diffs, 0) / np.sum(dots**2, 0)
    np.testing.assert_allclose(metrics.infidelity(linear, x, a, perturbations=eps, normalize=True),
                               np.mean((beta * dots - diffs) ** 2, 0), rtol=1e-4, atol=1e-6)


def test_infidelity_gaussian_closed_form(x):
    """Gradient attributions of a linear model score 0; others converge to sigma^2 ||a - w||^2."""
    key = jax.random.key(3)
    grad = np.broadcast_to(W, x.shape)
    assert np.max(metrics.infidelity(linear, x, grad, key=key, n_perturb=2000)) < 1e-9
    a = grad + np.array([1.0, 0, 0, -1.0, 0.5, 0], np.float32)
    got = metrics.infidelity(linear, x, a, key=key, n_perturb=2000, noise_scale=0.2)
    np.testing.assert_allclose(got, 0.04 * 2.25, rtol=0.1)
    # normalisation makes the score blind to a constant rescaling
    np.testing.assert_allclose(metrics.infidelity(linear, x, 3 * grad, key=key, n_perturb=2000, normalize=True), 0,
                               atol=1e-8)
    assert np.min(metrics.infidelity(linear, x, 3 * grad, key=key, n_perturb=2000)) > 1e-3


def test_infidelity_subset_removal_exact_ig_is_zero(x):
    """IG of a linear model is complete on every subset: removing S changes F by the attribution of S."""
    base = 0.5
    ig = W * (x - base)
    got = metrics.infidelity(linear, x, ig, base, key=jax.random.key(4), perturb_fn=_drop_subset, n_perturb=16)
    assert np.max(got) < 1e-10
    wrong = metrics.infidelity(linear, x, W * x, base, key=jax.random.key(4), perturb_fn=_drop_subset,
                               n_perturb=16)
    assert np.min(wrong) > 1e-3
    chunked = metrics.infidelity(linear, x, W * x, base, key=jax.random.key(4), perturb_fn=_drop_subset,
                                 n_perturb=16, batch_size=5)  # 3 chunks and a remainder: same draws
    np.testing.assert_allclose(chunked, wrong, rtol=1e-6)


def test_infidelity_jit_grad_and_compiles(x):
    key = jax.random.key(5)
    a = _normal(5, x.shape)
    eager = metrics.infidelity(linear, x, a, key=key)
    np.testing.assert_allclose(jax.jit(lambda a: metrics.infidelity(linear, x, a, key=key))(a), eager, rtol=1e-5)
    eps = _normal(6, (5, B, D))
    g = jax.grad(lambda a: metrics.infidelity(linear, x, a, perturbations=eps).sum())(a)
    resid = np.einsum("pbd,bd->pb", eps, a) - np.einsum("pbd,d->pb", eps, W)
    np.testing.assert_allclose(g, 2 * np.einsum("pb,pbd->bd", resid, eps) / 5, rtol=1e-4, atol=1e-5)
    w2, key2 = jnp.asarray(2 * W), jax.random.key(6)
    with count_compiles() as seen:
        metrics.infidelity(linear, x, a + 1.0, key=key2)
        metrics.infidelity(lambda z: z @ w2 + 0.3, x + 1.0, a, key=key)  # new weights, inputs, attributions
    assert len(seen) == 0


# -- sensitivity_max -----------------------------------------------------------------------------------

def test_sensitivity_max_closed_form(x):
    key = jax.random.key(7)
    x_p = x[None] + np.random.default_rng(7).uniform(-0.1, 0.1, (6, B, D)).astype(np.float32)
    gxi = lambda z: jaxig.gradient_x_input(linear, z)  # W * z: the change is W * (x_p - x)
    ours = metrics.sensitivity_max(gxi, x, perturbed_inputs=x_p)
    change = np.linalg.norm(W * (x_p - x[None]), axis=-1) / np.linalg.norm(W * x, axis=-1)
    np.testing.assert_allclose(ours, change.max(0), rtol=1e-5)
    inf = metrics.sensitivity_max(gxi, x, perturbed_inputs=x_p, norm=np.inf)
    change = np.abs(W * (x_p - x[None])).max(-1) / np.abs(W * x).max(-1)
    np.testing.assert_allclose(inf, change.max(0), rtol=1e-5)
    sal = metrics.sensitivity_max(lambda z: jaxig.saliency(linear, z), x, key=key, radius=0.5, batch_size=6)
    np.testing.assert_allclose(sal, 0.0, atol=1e-7)  # a constant gradient does not move
    # a random draw stays inside the ball: at most radius * ||W|| / ||W x|| per example
    r = metrics.sensitivity_max(gxi, x, key=key, radius=0.05, n_perturb=20, batch_size=6)
    assert np.all(np.asarray(r) <= 0.05 * np.linalg.norm(W) / np.linalg.norm(W * x, axis=-1) + 1e-6)


def test_sensitivity_max_per_example_target(x):
    W2 = np.stack([W, -2 * W], 1)
    f2 = lambda z: z @ W2
    t = np.array([0, 1, 1, 0])
    explain = lambda z, target: jaxig.gradient_x_input(f2, z, target=target)
    x_p = np.broadcast_to(x[None] + np.float32(0.05), (3, B, D))
    ours = metrics.sensitivity_max(explain, x, perturbed_inputs=x_p, target=t, batch_size=2)
    np.testing.assert_allclose(ours, np.linalg.norm(W * 0.05) / np.linalg.norm(W * x, axis=1), rtol=1e-5)


# -- deletion / insertion ------------------------------------------------------------------------------

def _closed_curve(f_x, f_b, unit_attr, insertion=False):
    """The curve of a linear model: F(x) - (sum of the k largest unit attributions), or F(x') + that sum."""
    s = -np.sort(-np.asarray(unit_attr, np.float64), axis=1)
    cum = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(s, 1)], 1)
    return np.asarray(f_b)[:, None] + cum if insertion else np.asarray(f_x)[:, None] - cum


def _trapezoid(y, fr):
    return np.sum((y[:, 1:] + y[:, :-1]) * np.diff(fr) / 2, 1)


def test_deletion_and_insertion_of_linear_model(x):
    base = -0.5
    ig = W * (x - base)
    dele = metrics.deletion_curve(linear, x, ig, base)
    ins = metrics.insertion_curve(linear, x, ig, base)
    np.testing.assert_allclose(dele.fractions, np.arange(D + 1) / D, rtol=1e-6)
    f_b = linear(np.full_like(x, base))
    np.testing.assert_allclose(dele.outputs, _closed_curve(linear(x), f_b, ig), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ins.outputs, _closed_curve(linear(x), f_b, ig, insertion=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dele.auc, _trapezoid(np.asarray(dele.outputs), np.arange(D + 1) / D), rtol=1e-5)
    # the true ordering gives the lowest deletion AUC and the highest insertion AUC of all orderings
    for seed in range(8):
        other = _normal(10 + seed, x.shape)
        assert np.all(metrics.deletion_curve(linear, x, other, base).auc >= dele.auc - 1e-5)
        assert np.all(metrics.insertion_curve(linear, x, other, base).auc <= ins.auc + 1e-5)
    # fewer points: every round(j D / n_steps) units
    sub = metrics.deletion_curve(linear, x, ig, base, n_steps=3)
    np.testing.assert_allclose(sub.fractions, [0, 2 / 6, 4 / 6, 1], rtol=1e-6)
    np.testing.assert_allclose(sub.outputs, np.asarray(dele.outputs)[:, [0, 2, 4, 6]], rtol=1e-6)


def test_time_series_cells_and_features():
    X, coefs = _normal(20, (3, 5, 3)), _normal(21, (5, 3)) * (np.arange(15).reshape(5, 3) % 4 == 0)
    f = lambda z: jnp.einsum("btf,tf->b", z, coefs)
    ig = coefs * X  # exact IG at a zero baseline
    f_x, f_0 = ig.sum((1, 2)), np.zeros(3)
    cells = metrics.deletion_curve(f, X, ig)
    assert cells.outputs.shape == (3, 16)
    np.testing.assert_allclose(cells.outputs, _closed_curve(f_x, f_0, ig.reshape(3, -1)), atol=1e-5)
    per_feature = metrics.deletion_curve(f, X, ig, feature_mask=np.arange(3)[None, :])  # (1, F) broadcasts to (T, F)
    np.testing.assert_allclose(per_feature.fractions, [0, 1 / 3, 2 / 3, 1], rtol=1e-6)
    np.testing.assert_allclose(per_feature.outputs, _closed_curve(f_x, f_0, ig.sum(1)), atol=1e-5)
    per_step = metrics.insertion_curve(f, X, ig, feature_mask=np.arange(5)[:, None], absolute=True)
    order = np.argsort(-np.abs(ig).sum(2), axis=1, kind="stable")
    steps = np.take_along_axis(ig.sum(2), order, 1)
    np.testing.assert_allclose(per_step.outputs[:, 1:], np.cumsum(steps, 1), atol=1e-5)


def test_image_patches():
    X, coefs = _normal(22, (3, 5, 5, 2)), _normal(23, (5, 5, 2))
    f = lambda z: jnp.einsum("bhwc,hwc->b", z, coefs)
    ig = coefs * X
    curve = metrics.deletion_curve(f, X, ig, patch=2)  # 3 x 3 squares, the last row and column 1 pixel wide
    ids = (np.arange(5)[:, None] // 2) * 3 + np.arange(5)[None, :] // 2
    per_patch = np.stack([ig.sum(3)[:, ids == g].sum(1) for g in range(9)], 1)
    assert curve.outputs.shape == (3, 10)
    np.testing.assert_allclose(curve.outputs, _closed_curve(ig.sum((1, 2, 3)), np.zeros(3), per_patch), atol=1e-5)


def test_curve_compiles_once(x):
    base = 0.0
    a = W * x
    metrics.deletion_curve(linear, x, a, base)
    w2 = jnp.asarray(3 * W)
    with count_compiles() as seen:
        metrics.deletion_curve(lambda z: z @ w2 + 0.3, x + 1, a + 1, 0.5)
        jax.jit(lambda a: metrics.deletion_curve(linear, x, a).auc)(a)
    assert len(seen) == 1  # the outer jit only: the metric's program is cached on structure and shapes


# -- ground truth --------------------------------------------------------------------------------------

def test_localisation_on_planted_time_series():
    X, _, coefs = map(np.asarray, datasets.time_series(jax.random.key(3), 6, n_steps=8, n_features=4, n_planted=5))
    f = lambda z: jnp.einsum("btf,tf->b", z, coefs)
    ig = jaxig.integrated_gradients(f, X, n_steps=8)
    planted = coefs != 0
    np.testing.assert_allclose(metrics.mass_fraction(ig, planted), 1.0, rtol=1e-6)
    np.testing.assert_allclose(metrics.rank_correlation(ig, coefs * X), 1.0, rtol=1e-6)
    noise = _normal(4, X.shape)
    share = float(metrics.mass_fraction(noise, planted).mean())
    assert 0.02 < share < 0.4  # about 5 / 32 of the mass
    assert np.abs(metrics.rank_correlation(noise, coefs * X)).mean() < 0.3


def test_rank_correlation_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (5, 12)).astype(np.float32)  # many ties
    r = rng.standard_normal((5, 12)).astype(np.float32)
    r[:, :4] = 0.0
    ours = metrics.rank_correlation(a, r)
    theirs = [stats.spearmanr(a[i], r[i]).statistic for i in range(5)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(metrics.rank_correlation(a, r, absolute=True),
                               [stats.spearmanr(np.abs(a[i]), np.abs(r[i])).statistic for i in range(5)], rtol=1e-5)
    np.testing.assert_allclose(metrics.mass_fraction(a, r[0] != 0), (a * (r[0] != 0)).sum(1) / a.sum(1), rtol=1e-6)


# -- errors --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda x: metrics.infidelity(linear, x, jnp.zeros((B, D + 1)), key=jax.random.key(0)), "shape"),
    (lambda x: metrics.infidelity(linear, x, jnp.zeros((3, B, D)), key=jax.random.key(0)), "target='all'"),
    (lambda x: metrics.infidelity(linear, x, W * x, key=jax.random.key(0), n_perturb=0), "n_perturb"),
    (lambda x: metrics.infidelity(linear, x, W * x), "key=jax.random.key"),
    (lambda x: metrics.infidelity(linear, x, W * x, perturbations=jnp.zeros((2, B, D - 1))), r"\(P,\)"),
    (lambda x: metrics.infidelity(lambda z: jnp.stack([z @ W] * 2, 1), x, W * x, target="all",
                                  key=jax.random.key(0)), "one explained output"),
    (lambda x: metrics.sensitivity_max(lambda z: z, x, key=jax.random.key(0), n_perturb=0), "n_perturb"),
    (lambda x: metrics.sensitivity_max(lambda z: z, x, key=jax.random.key(0), norm="nuc"), "norm"),
    (lambda x: metrics.sensitivity_max(lambda z: z[:, :2], x, key=jax.random.key(0)), "shape"),
    (lambda x: metrics.perturbation_curve(linear, x, W * x, mode="delete"), "mode"),
    (lambda x: metrics.deletion_curve(linear, x, (W * x)[:, :3]), "shape"),
    (lambda x: metrics.deletion_curve(linear, x, W * x, patch=2), "images"),
    (lambda x: metrics.deletion_curve(linear, x, W * x, n_steps=0), "n_steps"),
    (lambda x: metrics.deletion_curve(linear, x, W * x, patch=2, feature_mask=np.arange(D)), "not both"),
    (lambda x: metrics.mass_fraction(W * x, np.ones(D + 1, bool)), "mask shape"),
])
def test_errors(x, call, match):
    with pytest.raises(ValueError, match=match):
        call(x)


def test_attributions_from_numpy_and_functools_partial(x):
    """Attributions from another library are plain arrays; the metrics accept them as they are."""
    a = np.asarray(W * x, np.float64)
    curve = metrics.deletion_curve(functools.partial(lambda w, z: z @ w + 0.3, W), x, a)
    assert curve.outputs.dtype == jnp.float32 and curve.auc.shape == (B,)
