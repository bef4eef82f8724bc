"""Axiom checks: each catches a planted defect and passes Integrated Gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from jaxig import axioms

IG = functools.partial(jaxig.integrated_gradients, n_steps=64)
IG_RULES = tuple(
    functools.partial(jaxig.integrated_gradients, n_steps=64, rule=r)
    for r in (jaxig.GaussLegendre(), jaxig.Trapezoid(), jaxig.RiemannMidpoint())
)


def _b(x, baseline):
    return jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(baseline, x.shape)


# ---- planted defects: methods with the signature method(f, x, baseline[, target=])


def scaled_ig(f, x, baseline=None, **kw):
    """IG times 0.9: breaks completeness only."""
    return jax.tree.map(lambda a: 0.9 * a, IG(f, x, baseline, **kw))


def gradient(f, x, baseline=None, target=None):
    """Plain gradient (saliency): zero wherever f is flat, whatever f(x) - f(x') is."""
    return jax.grad(lambda z: f(z).sum() if target is None else f(z)[:, target].sum())(x)


def leaky_ig(f, x, baseline=None, **kw):
    """IG plus 1% of (x - x') on every feature: dummies get non-zero attribution."""
    return IG(f, x, baseline, **kw) + 0.01 * (x - _b(x, baseline))


def normalised_ig(f, x, baseline=None, **kw):
    """IG divided by the sum of its absolute values: a common display step that breaks linearity."""
    a = IG(f, x, baseline, **kw)
    return a / jnp.abs(a).sum(axis=1, keepdims=True)


def sequential_occlusion(f, x, baseline=None):
    """attr_i = f(x_1..x_i, x'_{i+1}..) - f(x_1..x_{i-1}, x'_i..): complete, but ordered, so not symmetric."""
    b = _b(x, baseline)
    D = x.shape[1]
    prefix = [f(jnp.where(jnp.arange(D) < i, x, b)) for i in range(D + 1)]
    return jnp.stack([prefix[i + 1] - prefix[i] for i in range(D)], axis=1)


# ---- functions


def ramp(x):
    """1 - relu(1 - x_0): flat for x_0 > 1 (the IG paper's sensitivity example), plus a dummy x_1."""
    return 1.0 - jax.nn.relu(1.0 - x[:, 0]) + 0.0 * x[:, 1]


W = jnp.array([[0.8, -1.5, 0.3, 0.0], [0.5, 0.2, -0.7, 0.0], [-1.1, 0.4, 0.9, 0.0]]).T  # (4 in, 3 out)


def smooth3(x):
    """(B, 4) -> (B, 3); feature 3 is a dummy."""
    return jnp.tanh(x @ W) + 0.1 * (x[:, :1] * x[:, 1:2])


X = jnp.array([[0.5, -1.0, 0.8, 0.3], [1.5, 0.25, -0.75, -0.5], [-0.3, 0.6, 0.9, 0.4]])
BASE = jnp.array([0.1, 0.2, -0.3, 0.0])


# ---- completeness


@pytest.mark.parametrize("method", IG_RULES)
def test_completeness_passes_ig_with_every_rule(method):
    r = axioms.check_completeness(method, smooth3, X, BASE, target=1)
    r.raise_if_failed()
    assert r.measured.shape == (3,) and np.all(r.measured < 1e-3)


def test_completeness_catches_scaled_attributions():
    r = axioms.check_completeness(scaled_ig, smooth3, X, BASE, target=0)
    assert not r.passed and not bool(r)
    np.testing.assert_allclose(r.tolerance, 1e-5 + 1e-2 * np.abs(np.asarray(smooth3(X) - smooth3(BASE[None])))[:, 0],
                               rtol=1e-5)
    assert "example 0" in repr(r) and "sum(attr)" in repr(r)
    with pytest.raises(AssertionError, match="completeness: FAILED"):
        r.raise_if_failed()


@pytest.mark.parametrize(
    "target", [0, jnp.array([2, 0, 1]), lambda out: out[:, 0] - out[:, 2], "all"],
    ids=["int", "array", "callable", "all"],
)
def test_completeness_targets(target):
    axioms.check_completeness(IG, smooth3, X, BASE, target=target).raise_if_failed()
    r = axioms.check_completeness(scaled_ig, smooth3, X, BASE, target=target)
    assert not r.passed
    if target == "all":
        assert r.measured.shape == (3, 3) and "target 1, example 2" in r.report()
    else:
        assert r.measured.shape == (3,)


def test_completeness_measures_the_gap_exactly():
    """For f linear and a method returning (x - x') * 2w, the gap is exactly w.(x - x')."""
    w = jnp.array([1.0, -2.0, 0.5, 0.0])
    f = lambda x: x @ w
    double = lambda f, x, b: 2 * w * (x - b)
    r = axioms.check_completeness(double, f, X, BASE)
    np.testing.assert_allclose(r.measured, np.abs(np.asarray((X - BASE) @ w)), rtol=1e-6)


def test_pytree_inputs():
    x = {"a": X[:, :2], "b": X[:, 2:].reshape(3, 1, 2)}

    def f(t):
        return smooth3(jnp.concatenate([t["a"], t["b"].reshape(-1, 2)], axis=1))[:, 0]

    axioms.check_completeness(IG, f, x).raise_if_failed()
    axioms.check_sensitivity(IG, f, x).raise_if_failed()
    r = axioms.check_dummy(IG, f, x)
    r.raise_if_failed()
    assert "x['b'][:, 0, 1]" in r.report()  # flat feature 3 is the dummy

    def leaky(f, x, b):
        return jax.tree.map(lambda a, xi: a + 0.01 * xi, IG(f, x, b), x)

    bad = axioms.check_dummy(leaky, f, x)
    assert not bad.passed and "feature x['b'][:, 0, 1]" in bad.report()


def test_functions_receive_jax_arrays():
    """Probe inputs are built in NumPy but must reach f as jax arrays (f may use x.at[...])."""
    f = lambda x: smooth3(x.at[:, 3].set(0.0))[:, 0]
    g = lambda x: smooth3(x.at[:, 0].set(1.0))[:, 0]
    axioms.check_dummy(IG, f, X).raise_if_failed()
    axioms.check_sensitivity(IG, f, X).raise_if_failed()
    axioms.check_implementation_invariance(IG, f, lambda x: f(x * 1.0), X).raise_if_failed()
    with pytest.raises(ValueError, match="not functionally equivalent"):
        axioms.check_implementation_invariance(IG, f, g, X)


# ---- sensitivity


def test_sensitivity_gradient_fails_on_flat_ramp_ig_passes():
    x = jnp.array([[2.0, 1.0]])
    axioms.check_sensitivity(IG, ramp, x).raise_if_failed()
    r = axioms.check_sensitivity(gradient, ramp, x)
    assert not r.passed and r.measured[0] == 0.0
    assert "feature x[:, 0]" in r.report() and "changes the output by 1" in r.report()


def test_sensitivity_gradient_passes_where_not_flat():
    """The check is not rigged: below the kink the gradient is non-zero and passes."""
    r = axioms.check_sensitivity(gradient, ramp, jnp.array([[0.5, 1.0]]))
    assert r.passed and np.isclose(r.measured[0], 2.0)  # gradient 1, output change 0.5


def test_sensitivity_subset_of_features_and_batches():
    r = axioms.check_sensitivity(IG, smooth3, X, BASE, target="all", features=[0, 2], batch_size=2)
    r.raise_if_failed()
    assert r.measured.shape == (3, 3)
    with pytest.raises(ValueError, match="features"):
        axioms.check_sensitivity(IG, smooth3, X, target=0, features=[7])


# ---- dummy


def test_dummy_leaky_fails_ig_passes():
    axioms.check_dummy(IG, smooth3, X, BASE, target="all").raise_if_failed()
    r = axioms.check_dummy(leaky_ig, smooth3, X, BASE, target=1)
    assert not r.passed and "feature x[:, 3]" in r.report() and "1 of 4 features are dummies" in r.report()


def test_dummy_detection_sees_step_functions():
    """A step in x_1 has zero gradient almost everywhere; replacement probing must still see it."""
    f = lambda x: x[:, 0] + jnp.where(x[:, 1] > 0.0, 1.0, 0.0)
    r = axioms.check_dummy(leaky_ig, f, jnp.array([[0.5, 0.5, 0.5]]))
    assert "1 of 3 features are dummies" in r.report() and "x[:, 2]" in r.report()


def test_dummy_given_features_and_vacuous_case():
    r = axioms.check_dummy(leaky_ig, smooth3, X, target=0, dummies=[1])  # wrong claim: the leak shows
    assert not r.passed and "given by the caller" in r.report()
    ok = axioms.check_dummy(leaky_ig, lambda x: jnp.sin(x).sum(1), X)
    assert ok.passed and "vacuous" in ok.report()


# ---- implementation invariance


def mlp(params, x):
    return jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"]


P1 = {
    "w1": jax.random.normal(jax.random.key(1), (4, 6)),
    "b1": jax.random.normal(jax.random.key(2), (6,)) * 0.3,
    "w2": jax.random.normal(jax.random.key(3), (6,)),
}
PERM = np.array([3, 0, 5, 1, 4, 2])
SCALE = jnp.array([0.5, 2.0, 3.0, 1.0, 0.25, 4.0])  # relu is positively homogeneous
P2 = {"w1": P1["w1"][:, PERM] * SCALE, "b1": P1["b1"][PERM] * SCALE, "w2": P1["w2"][PERM] / SCALE}
f1 = functools.partial(mlp, P1)
f2 = functools.partial(mlp, P2)


def weight_importance(f, x, baseline=None):
    """(x - x') * sum_j |W1_ij|: reads the first layer's weights, so it depends on the implementation."""
    return (x - _b(x, baseline)) * jnp.abs(f.args[0]["w1"]).sum(axis=1)


def test_implementation_invariance_ig_passes_weight_method_fails():
    axioms.check_implementation_invariance(IG, f1, f2, X, BASE).raise_if_failed()
    r = axioms.check_implementation_invariance(weight_importance, f1, f2, X, BASE)
    assert not r.passed and "with f1 but" in r.report()


def test_implementation_invariance_refuses_non_equivalent_networks():
    P3 = dict(P2, b1=P2["b1"].at[0].add(0.5))
    with pytest.raises(ValueError, match="not functionally equivalent.*example"):
        axioms.check_implementation_invariance(IG, f1, functools.partial(mlp, P3), X, BASE)


# ---- linearity


def test_linearity_ig_passes_normalised_fails():
    g1 = lambda x: jnp.tanh(x @ W)
    g2 = lambda x: (x**2) @ W
    axioms.check_linearity(IG, g1, g2, X, BASE, target=2).raise_if_failed()
    axioms.check_linearity(IG, g1, g2, X, BASE, coefficients=(0.5, 3.0), target="all").raise_if_failed()
    r = axioms.check_linearity(normalised_ig, g1, g2, X, BASE, target=2)
    assert not r.passed and "attr(2*f1 + -1*f2)" in r.report()


# ---- symmetry


def product(x):
    return x[:, 0] * x[:, 1] + 0.5 * x[:, 2]


XS = jnp.array([[1.0, 1.0, 0.3], [-0.5, -0.5, 2.0]])


def test_symmetry_ig_passes_sequential_fails():
    axioms.check_symmetry(IG, product, XS, i=0, j=1).raise_if_failed()
    seq = axioms.check_symmetry(sequential_occlusion, product, XS, i=0, j=1)
    assert not seq.passed and "x[:, 0] gets 0" in seq.report()
    # the sequential method is complete, so only symmetry exposes it
    axioms.check_completeness(sequential_occlusion, product, XS).raise_if_failed()


def test_symmetry_refuses_unmet_preconditions():
    with pytest.raises(ValueError, match="x differs between features"):
        axioms.check_symmetry(IG, product, XS.at[1, 1].set(0.0), i=0, j=1)
    with pytest.raises(ValueError, match="not symmetric"):
        axioms.check_symmetry(IG, product, XS.at[:, 2].set(XS[:, 0]), i=0, j=2)
    with pytest.raises(ValueError, match="two different features"):
        axioms.check_symmetry(IG, product, XS, i=(1,), j=1)


def test_checks_reject_bad_targets_and_attributions():
    with pytest.raises(ValueError):
        axioms.check_completeness(IG, smooth3, X, target=jnp.array([0, 1]))
    with pytest.raises(ValueError, match="target="):  # f has 3 outputs and no target says which
        axioms.check_completeness(lambda f, x, b: x, smooth3, X)
    with pytest.raises(ValueError, match="shape"):
        axioms.check_completeness(lambda f, x, b, target: x[:, :2], smooth3, X, target=0)


# ---- entry validation: transformed inputs, empty batches, missing batch axes, settings

ALL_CHECKS = {
    "completeness": lambda x, **kw: axioms.check_completeness(IG, smooth3, x, target=0, **kw),
    "sensitivity": lambda x, **kw: axioms.check_sensitivity(IG, smooth3, x, target=0, **kw),
    "dummy": lambda x, **kw: axioms.check_dummy(IG, smooth3, x, target=0, **kw),
    "implementation_invariance": lambda x, **kw: axioms.check_implementation_invariance(
        IG, smooth3, smooth3, x, target=0, **kw),
    "linearity": lambda x, **kw: axioms.check_linearity(IG, smooth3, smooth3, x, target=0, **kw),
    "symmetry": lambda x, **kw: axioms.check_symmetry(IG, smooth3, x, i=0, j=1, target=0, **kw),
}
TRACED = r"x is a traced value: the axiom checks run eagerly .*Python booleans.*the method and f it calls may"


@pytest.mark.parametrize("name", sorted(ALL_CHECKS))
def test_checks_under_jit_and_vmap_say_they_run_eagerly(name):
    check = ALL_CHECKS[name]
    with pytest.raises(TypeError, match=TRACED):
        jax.jit(lambda x: check(x).passed)(X)
    with pytest.raises(TypeError, match=TRACED):
        jax.vmap(lambda x: check(x[None]).passed)(X)


def test_traced_baseline_and_target_are_named():
    with pytest.raises(TypeError, match=r"^baseline is a traced value"):
        jax.jit(lambda b: axioms.check_completeness(IG, smooth3, X, b, target=0).passed)(BASE)
    with pytest.raises(TypeError, match=r"^target is a traced value"):
        jax.jit(lambda t: axioms.check_completeness(IG, smooth3, X, target=t).passed)(jnp.zeros(3, int))


def test_jitted_method_and_f_are_fine():
    f = jax.jit(smooth3)
    method = jax.jit(IG, static_argnums=0, static_argnames="target")
    assert axioms.check_completeness(method, f, X, BASE, target=1).passed


@pytest.mark.parametrize("name", sorted(ALL_CHECKS))
def test_empty_batch_is_refused(name):
    with pytest.raises(ValueError, match=r"x has an empty batch .*\(0, 4\).*at least one example"):
        ALL_CHECKS[name](jnp.zeros((0, 4)))


@pytest.mark.parametrize("f", [lambda x: jnp.sum(x), lambda x: jnp.tanh(x).sum(-1), lambda x: x @ jnp.ones(3)])
def test_one_example_without_batch_axis_gets_the_x_none_hint(f):
    x = jnp.array([0.5, -1.0, 2.0])
    with pytest.raises(ValueError, match=r"f\(x\) returns a scalar for x of shape \(3,\).*add a batch axis: x\[None\]"):
        axioms.check_completeness(IG, f, x)
    with pytest.raises(ValueError, match=r"f1\(x\) returns a scalar.*x\[None\]"):
        axioms.check_linearity(IG, f, f, x)
    # with the batch axis added the same data checks fine
    assert axioms.check_completeness(IG, lambda z: jnp.sum(z, axis=-1), x[None]).passed


def test_one_feature_per_example_is_still_a_batch():
    """x of shape (B,) with f returning (B,) is B examples of one feature: no hint, the check runs."""
    r = axioms.check_completeness(IG, lambda x: x**2, jnp.array([0.5, -1.0, 2.0]))
    assert r.passed and r.measured.shape == (3,)


@pytest.mark.parametrize(("kw", "err", "msg"), [
    ({"rtol": "a"}, TypeError, r"rtol='a' must be a real number"),
    ({"atol": None}, TypeError, r"atol=None must be a real number"),
    ({"rtol": True}, TypeError, r"rtol=True must be a real number"),
    ({"rtol": -1e-3}, ValueError, r"rtol=-0.001; pass a finite number >= 0"),
    ({"atol": float("nan")}, ValueError, r"atol=nan; pass a finite number"),
])
def test_completeness_tolerances(kw, err, msg):
    with pytest.raises(err, match=msg):
        axioms.check_completeness(IG, smooth3, X, target=0, **kw)


def test_settings_of_the_other_checks():
    with pytest.raises(TypeError, match=r"n_points=2.5 is not an integer; pass an int >= 2"):
        axioms.check_dummy(IG, smooth3, X, target=0, n_points=2.5)
    with pytest.raises(ValueError, match=r"n_points=1; pass an int >= 2"):
        axioms.check_dummy(IG, smooth3, X, target=0, n_points=1)
    with pytest.raises(TypeError, match=r"key=0 is not a PRNG key; pass key=jax.random.key\(0\)"):
        axioms.check_dummy(IG, smooth3, X, target=0, key=0)
    with pytest.raises(TypeError, match=r"key=0 is not a PRNG key"):
        axioms.check_symmetry(IG, smooth3, X, i=0, j=1, key=0)
    with pytest.raises(TypeError, match=r"batch_size=2.5 is not an integer"):
        axioms.check_sensitivity(IG, smooth3, X, target=0, batch_size=2.5)
    with pytest.raises(TypeError, match=r"min_fraction='small'"):
        axioms.check_sensitivity(IG, smooth3, X, target=0, min_fraction="small")
    with pytest.raises(ValueError, match=r"n_points=0; pass an int >= 1"):
        axioms.check_implementation_invariance(IG, smooth3, smooth3, X, target=0, n_points=0)
    with pytest.raises(TypeError, match=r"equivalence_rtol=None"):
        axioms.check_implementation_invariance(IG, smooth3, smooth3, X, target=0, equivalence_rtol=None)
    with pytest.raises(TypeError, match=r"coefficients=\(1.0,\); pass a pair of numbers"):
        axioms.check_linearity(IG, smooth3, smooth3, X, target=0, coefficients=(1.0,))
    with pytest.raises(TypeError, match=r"coefficients\[1\]='x' must be a real number"):
        axioms.check_linearity(IG, smooth3, smooth3, X, target=0, coefficients=(1.0, "x"))
    with pytest.raises(TypeError, match=r"f2=None is not callable"):
        axioms.check_linearity(IG, smooth3, None, X, target=0)
    with pytest.raises(TypeError, match=r"method='ig' is not callable; pass a method\(f, x, baseline"):
        axioms.check_completeness("ig", smooth3, X, target=0)


@pytest.mark.parametrize(("i", "err", "msg"), [
    (0.5, TypeError, r"i=0.5 is not an integer; pass a flat feature index in \[0, 3\)"),
    (True, TypeError, r"i=True is a bool"),
    ("0", TypeError, r"i='0' is not an integer"),
    (3, ValueError, r"i=3; pass a flat feature index in \[0, 3\)"),
    ((0.0,), TypeError, r"i\[0\]=0.0 is not an integer"),
    ((5,), ValueError, r"i=\(5,\) is not an index into one example of shape \(3,\)"),
])
def test_symmetry_feature_indices(i, err, msg):
    x = jnp.array([[0.3, 0.3, 1.0], [0.2, 0.2, -1.0]])
    with pytest.raises(err, match=msg):
        axioms.check_symmetry(IG, lambda z: z[:, 0] * z[:, 1], x, i=i, j=1)
    assert axioms.check_symmetry(IG, lambda z: z[:, 0] * z[:, 1], x, i=np.int64(0), j=(1,)).passed
