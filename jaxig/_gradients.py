"""The one evaluation every gradient method makes: the explained output(s) and their input gradient.

A target turns ``f``'s outputs into one scalar per example (``K`` for ``"all"`` and
:func:`jaxig.outputs`); its gradient is a vector-Jacobian product with a cotangent on the outputs, so
explaining ``K`` outputs shares one forward pass. A weighted target is one cotangent (the weights).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

from ._sharding import vary_like
from ._targets import TargetSpec, cotangents, select

if TYPE_CHECKING:
    from ._problem import Problem

__all__ = ["value_and_gradient", "gradient", "explain_at"]


def value_and_gradient(fn: Callable[[Any], jax.Array], spec: TargetSpec, index: Any, point: Any) -> tuple[Any, Any]:
    """Returns ``(F(point), dF/dpoint)``: the explained outputs ``(B,)`` (``(K, B)`` when
    ``spec.multi``: ``"all"``, :func:`jaxig.outputs`) and their gradient, a pytree like ``point``
    (with a leading ``K`` axis when ``spec.multi``)."""
    out, pullback = jax.vjp(fn, point)
    ct = vary_like(cotangents(spec, out, index), out)  # inside shard_map (see _sharding)
    grads = jax.vmap(pullback)(ct)[0] if spec.multi else pullback(ct)[0]
    return select(spec, out, index), grads


def gradient(fn: Callable[[Any], jax.Array], spec: TargetSpec, index: Any, point: Any) -> Any:
    """Returns the gradient of the explained outputs at ``point`` (see :func:`value_and_gradient`)."""
    return value_and_gradient(fn, spec, index, point)[1]


@jax.jit
def explain_at(problem: Problem) -> tuple[Any, Any]:
    """Returns ``(F(x), dF/dx)`` of a prepared problem at its own inputs (one compiled program)."""
    return value_and_gradient(problem.model, problem.target, problem.index, problem.x)
