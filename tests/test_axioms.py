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
    "target", [0, jnp.array([2, 0, 1]), lambda out: out[:, 0] - out[:, 2], "all"], ids=["int", "array", "callable", "all"]
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
    with pytest.raises(ValueError, match="pass target="):
        axioms.check_completeness(lambda f, x, b: x, smooth3, X)
    with pytest.raises(ValueError, match="shape"):
        axioms.check_completeness(lambda f, x, b, target: x[:, :2], smooth3, X, target=0)
