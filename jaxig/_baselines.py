"""Resolution of the ``baseline`` argument to a pytree shaped exactly like ``x``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._validate import pair_with_x


def check_baseline(baseline: Any, x: Any) -> None:
    """Raises unless :func:`resolve_baseline` can broadcast ``baseline`` to ``x`` (shapes only, no FLOPs).

    Raises:
      ValueError: the structure or a leaf's shape does not match ``x``.
      TypeError: a leaf is not a real number.
    """
    if baseline is None:
        return
    if _is_scalar(baseline):
        _check_numeric(baseline, "baseline")
        return
    pairs = pair_with_x(baseline, x, "baseline",
                        "pass a baseline with the same keys/containers as x, a scalar, or None for zeros")
    for name, xi, bi in pairs:
        _check_numeric(bi, name)
        shape = tuple(np.shape(bi))
        allowed = (tuple(xi.shape), (1,) + tuple(xi.shape[1:]), tuple(xi.shape[1:]), ())
        if shape not in allowed:
            raise ValueError(
                f"{name} shape {shape} does not match input shape {tuple(xi.shape)}; "
                f"pass a baseline of shape {tuple(xi.shape[1:])}, {(1,) + tuple(xi.shape[1:])} "
                f"or {tuple(xi.shape)}"
            )


def resolve_baseline(baseline: Any, x: Any) -> Any:
    """Returns the baseline broadcast to ``x``'s structure, shapes and dtypes.

    Accepted: ``None`` (zeros), a Python or 0-d scalar (every entry), or a pytree with ``x``'s
    structure whose leaves have shape ``x.shape``, ``(1,) + x.shape[1:]`` or ``x.shape[1:]`` (one
    baseline shared by the batch). A single array is accepted for a single-leaf ``x``.

    Raises:
      ValueError: the structure or a leaf's shape does not match ``x``.
      TypeError: a leaf is not a real number.
    """
    check_baseline(baseline, x)
    if baseline is None:
        return jax.tree.map(jnp.zeros_like, x)
    if _is_scalar(baseline):
        return jax.tree.map(lambda xi: jnp.full_like(xi, baseline), x)
    x_leaves, x_def = jax.tree_util.tree_flatten(x)
    b_leaves = jax.tree_util.tree_leaves(baseline)
    out = [jnp.broadcast_to(jnp.asarray(bi).astype(xi.dtype), xi.shape) for xi, bi in zip(x_leaves, b_leaves)]
    return jax.tree_util.tree_unflatten(x_def, out)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) or getattr(value, "ndim", None) == 0


def _check_numeric(value: Any, name: str) -> None:
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(
            f"{name} is {value!r}; a baseline must hold real numbers (None means zeros for the whole baseline)"
        )
    try:
        dtype = value.dtype if hasattr(value, "dtype") else np.result_type(value)
    except TypeError as err:
        raise TypeError(f"{name} ({type(value).__name__}) is not a number or an array of numbers") from err
    if isinstance(value, bool) or not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"{name} has dtype {dtype}; a baseline must hold real numbers")
