"""One record of what a method did: ``(attributions, info)`` with ``return_info=True``."""

from __future__ import annotations

import functools
import operator
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import Module

__all__ = ["Info", "completeness_gap", "warn_incomplete"]


class Info(Module):
    """What an attribution method did. Fields a method does not measure are ``None``.

    Attributes:
      delta: the completeness gap per example, ``sum_i attr_i - (F(x) - F(x'))``: shape ``(B,)``, or
        ``(K, B)`` for ``target="all"``. For paths that do not start at the baseline (e.g. a blurred
        start) ``x'`` is the path's start. Exact integration leaves only rounding here.
      n_evals: gradient evaluations: an int for the whole batch's table (fixed rules: ``n_steps``),
        or an int array ``(B,)`` per example (adaptive), or the total over the batch (exact).
      error: a per-feature error estimate shaped like the attributions (adaptive methods).
      converged: bool ``(B,)``, whether the error estimate met the tolerance (adaptive methods).
      n_intervals: int ``(B,)``, sub-intervals of [0, 1] at the end (adaptive methods).
      n_segments: int ``(B,)``, linear pieces found on each example's path (exact IG).
      n_rounds: batched passes of the piece search (exact IG).
      breakpoints: one sorted float64 array of piece boundaries per example (exact IG).
    """

    delta: Any = None
    n_evals: Any = None
    error: Any = None
    converged: Any = None
    n_intervals: Any = None
    n_segments: Any = None
    n_rounds: Any = None
    breakpoints: Any = None


def completeness_gap(
    attributions: Any, f_x: jax.Array | np.ndarray, f_start: jax.Array | np.ndarray, all_k: bool
) -> jax.Array:
    """Returns ``sum(attributions) - (f_x - f_start)`` per example: ``(B,)``, or ``(K, B)`` if ``all_k``."""
    lead = 2 if all_k else 1
    summed = functools.reduce(
        operator.add, [jnp.sum(t.reshape(t.shape[:lead] + (-1,)), -1) for t in jax.tree.leaves(attributions)]
    )
    return summed - (f_x - f_start).astype(summed.dtype)


def warn_incomplete(delta: Any, scale: Any, rtol: float, f: Any, problem: Any, *, what: str) -> None:
    """Warns (``RuntimeWarning``) when ``|delta| > rtol * scale`` for some example, naming the worst.

    ``delta`` and ``scale`` are ``(B,)`` or ``(K, B)``; a non-finite gap always warns. The advice
    names exact IG when ``f`` is piecewise linear (read from its jaxpr, only when warning).
    """
    delta, scale = np.asarray(delta, np.float64), np.asarray(scale, np.float64)
    bad = ~(np.abs(delta) <= rtol * scale) | ~np.isfinite(scale)
    if not bad.any():
        return
    finite = np.isfinite(delta) & np.isfinite(scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(finite, np.abs(delta) / np.maximum(scale, 1e-300), np.inf)
    worst = np.unravel_index(int(np.argmax(np.where(bad, rel, -1.0))), rel.shape)
    where = f"example {worst[-1]}" + (f", output {worst[0]}" if rel.ndim == 2 else "")
    n_bad = int(bad.any(axis=0).sum()) if rel.ndim == 2 else int(bad.sum())
    batch = rel.shape[-1]
    if not (np.isfinite(delta[worst]) and np.isfinite(scale[worst])):
        cause = (f"the gap is {delta[worst]} ({where}): f or its gradient is infinite or NaN somewhere "
                 "on the path (e.g. log or division at a zero baseline); choose another baseline")
    else:
        cause = (f"worst {where}: |delta| = {abs(delta[worst]):.3g}, {100 * rel[worst]:.3g}% of |F(x) - F(x')| "
                 f"= {scale[worst]:.3g}")
        if _piecewise_linear(problem):
            cause += ("; f is piecewise linear (ReLU/max/abs), so exact_integrated_gradients gives the exact "
                      "answer (if f is continuous on the path: a gap that remains there means f jumps), "
                      "or use adaptive_integrated_gradients")
        else:
            cause += ("; raise n_steps or use adaptive_integrated_gradients (error-controlled). A gap that "
                      "does not shrink with more steps means f jumps on the path or has a zero-gradient "
                      "step (a cast to int, a rounding)")
    warnings.warn(
        f"jaxig: the attributions of {n_bad} of {batch} example(s) do not sum to F(x) - F(x') within "
        f"completeness_rtol={rtol:g} ({what}); {cause}. Pass completeness_rtol=None to silence this.",
        RuntimeWarning, stacklevel=3)


# (program, target) -> whether the explained output is piecewise linear: read once per structure.
_PIECEWISE: dict = {}


def _piecewise_linear(problem: Any) -> bool:
    from ._jaxpr.pwl import is_piecewise_linear  # only on the warning path

    spec = problem.target
    key = (problem.model.program, spec)
    if key not in _PIECEWISE:
        structs = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), problem.x)
        g = (lambda z: spec.fn(problem.model(z))) if spec.kind == "callable" else problem.model
        _PIECEWISE[key] = is_piecewise_linear(g, structs)
    return _PIECEWISE[key]
