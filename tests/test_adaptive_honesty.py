"""Adaptive IG is honest: converged=True means the true error is within rtol, and info.error bounds it.

References: exact IG for ReLU nets (float64); for a ReLU net with a sigmoid head, Gauss-Legendre
(24 nodes) on each linear piece of the ReLU part (the pieces from exact IG's breakpoints), float64.
The true error of a converged example must be at most ``rtol * max|attr|`` (no slack), and at most
its largest ``info.error``.

Measured over 60 random nets per kind (30 seeds, widths 16 and 32, 6 examples each; rtol 1e-2,
1e-3, 1e-4): before the hidden-width terms, a ReLU+sigmoid head converged wrongly in 17 of 360
examples at 1e-4 (worst 26x rtol) and Kronrod on ReLU in 30 of 360 (69x); now none, with the
estimate above the true error everywhere, for 1-9% more evaluations (Kronrod), 0-11% (Piecewise).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxig


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
    """Gauss-Legendre on every linear piece of ``inner`` along each example's path (float64)."""
    _, info = jaxig.exact_integrated_gradients(inner, x, return_info=True)
    t, w = np.polynomial.legendre.leggauss(n_gauss)
    t, w = (t + 1) / 2, w / 2
    grad = jax.vmap(lambda a, d: jax.grad(lambda z: f(z[None])[0])(a * d) * d, (0, None))
    out = []
    for d, edges in zip(x, info.breakpoints):
        e = np.asarray(edges)
        alphas = (e[:-1, None] + t[None] * np.diff(e)[:, None]).ravel()
        weights = (w[None] * np.diff(e)[:, None]).ravel()
        out.append(weights @ np.asarray(grad(jnp.asarray(alphas), d)))
    return np.stack(out)


def _check(attr, info, ref, rtol):
    attr, ref, err = np.asarray(attr), np.asarray(ref), np.asarray(info.error)
    conv = np.asarray(info.converged)
    true = np.abs(attr - ref).max(-1)
    assert np.all(true[conv] <= rtol * np.abs(ref).max(-1)[conv])
    # per example: the largest estimate bounds the largest true error (per feature it need not:
    # measured, a gap's one-kink model misplaces error between features)
    assert np.all(true[conv] <= err.max(-1)[conv] + 1e-12 * np.abs(ref).max())


def _run(kind, seed, width, rtol):
    with jax.enable_x64(True):
        sigmoid = kind == "sigmoid"
        inner, f, x = _net(seed, [5, width, 1] if sigmoid else [5, width, 8, 1], sigmoid)
        ref = _piecewise_reference(inner, f, x) if sigmoid else jaxig.exact_integrated_gradients(f, x)
        method = jaxig.Kronrod() if kind == "relu_kronrod" else jaxig.Auto()
        attr, info = jaxig.adaptive_integrated_gradients(f, x, rtol=rtol, method=method, return_info=True,
                                                         warn=False)
    _check(attr, info, ref, rtol)
    return info


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.sampled_from([16, 32]), rtol=st.sampled_from([1e-2, 1e-3, 1e-4]))
def test_relu_converged_means_within_rtol(seed, width, rtol):
    _run("relu", seed, width, rtol)


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.sampled_from([16, 32]), rtol=st.sampled_from([1e-2, 1e-3, 1e-4]))
def test_relu_sigmoid_head_converged_means_within_rtol(seed, width, rtol):
    _run("sigmoid", seed, width, rtol)


# Nets the old estimates got wrong (true error / rtol, true error / estimate, before):
@pytest.mark.parametrize("kind, seed, width, rtol", [
    ("sigmoid", 1, 16, 1e-2),  # estimate 8x below the true error (the xfail of issue 14)
    ("sigmoid", 23, 16, 1e-4),  # 26x rtol: a piece the Kronrod nodes never saw between close kinks
    ("sigmoid", 10, 32, 1e-4),  # 1.2x rtol: a kink switching on a unit the nearby nodes never see
    ("relu", 25, 32, 1e-3),  # estimate 2.4x below: an open gap holding two kinks
    ("relu_kronrod", 0, 16, 1e-4),  # Kronrod forced on a ReLU net: 3x rtol and more
])
def test_nets_the_old_estimates_got_wrong(kind, seed, width, rtol):
    info = _run(kind, seed, width, rtol)
    assert bool(np.asarray(info.converged).all())


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
