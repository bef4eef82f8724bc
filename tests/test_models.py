"""Models as arguments: attributions follow the current weights, and new weights compile nothing.

Every case is checked on all three IG entry points against the closed form of a linear model,
``IG = w * (x - x')``, so a stale result (the old weights') cannot pass.
"""

import functools
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

import jaxig

X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
W1 = jnp.array([0.8, -1.5, 0.3])
W2 = jnp.array([-0.4, 2.0, 1.1])

ENTRY_POINTS = {
    "integrated": functools.partial(jaxig.integrated_gradients, n_steps=8),
    "exact": jaxig.exact_integrated_gradients,
    "adaptive": functools.partial(jaxig.adaptive_integrated_gradients, rtol=1e-6),
}


def _check(method, f, w):
    np.testing.assert_allclose(method(f, X), X * w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_closure_over_a_rebound_variable_follows_it(name):
    method = ENTRY_POINTS[name]
    state = {"w": W1}
    f = lambda x: x @ state["w"]  # noqa: E731
    _check(method, f, W1)
    state["w"] = W2
    _check(method, f, W2)


WEIGHTS = W1


def _global_model(x):
    return x @ WEIGHTS


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_function_reading_a_rebound_global_follows_it(name):
    global WEIGHTS
    method = ENTRY_POINTS[name]
    try:
        WEIGHTS = W1
        _check(method, _global_model, W1)
        WEIGHTS = W2
        _check(method, _global_model, W2)
    finally:
        WEIGHTS = W1


class _Linear:
    def __init__(self, w):
        self.w = w

    def __call__(self, x):
        return x @ self.w


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_callable_object_whose_attribute_changes(name):
    method = ENTRY_POINTS[name]
    model = _Linear(W1)
    _check(method, model, W1)
    model.w = W2
    _check(method, model, W2)
    bound = model.__call__  # a bound method sees the same object
    model.w = W1
    _check(method, bound, W1)


def _nnx_linear():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 1, use_bias=False, rngs=nnx.Rngs(0))
    model.kernel[...] = W1[:, None]
    return nnx, model


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_nnx_module_mutated_in_place(name):
    nnx, model = _nnx_linear()
    method = ENTRY_POINTS[name]
    f = lambda x: model(x)[:, 0]  # noqa: E731
    _check(method, f, W1)
    model.kernel[...] = W2[:, None]
    _check(method, f, W2)


def test_nnx_module_after_an_optimizer_step():
    optax = pytest.importorskip("optax")
    nnx, model = _nnx_linear()
    f = lambda x: model(x)[:, 0]  # noqa: E731
    before = jaxig.integrated_gradients(f, X, n_steps=4)
    optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
    grads = nnx.grad(lambda m: jnp.sum(m(X) ** 2))(model)
    optimizer.update(model, grads)
    w_new = np.asarray(model.kernel[...])[:, 0]
    assert not np.allclose(w_new, W1)
    after = jaxig.integrated_gradients(f, X, n_steps=4)
    np.testing.assert_allclose(after, X * w_new, rtol=1e-5, atol=1e-6)
    assert not np.allclose(after, before)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_equinox_module_as_the_model(name):
    eqx = pytest.importorskip("equinox")
    method = ENTRY_POINTS[name]

    class Linear(eqx.Module):
        w: jax.Array

        def __call__(self, x):
            return x @ self.w

    _check(method, Linear(W1), W1)
    _check(method, Linear(W2), W2)
    model = Linear(W1)
    f = lambda x: model(x)  # noqa: E731  (closing over a module that is then replaced)
    _check(method, f, W1)
    model = eqx.tree_at(lambda m: m.w, model, W2)
    _check(method, f, W2)


def _linen():
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.relu(nn.Dense(8)(x)))[:, 0]

    model = MLP()
    return model, [model.init(jax.random.key(k), X) for k in (0, 1)]


