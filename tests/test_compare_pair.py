"""Blur IG and Guided IG against PAIR's reference implementations (``saliency.core``) on one JAX model.

PAIR's methods are framework-agnostic: they call back a NumPy function for gradients, which here is
the same JAX model, so both sides see the same weights and the same gradients.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig

saliency = pytest.importorskip("saliency.core")
pair_guided = pytest.importorskip("saliency.core.guided_ig")

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, size=(2, 12, 12, 3)).astype(np.float32)  # (B, H, W, C)
BASE = RNG.uniform(0, 0.2, size=(2, 12, 12, 3)).astype(np.float32)
KERNEL = RNG.normal(size=(3, 3, 3, 4)) * 0.5
HEAD = RNG.normal(size=(4, 3))


def cnn(z):
    """A tiny convolutional classifier with 3 outputs, in the dtype of its input."""
    h = jax.lax.conv_general_dilated(z, jnp.asarray(KERNEL, z.dtype), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.mean(jnp.tanh(h), axis=(1, 2)) @ jnp.asarray(HEAD, z.dtype)


def call_model_function(explained, dtype=np.float32):
    """PAIR's callback: the gradient of ``explained(outputs) -> (B,)`` at a NumPy batch."""
    grad = jax.jit(jax.grad(lambda z: jnp.sum(explained(cnn(z)))))

    def call(batch, call_model_args=None, expected_keys=None):
        return {saliency.INPUT_OUTPUT_GRADIENTS: np.asarray(grad(jnp.asarray(batch, dtype)))}

    return call


def max_rel_diff(ours, ref):
    return float(np.max(np.abs(np.asarray(ours, np.float64) - ref)) / np.max(np.abs(ref)))


@pytest.fixture
def guided_ig_on_this_numpy(monkeypatch):
    """saliency 0.2.1 calls ``np.quantile(..., interpolation="lower")``; NumPy 2.4 removed that keyword
    (it is ``method=`` since NumPy 1.22). Give PAIR's module a NumPy whose quantile maps it."""
    try:
        np.quantile(np.zeros(2), 0.5, interpolation="lower")
    except TypeError:
        shim = types.ModuleType("numpy_with_interpolation")
        shim.__getattr__ = lambda name: getattr(np, name)
        shim.quantile = lambda a, q, interpolation="linear", **kw: np.quantile(a, q, method=interpolation, **kw)
        monkeypatch.setattr(pair_guided, "np", shim)


@pytest.mark.parametrize("sqrt, max_sigma", [(False, 5.0), (True, 10.0)])
def test_blur_ig_matches_pair(sqrt, max_sigma):
    steps = 10
    ours = jaxig.blur_integrated_gradients(cnn, jnp.asarray(X), target=1, steps=steps, max_sigma=max_sigma, sqrt=sqrt,
                                           completeness_rtol=None)
    call = call_model_function(lambda out: out[:, 1])
    # batch_size=1 (PAIR's default): with larger batches PAIR weights a whole batch by the last
    # step's sigma spacing, which differs from step to step when sqrt=True
    ref = np.stack([saliency.BlurIG().GetMask(v, call, max_sigma=max_sigma, steps=steps, sqrt=sqrt) for v in X])
    assert max_rel_diff(ours, ref) <= 1e-4
    if not sqrt:
        # PAIR's linear sigmas are the right Riemann sum along BlurPath with its forward difference
        on_path = jaxig.integrated_gradients(cnn, jnp.asarray(X), target=1, n_steps=steps, rule=jaxig.RiemannRight(),
                                             path=jaxig.BlurPath(max_sigma=max_sigma, grad_step=0.01),
                                             completeness_rtol=None)
        assert max_rel_diff(on_path, ref) <= 1e-4


@pytest.mark.parametrize("steps, fraction, max_dist", [(12, 0.25, 0.02), (12, 0.1, 1.0)])
def test_guided_ig_matches_pair(guided_ig_on_this_numpy, steps, fraction, max_dist):
    explained = lambda out: out[:, 0] + out[:, 2]  # a callable target: a group of outputs
    ours = jaxig.guided_integrated_gradients(cnn, jnp.asarray(X), jnp.asarray(BASE), target=explained, steps=steps,
                                             fraction=fraction, max_dist=max_dist)
    call = call_model_function(explained)
    ref = np.stack([saliency.GuidedIG().GetMask(v, call, x_baseline=b, x_steps=steps, fraction=fraction,
                                                max_dist=max_dist) for v, b in zip(X, BASE)])
    assert max_rel_diff(ours, ref) <= 1e-4


def test_guided_ig_matches_pair_in_float64(guided_ig_on_this_numpy, x64):
    # In float64 both walk the same path to rounding: every selection agrees, so does every digit.
    x, base = X.astype(np.float64), BASE.astype(np.float64)
    ours = jaxig.guided_integrated_gradients(cnn, jnp.asarray(x), jnp.asarray(base), target=2, steps=12)
    call = call_model_function(lambda out: out[:, 2], np.float64)
    ref = np.stack([saliency.GuidedIG().GetMask(v, call, x_baseline=b, x_steps=12) for v, b in zip(x, base)])
    assert max_rel_diff(ours, ref) <= 1e-10
