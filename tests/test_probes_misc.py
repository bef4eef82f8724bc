"""Probes: each bad input to feature_attributions, jaxig.datasets and the axiom checks raises the right
exception type, with a message that names the offending value (``names``) and says what to do (``fix``)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from jaxig import axioms, datasets

IG = functools.partial(jaxig.integrated_gradients, n_steps=4)
KEY = jax.random.key(0)
X = jnp.array([[0.5, -1.0, 0.8], [1.5, 0.25, -0.75]])
TREE = {"a": X, "b": X[:, :2]}
A3 = jnp.ones((2, 3, 4))


def lin(x):
    return x @ jnp.array([1.0, -2.0, 0.5])


def lin_tree(t):
    return lin(t["a"]) + t["b"].sum(1)


def fa(*args, **kw):
    return lambda: jaxig.feature_attributions(*args, **kw)


def completeness(x, f=lin, **kw):
    return lambda: axioms.check_completeness(IG, f, x, **kw)


def jitted(check):
    return lambda: jax.jit(lambda x: check(x).passed)(X)


# (id, thunk, exception type, regex naming the value, regex for the fix)
PROBES = [
    # ---- feature_attributions
    ("fa/axis-float", fa(A3, feature_axis=1.5), TypeError, r"feature_axis=1\.5", r"must be an int"),
    ("fa/axis-bool", fa(A3, feature_axis=True), TypeError, r"feature_axis=True", r"must be an int"),
    ("fa/axis-batch", fa(A3, feature_axis=0), ValueError, r"feature_axis=0", r"an int in \[1, 3\)"),
    ("fa/axis-out-of-range", fa(A3, feature_axis=5), ValueError, r"feature_axis=5", r"an int in \[1, 3\)"),
    ("fa/axis-output", fa(A3, feature_axis=1, output_axis=True), ValueError, r"feature_axis=1",
     r"not the output axis \(0\) and the batch axis \(1\)"),
    ("fa/absolute-str", fa(A3, absolute="yes"), TypeError, r"absolute='yes'", r"pass absolute=True or"),
    ("fa/keep_batch-int", fa(A3, keep_batch=0), TypeError, r"keep_batch=0", r"pass keep_batch=True or"),
    ("fa/output_axis-none", fa(A3, output_axis=None), TypeError, r"output_axis=None", r"must be a bool"),
    ("fa/1d", fa(jnp.ones(3)), ValueError, r"shape \(3,\)", r"x\[None\] for a single example"),
    ("fa/2d-with-output-axis", fa(jnp.ones((2, 3)), output_axis=True), ValueError, r"shape \(2, 3\)",
     r"needs an output, a batch and a feature axis"),
    ("fa/empty-batch-mean", fa(jnp.ones((0, 3)), keep_batch=False), ValueError, r"shape \(0, 3\)",
     r"keep_batch=True"),
    ("fa/info-pair", lambda: jaxig.feature_attributions(IG(lin, X, return_info=True)), TypeError,
     r"\(attributions, info\) pair", r"unpack it first"),
    ("fa/nested-list", fa([[1.0, 2.0]]), TypeError, r"list of numbers", r"jnp\.asarray\(attributions\)"),
    ("fa/string-leaf", fa({"a": A3, "b": "x"}), TypeError, r"attributions\['b'\] is 'x'",
     r"pass numeric attribution arrays"),
    ("fa/dict-leaf-1d", fa({"a": A3, "b": jnp.ones(2)}), ValueError, r"attributions\['b'\] of shape \(2,\)",
     r"need a batch axis and a feature axis"),
    # ---- datasets: keys
    ("ds/key-int", lambda: datasets.pos_neg_noise(0, 3), TypeError, r"key=0", r"pass key=jax\.random\.key\(0\)"),
    ("ds/key-float", lambda: datasets.time_series(1.5, 3), TypeError, r"key=1\.5",
     r"pass key=jax\.random\.key\(0\)"),
    ("ds/key-none", lambda: datasets.image(None, 3), TypeError, r"key=None", r"pass key=jax\.random\.key\(0\)"),
    ("ds/key-int-array", lambda: datasets.pos_neg_noise(jnp.array([0, 1]), 3), TypeError,
     r"dtype int32 and shape \(2,\)", r"pass key=jax\.random\.key\(0\)"),
    ("ds/key-batch", lambda: datasets.pos_neg_noise(jax.random.split(KEY, 3), 3), ValueError,
     r"array of \(3,\) PRNG keys", r"pass a single key.*jax\.vmap"),
    # ---- datasets: counts
    ("ds/n-none", lambda: datasets.pos_neg_noise(KEY, None), TypeError, r"n_samples=None", r"pass an int >= 1"),
    ("ds/n-npfloat", lambda: datasets.pos_neg_noise(KEY, np.float64(3.0)), TypeError,
     r"n_samples=np\.float64\(3\.0\)", r"e\.g\. n_samples=3"),
    ("ds/n-bool", lambda: datasets.time_series(KEY, True), TypeError, r"n_samples=True is a bool",
     r"pass an integer >= 1"),
    ("ds/n-negative", lambda: datasets.image(KEY, -2), ValueError, r"n_samples=-2", r"pass an integer >= 1"),
    ("ds/n-str", lambda: datasets.pos_neg_noise(KEY, "10"), TypeError, r"n_samples='10'", r"pass an int"),
    ("ds/n_planted-float", lambda: datasets.time_series(KEY, 2, n_planted=3.0), TypeError, r"n_planted=3\.0",
     r"e\.g\. n_planted=3"),
    ("ds/patch-too-large", lambda: datasets.image(KEY, 2, height=4, width=4, patch=3), ValueError, r"patch=3",
     r"need 2 \* patch <= 4"),
    ("ds/no-features", lambda: datasets.pos_neg_noise(KEY, 2, 0, 0, 0), ValueError, r"= 0",
     r"at least one feature"),
    ("ds/traced-count", lambda: jax.jit(lambda n: datasets.pos_neg_noise(KEY, n))(3), TypeError,
     r"n_samples is a traced value", r"concrete Python int.*static"),
    # ---- datasets: closed forms
    ("cf/g-str", lambda: datasets.single_index(jnp.ones(3), "tanh"), TypeError, r"g='tanh'",
     r"pass an elementwise jnp function"),
    ("cf/w-matrix", lambda: datasets.single_index(jnp.ones((2, 2))), ValueError, r"w has shape \(2, 2\)",
     r"pass a vector \(D,\)"),
    ("cf/A-not-square", lambda: datasets.quadratic(jnp.ones((2, 3))), ValueError, r"A has shape \(2, 3\)",
     r"pass a square matrix"),
    ("cf/x-no-batch", lambda: datasets.additive(jnp.ones(3)).attributions(jnp.ones(3)), ValueError,
     r"x has shape \(3,\)", r"x\[None\]"),
    # ---- axioms: transformed inputs
    ("ax/jit-completeness", jitted(lambda x: axioms.check_completeness(IG, lin, x)), TypeError,
     r"x is a traced value", r"Call the check outside the transformation"),
    ("ax/jit-dummy", jitted(lambda x: axioms.check_dummy(IG, lin, x)), TypeError, r"x is a traced value",
     r"may themselves be jitted"),
    ("ax/grad-completeness", lambda: jax.grad(lambda x: axioms.check_completeness(IG, lin, x).measured.sum())(X),
     TypeError, r"x is a traced value", r"run eagerly"),
    # ---- axioms: inputs
    ("ax/empty-batch", completeness(jnp.zeros((0, 3))), ValueError, r"x has an empty batch.*\(0, 3\)",
     r"pass at least one example"),
    ("ax/no-batch-axis", completeness(jnp.ones(3), f=lambda x: x @ jnp.ones(3)), ValueError,
     r"returns a scalar for x of shape \(3,\)", r"add a batch axis: x\[None\]"),
    ("ax/nested-list", completeness([[0.5, -1.0, 0.8], [1.5, 0.25, -0.75]]), TypeError, r"list of numbers",
     r"x=jnp\.asarray\(x, jnp\.float32\)"),
    ("ax/string-leaf", completeness({"a": X, "b": "hello"}, f=lin_tree), TypeError,
     r"x\['b'\] is the string 'hello'", r"must be a float array"),
    ("ax/scalar-leaf", completeness({"a": X, "b": 1.0}, f=lin_tree), ValueError, r"x\['b'\] is a scalar",
     r"x\[None\]"),
    ("ax/int-x", completeness(jnp.ones((2, 3), jnp.int32)), TypeError, r"dtype int32",
     r"x\.astype\(jnp\.float32\)"),
    ("ax/leaf-batch-mismatch", completeness({"a": X, "b": jnp.ones((3, 2))}, f=lin_tree), ValueError,
     r"x\['b'\] has batch size 3", r"same leading batch axis"),
    ("ax/baseline-missing-key", completeness(TREE, f=lin_tree, baseline={"a": X}), ValueError,
     r"baseline structure PyTreeDef\(\{'a': \*\}\)", r"same keys/containers as x"),
    ("ax/baseline-tuple-for-dict", completeness(TREE, f=lin_tree, baseline=(X, X[:, :2])), ValueError,
     r"baseline structure PyTreeDef\(\(\*, \*\)\)", r"same keys/containers as x"),
    ("ax/baseline-wrong-shape", completeness(X, baseline=jnp.ones(4)), ValueError, r"baseline shape \(4,\)",
     r"pass a baseline of shape \(3,\), \(1, 3\) or \(2, 3\)"),
    ("ax/baseline-string", completeness(TREE, f=lin_tree, baseline={"a": 0.0, "b": "zero"}), TypeError,
     r"baseline\['b'\] is the string 'zero'", r"None \(zeros\), a scalar"),
    ("ax/method-none", lambda: axioms.check_completeness(None, lin, X), TypeError, r"method=None",
     r"functools\.partial\(jaxig\.integrated_gradients"),
    ("ax/f-not-callable", lambda: axioms.check_sensitivity(IG, "model", X), TypeError, r"f='model'",
     r"pass the model as a function"),
    # ---- axioms: settings
    ("ax/rtol-str", completeness(X, rtol="1%"), TypeError, r"rtol='1%'", r"pass e\.g\. rtol=1e-3"),
    ("ax/atol-negative", completeness(X, atol=-1.0), ValueError, r"atol=-1\.0", r"finite number >= 0"),
    ("ax/dummy-key-int", lambda: axioms.check_dummy(IG, lin, X, key=1), TypeError, r"key=1",
     r"pass key=jax\.random\.key\(0\)"),
    ("ax/dummy-n_points-float", lambda: axioms.check_dummy(IG, lin, X, n_points=8.0), TypeError,
     r"n_points=8\.0", r"pass an int >= 2"),
    ("ax/sensitivity-batch_size", lambda: axioms.check_sensitivity(IG, lin, X, batch_size=0), ValueError,
     r"batch_size=0", r"pass an int >= 1"),
    ("ax/sensitivity-features", lambda: axioms.check_sensitivity(IG, lin, X, features=[3]), ValueError,
     r"features=\[3\]", r"flat feature indices in \[0, 3\)"),
    ("ax/symmetry-i-float", lambda: axioms.check_symmetry(IG, lin, X, i=0.0, j=1), TypeError, r"i=0\.0",
     r"flat feature index in \[0, 3\)"),
    ("ax/symmetry-same", lambda: axioms.check_symmetry(IG, lin, X, i=1, j=(1,)), ValueError,
     r"both name feature x\[:, 1\]", r"pass two different features"),
    ("ax/linearity-coefficients", lambda: axioms.check_linearity(IG, lin, lin, X, coefficients=2.0), TypeError,
     r"coefficients=2\.0", r"pass a pair of numbers \(a, b\)"),
    ("ax/ii-n_points", lambda: axioms.check_implementation_invariance(IG, lin, lin, X, n_points=-1),
     ValueError, r"n_points=-1", r"pass an int >= 1"),
]


@pytest.mark.parametrize(("thunk", "exc", "names", "fix"), [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_probe(thunk, exc, names, fix):
    with pytest.raises(exc) as info:
        thunk()
    assert type(info.value) is exc, f"{type(info.value).__name__} is a subclass, not {exc.__name__}: {info.value}"
    msg = str(info.value)
    assert re.search(names, msg), f"message does not name the value ({names!r}): {msg}"
    assert re.search(fix, msg), f"message does not say what to do ({fix!r}): {msg}"


def test_probe_ids_are_unique():
    ids = [p[0] for p in PROBES]
    assert len(ids) == len(set(ids))
