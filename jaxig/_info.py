"""One record of what a method did: ``(attributions, info)`` with ``return_info=True``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._pytree import Module

__all__ = ["Info", "completeness_gap"]


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


def completeness_gap(attributions: Any, f_x: jax.Array, f_start: jax.Array, all_k: bool) -> jax.Array:
    """Returns ``sum(attributions) - (f_x - f_start)`` per example: ``(B,)``, or ``(K, B)`` if ``all_k``."""
    lead = 2 if all_k else 1
    summed = sum(jnp.sum(t.reshape(t.shape[:lead] + (-1,)), -1) for t in jax.tree.leaves(attributions))
    return summed - (f_x - f_start).astype(summed.dtype)
