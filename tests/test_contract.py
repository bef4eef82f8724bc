"""The method protocol, checked for every registered method (tests/helpers.METHODS).

Closed forms on a linear model, target="all", pytrees, jit and vmap, return_info, keys, weights that
change without recompiling, and clear errors for bad input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import METHODS, PIECEWISE, count_compiles

import jaxig

X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
BASE = jnp.array([0.2, 0.1, -0.3])
W = jnp.array([0.8, -1.5, 0.3])
W_ALL = jnp.array([[0.8, -0.2], [-1.5, 1.0], [0.3, 0.4]])
KEY = jax.random.key(0)
IDS = [e.name for e in METHODS]


def _leaky(z):
    """A nonlinearity every method handles, exact IG included (piecewise linear)."""
    return jnp.maximum(z, 0.3 * z)


def _call(entry, f, x, b=None, **kw):
    if entry.random:
        kw.setdefault("key", KEY)
    return entry.method(f, x, b, **kw)


def _expected(entry, x, b, w):
    return w * (x - b) if entry.linear == "linear" else jnp.broadcast_to(w, x.shape)


@pytest.mark.parametrize("entry", METHODS, ids=IDS)
def test_linear_model_closed_form(entry):
    f = lambda x: x @ W + 0.5  # noqa: E731
    np.testing.assert_allclose(_call(entry, f, X, BASE), _expected(entry, X, BASE, W), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("entry", METHODS, ids=IDS)
def test_target_all_has_a_leading_output_axis(entry):
    f = lambda x: x @ W_ALL  # noqa: E731
    attr = _call(entry, f, X, BASE, target="all")
    assert attr.shape == (2,) + X.shape
    for k in range(2):
        np.testing.assert_allclose(attr[k], _expected(entry, X, BASE, W_ALL[:, k]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_call(entry, f, X, BASE, target=1), attr[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("entry", [e for e in METHODS if e.pytree], ids=[e.name for e in METHODS if e.pytree])
def test_pytree_inputs_keep_their_structure(entry):
    f = lambda d: d["a"] @ W[:2] + d["b"][:, 0] * W[2]  # noqa: E731
    x = {"a": X[:, :2], "b": X[:, 2:]}
    attr = _call(entry, f, x)
    assert set(attr) == {"a", "b"} and attr["a"].shape == (2, 2) and attr["b"].shape == (2, 1)
    np.testing.assert_allclose(jnp.concatenate([attr["a"], attr["b"]], 1), _expected(entry, X, 0.0, W),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("entry", [e for e in METHODS if e.jit], ids=[e.name for e in METHODS if e.jit])
def test_jit_and_vmap_give_the_eager_result(entry):
    f = lambda x: _leaky(x @ W)  # noqa: E731
    eager = _call(entry, f, X, BASE)
    np.testing.assert_allclose(jax.jit(lambda x: _call(entry, f, x, BASE))(X), eager, rtol=1e-5, atol=1e-6)
    stacked = jnp.stack([X, 2 * X])
    mapped = jax.vmap(lambda x: _call(entry, f, x, BASE))(stacked)
    np.testing.assert_allclose(mapped[0], eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mapped[1], _call(entry, f, 2 * X, BASE), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("entry", METHODS, ids=IDS)
def test_return_info_is_an_info_record(entry):
    attr, info = _call(entry, lambda x: x @ W, X, BASE, return_info=True)
    assert isinstance(info, jaxig.Info)
    assert attr.shape == X.shape


@pytest.mark.parametrize("entry", METHODS + [PIECEWISE], ids=IDS + [PIECEWISE.name])
def test_new_weights_are_followed_and_compile_nothing(entry):
    state = {"w": W}
    f = lambda x: _leaky(x @ state["w"])  # noqa: E731
    first = _call(entry, f, X, BASE)
    state["w"] = -2.0 * W
    with count_compiles() as compiles:
        second = _call(entry, f, X, BASE)
    assert len(compiles) == 0
    fresh = _call(entry, lambda x: _leaky(x @ (-2.0 * W)), X, BASE)
    np.testing.assert_allclose(second, fresh, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, second)


@pytest.mark.parametrize("entry", [e for e in METHODS if e.random], ids=[e.name for e in METHODS if e.random])
def test_random_methods_need_a_key(entry):
    with pytest.raises(ValueError, match="key"):
        entry.method(lambda x: x @ W, X, BASE)


@pytest.mark.parametrize("entry", METHODS, ids=IDS)
def test_bad_inputs_get_clear_errors(entry):
    with pytest.raises(TypeError, match="callable"):
        _call(entry, "not a model", X)
    with pytest.raises(TypeError, match="float"):
        _call(entry, lambda x: x @ W, jnp.ones((2, 3), jnp.int32))
    if entry.linear == "linear":  # gradient methods ignore the baseline (documented)
        with pytest.raises(ValueError, match="baseline"):
            _call(entry, lambda x: x @ W, X, jnp.ones(4))
    with pytest.raises(ValueError, match="target"):
        _call(entry, lambda x: x @ W_ALL, X)