def _checkpoints(kind):
    """Returns two models of one architecture with different weights, and a reference f(params)."""
    if kind == "linen-partial":
        model, (p1, p2) = _linen()
        return [jax.tree_util.Partial(model.apply, p) for p in (p1, p2)]
    if kind == "nnx":
        nnx = pytest.importorskip("flax.nnx")

        class MLP(nnx.Module):
            def __init__(self, rngs):
                self.a = nnx.Linear(3, 8, rngs=rngs)
                self.b = nnx.Linear(8, 1, rngs=rngs)

            def __call__(self, x):
                return self.b(jax.nn.relu(self.a(x)))[:, 0]

        return [MLP(nnx.Rngs(k)) for k in (0, 1)]
    eqx = pytest.importorskip("equinox")

    class MLP(eqx.Module):
        a: eqx.nn.Linear
        b: eqx.nn.Linear

        def __init__(self, key):
            ka, kb = jax.random.split(key)
            self.a, self.b = eqx.nn.Linear(3, 8, key=ka), eqx.nn.Linear(8, 1, key=kb)

        def __call__(self, x):
            return jax.vmap(lambda r: self.b(jax.nn.relu(self.a(r)))[0])(x)

    return [MLP(jax.random.key(k)) for k in (0, 1)]


@pytest.mark.parametrize("kind", ["linen-partial", "nnx", "equinox"])
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_a_new_checkpoint_of_the_same_architecture_compiles_nothing(kind, name):
    method = ENTRY_POINTS[name]
    first, second = _checkpoints(kind)
    a1 = method(first, X)
    with count_compiles() as compiles:
        a2 = method(second, X)
    assert len(compiles) == 0
    # ...and is the second model's answer, not the first's: the same method on a fresh closure
    ref = method(lambda x: second(x), X)
    np.testing.assert_allclose(a2, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a1, a2, atol=1e-3)


def test_a_new_lambda_of_the_same_body_compiles_nothing():
    make = lambda w: (lambda x: jnp.tanh(x @ w))  # noqa: E731
    jaxig.integrated_gradients(make(W1), X)
    with count_compiles() as compiles:
        attr = jaxig.integrated_gradients(make(W2), X)
    assert len(compiles) == 0
    np.testing.assert_allclose(attr, jaxig.integrated_gradients(lambda x: jnp.tanh(x @ W2), X, n_steps=64),
                               rtol=1e-4)


