"""Checks that a path is what it claims: it starts at the baseline, ends at x, and is straight if it says so.

A user's :class:`~jaxig.AbstractPath` is trusted by every method that takes one; a path that starts
elsewhere silently breaks completeness, and one flagged ``is_straight`` that bends is integrated
with the wrong tangent. The distances are computed inside the compiled program (a few elementwise
evaluations of the path) and checked on the host when they are concrete.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import AbstractPath

__all__ = ["path_errors", "check_path"]

_PROBE = 0.3721  # an interior alpha unlikely to be special to any path
_TOLERANCE = 1e-4  # relative to the largest |x| or |baseline|


def _largest(values: list) -> jax.Array:
    return functools.reduce(jnp.maximum, values)


def _distance(a: Any, b: Any) -> jax.Array:
    return _largest([jnp.max(jnp.abs(u.astype(jnp.float32) - v.astype(jnp.float32)))
                     for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))])


def path_errors(path: AbstractPath, x: Any, baseline: Any, start: Any, end: Any) -> jax.Array:
    """Returns ``[start error, end error, straightness error]``, each relative to the inputs' scale."""
    scale = _largest([jnp.max(jnp.abs(v.astype(jnp.float32))) for v in jax.tree.leaves((x, baseline))])
    scale = jnp.maximum(scale, 1e-30)
    errors = [_distance(start, baseline), _distance(end, x)]
    if path.is_straight:
        alpha = jnp.asarray(_PROBE, jnp.result_type(*jax.tree.leaves(x)))
        line = jax.tree.map(lambda xi, bi: bi + alpha.astype(xi.dtype) * (xi - bi), x, baseline)
        point, tangent = path.value_and_derivative(alpha, x, baseline)
        direction = jax.tree.map(jnp.subtract, x, baseline)
        errors.append(jnp.maximum(_distance(point, line), _distance(tangent, direction)))
    else:
        errors.append(jnp.zeros((), jnp.float32))
    return jnp.stack(errors) / scale


def check_path(path: AbstractPath, errors: Any) -> None:
    """Raises ``ValueError`` naming the path when :func:`path_errors` exceed the tolerance."""
    start, end, straight = (float(e) for e in np.asarray(errors))
    name = type(path).__name__
    if path.starts_at_baseline and not start <= _TOLERANCE:
        raise ValueError(
            f"{name}(0, x, baseline) is not the baseline (relative distance {start:.3g}); a path must "
            "start at the baseline (alpha = 0) and end at x (alpha = 1). If it starts elsewhere by "
            "design (a blurred input), set starts_at_baseline = False on the class: completeness is "
            "then against f(path(0))"
        )
    if not end <= _TOLERANCE:
        raise ValueError(
            f"{name}(1, x, baseline) is not x (relative distance {end:.3g}); a path must end at the "
            "input x at alpha = 1"
        )
    if not straight <= _TOLERANCE:
        raise ValueError(
            f"{name} sets is_straight = True but is not the straight line baseline + alpha (x - baseline) "
            f"(relative distance {straight:.3g} at alpha = {_PROBE}); remove is_straight so the tangent "
            "is taken at every alpha"
        )
