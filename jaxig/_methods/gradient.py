"""One-gradient methods users compare IG against: saliency and gradient × input."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._gradients import value_and_gradient
from .._info import Info, completeness_gap
from .._problem import Problem, prepare
from .._targets import select

__all__ = ["saliency", "gradient_x_input"]


@dataclasses.dataclass(frozen=True)
class _Static:
    """The settings that select a compiled program besides the problem's structure; hashed."""

    times_input: bool
    absolute: bool
    with_delta: bool


def saliency(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    absolute: bool = True,
    return_info: bool = False,
) -> Any:
    """Returns the saliency map of ``f`` at ``x``: the (absolute) input gradient, shaped like ``x``.

        S_i(x) = |dF(x) / dx_i|        (``absolute=False``: dF(x) / dx_i)

    with ``F`` the explained output. Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional
    Networks: Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014.
    Captum's ``Saliency`` (``abs=True`` by default, as here).

    Args:
      f, x, target, args: as in :func:`jaxig.integrated_gradients` (``f`` maps a batch to ``(B,)``
        or ``(B, K)``; ``target="all"`` adds a leading ``K`` axis to the result).
      baseline: accepted so that every method shares one signature, and ignored: a gradient at ``x``
        has no reference point.
      key: ignored (the method is deterministic).
      absolute: return ``|gradient|`` (default, as Captum) or the signed gradient.
      return_info: return ``(attributions, info)``, ``info`` a :class:`jaxig.Info` with
        ``n_evals=1`` and ``delta=None`` (saliency does not claim completeness).

    Raises:
      TypeError: ``f`` is not callable; non-float inputs; a target of unsupported type.
      ValueError: outputs not of shape ``(B,)``/``(B, K)``; several outputs and no target; a target
        index negative or ``>= K``.

    Compiled with ``jax.jit`` and cached on ``f``'s traced structure; works under the caller's
    ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (with ``absolute=True``, ``|g|`` is differentiated as
    ``sign(g) * dg``, which is 0 where ``g = 0``).
    """
    del key
    problem = prepare(f, x, None, target=target, args=args)
    attributions, _ = _gradient_jit(_Static(False, bool(absolute), False), problem)
    return (attributions, Info(delta=None, n_evals=1)) if return_info else attributions


def gradient_x_input(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns gradient × input of ``f`` at ``x`` relative to ``baseline``, shaped like ``x``.

        A_i(x) = dF(x) / dx_i * (x_i - x'_i)

    with ``F`` the explained output and ``x'`` the baseline. With the default baseline (zeros) this is
    Captum's ``InputXGradient`` (``grad * x``); a nonzero baseline gives ``grad * (x - x')``, the
    one-step (right Riemann) limit of Integrated Gradients. For a linear ``F`` it is exactly IG and
    complete: ``sum_i A_i = F(x) - F(x')``. Shrikumar, Greenside, Shcherbina and Kundaje, "Not Just
    a Black Box: Learning Important Features Through Propagating Activation Differences", 2016.

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`.
      key: ignored (the method is deterministic).
      return_info: return ``(attributions, info)``, ``info`` a :class:`jaxig.Info` with
        ``n_evals=1`` and ``delta``, the completeness gap ``sum_i A_i - (F(x) - F(x'))`` per example
        (``(K, B)`` for ``target="all"``; zero up to rounding for linear ``F``); it costs one more
        forward pass, at the baseline.

    Raises:
      TypeError: ``f`` is not callable; non-float inputs; a target of unsupported type.
      ValueError: a baseline whose structure or shapes do not match ``x``; outputs not of shape
        ``(B,)``/``(B, K)``; several outputs and no target; a target index negative or ``>= K``.

    Compiled with ``jax.jit`` and cached on ``f``'s traced structure; works under the caller's
    ``jax.jit``, ``jax.vmap`` and ``jax.grad``.
    """
    del key
    problem = prepare(f, x, baseline, target=target, args=args)
    attributions, delta = _gradient_jit(_Static(True, False, bool(return_info)), problem)
    return (attributions, Info(delta=delta, n_evals=1)) if return_info else attributions


def _gradient_impl(static: _Static, problem: Problem):
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    value, grads = value_and_gradient(model, spec, index, x)
    delta = None
    if static.times_input:
        baseline = problem.full_baseline()
        # grads may carry a leading K axis ("all"); x - x' broadcasts over it from the right.
        attributions = jax.tree.map(lambda g, xi, bi: g * (xi - bi), grads, x, baseline)
        if static.with_delta:
            delta = completeness_gap(attributions, value, select(spec, model(baseline), index), problem.all_k)
    else:
        attributions = jax.tree.map(jnp.abs, grads) if static.absolute else grads
    attributions = jax.tree.map(lambda a, xi: a.astype(xi.dtype), attributions, x)
    return attributions, delta


_gradient_jit = jax.jit(_gradient_impl, static_argnums=0)
