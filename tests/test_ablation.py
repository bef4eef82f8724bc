"""feature_ablation and occlusion against closed forms and a brute-force loop; masks, targets, transforms."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from tests.helpers import count_compiles

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
BASE = jnp.array([0.1, 0.2, -0.3, 0.0, 0.5])
W3 = jnp.array([[0.8, 0.1, -0.4], [-1.5, 0.7, 0.2], [0.3, -0.9, 1.1], [2.0, 0.5, -0.6], [-0.2, 1.3, 0.05]])


def linear(x):
    return x @ W + 0.7


def linear3(x):
    return x @ W3 + jnp.array([0.1, -0.2, 0.3])


def grouped(x):
    """Additive over the groups {0, 1}, {2}, {3, 4}, with interactions inside the groups."""
    return x[:, 0] * x[:, 1] + jnp.tanh(x[:, 2]) + (x[:, 3] + x[:, 4]) ** 2


def grouped_effects(x, b):
    return jnp.stack([x[:, 0] * x[:, 1] - b[0] * b[1], jnp.tanh(x[:, 2]) - jnp.tanh(b[2]),
                      (x[:, 3] + x[:, 4]) ** 2 - (b[3] + b[4]) ** 2], axis=1)


MASK = np.array([0, 0, 1, 2, 2])


def brute_ablation(f, x, b, mask):
    """One ablated batch per group, in a Python loop: the definition, independently of the vmapped code."""
    f = jax.jit(f)
    x, b = np.asarray(x), np.broadcast_to(np.asarray(b), x.shape)
    mask = np.broadcast_to(mask, x.shape)
    fx = np.asarray(f(jnp.asarray(x)))
    out = np.zeros(x.shape, np.float64)
    for g in np.unique(mask):
        xa = np.where(mask == g, b, x)
        drop = fx - np.asarray(f(jnp.asarray(xa)))
        out = np.where(mask == g, drop.reshape((-1,) + (1,) * (x.ndim - 1)), out)
    return out


# -- feature ablation ---------------------------------------------------------------------------------

def test_linear_model_gets_weight_times_difference():
    attr, info = jaxig.feature_ablation(linear, X, BASE, return_info=True)
    np.testing.assert_allclose(attr, W * (X - BASE), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)  # linear with singleton groups: complete
    assert info.n_evals == 5 + 2


def test_groups_of_an_additive_model_get_their_exact_effect():
    attr, info = jaxig.feature_ablation(grouped, X, BASE, feature_mask=MASK, return_info=True)
    effects = grouped_effects(X, BASE)
    np.testing.assert_allclose(attr, effects[:, MASK], rtol=1e-5, atol=1e-6)
    # every feature carries its group's whole effect: the completeness gap counts the pairs twice
    gap = effects[:, 0] + effects[:, 2]
    np.testing.assert_allclose(info.delta, gap, rtol=1e-5, atol=1e-5)
    assert info.n_evals == 3 + 2


def test_group_ids_need_not_be_contiguous_and_may_carry_a_batch_axis():
    expected = jaxig.feature_ablation(grouped, X, BASE, feature_mask=MASK)
    np.testing.assert_allclose(jaxig.feature_ablation(grouped, X, BASE, feature_mask=np.array([7, 7, -2, 40, 40])),
                               expected, rtol=1e-6)
    np.testing.assert_allclose(jaxig.feature_ablation(grouped, X, BASE, feature_mask=MASK[None]), expected, rtol=1e-6)


def test_per_example_masks_match_the_brute_force_loop():
    mlp_w = jax.random.normal(jax.random.key(1), (5, 4))
    f = lambda x: jnp.sum(jax.nn.relu(x @ mlp_w) ** 2, axis=1)
    masks = np.array([[0, 0, 1, 1, 2], [0, 1, 1, 1, 1], [3, 3, 3, 0, 0]])
    attr = jaxig.feature_ablation(f, X, BASE, feature_mask=masks)
    np.testing.assert_allclose(attr, brute_ablation(f, X, BASE, masks), rtol=1e-5, atol=1e-6)


def test_time_series_mask_broadcasts_over_features():
    xs = jax.random.normal(jax.random.key(2), (2, 4, 3))
    f = lambda x: jnp.sum(jnp.tanh(x) * jnp.arange(1.0, 4.0), axis=(1, 2))
    mask = np.arange(4)[:, None]  # one group per time step
    attr = jaxig.feature_ablation(f, xs, feature_mask=mask)
    np.testing.assert_allclose(attr, brute_ablation(f, xs, 0.0, mask), rtol=1e-5, atol=1e-6)
    assert np.allclose(attr[:, :, 0], attr[:, :, 2])  # a group shares one value


@pytest.mark.parametrize("chunk", [1, 2, 4, 5, None])
def test_chunking_does_not_change_the_result(chunk):
    mlp_w = jax.random.normal(jax.random.key(3), (5, 6))
    f = lambda x: jnp.sum(jnp.tanh(x @ mlp_w), axis=1)
    attr = jaxig.feature_ablation(f, X, BASE, perturbations_per_eval=chunk)
    np.testing.assert_allclose(attr, brute_ablation(f, X, BASE, np.arange(5)), rtol=1e-5, atol=1e-6)


def test_target_all_stacks_every_output():
    attr_all = jaxig.feature_ablation(linear3, X, BASE, target="all", feature_mask=MASK)
    assert attr_all.shape == (3,) + X.shape
    for k in range(3):
        np.testing.assert_allclose(attr_all[k], jaxig.feature_ablation(linear3, X, BASE, target=k, feature_mask=MASK),
                                   rtol=1e-6)
    per_example = jaxig.feature_ablation(linear3, X, BASE, target=jnp.array([2, 0, 1]))
    np.testing.assert_allclose(per_example, (W3.T[jnp.array([2, 0, 1])]) * (X - BASE), rtol=1e-5, atol=1e-6)


def test_pytree_input_with_a_group_spanning_two_leaves():
    x = {"a": X[:, :3], "b": X[:, 3:].reshape(3, 2, 1)}
    f = lambda t: t["a"][:, 0] * t["b"][:, 0, 0] + jnp.sum(t["a"][:, 1:], axis=1) + 3.0 * t["b"][:, 1, 0]
    mask = {"a": np.array([0, 1, 1]), "b": np.array([[0], [2]])}
    attr = jaxig.feature_ablation(f, x, feature_mask=mask)
    joint = X[:, 0] * X[:, 3]
    np.testing.assert_allclose(attr["a"][:, 0], joint, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attr["b"][:, 0, 0], joint, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attr["a"][:, 1], X[:, 1] + X[:, 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attr["b"][:, 1, 0], 3.0 * X[:, 4], rtol=1e-5, atol=1e-6)
    default = jaxig.feature_ablation(f, x)  # one group per scalar of each leaf
    np.testing.assert_allclose(default["a"][:, 1], X[:, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(default["a"][:, 0], X[:, 0] * X[:, 3], rtol=1e-5, atol=1e-6)


RNG = np.random.default_rng(3)
W_IN = jnp.asarray(RNG.standard_normal((12, 16)), jnp.float32)
W_OUT = jnp.asarray(RNG.standard_normal((16, 3)), jnp.float32)
X12 = jnp.asarray(RNG.standard_normal((40, 12)), jnp.float32)
B12 = jnp.asarray(RNG.standard_normal((40, 12)), jnp.float32)


def dense_tanh(x):
    return jnp.tanh(x @ W_IN + 0.1) @ W_OUT


@pytest.fixture
def sparse_calls(monkeypatch):
    """Counts the calls of the sparse path (a dense first layer updated by the ablated columns)."""
    from jaxig._methods import ablation

    calls, real = [], ablation.sparse_ablated_outputs

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ablation, "sparse_ablated_outputs", spy)
    return calls


@pytest.mark.parametrize("mask, baseline, target", [
    (None, None, 1),
    (np.arange(12) // 3, B12, 2),  # groups of 3, per-example baseline
    (np.array([5, 5, 1, 1, 9, 9, 9, 0, 0, 2, 2, 2]), 0.5, "all"),
])
def test_a_dense_first_layer_is_updated_by_the_ablated_columns_only(sparse_calls, mask, baseline, target):
    out = jaxig.feature_ablation(dense_tanh, X12, baseline, target=target, feature_mask=mask)
    assert len(sparse_calls) == 1  # the sparse path ran...
    b = 0.0 if baseline is None else baseline
    m = np.arange(12) if mask is None else mask
    for k in range(3) if target == "all" else [target]:  # ...and agrees with the definition
        ref = brute_ablation(lambda z, k=k: dense_tanh(z)[:, k], X12, b, m)
        np.testing.assert_allclose(out[k] if target == "all" else out, ref, rtol=2e-5, atol=2e-5)


def test_the_sparse_path_takes_a_dict_input_and_steps_aside_where_it_does_not_pay(sparse_calls):
    out = jaxig.feature_ablation(lambda d: dense_tanh(d["a"]), {"a": X12}, target=0)
    assert len(sparse_calls) == 1
    np.testing.assert_allclose(out["a"], brute_ablation(lambda z: dense_tanh(z)[:, 0], X12, 0.0, np.arange(12)),
                               rtol=2e-5, atol=2e-5)
    per_example = np.tile(np.arange(12) // 2, (40, 1))  # groups that differ by example: dense path
    halves = np.arange(12) // 6  # groups of half the features: the dense path is as cheap
    for mask in (per_example, halves):
        out = jaxig.feature_ablation(dense_tanh, X12, target=0, feature_mask=mask)
        np.testing.assert_allclose(out, brute_ablation(lambda z: dense_tanh(z)[:, 0], X12, 0.0, mask),
                                   rtol=2e-5, atol=2e-5)
    assert len(sparse_calls) == 1


def test_jit_vmap_and_grad_wrt_parameters():
    expected = jaxig.feature_ablation(grouped, X, BASE, feature_mask=MASK)
    jitted = jax.jit(lambda x: jaxig.feature_ablation(grouped, x, BASE, feature_mask=MASK))(X)
    np.testing.assert_allclose(jitted, expected, rtol=1e-6)
    stack = jnp.stack([X, 2.0 * X])
    mapped = jax.vmap(lambda x: jaxig.feature_ablation(grouped, x, BASE, feature_mask=MASK))(stack)
    np.testing.assert_allclose(mapped[1], jaxig.feature_ablation(grouped, 2.0 * X, BASE, feature_mask=MASK), rtol=1e-5)

    def total(w):
        f = jax.tree_util.Partial(lambda w_, x: x @ w_, w)
        return jnp.sum(jaxig.feature_ablation(f, X, BASE, perturbations_per_eval=2))

    # sum_b sum_i w_i (x_bi - b_i): the gradient is sum_b (x_b - b)
    np.testing.assert_allclose(jax.grad(total)(W), jnp.sum(X - BASE, axis=0), rtol=1e-5, atol=1e-6)


def test_new_values_compile_nothing():
    apply = lambda w, x: jnp.tanh(x @ w)
    mask = np.array([0, 0, 1, 1, 2])
    jaxig.feature_ablation(jax.tree_util.Partial(apply, W), X, BASE, feature_mask=mask)
    w2, x2, b2 = 2.0 * W, X + 1.0, -BASE
    with count_compiles() as compiles:
        out = jaxig.feature_ablation(jax.tree_util.Partial(apply, w2), x2, b2, feature_mask=np.array([2, 2, 0, 0, 1]))
    assert len(compiles) == 0
    np.testing.assert_allclose(out, brute_ablation(lambda x: jnp.tanh(x @ (2.0 * W)), X + 1.0, -BASE,
                                                   np.array([2, 2, 0, 0, 1])), rtol=1e-5, atol=1e-6)


def test_bad_masks_and_settings_raise():
    with pytest.raises(ValueError, match="feature_mask shape"):
        jaxig.feature_ablation(linear, X, feature_mask=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="feature_mask shape"):
        jaxig.feature_ablation(linear, X, feature_mask=np.zeros((2, 5), int))  # batch axis of 2 for B=3
    with pytest.raises(TypeError, match="integer group ids"):
        jaxig.feature_ablation(linear, X, feature_mask=np.array([0.0, 0, 1, 1, 2]))
    with pytest.raises(TypeError, match="integer group ids"):
        jaxig.feature_ablation(linear, X, feature_mask=np.array([True, False, True, True, False]))
    with pytest.raises(ValueError, match="perturbations_per_eval=0"):
        jaxig.feature_ablation(linear, X, perturbations_per_eval=0)
    with pytest.raises(TypeError, match="perturbations_per_eval"):
        jaxig.feature_ablation(linear, X, perturbations_per_eval=2.0)
    with pytest.raises(ValueError, match="structure"):
        jaxig.feature_ablation(lambda t: t["a"][:, 0], {"a": X, "b": X}, feature_mask={"b": np.arange(5)})
    with pytest.raises(TypeError, match="traced"):
        jax.jit(lambda m: jaxig.feature_ablation(linear, X, feature_mask=m))(jnp.arange(5))
    with pytest.raises(ValueError, match="out of range"):
        jaxig.feature_ablation(linear3, X, target=3)


# -- occlusion ----------------------------------------------------------------------------------------

def brute_occlusion(f, x, b, window, strides):
    """Captum's definition, with a loop over window positions (last windows cut off at the edge)."""
    f = jax.jit(f)
    x = np.asarray(x)
    b = np.broadcast_to(np.asarray(b), x.shape)
    shape = x.shape[1:]
    starts = [list(range(0, -(-(n - w) // s) * s + 1, s)) for n, w, s in zip(shape, window, strides)]
    fx = np.asarray(f(jnp.asarray(x)), np.float64)
    total, count = np.zeros(x.shape), np.zeros(shape)
    for corner in itertools.product(*starts):
        inside = np.zeros(shape, bool)
        inside[tuple(slice(c, c + w) for c, w in zip(corner, window))] = True
        drop = fx - np.asarray(f(jnp.asarray(np.where(inside, b, x))), np.float64)
        total += drop.reshape((-1,) + (1,) * len(shape)) * inside
        count += inside
    return total / count


@pytest.mark.parametrize("window,strides", [((1,), None), ((2,), None), ((3,), 2), ((5,), 3)])
def test_occlusion_of_a_linear_model_is_the_average_window_sum(window, strides):
    attr, info = jaxig.occlusion(linear, X, BASE, window=window, strides=strides, return_info=True)
    contrib = np.asarray(W * (X - BASE))
    s = 1 if strides is None else strides
    w, n = window[0], 5
    starts = list(range(0, -(-(n - w) // s) * s + 1, s))
    expected = np.zeros_like(contrib)
    for i in range(n):
        sums = [contrib[:, p:p + w].sum(1) for p in starts if p <= i < p + w]
        expected[:, i] = np.mean(sums, axis=0)
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)
    assert info.n_evals == len(starts) + 2
    np.testing.assert_allclose(info.delta, expected.sum(1) - contrib.sum(1), rtol=1e-4, atol=1e-5)


def _image_model():
    k = jax.random.normal(jax.random.key(4), (3, 3, 2, 3))

    def f(x):  # (B, H, W, C) -> (B, 2)
        z = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        z = jax.nn.relu(z)
        return jnp.stack([jnp.mean(z[..., 0] * z[..., 1], axis=(1, 2)), jnp.max(z[..., 2], axis=(1, 2))], axis=1)

    return f


@pytest.mark.parametrize("window,strides", [((2, 2, 2), None), ((3, 2, 1), (2, 1, 1)), ((6, 5, 2), 4)])
def test_image_occlusion_matches_the_brute_force_loop(window, strides):
    f = _image_model()
    x = jax.random.normal(jax.random.key(5), (2, 6, 5, 2))
    base = jax.random.normal(jax.random.key(6), (6, 5, 2))
    attr = jaxig.occlusion(f, x, base, target=1, window=window, strides=strides, perturbations_per_eval=3)
    s = (1, 1, 1) if strides is None else (strides,) * 3 if isinstance(strides, int) else strides
    expected = brute_occlusion(lambda z: f(z)[:, 1], x, base, window, s)
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-5 * np.max(np.abs(expected)))


def test_time_series_occlusion_target_all_and_transforms():
    xs = jax.random.normal(jax.random.key(7), (3, 7, 2))
    f = lambda x: jnp.stack([jnp.sum(jnp.tanh(x) ** 2, axis=(1, 2)), jnp.sum(x[:, :, 0] * x[:, :, 1], axis=1)], 1)
    attr = jaxig.occlusion(f, xs, window=(3, 1), strides=(2, 1), target="all")
    assert attr.shape == (2,) + xs.shape
    for k in range(2):
        np.testing.assert_allclose(attr[k], brute_occlusion(lambda z, k=k: f(z)[:, k], xs, 0.0, (3, 1), (2, 1)),
                                   rtol=1e-5, atol=1e-6)
    jitted = jax.jit(lambda z: jaxig.occlusion(f, z, window=(3, 1), strides=(2, 1), target="all"))(xs)
    np.testing.assert_allclose(jitted, attr, rtol=1e-6)
    mapped = jax.vmap(lambda z: jaxig.occlusion(f, z, window=(3, 1), strides=(2, 1), target=0))(jnp.stack([xs, -xs]))
    np.testing.assert_allclose(mapped[0], attr[0], rtol=1e-5, atol=1e-6)
    xs2 = xs + 1.0
    with count_compiles() as compiles:
        jaxig.occlusion(f, xs2, 0.5, window=(3, 1), strides=(2, 1), target="all")
    assert len(compiles) == 0


def test_bad_windows_and_strides_raise():
    xs = jnp.ones((2, 6, 5, 3))
    f = lambda x: jnp.sum(x, axis=(1, 2, 3))
    with pytest.raises(ValueError, match="no larger than"):
        jaxig.occlusion(f, xs, window=(7, 2, 3))
    with pytest.raises(ValueError, match="positive"):
        jaxig.occlusion(f, xs, window=(0, 2, 3))
    with pytest.raises(ValueError, match="3 ints"):
        jaxig.occlusion(f, xs, window=(2, 2))
    with pytest.raises(TypeError, match="window must be"):
        jaxig.occlusion(f, xs, window=(2.0, 2, 3))
    with pytest.raises(ValueError, match="strides"):
        jaxig.occlusion(f, xs, window=(2, 2, 3), strides=0)
    with pytest.raises(ValueError, match="skips features"):
        jaxig.occlusion(f, xs, window=(2, 2, 3), strides=(3, 1, 1))
    with pytest.raises(ValueError, match="strides"):
        jaxig.occlusion(f, xs, window=(2, 2, 3), strides=(1, 1))
    with pytest.raises(TypeError, match="one array"):
        jaxig.occlusion(lambda t: t["a"][:, 0], {"a": X, "b": X}, window=(2,))


def test_occlusion_is_differentiable_wrt_parameters():
    def total(w):
        f = jax.tree_util.Partial(lambda w_, x: x @ w_, w)
        return jnp.sum(jaxig.occlusion(f, X, BASE, window=(3,), strides=2))

    grad = jax.grad(total)(W)
    # the attributions are linear in w, so a unit step in w_k changes the total by exactly grad_k
    steps = np.array([float(total(W + jnp.eye(5)[k]) - total(W)) for k in range(5)])
    np.testing.assert_allclose(grad, steps, rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(grad)) > 0.1
