"""shapley_value_sampling: closed forms, exact completeness per ordering, convergence to exact Shapley values."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from tests.helpers import count_compiles

W = jnp.array([0.8, -1.5, 0.3, 2.0, -0.2])
X = jnp.array([[0.5, -1.0, 2.0, 0.1, 1.0], [1.5, 0.25, -0.75, -0.5, 0.0], [-0.3, 0.6, 0.9, 0.4, -1.2]])
BASE = jnp.array([0.1, 0.2, -0.3, 0.0, 0.5])
KEY = jax.random.key(0)
MLP_W1 = jax.random.normal(jax.random.key(1), (5, 8))
MLP_W2 = jax.random.normal(jax.random.key(2), (8, 2))


def linear(x):
    return x @ W + 0.7


def mlp(x):  # (B, 5) -> (B, 2), with interactions between all features
    return jax.nn.relu(x @ MLP_W1) @ MLP_W2


def interacting(x):
    return x[:, 0] * x[:, 1] * x[:, 2] + jnp.sin(x[:, 3]) * x[:, 4]


def ordering_loop(f, x, b, mask, perms):
    """Castro et al.'s estimator written as the definition: one input per switched-on prefix."""
    f = jax.jit(f)
    x, b = np.asarray(x), np.broadcast_to(np.asarray(b), x.shape)
    mask = np.broadcast_to(mask, x.shape)
    total = np.zeros(x.shape)
    for perm in perms:
        current, prev = b.copy(), np.asarray(f(jnp.asarray(b)), np.float64)
        for g in perm:
            current = np.where(mask == g, x, current)
            now = np.asarray(f(jnp.asarray(current)), np.float64)
            total += np.where(mask == g, (now - prev).reshape((-1,) + (1,) * (x.ndim - 1)), 0.0)
            prev = now
    return total / len(perms)


def exact_shapley(f, x, b, n):
    """Shapley values of v(S) = f(x_S, b_rest) by the subset formula (singleton groups)."""
    f = jax.jit(f)
    x, b = np.asarray(x), np.broadcast_to(np.asarray(b), x.shape)
    phi = np.zeros(x.shape)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for r in range(n):
            for subset in itertools.combinations(others, r):
                weight = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
                on = np.isin(np.arange(n), subset)
                without = np.where(on, x, b)
                with_i = np.where(on | (np.arange(n) == i), x, b)
                phi[:, i] += weight * (np.asarray(f(jnp.asarray(with_i))) - np.asarray(f(jnp.asarray(without))))
    return phi


def test_linear_model_gets_weight_times_difference_for_any_ordering():
    attr, info = jaxig.shapley_value_sampling(linear, X, BASE, key=KEY, n_samples=3, return_info=True)
    np.testing.assert_allclose(attr, W * (X - BASE), rtol=1e-5, atol=1e-6)
    assert info.n_evals == 3 * 4 + 2


def test_completeness_holds_exactly_for_each_ordering():
    for seed in range(3):
        attr, info = jaxig.shapley_value_sampling(mlp, X, BASE, target=1, key=jax.random.key(seed), n_samples=1,
                                                  return_info=True)
        gap = np.asarray(mlp(X)[:, 1] - mlp(BASE[None])[:, 1])
        np.testing.assert_allclose(info.delta, 0.0, atol=1e-5 * max(1.0, np.max(np.abs(gap))))
        assert np.max(np.abs(attr)) > 1e-3
    # with groups, every feature carries its group's credit: the groups' credits sum to the gap
    mask = np.array([1, 1, 0, 2, 2])
    attr = jaxig.shapley_value_sampling(interacting, X, BASE, key=KEY, n_samples=2, feature_mask=mask)
    per_group = attr[:, 2] + attr[:, 0] + attr[:, 3]
    np.testing.assert_allclose(per_group, interacting(X) - interacting(BASE[None]), rtol=1e-5, atol=1e-6)


def test_injected_orderings_match_the_definition_loop():
    perms = np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2], [2, 1, 0]])
    mask = np.array([[0, 0, 1, 2, 2], [2, 1, 1, 0, 0], [0, 1, 2, 0, 1]])  # per-example groups
    attr = jaxig.shapley_value_sampling(interacting, X, BASE, feature_mask=mask, permutations=perms,
                                        perturbations_per_eval=3)
    np.testing.assert_allclose(attr, ordering_loop(interacting, X, BASE, mask, perms), rtol=1e-5, atol=1e-6)


