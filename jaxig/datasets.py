"""Synthetic data and functions whose Integrated Gradients are known exactly.

Two kinds of ground truth:

* Datasets ``(X, y, coefs)`` with ``y = sum(coefs * X)`` over each example's features
  (`pos_neg_noise`, `time_series`, `image`). For the generating function F(x) = sum(coefs * x), which is
  linear, IG along the straight path is exactly ``coefs * (x - x')`` for any baseline x' and any rule
  exact for constants. A model trained on the data approximates F on the data's support, so its IG should
  approach ``coefs * (x - x')`` as its fit improves; features with coefficient 0 should get about 0.
* Closed-form nonlinear functions (`single_index`, `additive`, `quadratic`) returned as a `ClosedForm`
  ``(f, attributions)``: ``attributions(x, baseline)`` is the exact straight-line IG, so quadrature error
  can be measured against truth rather than against a finer quadrature.

All generators take an explicit PRNG key, return float32 JAX arrays, and draw features uniformly from
[-1, 1]. `pos_neg_noise` follows the POS/NEG/NOISE recipe of the "IntegratedGradientsPytorch" blog post
(CVxTz); IG itself: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ClosedForm", "additive", "image", "pos_neg_noise", "quadratic", "single_index", "time_series"]


def _uniform(key, shape):
    return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)


def _check_count(name, value, minimum=0):
    if int(value) != value or value < minimum:
        raise ValueError(f"{name}={value!r}; pass an integer >= {minimum}")


def pos_neg_noise(
    key: jax.Array, n_samples: int, n_pos: int = 32, n_neg: int = 32, n_noise: int = 32
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(X, y, coefs)``: features with positive, negative and zero effect, and a linear target.

    X has shape (n_samples, n_pos + n_neg + n_noise), entries uniform in [-1, 1], columns ordered
    [pos_0 .. pos_{n_pos-1}, neg_0 .., noise_0 ..]. coefs = [(i+1)/n_pos for pos_i] + [-(i+1)/n_neg for
    neg_i] + [0 for noise_i], and y = X @ coefs, shape (n_samples,).

    Ground truth: IG of F(x) = coefs . x with a zero baseline is coefs * x exactly; a model that learned
    y should give approximately that, and about 0 to every noise feature.

    Raises:
      ValueError: a count that is not a non-negative integer, or no features at all.
    """
    _check_count("n_samples", n_samples, 1)
    for name, v in (("n_pos", n_pos), ("n_neg", n_neg), ("n_noise", n_noise)):
        _check_count(name, v)
    if n_pos + n_neg + n_noise == 0:
        raise ValueError("n_pos + n_neg + n_noise = 0; ask for at least one feature")
    coefs = jnp.concatenate(
        [
            jnp.arange(1, n_pos + 1, dtype=jnp.float32) / max(n_pos, 1),
            -jnp.arange(1, n_neg + 1, dtype=jnp.float32) / max(n_neg, 1),
            jnp.zeros(n_noise, jnp.float32),
        ]
    )
    X = _uniform(key, (n_samples, coefs.shape[0]))
    return X, X @ coefs, coefs


def _planted(key, shape, n_planted, what):
    """Returns coefs of the given per-example shape: n_planted random cells with |coef| in [0.5, 1.5]."""
    size = 1
    for s in shape:
        size *= s
    _check_count("n_planted", n_planted, 1)
    if n_planted > size:
        raise ValueError(f"n_planted={n_planted} exceeds the {size} cells of one {what} of shape {shape}")
    kc, km, ks = jax.random.split(key, 3)
    cells = jax.random.choice(kc, size, (n_planted,), replace=False)
    mag = jax.random.uniform(km, (n_planted,), jnp.float32, 0.5, 1.5)
    sign = jnp.where(jax.random.bernoulli(ks, 0.5, (n_planted,)), 1.0, -1.0)
    return jnp.zeros(size, jnp.float32).at[cells].set(sign * mag).reshape(shape)


