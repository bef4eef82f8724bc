"""The Gaussian scale-space path of Blur IG: from a maximally blurred image (alpha = 0) to the image.

Blur IG integrates along ``gamma(alpha) = G(sigma(alpha)) * x``, a Gaussian blur of the input whose
width shrinks to zero at alpha = 1 (Xu, Venugopalan, Sundararajan, Agarwal, Barua and others,
"Attribution in Scale and Space", CVPR 2020). The blur is the one PAIR's ``saliency`` package uses:
``scipy.ndimage.gaussian_filter(image, sigma=[s, s, 0], mode="constant")``, i.e. separable 1-D
correlations over the spatial axes only, zeros outside the image, and a sampled kernel
``exp(-k^2 / (2 s^2))`` truncated at ``|k| <= int(truncate * s + 0.5)`` and normalised over that window.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .._pytree import static_field
from .base import AbstractPath

__all__ = ["BlurPath", "gaussian_blur", "check_image_axes"]


def check_image_axes(x: Any, axes: tuple[int, ...], what: str) -> None:
    """Raises ``TypeError`` unless ``x`` is one array, ``ValueError`` unless it has the spatial ``axes``."""
    if not hasattr(x, "shape") or not hasattr(x, "ndim"):
        raise TypeError(
            f"{what} blurs a single image array of shape (B, H, W, C); got x of type {type(x).__name__}. "
            "A pytree of inputs has no common spatial axes: explain each image array on its own"
        )
    if x.ndim <= max(axes):
        raise ValueError(
            f"{what} blurs axes {axes} of x (height and width of (B, H, W, C) images by default), but x has "
            f"shape {tuple(x.shape)}; pass images with a leading batch axis (a single image as x[None]), or "
            "choose the spatial axes with axes=(...) (e.g. axes=(1,) for (B, L, C) signals)"
        )


def _check_axes(axes: Any) -> tuple[int, ...]:
    if not isinstance(axes, (tuple, list)) or not axes or not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
    ):
        raise TypeError(f"axes must be a non-empty tuple of ints naming the spatial axes, got {axes!r}")
    axes = tuple(int(a) for a in axes)
    if min(axes) < 1 or len(set(axes)) != len(axes):
        raise ValueError(
            f"axes must be distinct positive axis numbers (axis 0 is the batch axis and is never blurred), "
            f"got {axes}; for (B, H, W, C) images pass axes=(1, 2)"
        )
    return tuple(sorted(axes))


def _kernel_matrix(n: int, variance: jax.Array, truncate: float | None, bound: int, dtype: Any) -> jax.Array:
    """Returns the ``(n, n)`` matrix of one 1-D Gaussian correlation with zero padding.

    ``M[i, j] = exp(-(j - i)^2 / (2 v)) / Z`` for ``|j - i| <= r``, with ``r = int(truncate * sqrt(v) + 0.5)``
    and ``Z`` the kernel's sum over ``|k| <= r`` (taps outside the image still count in ``Z``: zeros
    come in from outside, as with ``mode="constant"``). ``bound`` is a static upper bound on ``r``.
    ``v = 0`` gives the identity (scipy skips axes with ``sigma <= 1e-15``).
    """
    positive = variance > 1e-30
    v = jnp.where(positive, variance, jnp.ones_like(variance))
    k = jnp.arange(-bound, bound + 1, dtype=dtype)
    d = jnp.asarray(np.subtract.outer(np.arange(n), np.arange(n)), dtype)
    if truncate is None:
        inside_k, inside_d = jnp.ones_like(k, dtype=bool), jnp.ones_like(d, dtype=bool)
    else:
        # the radius is piecewise constant in sigma: no derivative flows through it
        radius = jnp.floor(truncate * jnp.sqrt(jax.lax.stop_gradient(v)) + 0.5)
        inside_k, inside_d = jnp.abs(k) <= radius, jnp.abs(d) <= radius
    z = jnp.sum(jnp.where(inside_k, jnp.exp(-0.5 * k * k / v), 0.0))
    matrix = jnp.where(inside_d, jnp.exp(-0.5 * d * d / v), 0.0) / z
    return jnp.where(positive, matrix, jnp.eye(n, dtype=dtype))


def _radius_bound(max_sigma: float, truncate: float | None) -> int:
    # Without truncation the tail beyond 12 sigma is below exp(-72), under float64 resolution.
    return int(truncate * max_sigma + 0.5) if truncate is not None else int(math.ceil(12.0 * max_sigma)) + 1


def gaussian_blur(
    x: jax.Array,
    sigma: Any,
    *,
    axes: tuple[int, ...] = (1, 2),
    truncate: float | None = 4.0,
    max_sigma: float | None = None,
) -> jax.Array:
    """Returns ``x`` blurred by a Gaussian of standard deviation ``sigma`` along ``axes``, shaped like ``x``.

    Equal (up to rounding) to ``scipy.ndimage.gaussian_filter(x, s, mode="constant", truncate=truncate)``
    with ``s = sigma`` on ``axes`` and ``0`` elsewhere; ``truncate=None`` uses the untruncated sampled
    kernel (a smooth function of ``sigma``). ``sigma`` may be traced (a scalar); ``max_sigma`` is a
    static bound on it (default: ``sigma`` itself, which must then be concrete). Each axis is one
    ``(n, n)`` matrix product in the highest precision, so accelerators do not round to bfloat16/TF32.
    """
    axes = _check_axes(axes)
    check_image_axes(x, axes, "gaussian_blur")
    if max_sigma is None:
        max_sigma = float(sigma)
    dtype = x.dtype
    sigma = jnp.asarray(sigma, dtype)
    return _blur_variance(x, sigma * sigma, axes, truncate, _radius_bound(max_sigma, truncate))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _blur_variance(x: jax.Array, variance: jax.Array, axes: tuple[int, ...], truncate: float | None,
                   bound: int) -> jax.Array:
    for axis in axes:  # scipy filters the axes in increasing order
        matrix = _kernel_matrix(x.shape[axis], variance, truncate, bound, x.dtype)
        moved = jnp.moveaxis(x, axis, -1)
        moved = jnp.einsum("...j,ij->...i", moved, matrix, precision=jax.lax.Precision.HIGHEST)
        x = jnp.moveaxis(moved, -1, axis)
    return x


class BlurPath(AbstractPath):
    """The Blur IG path ``gamma(alpha) = blur(x, sigma(alpha))``, from the most blurred image to ``x``.

        sigma(alpha) = (1 - alpha) * max_sigma               (sqrt=False)
        sigma(alpha) = sqrt((1 - alpha) * max_sigma)         (sqrt=True, as PAIR: sigma^2 is linear in alpha)

    so ``gamma(1) = x`` and ``gamma(0)`` is the most blurred image (``sigma = max_sigma``, or
    ``sqrt(max_sigma)`` with ``sqrt=True``, exactly as PAIR's ``BlurIG(sqrt=True)`` spaces its sigmas).
    The path does not start at a baseline (``starts_at_baseline = False``): the ``baseline`` argument is
    ignored and completeness holds against ``F(gamma(0))``. Inputs are one array of images
    ``(B, H, W, C)`` blurred over ``axes`` (default ``(1, 2)``: height and width, never batch or channels).

    Use it with :func:`jaxig.integrated_gradients` (``path=BlurPath()``); ``jaxig.blur_integrated_gradients``
    reproduces PAIR's discretisation. Xu et al., "Attribution in Scale and Space", CVPR 2020.

    Attributes:
      max_sigma: the width of the most blurred image (> 0); PAIR's default is 50.
      sqrt: space the blur in ``sigma^2`` (the heat equation's time) instead of ``sigma``.
      grad_step: ``None`` (default) differentiates the blur in ``sigma`` exactly (forward mode);
        a float ``h`` uses PAIR's forward difference ``(blur(sigma + h) - blur(sigma)) / h`` times
        ``d sigma / d alpha``.
      axes: the spatial axes of ``x`` to blur (axis 0 is the batch).
      truncate: the kernel's half-width in standard deviations, as scipy's (default 4.0). The window
        ``int(truncate * sigma + 0.5)`` grows in whole pixels, so the path jumps by tiny amounts
        (the kernel's tail, about ``exp(-truncate^2 / 2)``) where it grows; the integral misses those
        jumps and completeness holds to about that size. ``None`` blurs with the untruncated kernel,
        a smooth path along which completeness converges to rounding.

    Raises:
      ValueError: ``max_sigma <= 0``, ``grad_step <= 0``, ``truncate <= 0``, bad ``axes``; at call time,
        ``x`` with fewer dimensions than ``axes`` need.
      TypeError: ``x`` is not a single array.
    """

    max_sigma: float = static_field(default=50.0)
    sqrt: bool = static_field(default=False)
    grad_step: float | None = static_field(default=None)
    axes: tuple[int, ...] = static_field(default=(1, 2))
    truncate: float | None = static_field(default=4.0)

    starts_at_baseline: ClassVar[bool] = False

    def __post_init__(self):
        for name in ("max_sigma", "grad_step", "truncate"):
            value = getattr(self, name)
            if name != "max_sigma" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
                np.isfinite(value) and value > 0
            ):
                raise ValueError(f"BlurPath({name}={value!r}): {name} must be a positive finite number")
        object.__setattr__(self, "axes", _check_axes(self.axes))

    @property
    def largest_sigma(self) -> float:
        """The blur of the path's start ``gamma(0)``: ``max_sigma``, or ``sqrt(max_sigma)`` with ``sqrt=True``."""
        return math.sqrt(self.max_sigma) if self.sqrt else float(self.max_sigma)

    def _bound(self) -> int:
        return _radius_bound(self.largest_sigma + (self.grad_step or 0.0), self.truncate)

    def _variance(self, alpha: jax.Array, dtype: Any) -> jax.Array:
        t = 1 - jnp.asarray(alpha, dtype)
        # in variance, both spacings are polynomials in alpha: no square root (and no infinite
        # d sigma / d alpha at sigma = 0) appears on the exact-derivative path
        return t * self.max_sigma if self.sqrt else (t * self.max_sigma) ** 2

    def __call__(self, alpha, x, baseline):
        del baseline
        check_image_axes(x, self.axes, "BlurPath")
        return _blur_variance(x, self._variance(alpha, x.dtype), self.axes, self.truncate, self._bound())

    def blur(self, x: jax.Array, sigma: Any) -> jax.Array:
        """Returns ``x`` blurred with width ``sigma`` (traced or not) on this path's axes and truncation."""
        check_image_axes(x, self.axes, "BlurPath")
        sigma = jnp.asarray(sigma, x.dtype)
        return _blur_variance(x, sigma * sigma, self.axes, self.truncate, self._bound())

    def value_and_derivative(self, alpha, x, baseline):
        if self.grad_step is None:
            return super().value_and_derivative(alpha, x, baseline)
        check_image_axes(x, self.axes, "BlurPath")
        alpha = jnp.asarray(alpha, x.dtype)
        variance = self._variance(alpha, x.dtype)
        sigma = jnp.sqrt(variance)
        if self.sqrt:  # d sigma / d alpha = -max_sigma / (2 sigma); the difference quotient is 0 at sigma = 0
            dsigma = jnp.where(sigma > 0, -self.max_sigma / (2 * jnp.where(sigma > 0, sigma, 1)), 0.0)
        else:
            dsigma = jnp.asarray(-self.max_sigma, x.dtype)
        point = _blur_variance(x, variance, self.axes, self.truncate, self._bound())
        ahead = self.blur(x, sigma + self.grad_step)
        return point, (ahead - point) * (dsigma / self.grad_step)
