"""Layer attributions on f = head o body: closed forms, completeness, transforms, errors, and the
three model libraries (Flax linen, NNX, Equinox) split without rewriting them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import count_compiles

import jaxig

KEYS = jax.random.split(jax.random.key(0), 6)
A = jax.random.normal(KEYS[0], (5, 4))  # body weights: x (5 features) -> h (4 units)
C = jax.random.normal(KEYS[1], (4,))
V = jax.random.normal(KEYS[2], (4, 3))  # head weights: h -> 3 outputs
X = jax.random.normal(KEYS[3], (6, 5))
XB = jax.random.normal(KEYS[4], (5,)) * 0.5  # one baseline shared by the batch

linear_body = lambda x: x @ A + C
tanh_body = lambda x: jnp.tanh(x @ A + C)
linear_head = lambda h: h @ V + 1.0
quadratic_head = lambda h: (h @ V) ** 2


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# -- closed forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule,n", [(jaxig.GaussLegendre(), 2), (jaxig.RiemannLeft(), 3)])
@pytest.mark.parametrize("body", [linear_body, tanh_body], ids=["linear", "tanh"])
def test_layer_ig_of_a_linear_head_is_weight_times_activation_difference(body, rule, n):
    attr, info = jaxig.layer_integrated_gradients(body, linear_head, X, XB, target=1, n_steps=n, rule=rule,
                                                  return_info=True)
    expected = V[:, 1] * (body(X) - body(XB[None]))
    _close(attr, expected)
    assert np.max(np.abs(np.asarray(info.delta))) < 1e-5


def test_layer_ig_is_ig_of_the_head_between_the_two_activations():
    h, hb = tanh_body(X), tanh_body(XB[None])
    expected = jaxig.integrated_gradients(quadratic_head, h, hb, target=2, n_steps=8)
    _close(jaxig.layer_integrated_gradients(tanh_body, quadratic_head, X, XB, target=2, n_steps=8), expected)


@pytest.mark.parametrize("stieltjes,rule", [(False, jaxig.GaussLegendre()), (True, jaxig.Trapezoid())])
def test_conductance_through_a_linear_head_is_weight_times_activation_difference(stieltjes, rule):
    # dF/dh = V[:, k] is constant, so the integral of dF/dh . dh/da is V[:, k] (h(x) - h(x')) exactly;
    # the Stieltjes sum over nodes that include both ends telescopes to the same value.
    attr, info = jaxig.layer_conductance(tanh_body, linear_head, X, XB, target=0, n_steps=64, rule=rule,
                                         stieltjes=stieltjes, return_info=True)
    expected = V[:, 0] * (tanh_body(X) - tanh_body(XB[None]))
    _close(attr, expected, 1e-4 if not stieltjes else 1e-5)
    assert attr.shape == (6, 4)
    assert info.n_evals == 64 + stieltjes


def test_conductance_of_a_linear_body_equals_layer_ig():
    # a linear body maps the input line onto the layer line, so both integrate the same thing
    lig = jaxig.layer_integrated_gradients(linear_body, quadratic_head, X, XB, target=1, n_steps=10)
    cond = jaxig.layer_conductance(linear_body, quadratic_head, X, XB, target=1, n_steps=10)
    _close(cond, lig, 1e-4)


def test_conductance_is_complete_for_nonlinear_body_and_head():
    attr, info = jaxig.layer_conductance(tanh_body, quadratic_head, X, XB, target=2, n_steps=32, return_info=True)
    f = lambda x: quadratic_head(tanh_body(x))[:, 2]
    gap = np.asarray(attr.sum(1) - (f(X) - f(XB[None])))
    _close(info.delta, gap, 1e-5)
    assert np.max(np.abs(gap)) < 1e-4 * max(1.0, float(np.max(np.abs(f(X)))))


def test_neuron_conductance_closed_form_for_linear_body_and_head():
    # dF/dh_n = V[n, k], dh_n/dx_i = A[i, n]
    for n in range(4):
        attr = jaxig.neuron_conductance(linear_body, linear_head, X, (n,), XB, target=2, n_steps=2)
        _close(attr, (X - XB) * A[:, n] * V[n, 2])
    unscaled = jaxig.neuron_conductance(linear_body, linear_head, X, 1, XB, target=2, n_steps=2,
                                        multiply_by_inputs=False)
    _close(unscaled, jnp.broadcast_to(A[:, 1] * V[1, 2], X.shape))


def test_neuron_conductances_sum_to_the_units_layer_conductance_and_to_ig():
    cond = jaxig.layer_conductance(tanh_body, quadratic_head, X, XB, target=0, n_steps=16)
    per_unit = [jaxig.neuron_conductance(tanh_body, quadratic_head, X, (n,), XB, target=0, n_steps=16)
                for n in range(4)]
    for n in range(4):
        _close(per_unit[n].sum(1), cond[:, n], 1e-4)
    # summed over units, conductance through the layer is IG of f with the same rule
    f = lambda x: quadratic_head(tanh_body(x))
    ig = jaxig.integrated_gradients(f, X, XB, target=0, n_steps=16)
    _close(sum(per_unit), ig, 1e-4)
    # a callable selector summing a group of units gives the group's conductance
    group = jaxig.neuron_conductance(tanh_body, quadratic_head, X, lambda h: h[:, 1] + h[:, 3], XB, target=0,
                                     n_steps=16)
    _close(group, per_unit[1] + per_unit[3], 1e-4)


def test_layer_activation_is_body():
    _close(jaxig.layer_activation(tanh_body, X), tanh_body(X), 1e-6)
    mask = jnp.arange(5.0)
    _close(jaxig.layer_activation(lambda x, m: x * m, X, args=(mask,)), X * mask, 1e-6)


# -- targets, pytrees, integer inputs --------------------------------------------------------------


@pytest.mark.parametrize("method", ["lig", "cond", "stieltjes", "neuron"])
def test_target_all_stacks_every_output(method):
    call = {
        "lig": lambda t: jaxig.layer_integrated_gradients(tanh_body, quadratic_head, X, XB, target=t, n_steps=6),
        "cond": lambda t: jaxig.layer_conductance(tanh_body, quadratic_head, X, XB, target=t, n_steps=6),
        "stieltjes": lambda t: jaxig.layer_conductance(tanh_body, quadratic_head, X, XB, target=t, n_steps=6,
                                                       stieltjes=True),
        "neuron": lambda t: jaxig.neuron_conductance(tanh_body, quadratic_head, X, (2,), XB, target=t, n_steps=6),
    }[method]
    every = call("all")
    assert every.shape[0] == 3
    for k in range(3):
        _close(every[k], call(k), 1e-5)
    if method == "cond":
        _, info = jaxig.layer_conductance(tanh_body, quadratic_head, X, XB, target="all", n_steps=6,
                                          return_info=True)
        assert info.delta.shape == (3, 6)


def test_pytree_inputs_and_activations():
    x = {"a": X[:, :2], "b": X[:, 2:]}
    body = lambda d: {"u": jnp.tanh(d["a"] @ A[:2] + d["b"] @ A[2:]), "v": d["b"] ** 2}
    head = lambda h: h["u"] @ V + h["v"].sum(1, keepdims=True)
    flat_f = lambda z: head(body({"a": z[:, :2], "b": z[:, 2:]}))
    cond, info = jaxig.layer_conductance(body, head, x, target=1, n_steps=24, return_info=True)
    assert set(cond) == {"u", "v"} and cond["u"].shape == (6, 4) and cond["v"].shape == (6, 3)
    assert np.max(np.abs(np.asarray(info.delta))) < 1e-4
    lig = jaxig.layer_integrated_gradients(body, head, x, target=1, n_steps=24)
    _close(lig["v"], body(x)["v"], 1e-5)  # the head is linear in v with weight 1, baseline v = 0
    # summed over both units' groups, neuron conductance through everything is IG of f
    nc = jaxig.neuron_conductance(body, head, x, lambda h: h["u"].sum(1) + h["v"].sum(1), target=1, n_steps=24)
    ig = jaxig.integrated_gradients(flat_f, X, target=1, n_steps=24)
    _close(jnp.concatenate([nc["a"], nc["b"]], 1), ig, 1e-4)


def test_integer_token_ids_at_the_embedding_layer():
    table = jax.random.normal(KEYS[5], (11, 3))
    w = jax.random.normal(KEYS[0], (3, 2))
    ids = jnp.array([[1, 4, 7, 0], [3, 3, 10, 2]])
    body = lambda t: table[t]
    head = lambda e: e.mean(1) @ w
    attr, info = jaxig.layer_integrated_gradients(body, head, ids, target=1, return_info=True)
    assert attr.shape == (2, 4, 3)
    _close(attr, (table[ids] - table[0]) * w[:, 1] / 4)  # baseline: id 0 (the "padding" token)
    assert np.max(np.abs(np.asarray(info.delta))) < 1e-5
    pad = jaxig.layer_integrated_gradients(body, head, ids, jnp.full((4,), 10), target=1)
    _close(pad, (table[ids] - table[10]) * w[:, 1] / 4)
    with pytest.raises(TypeError, match="layer_integrated_gradients"):
        jaxig.layer_conductance(body, head, ids, target=1)


# -- errors ----------------------------------------------------------------------------------------


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match=r"body\(x\) has dtype int32"):
        jaxig.layer_integrated_gradients(lambda x: (x > 0).astype(jnp.int32), linear_head, X, target=0)
    with pytest.raises(TypeError, match=r"body\(x\) has dtype"):
        jaxig.layer_conductance(lambda x: jnp.round(x).astype(jnp.int32), linear_head, X, target=0)
    with pytest.raises(ValueError, match=r"head\(body\(x\)\) returned shape \(6, 3, 1\)"):
        jaxig.layer_integrated_gradients(tanh_body, lambda h: (h @ V)[..., None], X, target=0)
    with pytest.raises(ValueError, match=r"head\(body\(x\)\) returned shape \(3,\)"):
        jaxig.layer_conductance(tanh_body, lambda h: (h @ V).sum(0), X)
    with pytest.raises(ValueError, match="batch axis"):
        jaxig.layer_conductance(lambda x: (x @ A).sum(0), lambda h: h, X)
    with pytest.raises(ValueError, match="say which to explain"):
        jaxig.layer_conductance(tanh_body, linear_head, X)
    with pytest.raises(ValueError, match="target index 3 is out of range for head"):
        jaxig.layer_conductance(tanh_body, linear_head, X, target=3)
    with pytest.raises(ValueError, match=r"\(4,\) is out of range"):
        jaxig.neuron_conductance(tanh_body, linear_head, X, (4,), target=0)
    with pytest.raises(ValueError, match=r"\(-1,\) is out of range"):
        jaxig.neuron_conductance(tanh_body, linear_head, X, -1, target=0)
    with pytest.raises(ValueError, match="tuple of 1 int"):
        jaxig.neuron_conductance(tanh_body, linear_head, X, (1, 2), target=0)
    with pytest.raises(ValueError, match=r"one float per example"):
        jaxig.neuron_conductance(tanh_body, linear_head, X, lambda h: h[:, :2], target=0)
    with pytest.raises(TypeError, match="pytree"):
        jaxig.neuron_conductance(lambda x: {"h": tanh_body(x)}, lambda d: linear_head(d["h"]), X, (1,), target=0)
    with pytest.raises(ValueError, match="is random"):
        jaxig.layer_conductance(tanh_body, linear_head, X, target=0, rule=jaxig.MonteCarlo(), stieltjes=True,
                                key=jax.random.key(0))
    with pytest.raises(TypeError, match="AbstractRule"):
        jaxig.layer_conductance(tanh_body, linear_head, X, target=0, rule="gausslegendre")
    with pytest.raises(ValueError, match="baseline shape"):
        jaxig.layer_integrated_gradients(tanh_body, linear_head, X, jnp.zeros((4,)), target=0)
    with pytest.raises(TypeError, match="head must be a callable"):
        jaxig.layer_conductance(tanh_body, None, X, target=0)
    with pytest.raises(ValueError, match="alpha_batch_size"):
        jaxig.neuron_conductance(tanh_body, linear_head, X, 0, target=0, alpha_batch_size=0)


# -- transforms, weights, chunking -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["lig", "cond", "stieltjes", "neuron"])
def test_jit_vmap_and_alpha_chunks_agree(method):
    fn = {
        "lig": lambda x, **kw: jaxig.layer_integrated_gradients(tanh_body, quadratic_head, x, XB, target=1,
                                                                n_steps=7, **kw),
        "cond": lambda x, **kw: jaxig.layer_conductance(tanh_body, quadratic_head, x, XB, target=1, n_steps=7, **kw),
        "stieltjes": lambda x, **kw: jaxig.layer_conductance(tanh_body, quadratic_head, x, XB, target=1, n_steps=7,
                                                             stieltjes=True, **kw),
        "neuron": lambda x, **kw: jaxig.neuron_conductance(tanh_body, quadratic_head, x, (1,), XB, target=1,
                                                           n_steps=7, **kw),
    }[method]
    eager = fn(X)
    _close(jax.jit(fn)(X), eager)
    stacked = jnp.stack([X, 2 * X])
    _close(jax.vmap(fn)(stacked)[1], fn(2 * X))
    if method in ("cond", "neuron"):  # layer IG chunks inside integrated_gradients, tested there
        _close(fn(X, alpha_batch_size=3), eager)


def test_grad_with_respect_to_weights_closed_form():
    # linear body x @ W and linear head: conductance = V[:, k] * ((x - x') @ W), so
    # d sum(conductance) / dW = outer(sum_b (x - x'), V[:, k])
    def total(w, method):
        body = lambda x: x @ w
        if method == "cond":
            return jaxig.layer_conductance(body, linear_head, X, XB, target=1, n_steps=3).sum()
        if method == "lig":
            return jaxig.layer_integrated_gradients(body, linear_head, X, XB, target=1, n_steps=3).sum()
        return sum(jaxig.neuron_conductance(body, linear_head, X, (n,), XB, target=1, n_steps=3).sum()
                   for n in range(4))

    expected = jnp.outer((X - XB).sum(0), V[:, 1])
    for method in ("cond", "lig", "neuron"):
        _close(jax.grad(total)(A, method), expected, 1e-4)


@pytest.mark.parametrize("method", ["lig", "cond", "neuron", "activation"])
def test_results_follow_the_current_weights_without_recompiling(method):
    state = {"w": A, "v": V}
    body = lambda x: jnp.tanh(x @ state["w"])
    head = lambda h: h @ state["v"]
    call = {
        "lig": lambda: jaxig.layer_integrated_gradients(body, head, X, target=0, n_steps=5),
        "cond": lambda: jaxig.layer_conductance(body, head, X, target=0, n_steps=5),
        "neuron": lambda: jaxig.neuron_conductance(body, head, X, (2,), target=0, n_steps=5),
        "activation": lambda: jaxig.layer_activation(body, X),
    }[method]
    first = call()
    state["w"], state["v"] = 2 * A, -V
    with count_compiles() as compiles:
        second = call()
    assert len(compiles) == 0
    fresh_body = lambda x: jnp.tanh(x @ (2 * A))
    fresh_head = lambda h: h @ -V
    expected = {
        "lig": lambda: jaxig.layer_integrated_gradients(fresh_body, fresh_head, X, target=0, n_steps=5),
        "cond": lambda: jaxig.layer_conductance(fresh_body, fresh_head, X, target=0, n_steps=5),
        "neuron": lambda: jaxig.neuron_conductance(fresh_body, fresh_head, X, (2,), target=0, n_steps=5),
        "activation": lambda: fresh_body(X),
    }[method]()
    assert not np.allclose(np.asarray(first), np.asarray(second))
    _close(second, expected)


def test_another_neuron_compiles_nothing():
    jaxig.neuron_conductance(tanh_body, linear_head, X, (0,), target=0, n_steps=5)
    with count_compiles() as compiles:
        jaxig.neuron_conductance(tanh_body, linear_head, X, (3,), target=0, n_steps=5)
    assert len(compiles) == 0


# -- model libraries, split without rewriting them -------------------------------------------------


def _check_split(body, head, f, x, target):
    lig, info = jaxig.layer_integrated_gradients(body, head, x, target=target, n_steps=16, return_info=True)
    assert lig.shape == body(x).shape
    assert np.max(np.abs(np.asarray(info.delta))) < 1e-3
    cond, info = jaxig.layer_conductance(body, head, x, target=target, n_steps=64, return_info=True)
    out = f(x)[:, target] - f(jnp.zeros_like(x))[:, target]
    _close(cond.reshape(x.shape[0], -1).sum(1), out, 2e-3)
    return cond


def test_flax_linen_model_split_by_method():
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        def setup(self):
            self.hidden = nn.Dense(6)
            self.out = nn.Dense(3)

        def embed(self, x):
            return nn.tanh(self.hidden(x))

        def classify(self, h):
            return self.out(h)

        def __call__(self, x):
            return self.classify(self.embed(x))

    model = MLP()
    params = model.init(jax.random.key(1), X)
    body = lambda x: model.apply(params, x, method=MLP.embed)
    head = lambda h: model.apply(params, h, method=MLP.classify)
    _check_split(body, head, lambda x: model.apply(params, x), X, 2)


def test_nnx_model_split_by_submodules():
    nnx = pytest.importorskip("flax.nnx")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.layer1 = nnx.Linear(5, 6, rngs=rngs)
            self.layer2 = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x):
            return self.layer2(jax.nn.relu(self.layer1(x)))

    model = MLP(nnx.Rngs(0))
    body = lambda x: jax.nn.relu(model.layer1(x))
    head = lambda h: model.layer2(h)
    cond = _check_split(body, head, model, X, 0)
    nc = jaxig.neuron_conductance(body, head, X, (1,), target=0, n_steps=64)
    _close(nc.sum(1), cond[:, 1], 1e-4)
    # an optimiser step updates the module in place: the next call explains the new weights
    before = jaxig.layer_conductance(body, head, X, target=0, n_steps=8)
    model.layer2.kernel[...] = model.layer2.kernel[...] * 3.0
    after = jaxig.layer_conductance(body, head, X, target=0, n_steps=8)
    _close(after, 3.0 * before, 1e-5)


def test_equinox_model_split_by_fields():
    eqx = pytest.importorskip("equinox")
    k1, k2 = jax.random.split(jax.random.key(2))
    model = eqx.nn.MLP(5, 3, width_size=6, depth=1, activation=jnp.tanh, key=k1)
    body = lambda x: jax.vmap(lambda e: model.activation(model.layers[0](e)))(x)
    head = lambda h: jax.vmap(model.layers[1])(h)
    _check_split(body, head, jax.vmap(model), X, 1)
