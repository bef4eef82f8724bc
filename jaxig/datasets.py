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

All generators take an explicit PRNG key (``jax.random.key(seed)``, or a raw uint32[2]
``jax.random.PRNGKey(seed)``; a bare int seed is refused), return float32 JAX arrays, and draw features
uniformly from [-1, 1]. Counts and sizes set array shapes, so they must be integers: Python ints, NumPy
integers or 0-d integer arrays; bools and floats are refused even when integral (``3.0``), since a float
count usually means a computed value that was meant to be rounded one way or the other. The generators
work under ``jax.vmap`` over keys and ``jax.jit`` with the counts static. `pos_neg_noise` follows the
POS/NEG/NOISE recipe of the "IntegratedGradientsPytorch" blog post
(CVxTz); IG itself: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

__all__ = ["ClosedForm", "additive", "image", "pos_neg_noise", "quadratic", "single_index", "time_series"]


def _uniform(key, shape):
    return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)


def _check_key(key, name="key"):
    """Raises unless ``key`` is one PRNG key: typed (``jax.random.key``) or raw uint32[2] (``PRNGKey``).

    Only shape and dtype are read, so a traced key (under jit or vmap over keys) passes.
    """
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape == ():
            return
        raise ValueError(
            f"{name} is an array of {shape} PRNG keys; pass a single key, e.g. {name}=jax.random.key(0), "
            "and use jax.vmap over keys for several draws"
        )
    if dtype is not None and np.dtype(dtype) == np.uint32 and shape is not None and shape[-1:] == (2,):
        if len(shape) == 1:
            return
        raise ValueError(
            f"{name} has shape {shape}: {shape[:-1]} raw uint32 keys; pass a single key, e.g. "
            f"{name}=jax.random.key(0), and use jax.vmap over keys for several draws"
        )
    what = f"an array of dtype {dtype} and shape {shape}" if dtype is not None else f"{key!r}"
    raise TypeError(
        f"{name}={what} is not a PRNG key; pass {name}=jax.random.key(0) (or any jax.random.key(seed)), "
        "not a bare integer seed"
    )


def _check_count(name, value, minimum=0):
    """Returns ``value`` as a Python int; raises unless it is an integer (not bool, not float) >= minimum."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} is a bool; pass an integer >= {minimum}")
    try:
        n = operator.index(value)
    except TypeError:
        if isinstance(value, Tracer):
            raise TypeError(
                f"{name} is a traced value; it sets an array shape, so pass a concrete Python int "
                "(mark it static under jax.jit)"
            ) from None
        hint = ""
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            hint = f" (e.g. {name}={int(value)})"
        raise TypeError(
            f"{name}={value!r} of type {type(value).__name__} is not an integer; pass an int >= {minimum}{hint}"
        ) from None
    if n < minimum:
        raise ValueError(f"{name}={n}; pass an integer >= {minimum}")
    return n


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
      TypeError: ``key`` is not a PRNG key; a count is not an integer (bool, float, None).
      ValueError: a negative count (n_samples < 1), or no features at all.
    """
    _check_key(key)
    n_samples = _check_count("n_samples", n_samples, 1)
    n_pos, n_neg, n_noise = (_check_count(name, v) for name, v in (("n_pos", n_pos), ("n_neg", n_neg),
                                                                  ("n_noise", n_noise)))
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
    n_planted = _check_count("n_planted", n_planted, 1)
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
      TypeError: ``key`` is not a PRNG key; a size is not an integer (bool, float, None).
      ValueError: non-positive sizes, or more planted cells than cells.
    """
    _check_key(key)
    n_samples, n_steps, n_features = (
        _check_count(name, v, 1) for name, v in (("n_samples", n_samples), ("n_steps", n_steps),
                                                 ("n_features", n_features))
    )
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
      TypeError: ``key`` is not a PRNG key; a size is not an integer (bool, float, None).
      ValueError: non-positive sizes, or 2 * patch > min(height, width) (the patches would overlap).
    """
    _check_key(key)
    n_samples, height, width, channels, patch = (
        _check_count(name, v, 1) for name, v in (("n_samples", n_samples), ("height", height), ("width", width),
                                                 ("channels", channels), ("patch", patch))
    )
    if 2 * patch > min(height, width):
        raise ValueError(
            f"patch={patch} too large for a {height}x{width} image; need 2 * patch <= {min(height, width)}"
        )
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