def time_series(
    key: jax.Array, n_samples: int, n_steps: int = 16, n_features: int = 4, n_planted: int = 6
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(X, y, coefs)``: sequences [B, T, F] whose target depends on a few planted (t, f) cells.

    X has shape (n_samples, n_steps, n_features), entries uniform in [-1, 1]. coefs (n_steps, n_features)
    is zero except at n_planted cells chosen at random (by ``key``), whose values have magnitude uniform
    in [0.5, 1.5] and random sign. y = sum over t, f of coefs[t, f] * X[:, t, f], shape (n_samples,).

    Ground truth: IG of F(x) = sum(coefs * x) is coefs * (x - x') exactly; every unplanted cell gets 0.
    ``coefs != 0`` is the mask of planted cells. Summing over time gives the per-feature truth
    sum_t coefs[t, f] * (x[t, f] - x'[t, f]) (the signed sum, not the sum of absolute values).

    Raises:
      ValueError: non-positive sizes, or more planted cells than cells.
    """
    for name, v in (("n_samples", n_samples), ("n_steps", n_steps), ("n_features", n_features)):
        _check_count(name, v, 1)
    kx, kc = jax.random.split(key)
    coefs = _planted(kc, (n_steps, n_features), n_planted, "sequence")
    X = _uniform(kx, (n_samples, n_steps, n_features))
    return X, jnp.einsum("btf,tf->b", X, coefs), coefs


def image(
    key: jax.Array, n_samples: int, height: int = 8, width: int = 8, channels: int = 1, patch: int = 3
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(X, y, coefs)``: images [B, H, W, C] whose target is the contrast of two planted patches.

    X has shape (n_samples, height, width, channels), entries uniform in [-1, 1]. coefs (H, W, C) is
    +1/(patch^2 C) on a patch x patch square in the top-left corner (rows and columns 0 .. patch-1),
    -1/(patch^2 C) on a square in the bottom-right corner (the last patch rows and columns), 0 elsewhere;
    the position is fixed, not random, so it can be read off a plot. ``key`` draws X only.
    y = sum(coefs * X) over H, W, C: the mean of the top-left patch minus the mean of the bottom-right one.

    Ground truth: IG of F(x) = sum(coefs * x) is coefs * (x - x') exactly; pixels outside both patches
    get 0, and summing over channels gives the per-pixel truth.

    Raises:
      ValueError: non-positive sizes, or 2 * patch > min(height, width) (the patches would overlap).
    """
    for name, v in (("n_samples", n_samples), ("height", height), ("width", width), ("channels", channels),
                    ("patch", patch)):
        _check_count(name, v, 1)
    if 2 * patch > min(height, width):
        raise ValueError(f"patch={patch} too large for a {height}x{width} image; need 2 * patch <= {min(height, width)}")
    w = 1.0 / (patch * patch * channels)
    coefs = jnp.zeros((height, width, channels), jnp.float32)
    coefs = coefs.at[:patch, :patch].set(w).at[height - patch:, width - patch:].set(-w)
    X = _uniform(key, (n_samples, height, width, channels))
    return X, jnp.einsum("bhwc,hwc->b", X, coefs), coefs


# ------------------------------------------------------------------------ closed-form functions


class ClosedForm(NamedTuple):
    """A function ``f`` (batch (B, D) -> (B,)) and ``attributions(x, baseline=None)``, its exact IG."""

    f: Callable[[jax.Array], jax.Array]
    attributions: Callable[..., jax.Array]


def _baseline(x, baseline):
    return jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)


def single_index(w: jax.Array, g: Callable[[jax.Array], jax.Array] = jnp.tanh) -> ClosedForm:
    """Returns ``ClosedForm`` for F(x) = g(w . x) with a scalar, differentiable g (elementwise jnp function).

    Exact IG along the straight path from x' to x, with s = w . (x - x'):

        IG_i = (x_i - x'_i) w_i (g(w . x) - g(w . x')) / s       if s != 0,
        IG_i = (x_i - x'_i) w_i g'(w . x')                       if s == 0 (then the gradient is constant).

    Near s = 0 the difference quotient loses precision; the formula switches to the midpoint derivative
    g'(w . (x + x') / 2) when |s| < 1e-4 (error O(s^2)).
    """
    w = jnp.asarray(w)
    if w.ndim != 1:
        raise ValueError(f"w has shape {w.shape}; pass a vector (D,)")
    dg = jax.vmap(jax.grad(lambda z: g(z)))

    def f(x):
        return g(x @ w)

    def attributions(x, baseline=None):
        b = _baseline(x, baseline)
        zx, zb = x @ w, b @ w
        s = zx - zb
        small = jnp.abs(s) < 1e-4
        quotient = (g(zx) - g(zb)) / jnp.where(small, 1.0, s)
        slope = jnp.where(small, dg((zx + zb) / 2), quotient)
        return (x - b) * w * slope[:, None]

    return ClosedForm(f, attributions)


def additive(coefs: jax.Array, g: Callable[[jax.Array], jax.Array] = jnp.sin) -> ClosedForm:
    """Returns ``ClosedForm`` for F(x) = sum_i coefs_i g(x_i) with an elementwise g.

    Exact IG: IG_i = coefs_i (g(x_i) - g(x'_i)), since feature i's gradient depends on x_i alone and the
    straight path integrates it from x'_i to x_i (fundamental theorem of calculus).
    """
    coefs = jnp.asarray(coefs)
    if coefs.ndim != 1:
        raise ValueError(f"coefs has shape {coefs.shape}; pass a vector (D,)")

    def f(x):
        return g(x) @ coefs

    def attributions(x, baseline=None):
        b = _baseline(x, baseline)
        return coefs * (g(x) - g(b))

    return ClosedForm(f, attributions)


def quadratic(A: jax.Array, c: jax.Array | None = None) -> ClosedForm:
    """Returns ``ClosedForm`` for F(x) = x^T A x + c . x, a function with pairwise interactions.

    With S = (A + A^T) / 2 the gradient is 2 S x + c, linear along the straight path, so its path average
    is its value at the midpoint and IG_i = (x_i - x'_i) ((S (x + x'))_i + c_i) exactly.
    """
    A = jnp.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A has shape {A.shape}; pass a square matrix (D, D)")
    S = (A + A.T) / 2
    c = jnp.zeros(A.shape[0], A.dtype) if c is None else jnp.asarray(c)

    def f(x):
        return jnp.einsum("bi,ij,bj->b", x, A, x) + x @ c

    def attributions(x, baseline=None):
        b = _baseline(x, baseline)
        return (x - b) * ((x + b) @ S + c)

    return ClosedForm(f, attributions)
