"""Blur IG: the Gaussian blur against scipy, the blur path's ends and tangent, closed forms, completeness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import jaxig
from jaxig._paths.blur import gaussian_blur

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.uniform(0, 1, size=(2, 8, 7, 2)), jnp.float32)  # (B, H, W, C)
W_LIN = jnp.asarray(RNG.normal(size=(8, 7, 2)), jnp.float32)
KERNEL = jnp.asarray(RNG.normal(size=(3, 3, 2, 3)) * 0.5, jnp.float32)
HEAD = jnp.asarray(RNG.normal(size=(3, 3)), jnp.float32)


def linear(z):
    return jnp.sum(z * W_LIN, axis=(1, 2, 3))


def cnn(z):
    """A tiny convolutional classifier with 3 outputs."""
    h = jax.lax.conv_general_dilated(z, KERNEL, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.mean(jnp.tanh(h), axis=(1, 2)) @ HEAD


@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.6, 1.7, 30.0])
def test_gaussian_blur_is_scipys_filter_over_spatial_axes(sigma):
    ours = np.asarray(gaussian_blur(X, sigma))
    ref = np.stack([ndimage.gaussian_filter(np.asarray(v), sigma=[sigma, sigma, 0], mode="constant") for v in X])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_gaussian_blur_of_signals_along_one_axis():
    signal = X[:, :, 0, :]  # (B, L, C)
    ours = np.asarray(gaussian_blur(signal, 1.3, axes=(1,)))
    ref = np.stack([ndimage.gaussian_filter(np.asarray(v), sigma=[1.3, 0], mode="constant") for v in signal])
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_blur_path_ends_at_x_and_starts_at_the_most_blurred_image():
    path = jaxig.BlurPath(max_sigma=3.0)
    np.testing.assert_array_equal(path(jnp.asarray(1.0), X, None), X)
    np.testing.assert_allclose(path(jnp.asarray(0.0), X, None), gaussian_blur(X, 3.0), atol=1e-6)
    # PAIR's sqrt spacing: sigma^2 = (1 - alpha) max_sigma, so the start has width sqrt(max_sigma)
    root = jaxig.BlurPath(max_sigma=9.0, sqrt=True)
    np.testing.assert_allclose(root(jnp.asarray(0.0), X, None), gaussian_blur(X, 3.0), atol=1e-6)
    np.testing.assert_allclose(root(jnp.asarray(0.75), X, None), gaussian_blur(X, 1.5), atol=1e-6)


def test_blur_path_tangent_is_the_derivative_in_alpha():
    alpha, h = 0.37, 1e-3  # sigma = 1.89 +- 0.003: away from a jump of the truncation window (sigma = 1.875)
    path = jaxig.BlurPath(max_sigma=3.0)
    central = (path(jnp.asarray(alpha + h), X, None) - path(jnp.asarray(alpha - h), X, None)) / (2 * h)
    tangent = path.derivative(alpha, X, None)
    np.testing.assert_allclose(tangent, central, rtol=0, atol=1e-3 * float(jnp.max(jnp.abs(tangent))))
    # grad_step: PAIR's forward difference in sigma, times d sigma / d alpha = -max_sigma
    step = jaxig.BlurPath(max_sigma=3.0, grad_step=0.01)
    sigma = (1 - alpha) * 3.0
    forward = (gaussian_blur(X, sigma + 0.01, max_sigma=3.01) - gaussian_blur(X, sigma, max_sigma=3.01)) / 0.01 * -3.0
    np.testing.assert_allclose(step.derivative(alpha, X, None), forward, rtol=0,
                               atol=1e-4 * float(jnp.max(jnp.abs(forward))))


def test_linear_model_gets_w_times_x_minus_blurred_x():
    # For F = <w, z> the path integral is <w, gamma(1) - gamma(0)> whatever the path; the untruncated
    # kernel makes the blur path smooth, so Gauss-Legendre converges to it (here the sqrt spacing).
    path = jaxig.BlurPath(max_sigma=4.0, sqrt=True, truncate=None)
    attr = jaxig.integrated_gradients(linear, X, path=path, n_steps=48)
    expected = W_LIN * (X - gaussian_blur(X, 2.0, truncate=None))
    np.testing.assert_allclose(attr, expected, atol=2e-5 * float(jnp.max(jnp.abs(expected))))


def test_completeness_against_the_blurred_start_in_the_limit():
    smooth = jaxig.BlurPath(max_sigma=4.0, truncate=None)
    attr, info = jaxig.integrated_gradients(cnn, X, target=2, path=smooth, n_steps=32, return_info=True)
    gap = cnn(X)[:, 2] - cnn(gaussian_blur(X, 4.0, truncate=None))[:, 2]
    np.testing.assert_allclose(jnp.sum(attr, axis=(1, 2, 3)), gap, rtol=1e-4)
    np.testing.assert_allclose(info.delta, 0.0, atol=1e-4 * float(jnp.max(jnp.abs(gap))))
    # PAIR's sum (exact derivative, many steps) approaches the same integral; with scipy's truncated
    # kernel the path jumps by the kernel's tail where the window grows, so completeness against
    # F(x) - F(blur(x, max_sigma)) holds to about that size (here 0.5%), not to rounding.
    pair, pair_info = jaxig.blur_integrated_gradients(cnn, X, target=2, steps=200, max_sigma=4.0, grad_step=None,
                                                      return_info=True)
    np.testing.assert_allclose(pair, attr, atol=5e-3 * float(jnp.max(jnp.abs(attr))))
    truncated_gap = cnn(X)[:, 2] - cnn(gaussian_blur(X, 4.0))[:, 2]
    assert np.all(np.abs(pair_info.delta) <= 1e-2 * np.abs(truncated_gap))


KW = dict(steps=6, max_sigma=2.0, completeness_rtol=None)  # shared settings: one compiled program serves several tests


def test_targets_index_callable_and_all():
    by_index = jaxig.blur_integrated_gradients(cnn, X, target=1, **KW)
    by_callable = jaxig.blur_integrated_gradients(cnn, X, target=lambda out: out[:, 1], **KW)
    every = jaxig.blur_integrated_gradients(cnn, X, target="all", **KW)
    np.testing.assert_allclose(by_callable, by_index, rtol=1e-6, atol=1e-8)
    assert every.shape == (3,) + X.shape
    np.testing.assert_allclose(every[1], by_index, rtol=1e-5, atol=1e-8)


def test_jit_vmap_and_grad_wrt_parameters():
    kw = dict(KW, target=1)
    eager = jaxig.blur_integrated_gradients(cnn, X, **kw)
    # float32 rounding, magnified by PAIR's difference quotient (/ grad_step), differs between programs
    atol = 1e-5 * float(jnp.max(jnp.abs(eager)))
    np.testing.assert_allclose(jax.jit(lambda v: jaxig.blur_integrated_gradients(cnn, v, **kw))(X), eager,
                               rtol=0, atol=atol)
    stacked = jnp.stack([X, X[::-1]])  # vmapped over a leading axis of batches
    mapped = jax.vmap(lambda v: jaxig.blur_integrated_gradients(cnn, v, **kw))(stacked)
    np.testing.assert_allclose(mapped[1], eager[::-1], rtol=0, atol=atol)
    # attributions are linear in a scale of the output: d/dc sum A(c F) = sum A(F)
    total = lambda c: jnp.sum(jaxig.blur_integrated_gradients(lambda z: c * cnn(z), X, **kw))
    np.testing.assert_allclose(jax.grad(total)(2.0), jnp.sum(eager), rtol=1e-5)


def test_bad_settings_raise_clear_errors():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_sigma"):
            jaxig.BlurPath(max_sigma=bad)
        with pytest.raises(ValueError, match="max_sigma"):
            jaxig.blur_integrated_gradients(cnn, X, target=0, max_sigma=bad)
    with pytest.raises(ValueError, match="grad_step"):
        jaxig.BlurPath(grad_step=0.0)
    with pytest.raises(ValueError, match="axis 0 is the batch"):
        jaxig.BlurPath(axes=(0, 1))
    with pytest.raises(ValueError, match="steps must be at least 1"):
        jaxig.blur_integrated_gradients(cnn, X, target=0, steps=0)
    with pytest.raises(TypeError, match="steps must be a Python int"):
        jaxig.blur_integrated_gradients(cnn, X, target=0, steps=2.5)
    with pytest.raises(ValueError, match=r"shape \(2, 8\)"):  # not images: no spatial axes 1 and 2
        jaxig.blur_integrated_gradients(lambda z: z.sum(1), X[:, :, 0, 0], steps=2)
    with pytest.raises(ValueError, match=r"shape \(2, 8\)"):
        jaxig.integrated_gradients(lambda z: z.sum(1), X[:, :, 0, 0], path=jaxig.BlurPath(), n_steps=2)
    with pytest.raises(TypeError, match="single image array"):
        jaxig.blur_integrated_gradients(lambda d: cnn(d["a"]), {"a": X}, target=0, steps=2)
    with pytest.raises(ValueError, match="takes no baseline"):
        jaxig.blur_integrated_gradients(cnn, X, jnp.zeros_like(X), target=0, steps=2)