def _real_array(value, name, ndim, fix):
    """Returns ``value`` as a float JAX array of the given ndim; integers are cast to float32."""
    if callable(value) or isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name}={value!r} is not an array of real numbers; {fix}")
    try:
        arr = value if isinstance(value, jax.Array) else np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}={value!r} is not an array of real numbers ({e}); {fix}") from None
    if arr.dtype.kind in "iub":
        if arr.dtype.kind == "b":
            raise TypeError(f"{name} has dtype bool; {fix}")
        arr = arr.astype(np.float32)
    elif arr.dtype.kind != "f":
        raise TypeError(f"{name} has dtype {arr.dtype}; {fix}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} has shape {tuple(arr.shape)}; {fix}")
    return jnp.asarray(arr)


def _check_g(g, name="g"):
    if not callable(g):
        raise TypeError(
            f"{name}={g!r} is not callable; pass an elementwise jnp function such as jnp.tanh or jax.nn.softplus"
        )


def _inputs(x, baseline, D):
    """Returns (x, baseline broadcast to x) for a batch x of shape (B, D)."""
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != D:
        hint = f"; for one example pass x[None] (shape (1, {D}))" if x.shape == (D,) else ""
        raise ValueError(f"x has shape {tuple(x.shape)}; pass a batch of shape (B, {D}){hint}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x has dtype {x.dtype}; pass floats, e.g. x.astype(jnp.float32)")
    if baseline is None:
        return x, jnp.zeros_like(x)
    b = jnp.asarray(baseline, x.dtype)
    if b.shape not in ((), (D,), (1, D), x.shape):
        raise ValueError(
            f"baseline shape {tuple(b.shape)} does not match x of shape {tuple(x.shape)}; pass a baseline of "
            f"shape (), ({D},), (1, {D}) or {tuple(x.shape)}"
        )
    return x, jnp.broadcast_to(b, x.shape)


def single_index(w: jax.Array, g: Callable[[jax.Array], jax.Array] = jnp.tanh) -> ClosedForm:
    """Returns ``ClosedForm`` for F(x) = g(w . x) with a scalar, differentiable g (elementwise jnp function).

    Exact IG along the straight path from x' to x, with s = w . (x - x'):

        IG_i = (x_i - x'_i) w_i (g(w . x) - g(w . x')) / s       if s != 0,
        IG_i = (x_i - x'_i) w_i g'(w . x')                       if s == 0 (then the gradient is constant).

    Near s = 0 the difference quotient loses precision; the formula switches to the midpoint derivative
    g'(w . (x + x') / 2) when |s| < 1e-4 (error O(s^2)).
    """
    w = _real_array(w, "w", 1, "pass a vector (D,) of floats")
    _check_g(g)
    dg = jax.vmap(jax.grad(lambda z: g(z)))

    def f(x):
        return g(x @ w)

    def attributions(x, baseline=None):
        x, b = _inputs(x, baseline, w.shape[0])
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
    coefs = _real_array(coefs, "coefs", 1, "pass a vector (D,) of floats")
    _check_g(g)

    def f(x):
        return g(x) @ coefs

    def attributions(x, baseline=None):
        x, b = _inputs(x, baseline, coefs.shape[0])
        return coefs * (g(x) - g(b))

    return ClosedForm(f, attributions)


def quadratic(A: jax.Array, c: jax.Array | None = None) -> ClosedForm:
    """Returns ``ClosedForm`` for F(x) = x^T A x + c . x, a function with pairwise interactions.

    With S = (A + A^T) / 2 the gradient is 2 S x + c, linear along the straight path, so its path average
    is its value at the midpoint and IG_i = (x_i - x'_i) ((S (x + x'))_i + c_i) exactly.
    """
    A = _real_array(A, "A", 2, "pass a square matrix (D, D) of floats")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A has shape {A.shape}; pass a square matrix (D, D)")
    S = (A + A.T) / 2
    D = A.shape[0]
    c = jnp.zeros(D, A.dtype) if c is None else _real_array(c, "c", 1, f"pass a vector ({D},) of floats or None")
    if c.shape != (D,):
        raise ValueError(f"c has shape {c.shape} but A is {A.shape}; pass a vector ({D},) or None")

    def f(x):
        return jnp.einsum("bi,ij,bj->b", x, A, x) + x @ c

    def attributions(x, baseline=None):
        x, b = _inputs(x, baseline, D)
        return (x - b) * ((x + b) @ S + c)

    return ClosedForm(f, attributions)
