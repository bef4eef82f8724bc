"""feature_attributions: per-feature sums equal hand sums; target="all" layouts; every refused input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig

RNG = np.random.default_rng(0)
A3 = RNG.normal(size=(2, 3, 4)).astype(np.float32)  # (B, T, F)
C = jnp.array(RNG.normal(size=(3, 3, 4)), jnp.float32)  # (K, T, F): K linear outputs


def linear3(x):
    """(B, T, F) -> (B, K): output k is sum_{t,f} C[k, t, f] x[b, t, f]; exact IG is C[k] * x."""
    return jnp.einsum("btf,ktf->bk", x, C)


def test_sums_over_time_equal_hand_sums():
    a = jnp.asarray(A3)
    np.testing.assert_allclose(jaxig.feature_attributions(a), A3.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(jaxig.feature_attributions(a, absolute=True), np.abs(A3).sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(jaxig.feature_attributions(a, keep_batch=False), A3.sum(axis=1).mean(0), rtol=1e-6)
    # time on the last axis, features in the middle: (B, F, T)
    np.testing.assert_allclose(
        jaxig.feature_attributions(jnp.swapaxes(a, 1, 2), feature_axis=1), A3.sum(axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(jaxig.feature_attributions(a, feature_axis=np.int64(1)), A3.sum(axis=2), rtol=1e-6)


def test_four_axes_sum_every_other_axis():
    a = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)  # (B, H, W, C)
    np.testing.assert_allclose(jaxig.feature_attributions(a), a.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(jaxig.feature_attributions(a, feature_axis=2), a.sum(axis=(1, 3)), rtol=1e-5)


def test_target_all_with_output_axis_keeps_k_first():
    x = jnp.asarray(A3)
    attr = jaxig.integrated_gradients(linear3, x, target="all", n_steps=8)
    assert attr.shape == (3, 2, 3, 4)
    per = jaxig.feature_attributions(attr, output_axis=True)
    assert per.shape == (3, 2, 4)
    hand = np.einsum("ktf,btf->kbf", np.asarray(C), A3)  # exact IG summed over time
    np.testing.assert_allclose(per, hand, rtol=1e-4, atol=1e-5)
    # completeness per output and example: sum over features = f(x) - f(0)
    np.testing.assert_allclose(per.sum(-1), linear3(x).T, rtol=1e-4, atol=1e-5)
    avg = jaxig.feature_attributions(attr, output_axis=True, keep_batch=False)
    assert avg.shape == (3, 4)
    np.testing.assert_allclose(avg, hand.mean(1), rtol=1e-4, atol=1e-5)
    absd = jaxig.feature_attributions(attr, output_axis=True, absolute=True)
    np.testing.assert_allclose(absd, np.abs(np.einsum("ktf,btf->kbtf", np.asarray(C), A3)).sum(2), rtol=1e-4,
                               atol=1e-5)
    # feature_axis indexes the array as passed: (K, B, F, T) has features on axis 2
    np.testing.assert_allclose(
        jaxig.feature_attributions(jnp.swapaxes(attr, 2, 3), feature_axis=2, output_axis=True), per, rtol=1e-6
    )


def test_without_output_axis_a_k_leading_array_is_read_as_batch():
    """The documented contract: (K, B, F) without output_axis is (B', T, F) with B' = K."""
    a = RNG.normal(size=(3, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(jaxig.feature_attributions(a), a.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(jaxig.feature_attributions(a, output_axis=True), a, rtol=1e-6)


def test_pytree_reduced_leaf_by_leaf():
    tree = {"seq": jnp.asarray(A3), "static": jnp.arange(6.0).reshape(2, 3)}
    out = jaxig.feature_attributions(tree)
    assert set(out) == {"seq", "static"}
    np.testing.assert_allclose(out["seq"], A3.sum(1), rtol=1e-6)
    np.testing.assert_allclose(out["static"], np.arange(6.0).reshape(2, 3))
    out = jaxig.feature_attributions((jnp.asarray(A3),), keep_batch=False)
    assert isinstance(out, tuple) and out[0].shape == (4,)


def test_empty_batch():
    out = jaxig.feature_attributions(jnp.zeros((0, 3, 4)))
    assert out.shape == (0, 4)
    with pytest.raises(ValueError, match=r"empty batch.*keep_batch=True"):
        jaxig.feature_attributions(jnp.zeros((0, 3, 4)), keep_batch=False)
    with pytest.raises(ValueError, match=r"empty batch \(axis 1\)"):
        jaxig.feature_attributions(jnp.zeros((2, 0, 4)), keep_batch=False, output_axis=True)


def test_works_under_jit_and_grad():
    f = jax.jit(lambda a: jaxig.feature_attributions(a, absolute=True))
    np.testing.assert_allclose(f(A3), np.abs(A3).sum(1), rtol=1e-6)
    g = jax.grad(lambda a: jaxig.feature_attributions(a).sum())(jnp.asarray(A3))
    np.testing.assert_allclose(g, np.ones_like(A3))


@pytest.mark.parametrize("axis", [1.5, "1", None, True, np.bool_(False), 1.0])
def test_feature_axis_must_be_an_int(axis):
    with pytest.raises(TypeError, match=rf"feature_axis={axis!r}.*must be an int"):
        jaxig.feature_attributions(A3, feature_axis=axis)


@pytest.mark.parametrize(("axis", "kw"), [(0, {}), (3, {}), (-3, {}), (-4, {}), (0, {"output_axis": True}),
                                          (1, {"output_axis": True}), (-3, {"output_axis": True})])
def test_feature_axis_range(axis, kw):
    shape = (2, 2, 3, 4) if kw else (2, 3, 4)
    with pytest.raises(ValueError, match=rf"feature_axis={axis} must name a non-batch axis"):
        jaxig.feature_attributions(jnp.ones(shape), feature_axis=axis, **kw)


@pytest.mark.parametrize("name", ["absolute", "keep_batch", "output_axis"])
@pytest.mark.parametrize("value", ["yes", 1, None, 0.0])
def test_flags_must_be_bools(name, value):
    with pytest.raises(TypeError, match=rf"{name}={value!r} must be a bool"):
        jaxig.feature_attributions(A3, **{name: value})


def test_too_few_axes():
    with pytest.raises(ValueError, match=r"shape \(3,\) need a batch axis and a feature axis"):
        jaxig.feature_attributions(jnp.ones(3))
    with pytest.raises(ValueError, match=r"\(K, B, \.\.\., F\).*output_axis=True"):
        jaxig.feature_attributions(jnp.ones((2, 3)), output_axis=True)
    with pytest.raises(ValueError, match=r"attributions\['b'\] of shape \(2,\)"):
        jaxig.feature_attributions({"a": jnp.ones((2, 3)), "b": jnp.ones(2)})


def test_refuses_non_arrays():
    x = jnp.ones((2, 3))
    pair = jaxig.integrated_gradients(lambda z: z.sum(1), x, n_steps=4, return_info=True)
    with pytest.raises(TypeError, match=r"unpack it first: attr, info"):
        jaxig.feature_attributions(pair)
    with pytest.raises(TypeError, match="is None"):
        jaxig.feature_attributions(None)
    with pytest.raises(TypeError, match=r"list of numbers.*jnp.asarray"):
        jaxig.feature_attributions([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(TypeError, match=r"attributions\['a'\] is 'x', a string"):
        jaxig.feature_attributions({"a": "x"})
    with pytest.raises(TypeError, match="dtype complex64"):
        jaxig.feature_attributions(np.ones((2, 3), np.complex64))
    with pytest.raises(ValueError, match="no array leaves"):
        jaxig.feature_attributions({})
