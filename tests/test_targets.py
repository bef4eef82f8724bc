"""Targets that say what they mean: subsets of outputs, label names, weighted (multi-hot) sums,
outputs with more than two axes, one-element targets, and a missing batch axis.

Closed forms on linear models, f(x) = x @ W + c: output k's attributions are W[:, k] * (x - x'), so
a subset is a slice of target="all" and a weighted target is the weighted sum of the slices.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import METHODS

import jaxig

X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
BASE = jnp.array([0.2, 0.1, -0.3])
W = jnp.array([[0.8, -0.2, 0.5], [-1.5, 1.0, 0.1], [0.3, 0.4, -0.7]])  # (D, K) = (3, 3)
NAMES = ("cat", "dog", "bird")
WEIGHTS = jnp.array([[1.0, 0.0, 2.0], [0.0, -1.0, 0.5]])  # (B, K): one row per example
KEY = jax.random.key(0)


def linear(x):
    return x @ W + 0.5


def per_output(x=X, b=BASE):
    """(K, B, D): the closed form of every output's IG on the linear model."""
    return jnp.einsum("dk,bd->kbd", W, x - b)


def ig(f, x=X, b=BASE, **kw):
    return jaxig.integrated_gradients(f, x, b, n_steps=4, **kw)


# -- subsets of outputs ----------------------------------------------------------------------------


def test_subset_is_target_all_restricted_in_the_given_order():
    everything = ig(linear, target="all")
    subset, info = ig(linear, target=jaxig.outputs(2, 0), return_info=True)
    assert subset.shape == (2,) + X.shape and info.delta.shape == (2, 2)
    np.testing.assert_allclose(subset, everything[jnp.array([2, 0])], rtol=1e-6)
    np.testing.assert_allclose(subset, per_output()[jnp.array([2, 0])], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)
    # the other spellings of the same subset
    for spelling in (jaxig.outputs([2, 0]), jaxig.outputs(np.array([2, 0])), jaxig.outputs(jnp.array([2, 0])),
                     jaxig.outputs("bird", "cat", names=NAMES)):
        np.testing.assert_allclose(ig(linear, target=spelling), subset, rtol=1e-6)


def test_label_names_errors_say_what_to_pass():
    with pytest.raises(ValueError, match=r"label 'dgo' is not one of the 3 names; did you mean 'dog'"):
        ig(linear, target=jaxig.outputs("dgo", names=NAMES))
    with pytest.raises(ValueError, match=r"pass the labels too: jaxig.outputs\('cat', \.\.\., names=label_names\)"):
        ig(linear, target=jaxig.outputs("cat"))
    with pytest.raises(ValueError, match=r"names has 2 labels but f\(x\) returned shape \(2, 3\)"):
        ig(linear, target=jaxig.outputs("cat", names=NAMES[:2]))
    with pytest.raises(TypeError, match=r"the only string target is 'all'.*jaxig.outputs\('cat', names=label_names\)"):
        ig(linear, target="cat")
    with pytest.raises(ValueError, match="at least one output"):
        jaxig.outputs()
    with pytest.raises(TypeError, match="outputs\\(\\) takes ints"):
        jaxig.outputs(1.5)


def test_subset_out_of_range_or_negative():
    with pytest.raises(ValueError, match=r"target index 3 is out of range for f with 3 output\(s\)"):
        ig(linear, target=jaxig.outputs(0, 3))
    with pytest.raises(ValueError, match="negative indices"):
        ig(linear, target=jaxig.outputs(-1))


