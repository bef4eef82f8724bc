"""Adaptive IG is honest: converged=True means the true error is within rtol, and info.error bounds it.

References: exact IG for ReLU nets (float64); for a ReLU net with a sigmoid head, Gauss-Legendre
(24 nodes) on each exact linear piece of the ReLU part, walked with ``linear_piece`` in float64.
Slack: the true error may exceed ``rtol * max|attr|`` by at most 1.5x (estimates, not proofs).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxig
from jaxig._jaxpr.pwl import linear_piece

SLACK = 1.5


def _net(seed, sizes, sigmoid):
    rng = np.random.default_rng(seed)
    ps = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        k = 1 / np.sqrt(a)  # PyTorch's default Linear init
        ps.append((jnp.asarray(rng.uniform(-k, k, (a, b))), jnp.asarray(rng.uniform(-k, k, (b,)))))

    def inner(z):
        for i, (w, b) in enumerate(ps):
            z = z @ w + b
            if i < len(ps) - 1:
                z = jax.nn.relu(z)
        return z[:, 0]

    x = jnp.asarray(rng.standard_normal((6, sizes[0])))
    return inner, (lambda z: jax.nn.sigmoid(inner(z))) if sigmoid else inner, x


def _piecewise_reference(inner, f, x, n_gauss=24):
    closed = jax.make_jaxpr(inner)(x[:1])
    t, w = np.polynomial.legendre.leggauss(n_gauss)
    t, w = (t + 1) / 2, w / 2
    grad = jax.vmap(lambda a, d: jax.grad(lambda z: f(z[None])[0])(a * d) * d, (0, None))
    out = []
    for d in x:
        edges, a = [0.0], 0.0
        while a < 1.0:
            r = float(linear_piece(closed, jnp.zeros_like(d), d, jnp.asarray(min(a + 1e-12, 1.0)), 0.0, 1.0)[1])
            a = max(r, a + 1e-10)
            edges.append(min(a, 1.0))
        e = np.array(edges)
        al = (e[:-1, None] + t[None] * np.diff(e)[:, None]).ravel()
        ww = (w[None] * np.diff(e)[:, None]).ravel()
        out.append(ww @ np.asarray(grad(jnp.asarray(al), d)))
    return np.stack(out)


def _check(attr, info, ref, rtol, estimate_bounds=True):
    attr, ref, err = np.asarray(attr), np.asarray(ref), np.asarray(info.error)
    conv = np.asarray(info.converged)
    true = np.abs(attr - ref).max(-1)
    assert np.all(true[conv] <= SLACK * rtol * np.abs(ref).max(-1)[conv])
    if estimate_bounds:
        # per example: the largest estimate bounds the largest true error (per feature it need not:
        # measured, a gap's one-kink model misplaces error between features)
        assert np.all(true[conv] <= err.max(-1)[conv] + 1e-12 * np.abs(ref).max())


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.sampled_from([16, 32]), rtol=st.sampled_from([1e-2, 1e-3]))
def test_relu_converged_means_within_rtol(seed, width, rtol):
    with jax.enable_x64(True):
        _, f, x = _net(seed, [5, width, 8, 1], sigmoid=False)
        exact = jaxig.exact_integrated_gradients(f, x)
        attr, info = jaxig.adaptive_integrated_gradients(f, x, rtol=rtol, return_info=True, warn=False)
        _check(attr, info, exact, rtol)


def _sigmoid_head_run(seed, rtol):
    with jax.enable_x64(True):
        inner, f, x = _net(seed, [5, 16, 1], sigmoid=True)
        ref = _piecewise_reference(inner, f, x)
        attr, info = jaxig.adaptive_integrated_gradients(f, x, rtol=rtol, return_info=True, warn=False)
    return attr, info, ref


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), rtol=st.sampled_from([1e-2, 1e-3]))
def test_relu_sigmoid_head_converged_means_within_rtol(seed, rtol):
    attr, info, ref = _sigmoid_head_run(seed, rtol)
    _check(attr, info, ref, rtol, estimate_bounds=False)


@pytest.mark.xfail(strict=True, reason="known (issue 14 stays open): with a smooth head after ReLU kinks the "
                   "estimate can fall below the true error while the result is still within rtol: "
                   "1.96e-5 true against 2.4e-6 estimated on this seed")
def test_relu_sigmoid_head_estimate_bounds_the_error():
    attr, info, ref = _sigmoid_head_run(1, 1e-2)
    _check(attr, info, ref, 1e-2, estimate_bounds=True)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_integrates_in_float32_and_returns_x_dtype(dtype):
    inner, _, x = _net(0, [5, 16, 1], sigmoid=False)
    x = x.astype(dtype)
    # the reference is the same network and inputs (rounded to dtype) in float64
    with jax.enable_x64(True):
        exact = jaxig.exact_integrated_gradients(inner, jnp.asarray(x, jnp.float64))
    attr, info = jaxig.adaptive_integrated_gradients(inner, x, rtol=1e-3, return_info=True, warn=False)
    assert attr.dtype == dtype and bool(info.converged.all())
    # dtype's rounding of the returned attributions (eps 1e-3 / 8e-3) on top of rtol
    tol = 1e-3 + 2 * float(jnp.finfo(dtype).eps)
    assert np.all(np.abs(np.asarray(attr, np.float64) - exact).max(-1) <= tol * np.abs(exact).max(-1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "1e-3", None])
@pytest.mark.parametrize("name", ["rtol", "atol"])
def test_bad_tolerances_raise_naming_the_value(name, bad):
    with pytest.raises(ValueError, match=f"{name} must be a finite non-negative number, got {name}="):
        jaxig.adaptive_integrated_gradients(lambda z: z.sum(-1), jnp.ones((1, 2)), **{name: bad})


@pytest.mark.parametrize("target", [2, -1, [0, 5]])
def test_out_of_range_int_target_raises_like_integrated_gradients(target):
    f = lambda z: jnp.stack([z.sum(-1), z[:, 0]], 1)
    x = jnp.ones((2, 3))
    target = jnp.asarray(target) if isinstance(target, list) else target
    with pytest.raises(ValueError, match="out of range for f with 2 output|negative indices") as ours:
        jaxig.adaptive_integrated_gradients(f, x, target=target)
    with pytest.raises(ValueError) as theirs:
        jaxig.integrated_gradients(f, x, target=target)
    assert str(ours.value) == str(theirs.value)