def test_all_orderings_give_exact_shapley_values_and_sampling_converges():
    exact = exact_shapley(interacting, X, BASE, 5)
    every = np.array(list(itertools.permutations(range(5))))
    attr = jaxig.shapley_value_sampling(interacting, X, BASE, permutations=every)
    np.testing.assert_allclose(attr, exact, rtol=1e-5, atol=1e-5)
    sampled = jaxig.shapley_value_sampling(interacting, X, BASE, key=KEY, n_samples=3000)
    scale = np.max(np.abs(exact))
    err = np.max(np.abs(np.asarray(sampled) - exact))
    assert err < 0.05 * scale  # about 4 standard errors for this model
    few = jaxig.shapley_value_sampling(interacting, X, BASE, key=KEY, n_samples=2)
    assert np.max(np.abs(np.asarray(few) - exact)) > err  # the sampled estimate really improves


def test_target_all_and_the_key_changes_the_orderings():
    attr = jaxig.shapley_value_sampling(mlp, X, BASE, target="all", key=KEY, n_samples=4)
    assert attr.shape == (2,) + X.shape
    for k in range(2):
        np.testing.assert_allclose(attr[k], jaxig.shapley_value_sampling(mlp, X, BASE, target=k, key=KEY, n_samples=4),
                                   rtol=1e-5, atol=1e-6)
    other = jaxig.shapley_value_sampling(mlp, X, BASE, target="all", key=jax.random.key(1), n_samples=4)
    assert not np.allclose(attr, other)
    again = jaxig.shapley_value_sampling(mlp, X, BASE, target="all", key=jax.random.PRNGKey(0), n_samples=4)
    assert again.shape == attr.shape  # raw uint32 keys work too


def test_jit_vmap_grad_and_no_recompile():
    kw = dict(key=KEY, n_samples=3, feature_mask=np.array([0, 0, 1, 2, 2]))
    expected = jaxig.shapley_value_sampling(interacting, X, BASE, **kw)
    np.testing.assert_allclose(jax.jit(lambda x: jaxig.shapley_value_sampling(interacting, x, BASE, **kw))(X),
                               expected, rtol=1e-6)
    mapped = jax.vmap(lambda x: jaxig.shapley_value_sampling(interacting, x, BASE, **kw))(jnp.stack([X, X]))
    np.testing.assert_allclose(mapped[1], expected, rtol=1e-5, atol=1e-6)

    def total(w):
        f = jax.tree_util.Partial(lambda w_, x: x @ w_, w)
        return jnp.sum(jaxig.shapley_value_sampling(f, X, BASE, key=KEY, n_samples=2))

    np.testing.assert_allclose(jax.grad(total)(W), jnp.sum(X - BASE, axis=0), rtol=1e-5, atol=1e-6)

    key2, x2, b2 = jax.random.key(5), X * 2.0, BASE + 1.0
    with count_compiles() as compiles:
        jaxig.shapley_value_sampling(interacting, x2, b2, key=key2, n_samples=3, feature_mask=np.array([4, 4, 1, 0, 0]))
    assert len(compiles) == 0


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="key=jax.random.key"):
        jaxig.shapley_value_sampling(linear, X)
    with pytest.raises(ValueError, match="n_samples=0"):
        jaxig.shapley_value_sampling(linear, X, key=KEY, n_samples=0)
    with pytest.raises(ValueError, match=r"\(n_samples, 5\)"):
        jaxig.shapley_value_sampling(linear, X, permutations=np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="not an ordering"):
        jaxig.shapley_value_sampling(linear, X, permutations=np.array([[0, 1, 2, 3, 4], [0, 0, 2, 3, 4]]))
    with pytest.raises(TypeError, match="int array"):
        jaxig.shapley_value_sampling(linear, X, permutations=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        jaxig.shapley_value_sampling(linear, X, key=KEY, perturbations_per_eval=-1)
    with pytest.raises(ValueError, match="feature_mask shape"):
        jaxig.shapley_value_sampling(linear, X, key=KEY, feature_mask=np.arange(4))