def test_plain_list_stays_one_output_per_example_and_a_mismatch_points_to_outputs():
    per_example = ig(linear, target=[2, 0])  # B == 2: one output per example, as documented
    everything = per_output()
    np.testing.assert_allclose(per_example, jnp.stack([everything[2, 0], everything[0, 1]]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"target array has shape \(3,\) but the batch has 2 examples.*"
                                         r"use target=jaxig.outputs\(\.\.\.\) \(here jaxig.outputs\(0, 1, 2\)\)"):
        ig(linear, target=[0, 1, 2])


@pytest.mark.parametrize("target", [jnp.array([2]), np.array([2]), [2], (2,)])
def test_one_element_target_applies_to_every_example(target):
    np.testing.assert_allclose(ig(linear, target=target), ig(linear, target=2), rtol=1e-6)


# -- weighted and multi-hot targets ----------------------------------------------------------------


def test_weighted_target_is_the_weighted_sum_of_per_output_attributions():
    attr, info = ig(linear, target=jaxig.weighted(WEIGHTS), return_info=True)
    expected = jnp.einsum("bk,kbd->bd", WEIGHTS, per_output())
    assert attr.shape == X.shape and info.delta.shape == (2,)
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-5)
    # (K,) applies to every example; multi-hot bools; a mapping by label name
    shared = jnp.array([1.0, 0.0, 1.0])
    np.testing.assert_allclose(ig(linear, target=jaxig.weighted(shared)), per_output()[0] + per_output()[2], rtol=1e-5)
    hot = np.array([[True, False, True], [False, True, True]])
    np.testing.assert_allclose(ig(linear, target=jaxig.weighted(hot)),
                               jnp.einsum("bk,kbd->bd", hot.astype(np.float32), per_output()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ig(linear, target=jaxig.weighted({"cat": 1.0, "bird": 1.0}, names=NAMES)),
                               ig(linear, target=jaxig.weighted(shared)), rtol=1e-6)


def test_weighted_target_errors():
    with pytest.raises(ValueError, match=r"weights of shape \(2,\) do not fit: f\(x\) returned shape \(2, 3\).*"
                                         r"of shape \(3,\) .* or \(2, 3\)"):
        ig(linear, target=jaxig.weighted(jnp.ones(2)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        ig(linear, target=jaxig.weighted(np.array([1.0, np.nan, 0.0])))
    with pytest.raises(TypeError, match="needs names=label_names"):
        jaxig.weighted({"cat": 1.0})
    with pytest.raises(TypeError, match=r"jaxig.weighted\(labels\)"):
        ig(linear, target=jnp.array([True, False]))


def test_weighted_and_subset_targets_are_traced_under_jit():
    weighted = jax.jit(lambda w: ig(linear, target=jaxig.weighted(w)))(WEIGHTS)
    np.testing.assert_allclose(weighted, jnp.einsum("bk,kbd->bd", WEIGHTS, per_output()), rtol=1e-5, atol=1e-6)
    subset = jax.jit(lambda ids: ig(linear, target=jaxig.outputs(ids)))(jnp.array([1, 5]))
    np.testing.assert_allclose(subset[0], per_output()[1], rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(jnp.isnan(subset[1])))  # out of range under tracing: NaN, not silently zero


# -- outputs with more than two axes ---------------------------------------------------------------

V = jnp.array([1.0, -2.0])


def nd(x):
    """(B, K, 2) outputs: [b, k, j] = (x @ W)[b, k] * V[j]."""
    return (x @ W)[:, :, None] * V


def test_tuple_target_on_nd_outputs_equals_the_callable_and_the_closed_form():
    attr = ig(nd, target=(1, 1))
    np.testing.assert_allclose(attr, V[1] * per_output()[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ig(nd, target=lambda o: o[:, 1, 1]), attr, rtol=1e-6)
    np.testing.assert_allclose(ig(nd, target=[1, 1]), attr, rtol=1e-6)  # a 1-D target is coordinates here
    # one coordinate row per example
    rows = ig(nd, target=jnp.array([[2, 0], [0, 1]]))
    np.testing.assert_allclose(rows, jnp.stack([V[0] * per_output()[2, 0], V[1] * per_output()[0, 1]]),
                               rtol=1e-5, atol=1e-6)


def test_all_subset_and_weighted_on_nd_outputs():
    everything = ig(nd, target="all")  # (K * 2, B, D), row-major
    assert everything.shape == (6,) + X.shape
    np.testing.assert_allclose(everything.reshape((3, 2) + X.shape)[2, 1], V[1] * per_output()[2], rtol=1e-5, atol=1e-6)
    subset = ig(nd, target=jaxig.outputs((2, 1), (0, 0)))
    np.testing.assert_allclose(subset, everything[jnp.array([5, 0])], rtol=1e-6)
    w = jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]])  # (K, 2) for every example
    np.testing.assert_allclose(ig(nd, target=jaxig.weighted(w)), V[0] * per_output()[0] + 3 * V[1] * per_output()[2],
                               rtol=1e-5, atol=1e-6)


def test_noise_tunnel_hands_nd_targets_to_the_inner_method():
    tunnel = jaxig.noise_tunnel(lambda *a, **k: jaxig.saliency(*a, absolute=False, **k), n_samples=2)
    attr = tunnel(nd, X, target=jaxig.outputs((2, 1), (0, 0)), key=KEY)  # the gradient of a linear f: no noise
    np.testing.assert_allclose(attr, jnp.broadcast_to(jnp.stack([V[1] * W[:, 2], V[0] * W[:, 0]])[:, None],
                                                      (2,) + X.shape), rtol=1e-5)


def test_callable_reducing_nd_outputs_is_accepted():
    attr = ig(nd, target=lambda o: o.sum(axis=(1, 2)))
    np.testing.assert_allclose(attr, V.sum() * per_output().sum(0), rtol=1e-5, atol=1e-6)


def test_nd_output_errors_name_the_coordinates():
    with pytest.raises(ValueError, match=r"f\(x\) returned shape \(2, 3, 2\) for a batch of 2, outputs with 2 axes.*"
                                         r"target=\(i, j\)"):
        ig(nd, target=1)
    with pytest.raises(ValueError, match=r"f\(x\) returned shape \(2, 3, 2\) for a batch of 2, 6 outputs per example"
                                         r" on 2 axes; say which"):
        ig(nd)
    with pytest.raises(ValueError, match=r"target index 2 is out of range on output axis 2"):
        ig(nd, target=(0, 2))
    with pytest.raises(ValueError, match=r"name each output by a tuple of 2 ints"):
        ig(nd, target=jaxig.outputs(1))
    with pytest.raises(ValueError, match=r"one scalar per example; it returned \(3, 2\).*jaxig.outputs"):
        ig(nd, target=lambda o: o[:, :, 0].T)


# -- a missing batch axis --------------------------------------------------------------------------


def test_one_example_without_a_batch_axis_is_told_to_add_one():
    x = jnp.array([0.5, -1.0, 2.0])
    with pytest.raises(ValueError, match=r"returned shape \(\) for a batch of 3.*If x \(shape \(3,\)\) is one "
                                         r"example rather than a batch of 3, add a batch axis: x\[None\]"):
        ig(lambda v: v @ W[:, 0], x, 0.0)
    with pytest.raises(ValueError, match=r"returned shape \(2,\) for a batch of 3.*x\[None\] \(shape \(1, 3\)\)"):
        ig(lambda v: v @ W[:, :2], x, 0.0)
    # (D,) -> (D,): the shapes fit a batch, but example 0's input moves every output
    with pytest.raises(ValueError, match=r"f mixes examples.*x of shape \(3,\): add one, x\[None\]"):
        ig(lambda v: v @ W, x, 0.0)
    np.testing.assert_allclose(ig(lambda v: v @ W[:, 0], x[None], 0.0)[0], W[:, 0] * x, rtol=1e-6)


# -- every method, every new kind ------------------------------------------------------------------


def _call(entry, f, **kw):
    if entry.random:
        kw["key"] = KEY
    return entry.method(f, X, BASE, **kw)


def _closed(entry, k_weights):
    """The closed form for weights (n, K) over the outputs: (n, B, D)."""
    if entry.linear == "linear":
        return jnp.einsum("nk,kbd->nbd", k_weights, per_output())
    return jnp.broadcast_to(jnp.einsum("nk,dk->nd", k_weights, W)[:, None], (k_weights.shape[0],) + X.shape)


@pytest.mark.parametrize("entry", METHODS, ids=[e.name for e in METHODS])
def test_every_method_explains_subsets_and_weighted_targets(entry):
    subset = _call(entry, linear, target=jaxig.outputs(2, 0))
    np.testing.assert_allclose(subset, _closed(entry, jnp.eye(3)[jnp.array([2, 0])]), rtol=1e-5, atol=1e-5)
    attr = _call(entry, linear, target=jaxig.weighted(WEIGHTS))
    per_example = jnp.stack([_closed(entry, WEIGHTS[b:b + 1])[0, b] for b in range(2)])
    np.testing.assert_allclose(attr, per_example, rtol=1e-5, atol=1e-5)


def test_exact_ig_accepts_linear_targets_and_refuses_nonlinear_callables():
    relu = lambda x: jax.nn.relu(x @ W - 0.1) * 2.0  # noqa: E731
    exact = jaxig.exact_integrated_gradients
    everything = exact(relu, X, BASE, target="all")
    np.testing.assert_allclose(exact(relu, X, BASE, target=jaxig.weighted(WEIGHTS)),
                               jnp.einsum("bk,kbd->bd", WEIGHTS, everything), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exact(relu, X, BASE, target=jaxig.outputs(1, 2)), everything[1:], rtol=1e-6)
    with pytest.raises(TypeError, match="the target callable makes the explained output non-piecewise-linear"):
        exact(relu, X, BASE, target=lambda o: jax.nn.softmax(o)[:, 0])


def body(x):
    return 2.0 * x


def head(h):
    return h @ W


@pytest.mark.parametrize("method", [jaxig.layer_integrated_gradients, jaxig.layer_conductance])
def test_layer_methods_explain_subsets_and_weighted_targets(method):
    # h = 2x and a linear head: both methods give output k's attributions 2 W[:, k] * (x - x')
    subset = method(body, head, X, BASE, target=jaxig.outputs(2, 0), n_steps=4)
    np.testing.assert_allclose(subset, 2 * per_output()[jnp.array([2, 0])], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(method(body, head, X, BASE, target=jaxig.weighted(WEIGHTS), n_steps=4),
                               2 * jnp.einsum("bk,kbd->bd", WEIGHTS, per_output()), rtol=1e-5, atol=1e-6)


# Methods whose result is not linear in the explained function (the path, split point or normalisation
# depends on it): a weighted target explains the weighted sum itself, exactly as the same callable does.
NONLINEAR_IN_TARGET = [
    lambda f, x, **kw: jaxig.guided_integrated_gradients(f, x, steps=4, **kw),
    lambda f, x, **kw: jaxig.split_integrated_gradients(f, x, n_steps=4, **kw),
    lambda f, x, **kw: jaxig.idgi(f, x, n_steps=4, **kw),
    lambda f, x, **kw: jaxig.integrated_hessians(f, x, n_steps=2, inner_n_steps=2, **kw),
]


@pytest.mark.parametrize("method", NONLINEAR_IN_TARGET, ids=["guided", "split", "idgi", "hessians"])
def test_methods_nonlinear_in_the_target_explain_subsets(method):
    f = lambda x: jnp.tanh(x @ W)  # noqa: E731
    np.testing.assert_allclose(method(f, X, target=jaxig.outputs(2, 0)),
                               method(f, X, target="all")[jnp.array([2, 0])], rtol=1e-5, atol=1e-6)


def test_weighted_target_explains_the_weighted_sum_itself():
    # IDGI normalises by the target's own gradient: not the weighted sum of per-output results, but
    # exactly the result for the function sum_k w[b, k] f(x)[b, k]
    f = lambda x: jnp.tanh(x @ W)  # noqa: E731
    np.testing.assert_allclose(jaxig.idgi(f, X, n_steps=4, target=jaxig.weighted(WEIGHTS)),
                               jaxig.idgi(f, X, n_steps=4, target=lambda o: jnp.sum(o * WEIGHTS, axis=1)),
                               rtol=1e-5, atol=1e-6)


def test_axiom_checks_take_a_subset_of_outputs():
    w = jnp.arange(12.0).reshape(4, 3) / 10
    x = jnp.linspace(-1, 1, 20).reshape(5, 4)
    result = jaxig.check_completeness(jaxig.integrated_gradients, lambda z: z @ w, x, target=jaxig.outputs(0, 2))
    assert result.passed
    assert "10 examples" in str(result)  # 2 outputs x 5 examples
