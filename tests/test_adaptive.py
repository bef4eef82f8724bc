"""Adaptive IG: per-feature error control against exact integrals, jit/vmap, budgets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from jaxig._adaptive import adaptive_integrated_gradients
from jaxig._exact import exact_integrated_gradients


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _nets():
    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    w1 = jax.random.normal(ks[0], (6, 24)) / np.sqrt(6)
    b1 = 0.5 * jax.random.normal(ks[1], (24,))
    w2 = jax.random.normal(ks[2], (24, 2)) / np.sqrt(24)
    relu = lambda x: jax.nn.relu(x @ w1 + b1) @ w2
    tanh = lambda x: jnp.tanh(x @ w1 + b1) @ w2
    return relu, tanh, jax.random.normal(ks[3], (3, 6))


@pytest.mark.parametrize("kronrod", [7, 15])
@pytest.mark.parametrize("rtol", [1e-2, 1e-4])
def test_relu_meets_per_feature_tolerance_against_exact(kronrod, rtol):
    relu, _, x = _nets()
    exact = exact_integrated_gradients(relu, x, 0.2, target=1)
    attr, info = adaptive_integrated_gradients(relu, x, 0.2, target=1, rtol=rtol, max_evals=4096,
                                               kronrod=kronrod)
    assert bool(info.converged.all())
    err = np.abs(attr - exact).max(1)
    scale = np.abs(exact).max(1)
    assert np.all(err <= rtol * scale * 1.01)
    # the largest error estimate bounds the largest true error (an estimate, not a proof)
    assert np.all(err <= np.asarray(info.error).max(1))


def test_smooth_costs_one_interval_and_is_accurate():
    _, tanh, x = _nets()
    ref = jaxig.integrated_gradients(tanh, x, target=0, n_steps=64)
    attr, info = adaptive_integrated_gradients(tanh, x, target=0, rtol=1e-6, kronrod=15)
    np.testing.assert_allclose(attr, ref, atol=1e-6 * np.abs(ref).max())
    assert np.all(np.asarray(info.n_evals) <= 45)


def test_linear_is_exact_with_one_interval():
    w = jnp.array([1.0, -2.0, 3.0])
    x = jnp.array([[1.0, 2.0, 3.0], [0.5, 0.5, -1.0]])
    attr, info = adaptive_integrated_gradients(lambda z: z @ w, x, rtol=1e-12)
    np.testing.assert_allclose(attr, x * w, rtol=1e-14)
    assert info.n_evals.tolist() == [7, 7]


def test_budget_exhausted_reports_not_converged():
    relu, _, x = _nets()
    attr, info = adaptive_integrated_gradients(relu, x, 0.2, target=0, rtol=1e-12, max_evals=50)
    assert not bool(info.converged.any())
    assert np.all(np.asarray(info.n_evals) <= 50)


def test_jit_vmap_pytree_and_target_all():
    relu, _, x = _nets()
    f = lambda d: relu(jnp.concatenate([d["a"], d["b"]], 1))
    tree = {"a": x[:, :2], "b": x[:, 2:]}
    run = jax.jit(lambda t: adaptive_integrated_gradients(f, t, target="all", rtol=1e-3))
    attr, info = run(tree)
    assert attr["a"].shape == (2, 3, 2) and info.error["b"].shape == (2, 3, 4)
    exact = exact_integrated_gradients(f, tree, target="all")
    for k in ("a", "b"):
        np.testing.assert_allclose(attr[k], exact[k], atol=2e-3 * np.abs(exact["b"]).max())
    single = jax.vmap(lambda r: adaptive_integrated_gradients(relu, r[None], target=1)[0][0])(x)
    np.testing.assert_allclose(single, adaptive_integrated_gradients(relu, x, target=1)[0], atol=1e-12)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="kronrod"):
        adaptive_integrated_gradients(lambda z: z.sum(-1), jnp.ones((1, 2)), kronrod=5)
    with pytest.raises(ValueError, match="max_evals"):
        adaptive_integrated_gradients(lambda z: z.sum(-1), jnp.ones((1, 2)), max_evals=5)