def test_a_changed_python_scalar_in_the_closure_is_seen():
    scale = 1.0
    f = lambda x: (x @ W1) * scale  # noqa: E731
    _check(ENTRY_POINTS["integrated"], f, W1)
    scale = 3.0  # noqa: F841  (read by f through its closure cell)
    _check(ENTRY_POINTS["integrated"], f, 3.0 * W1)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_extra_arguments_are_inputs_not_constants(name):
    """A per-batch mask passed with args= is used, per example, and new values compile nothing."""
    method = ENTRY_POINTS[name]
    f = lambda x, mask: (x * mask) @ W1  # noqa: E731
    m1 = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    m2 = jnp.array([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(method(f, X, args=(m1,)), X * W1 * m1, rtol=1e-5, atol=1e-6)
    with count_compiles() as compiles:
        got = method(f, X, args=(m2,))
    assert len(compiles) == 0
    np.testing.assert_allclose(got, X * W1 * m2, rtol=1e-5, atol=1e-6)
    # a shared (not per-example) argument
    np.testing.assert_allclose(method(lambda x, s: (x @ W1) * s, X, args=(jnp.float32(2.0),)), 2 * X * W1,
                               rtol=1e-5, atol=1e-6)


def test_args_must_be_a_tuple():
    with pytest.raises(TypeError, match=r"args must be a tuple .* args=\(m,\)"):
        jaxig.integrated_gradients(lambda x, m: x @ W1, X, args=jnp.ones(3))


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_return_info_gives_the_completeness_gap(name):
    method = ENTRY_POINTS[name]
    f = lambda x: jnp.maximum(x @ W1, 0.2 * (x @ W2))  # noqa: E731  (piecewise linear for exact IG)
    base = jnp.array([0.1, -0.2, 0.3])
    attr, info = method(f, X, base, return_info=True)
    assert isinstance(info, jaxig.Info)
    gap = np.asarray(attr).sum(1) - (np.asarray(f(X)) - np.asarray(f(base[None])))
    np.testing.assert_allclose(np.asarray(info.delta), gap, atol=1e-5)
    assert np.asarray(info.delta).shape == (2,)
    assert info.n_evals is not None


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_return_info_delta_with_target_all_is_k_by_b(name):
    method = ENTRY_POINTS[name]
    f = lambda x: jnp.stack([x @ W1, jnp.abs(x @ W2)], 1)  # noqa: E731
    attr, info = method(f, X, target="all", return_info=True)
    assert attr.shape == (2,) + X.shape and np.asarray(info.delta).shape == (2, 2)
    np.testing.assert_allclose(np.asarray(info.delta), 0.0, atol=1e-5)


def test_return_delta_still_works():
    attr, delta = jaxig.integrated_gradients(lambda x: x @ W1, X, return_delta=True)
    np.testing.assert_allclose(delta, 0.0, atol=1e-6)


def test_gradients_flow_to_the_parameters_of_a_partial():
    apply = lambda w, x: jnp.tanh(x @ w)  # noqa: E731

    def loss(w):
        return jnp.sum(jaxig.integrated_gradients(jax.tree_util.Partial(apply, w), X, n_steps=16) ** 2)

    def loss_closure(w):
        return jnp.sum(jaxig.integrated_gradients(lambda x: apply(w, x), X, n_steps=16) ** 2)

    g = jax.grad(loss)(W1)
    np.testing.assert_allclose(g, jax.grad(loss_closure)(W1), rtol=1e-5)
    eps = 1e-3
    fd = [(loss(W1.at[i].add(eps)) - loss(W1.at[i].add(-eps))) / (2 * eps) for i in range(3)]
    np.testing.assert_allclose(g, fd, rtol=2e-2)


def test_an_untraceable_f_gets_a_clear_error():
    def f(x):
        if x[0, 0] > 0:  # Python control flow on a value
            return x @ W1
        return -x @ W1

    with pytest.raises(TypeError, match=r"could not be traced.*jnp.where or jax.lax.cond"):
        jaxig.integrated_gradients(f, X)


def test_memory_stays_bounded_with_a_new_lambda_per_call():
    """300 calls, each with a new lambda closing over new weights, grow the process by < 60 MiB."""
    code = textwrap.dedent("""
        import gc, jax, jax.numpy as jnp, jaxig
        def rss():
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * 4096 / 2**20
        x = jnp.ones((16, 32))
        def make(k):
            w1 = jax.random.normal(jax.random.key(k), (32, 64))
            w2 = jax.random.normal(jax.random.key(k + 1), (64,))
            return lambda z: jnp.tanh(z @ w1) @ w2
        for k in range(20):
            jaxig.integrated_gradients(make(k), x).block_until_ready()
        gc.collect(); start = rss()
        for k in range(300):
            jaxig.integrated_gradients(make(k), x).block_until_ready()
        gc.collect(); print(rss() - start)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    growth = float(out.stdout.strip().splitlines()[-1])
    assert growth < 60, f"grew by {growth:.1f} MiB"


def _scan_model(length):
    w = jax.random.normal(jax.random.key(3), (4, 4)) / 2

    def f(x):  # x: (B, length, 4), a tanh RNN written with lax.scan
        def step(h, xt):
            h = jnp.tanh(h @ w + xt)
            return h, h
        h, _ = jax.lax.scan(step, jnp.zeros_like(x[:, 0]), jnp.swapaxes(x, 0, 1))
        return h.sum(-1)
    return f


def _scan_unrolls(f, x):
    from jaxig._model import lift

    return [e.params["unroll"] for e in lift(f, x).program.jaxpr.eqns if e.primitive.name == "scan"]


def test_short_scans_are_unrolled_and_give_the_same_attributions(monkeypatch):
    x = jax.random.normal(jax.random.key(0), (3, 5, 4))
    f = _scan_model(5)
    assert _scan_unrolls(f, x) == [5]
    unrolled = jaxig.integrated_gradients(f, x, n_steps=16)
    monkeypatch.setattr("jaxig._model.UNROLL_LENGTH", 0)
    g = _scan_model(5)  # a new function: traced again, now without unrolling
    assert _scan_unrolls(g, x) == [1]
    rolled = jaxig.integrated_gradients(g, x, n_steps=16)
    np.testing.assert_allclose(unrolled, rolled, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("length", [9, 1000])
def test_longer_scans_stay_rolled(length):
    x = jnp.ones((2, length, 4))
    assert _scan_unrolls(_scan_model(length), x) == [1]
