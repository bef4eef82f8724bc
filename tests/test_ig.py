"""integrated_gradients against closed forms: linear and single-index models, every rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig

RULES = (
    jaxig.RiemannLeft(),
    jaxig.RiemannRight(),
    jaxig.RiemannMidpoint(),
    jaxig.Trapezoid(),
    jaxig.Simpson(),
    jaxig.GaussLegendre(),
)
rule_id = lambda r: type(r).__name__

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
BASE = jnp.array([0.1, 0.2, -0.3, 0.0, 0.5])


def linear(x):
    return x @ W + 0.7


def single_index(x):
    return jnp.tanh(x @ W)


def single_index_ig(x, b):
    """Closed form: w_i (x_i - b_i) (g(w.x) - g(w.b)) / (w.x - w.b) for g = tanh."""
    u, ub = x @ W, b @ W
    return W * (x - b) * ((jnp.tanh(u) - jnp.tanh(ub)) / (u - ub))[:, None]


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
@pytest.mark.parametrize("n_steps", [3, 4, 50])
def test_linear_model_is_exact_for_every_rule(rule, n_steps):
    attr, delta = jaxig.integrated_gradients(linear, X, BASE, rule=rule, n_steps=n_steps, return_delta=True)
    np.testing.assert_allclose(attr, W * (X - BASE), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


# Per-rule tolerance at n_steps=64 on tanh(w.x): first order rules ~1/n, second ~1/n^2, ...
TOLERANCE = {"RiemannLeft": 5e-2, "RiemannRight": 5e-2, "RiemannMidpoint": 2e-3, "Trapezoid": 3e-3,
             "Simpson": 1e-5, "GaussLegendre": 1e-5}  # float32 round-off


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_single_index_model_matches_closed_form(rule):
    attr = jaxig.integrated_gradients(single_index, X, BASE, rule=rule, n_steps=64)
    expected = single_index_ig(X, BASE)
    err = float(jnp.max(jnp.abs(attr - expected)))
    assert err < TOLERANCE[rule_id(rule)]
    if rule_id(rule) not in ("Simpson", "GaussLegendre"):
        assert err > 1e-7  # the low-order rules really are approximations: the test can tell


def test_single_index_closed_form_in_float64_to_round_off(x64):
    x, b = X.astype(jnp.float64), BASE.astype(jnp.float64)
    attr, delta = jaxig.integrated_gradients(single_index, x, b, n_steps=48, return_delta=True)
    assert attr.dtype == jnp.float64 and delta.dtype == jnp.float64
    np.testing.assert_allclose(attr, single_index_ig(x, b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(delta, 0.0, atol=1e-13)


def test_delta_is_the_completeness_gap_of_the_returned_attributions():
    # RiemannLeft with 2 steps is crude: delta must equal sum(attr) - (f(x) - f(b)) exactly.
    attr, delta = jaxig.integrated_gradients(single_index, X, BASE, rule=jaxig.RiemannLeft(), n_steps=2,
                                             return_delta=True)
    gap = attr.sum(1) - (single_index(X) - single_index(BASE[None]))
    np.testing.assert_allclose(delta, gap, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(delta))) > 1e-2


def test_multiply_by_inputs_false_returns_the_path_averaged_gradient():
    g = jaxig.integrated_gradients(single_index, X, BASE, multiply_by_inputs=False)
    attr = jaxig.integrated_gradients(single_index, X, BASE)
    np.testing.assert_allclose(g * (X - BASE), attr, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jaxig.integrated_gradients(linear, X, multiply_by_inputs=False),
                               jnp.broadcast_to(W, X.shape), rtol=1e-6)
    with pytest.raises(ValueError, match="return_delta=True needs multiply_by_inputs=True"):
        jaxig.integrated_gradients(linear, X, multiply_by_inputs=False, return_delta=True)


# ----------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("baseline", [BASE, BASE[None], jnp.broadcast_to(BASE, X.shape), np.asarray(BASE)],
                         ids=["(D,)", "(1,D)", "(B,D)", "numpy"])
def test_baseline_shapes_broadcast(baseline):
    np.testing.assert_allclose(jaxig.integrated_gradients(linear, X, baseline), W * (X - BASE), rtol=1e-5)


@pytest.mark.parametrize("baseline,value", [(None, 0.0), (0.5, 0.5), (jnp.asarray(-1.0), -1.0), (2, 2.0)])
def test_scalar_and_none_baselines(baseline, value):
    np.testing.assert_allclose(jaxig.integrated_gradients(linear, X, baseline), W * (X - value), rtol=1e-5, atol=1e-6)


def test_baseline_shape_mismatch_names_shapes_and_fix():
    with pytest.raises(ValueError, match=r"baseline shape \(3, 4\) does not match input shape \(3, 5\); "
                                         r"pass a baseline of shape \(5,\), \(1, 5\) or \(3, 5\)"):
        jaxig.integrated_gradients(linear, X, jnp.zeros((3, 4)))


# ----------------------------------------------------------------------------- pytrees


def tree_model(x):
    return jnp.tanh(x["a"] @ W[:3] + jnp.sum(x["b"][0] * x["b"][1], axis=(1, 2)))


TREE_X = {"a": X[:, :3], "b": (jnp.full((3, 2, 2), 0.5), jnp.arange(12.0).reshape(3, 2, 2) / 10)}


def test_pytree_input_keeps_structure_and_matches_flat_computation():
    attr, delta = jaxig.integrated_gradients(tree_model, TREE_X, n_steps=64, return_delta=True)
    assert jax.tree.structure(attr) == jax.tree.structure(TREE_X)
    assert jax.tree.map(jnp.shape, attr) == jax.tree.map(jnp.shape, TREE_X)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)

    def flat_model(z):
        a, b0, b1 = z[:, :3], z[:, 3:7].reshape(3, 2, 2), z[:, 7:].reshape(3, 2, 2)
        return tree_model({"a": a, "b": (b0, b1)})

    flat = jnp.concatenate([TREE_X["a"], TREE_X["b"][0].reshape(3, 4), TREE_X["b"][1].reshape(3, 4)], 1)
    flat_attr = jaxig.integrated_gradients(flat_model, flat, n_steps=64)
    np.testing.assert_allclose(attr["a"], flat_attr[:, :3], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(attr["b"][1].reshape(3, 4), flat_attr[:, 7:], rtol=1e-5, atol=1e-7)


def test_pytree_baseline_with_shared_leaves():
    base = {"a": jnp.ones(3), "b": (0.5 * jnp.ones((1, 2, 2)), jnp.zeros((3, 2, 2)))}
    _, delta = jaxig.integrated_gradients(tree_model, TREE_X, base, n_steps=64, return_delta=True)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


def test_pytree_baseline_structure_mismatch():
    with pytest.raises(ValueError, match="baseline structure .* does not match input structure"):
        jaxig.integrated_gradients(tree_model, TREE_X, {"a": jnp.zeros(3)})


def test_pytree_leaves_disagreeing_on_batch_size():
    bad = {"a": X[:, :3], "b": (jnp.zeros((2, 2, 2)), jnp.zeros((3, 2, 2)))}
    with pytest.raises(ValueError, match=r"x\['b'\]\[0\] has batch size 2 but x\['a'\] has 3"):
        jaxig.integrated_gradients(tree_model, bad)


# ----------------------------------------------------------------------------- targets

V = jnp.array([[1.0, 0.5, -1.0, 0.2, 0.3], [0.0, -2.0, 0.5, 1.0, 0.1], [0.4, 0.4, 0.4, -0.4, 1.0]])


def multi(x):  # (B, 3) outputs, each a single-index model with closed-form IG
    return jnp.tanh(x @ V.T)


def multi_ig(x, b, k):
    u, ub = x @ V[k], b @ V[k]
    return V[k] * (x - b) * ((jnp.tanh(u) - jnp.tanh(ub)) / (u - ub))[:, None]


@pytest.mark.parametrize("k", [0, 2])
def test_int_target_matches_closed_form(k):
    np.testing.assert_allclose(jaxig.integrated_gradients(multi, X, BASE, target=k), multi_ig(X, BASE, k),
                               rtol=1e-5, atol=1e-6)


def test_target_array_picks_one_output_per_example():
    t = jnp.array([2, 0, 1])
    attr, delta = jaxig.integrated_gradients(multi, X, BASE, target=t, return_delta=True)
    expected = jnp.stack([multi_ig(X, BASE, int(k))[i] for i, k in enumerate(t)])
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)
    assert delta.shape == (3,)


def test_callable_target_explains_a_group_of_outputs():
    attr = jaxig.integrated_gradients(multi, X, BASE, target=lambda out: out[:, 0] + out[:, 2])
    np.testing.assert_allclose(attr, multi_ig(X, BASE, 0) + multi_ig(X, BASE, 2), rtol=1e-5, atol=1e-6)


def test_target_all_explains_every_output_in_one_call():
    attr, delta = jaxig.integrated_gradients(multi, X, BASE, target="all", return_delta=True)
    assert attr.shape == (3,) + X.shape and delta.shape == (3, 3)
    for k in range(3):
        np.testing.assert_allclose(attr[k], multi_ig(X, BASE, k), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


def test_target_all_with_pytree_inputs():
    f = lambda x: jnp.stack([tree_model(x), 2.0 * tree_model(x)], axis=1)
    attr = jaxig.integrated_gradients(f, TREE_X, target="all")
    single = jaxig.integrated_gradients(tree_model, TREE_X)
    np.testing.assert_allclose(attr["b"][1][1], 2.0 * single["b"][1], rtol=1e-5, atol=1e-7)
    assert attr["a"].shape == (2, 3, 3)


def test_column_output_needs_no_target():
    attr = jaxig.integrated_gradients(lambda x: linear(x)[:, None], X, BASE)
    np.testing.assert_allclose(attr, W * (X - BASE), rtol=1e-5)


@pytest.mark.parametrize("target", [3, 10, jnp.array([0, 1, 3])])
def test_target_out_of_range(target):
    message = r"target index \d+ is out of range for f with 3 output\(s\) per example; pass indices in \[0, 3\)"
    with pytest.raises(ValueError, match=message):
        jaxig.integrated_gradients(multi, X, target=target)


@pytest.mark.parametrize("target", [-1, jnp.array([0, -2, 1])])
def test_negative_target(target):
    with pytest.raises(ValueError, match="negative indices"):
        jaxig.integrated_gradients(multi, X, target=target)


def test_target_array_of_wrong_length():
    with pytest.raises(ValueError, match=r"target array has shape \(2,\) but the batch has 3 examples"):
        jaxig.integrated_gradients(multi, X, target=jnp.array([0, 1]))


@pytest.mark.parametrize("target", [1.0, True, "max", jnp.array([0.0, 1.0, 2.0])])
def test_target_of_wrong_type(target):
    with pytest.raises(TypeError, match="target"):
        jaxig.integrated_gradients(multi, X, target=target)


def test_vector_output_without_target():
    with pytest.raises(ValueError, match=r"f returns 3 outputs per example .* target='all'"):
        jaxig.integrated_gradients(multi, X)


def test_callable_target_of_wrong_shape():
    with pytest.raises(ValueError, match=r"target callable must map outputs of shape \(3, 3\) to shape \(3,\)"):
        jaxig.integrated_gradients(multi, X, target=lambda out: out[:, :2])


def test_out_of_range_target_under_jit_gives_nan_not_silent_zeros():
    attr = jax.jit(lambda x, t: jaxig.integrated_gradients(multi, x, target=t))(X, jnp.array([0, 5, 1]))
    assert bool(jnp.all(jnp.isnan(attr[1]))) and bool(jnp.all(jnp.isfinite(attr[jnp.array([0, 2])])))


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_and_boolean_inputs_point_to_the_embedding_layer(dtype):
    with pytest.raises(TypeError, match="attribute at the embedding layer"):
        jaxig.integrated_gradients(lambda x: x.sum(1).astype(jnp.float32), jnp.ones((2, 3), dtype))


@pytest.mark.parametrize("n_steps,rule", [(0, jaxig.GaussLegendre()), (2, jaxig.Simpson()), (1, jaxig.Trapezoid())])
def test_too_few_steps(n_steps, rule):
    with pytest.raises(ValueError, match=f"needs n_steps >= {rule.min_steps}, got n_steps={n_steps}"):
        jaxig.integrated_gradients(linear, X, n_steps=n_steps, rule=rule)


def test_non_float_output():
    with pytest.raises(TypeError, match="returned dtype int32; it must return float outputs"):
        jaxig.integrated_gradients(lambda x: jnp.argmax(x, axis=1), X)


@pytest.mark.parametrize("f,shape", [(lambda x: x[:, :, None] * jnp.ones(2), r"\(3, 5, 2\)"),
                                     (lambda x: x.sum(), r"\(\)"),
                                     (lambda x: jnp.concatenate([x, x]).sum(1), r"\(6,\)")])
def test_wrongly_batched_output(f, shape):
    with pytest.raises(ValueError, match=rf"returned shape {shape} for a batch of 3"):
        jaxig.integrated_gradients(f, X)


def test_non_callable_f_wrong_rule_and_path_types():
    with pytest.raises(TypeError, match="f must be a callable"):
        jaxig.integrated_gradients(W, X)
    with pytest.raises(TypeError, match="rule must be an instance of jaxig.AbstractRule"):
        jaxig.integrated_gradients(linear, X, rule="gausslegendre")
    with pytest.raises(TypeError, match="path must be an instance of jaxig.AbstractPath"):
        jaxig.integrated_gradients(linear, X, path=lambda a, x, b: x)


@pytest.mark.parametrize("bad", [0, -4, 2.0, True])
def test_bad_alpha_batch_size(bad):
    with pytest.raises(ValueError, match="alpha_batch_size must be None or a positive int"):
        jaxig.integrated_gradients(linear, X, alpha_batch_size=bad)


def test_scalar_input_needs_a_batch_axis():
    with pytest.raises(ValueError, match=r"x is a scalar; inputs need a leading batch axis"):
        jaxig.integrated_gradients(lambda x: x, jnp.asarray(1.0))


def test_nan_propagates_by_default_and_check_finite_raises():
    f = lambda x: jnp.log(x).sum(1)  # log(0) at the zero baseline: the gradient blows up
    attr = jaxig.integrated_gradients(f, jnp.ones((2, 3)), rule=jaxig.Trapezoid(), n_steps=5)
    assert not bool(jnp.all(jnp.isfinite(attr)))
    with pytest.raises(ValueError, match=r"attributions are not finite \(x: 6 of 6 values\)"):
        jaxig.integrated_gradients(f, jnp.ones((2, 3)), rule=jaxig.Trapezoid(), n_steps=5, check_finite=True)
    # finite results pass the check untouched
    ok = jaxig.integrated_gradients(linear, X, check_finite=True)
    np.testing.assert_allclose(ok, W * X, rtol=1e-5)


# ----------------------------------------------------------------------------- one number per feature


def test_feature_attributions_of_lstm_shaped_inputs():
    # f = sum_t c_t . x_t over (B, T, F): exact IG is c * x; per feature, signed sums over time.
    c = jnp.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 1.0]])  # (T, F)
    x = jnp.array([[[1.0, 1.0], [2.0, -1.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])
    attr, delta = jaxig.integrated_gradients(lambda z: jnp.sum(z * c, axis=(1, 2)), x, return_delta=True)
    per_feature = jaxig.feature_attributions(attr)
    np.testing.assert_allclose(per_feature, jnp.sum(c * x, axis=1), rtol=1e-6)
    # signed per-feature sums keep completeness: they add up to f(x) - f(0)
    np.testing.assert_allclose(per_feature.sum(1), jnp.sum(x * c, axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(jaxig.feature_attributions(attr, absolute=True), jnp.sum(jnp.abs(c * x), axis=1),
                               rtol=1e-6)
    np.testing.assert_allclose(jaxig.feature_attributions(attr, keep_batch=False), jnp.sum(c * x, axis=1).mean(0),
                               rtol=1e-6)
    # channels-first layouts: features on axis 1
    np.testing.assert_allclose(jaxig.feature_attributions(jnp.swapaxes(attr, 1, 2), feature_axis=1), per_feature)


@pytest.mark.parametrize("axis", [0, 3, -4])
def test_feature_attributions_rejects_the_batch_axis_and_bad_axes(axis):
    with pytest.raises(ValueError, match="must name a non-batch axis"):
        jaxig.feature_attributions(jnp.ones((2, 3, 4)), feature_axis=axis)
    with pytest.raises(ValueError, match="need a batch axis and a feature axis"):
        jaxig.feature_attributions(jnp.ones(3))
