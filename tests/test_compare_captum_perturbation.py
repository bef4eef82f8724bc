"""Perturbation methods against Captum (FeatureAblation, Occlusion, ShapleyValueSampling) on the same weights.

Needs torch + captum (the ``[compare]`` extra); skipped without them. Shapley sampling draws its
orderings inside Captum with ``torch.randperm``; the test replaces Captum's
``permutation_generator`` (an attribute set in ``ShapleyValueSampling.__init__``) by the same
orderings it passes to jaxig as ``permutations``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
from torch import nn  # noqa: E402

import jaxig  # noqa: E402

TOL = 1e-4


def _rel(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = np.max(np.abs(theirs))
    assert scale > 1e-4, "Captum's attributions vanish: the comparison would be vacuous"
    return np.max(np.abs(ours - theirs)) / scale


def _np(t):
    return jnp.asarray(t.detach().numpy())


@pytest.fixture(scope="module")
def mlp():
    """10 -> 16 -> 8 -> 3 ReLU MLP; the JAX function computes x @ W.T + b with torch's weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    params = [(_np(m.weight).T, _np(m.bias)) for m in model if isinstance(m, nn.Linear)]

    def f(x):
        for i, (w, b) in enumerate(params):
            x = x @ w + b
            if i < len(params) - 1:
                x = jax.nn.relu(x)
        return x

    x = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    base = np.random.default_rng(1).standard_normal((1, 10)).astype(np.float32) * 0.3
    mask = np.array([[0, 0, 1, 2, 2, 2, 3, 4, 4, 5]])
    return model, f, x, base, mask


@pytest.fixture(scope="module")
def cnn():
    """conv 3->4 (3x3) ReLU, max-pool 2, dense 64 -> 2, on NCHW images 3x8x8 (the JAX function too)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2)).eval()
    kernel, bias = _np(model[0].weight), _np(model[0].bias).reshape(1, -1, 1, 1)
    w, b = _np(model[4].weight).T, _np(model[4].bias)

    def f(x):  # (B, 3, 8, 8)
        z = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW")) + bias
        z = jax.nn.relu(z)
        z = jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        return z.reshape(z.shape[0], -1) @ w + b  # torch's (C, H, W) flatten order

    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8)).astype(np.float32)
    base = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32) * 0.2
    return model, f, x, base


def test_feature_ablation_with_groups_equals_captum(mlp):
    model, f, x, base, mask = mlp
    target = np.array([0, 1, 2, 1, 0, 2])
    expected = captum_attr.FeatureAblation(model).attribute(
        torch.from_numpy(x), baselines=torch.from_numpy(base), target=torch.from_numpy(target),
        feature_mask=torch.from_numpy(mask), perturbations_per_eval=2).numpy()
    ours = jaxig.feature_ablation(f, jnp.asarray(x), jnp.asarray(base), target=jnp.asarray(target),
                                  feature_mask=mask, perturbations_per_eval=4)
    assert _rel(ours, expected) <= TOL
    singletons = captum_attr.FeatureAblation(model).attribute(torch.from_numpy(x), target=1).numpy()
    assert _rel(jaxig.feature_ablation(f, jnp.asarray(x), target=1), singletons) <= TOL


def test_shapley_sampling_with_the_same_orderings_equals_captum(mlp):
    model, f, x, base, mask = mlp
    perms = np.stack([np.random.default_rng(s).permutation(6) for s in range(7)])
    svs = captum_attr.ShapleyValueSampling(model)
    svs.permutation_generator = lambda n_features, n_samples: iter(perms.tolist())
    expected = svs.attribute(torch.from_numpy(x), baselines=torch.from_numpy(base), target=2,
                             feature_mask=torch.from_numpy(mask), n_samples=len(perms),
                             perturbations_per_eval=3).numpy()
    ours = jaxig.shapley_value_sampling(f, jnp.asarray(x), jnp.asarray(base), target=2, feature_mask=mask,
                                        permutations=perms)
    assert _rel(ours, expected) <= TOL


def test_occlusion_of_a_max_pool_cnn_equals_captum(cnn):
    model, f, x, base = cnn
    expected = captum_attr.Occlusion(model).attribute(
        torch.from_numpy(x), sliding_window_shapes=(1, 3, 3), strides=(1, 2, 2), baselines=torch.from_numpy(base),
        target=1, perturbations_per_eval=8).numpy()
    ours = jaxig.occlusion(f, jnp.asarray(x), jnp.asarray(base), target=1, window=(1, 3, 3), strides=(1, 2, 2))
    assert _rel(ours, expected) <= TOL
    # a window over every channel whose last position is cut off by the edge (8 = 0, 3, 6 with width 3)
    expected = captum_attr.Occlusion(model).attribute(
        torch.from_numpy(x), sliding_window_shapes=(3, 3, 3), strides=(3, 3, 3), target=0).numpy()
    ours = jaxig.occlusion(f, jnp.asarray(x), target=0, window=(3, 3, 3), strides=3)
    assert _rel(ours, expected) <= TOL


def test_feature_ablation_of_superpixels_equals_captum(cnn):
    model, f, x, base = cnn
    mask = (np.arange(8)[:, None] // 4 * 2 + np.arange(8)[None, :] // 4).reshape(1, 1, 8, 8)  # 4 quadrants
    expected = captum_attr.FeatureAblation(model).attribute(
        torch.from_numpy(x), baselines=torch.from_numpy(base), target=0, feature_mask=torch.from_numpy(mask)).numpy()
    ours = jaxig.feature_ablation(f, jnp.asarray(x), jnp.asarray(base), target=0, feature_mask=mask)
    assert _rel(ours, expected) <= TOL
