"""Guided Integrated Gradients: a path that moves the features with the smallest |gradient| first."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._gradients import value_and_gradient
from .._info import Info, completeness_gap
from .._problem import Problem, prepare
from .._targets import TargetSpec, n_outputs, select

__all__ = ["guided_integrated_gradients"]


@dataclasses.dataclass(frozen=True)
class _Static:
    """The settings that select a compiled program besides the problem's structure; hashed."""

    steps: int
    fraction: float
    max_dist: float


def guided_integrated_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    steps: int = 128,
    fraction: float = 0.25,
    max_dist: float = 0.02,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns the Guided Integrated Gradients of ``f`` at ``x``, an array shaped like ``x``.

    Each example walks its own path from the baseline ``x'`` to ``x`` in ``steps`` steps; step ``k``
    (``a_k = (k + 1) / steps``) takes the gradient ``g = grad F(p)`` at the current point ``p`` and
    moves the features with the smallest ``|g_i|`` (the lowest ``fraction`` of all features, by a
    ``"lower"`` quantile) towards ``x``, until the L1 distance ``|p - x|_1`` has dropped to
    ``(1 - a_k) |x - x'|_1``; no feature may fall behind ``a_k - max_dist`` or run ahead of
    ``a_k + max_dist`` of its own way from ``x'_i`` to ``x_i``. The attribution sums what each move
    earned at the gradient of the step's start:

        A_i = sum_k (p_i^{k+1} - p_i^k) * g_i(p^k)

    a left Riemann sum along the guided path, so ``sum_i A_i ~ F(x) - F(x')`` as ``steps`` grows.
    ``max_dist=0`` (or ``fraction=1``) keeps every feature on the straight line and gives exactly
    :func:`jaxig.integrated_gradients` with ``rule=RiemannLeft()`` and ``n_steps=steps``;
    ``max_dist=1`` lets the path go anywhere in the box between ``x'`` and ``x``. Kapishnikov, Venugopalan,
    Avci, Wedin, Terry and Bolukbasi, "Guided Integrated Gradients: an Adaptive Path Method for
    Removing Noise", CVPR 2021; the steps follow PAIR's ``saliency.core.GuidedIG`` (whose ``x_steps``
    is ``steps`` here), computed for a batch at once with ``lax.scan`` over steps.

    Args:
      f, baseline, target, args: as in :func:`jaxig.integrated_gradients`. ``target="all"`` walks one
        path per output (the path follows the explained output's gradient) and adds a leading ``K``.
      x: one float array with a leading batch axis (images ``(B, H, W, C)`` or any ``(B, ...)``); the
        fraction of features is taken over all of an example's entries.
      steps: the number of gradient evaluations (PAIR's ``x_steps``; PAIR's default is 200).
      fraction: the share of features in (0, 1] moved first at each step (PAIR's ``fraction``).
      max_dist: in [0, 1], how far (in the straight line's alpha) a feature may deviate from the straight
        line (PAIR's ``max_dist``).
      key: ignored (the method is deterministic).
      return_info: return ``(attributions, info)``, ``info`` a :class:`jaxig.Info` with ``delta``,
        the completeness gap ``sum_i A_i - (F(x) - F(x'))`` (``(K, B)`` for ``"all"``), and
        ``n_evals=steps``.

    Raises:
      TypeError: ``x`` is a pytree rather than one array; ``steps`` not an int (and the type errors of
        :func:`jaxig.integrated_gradients`).
      ValueError: ``steps < 1``; ``fraction`` outside (0, 1]; ``max_dist`` outside [0, 1] (and the
        value errors of :func:`jaxig.integrated_gradients`).

    Compiled with ``jax.jit`` and cached on ``f``'s traced structure; works under the caller's
    ``jax.jit`` and ``jax.vmap``. Under ``jax.grad`` the path is held fixed (it is piecewise constant
    in ``f``'s parameters: only which features move changes), so derivatives with respect to the
    parameters flow through the gradients ``g(p^k)``; derivatives with respect to ``x`` or the
    baseline omit the path's own dependence on them. Ties in ``|g|`` are broken as PAIR does: every
    feature at the threshold moves.

    The walk decides by comparisons (ranks of ``|g|``, whether a feature sits exactly at its bound), so
    rounding can flip one decision and send the rest of the path elsewhere, most easily with
    ``max_dist=1`` and many steps. PAIR walks in float64; with float64 inputs (``jax_enable_x64``) this
    function takes the same decisions and agrees with it to rounding, while float32 agrees wherever no
    decision falls within rounding.
    """
    del key
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(
            f"guided_integrated_gradients needs x as one float array with a leading batch axis, got "
            f"{type(x).__name__}; its path ranks all features of an example together, so concatenate a "
            "pytree of inputs into one array (or explain each array on its own)"
        )
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be a Python int (the number of gradient evaluations), got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got steps={steps}; PAIR's default is x_steps=200")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1] (the share of features moved first), got fraction={fraction!r}")
    if isinstance(max_dist, bool) or not isinstance(max_dist, (int, float, np.floating)) or not 0 <= max_dist <= 1:
        raise ValueError(
            f"max_dist must be in [0, 1] (0: the straight line; 1: anywhere in the box), got max_dist={max_dist!r}"
        )
    problem = prepare(f, x, baseline, target=target, args=args)
    static = _Static(int(steps), float(fraction), float(max_dist))
    attributions, delta = _guided_jit(static, problem)
    return (attributions, Info(delta=delta, n_evals=int(steps))) if return_info else attributions


def _schedule(steps: int, max_dist: float) -> np.ndarray:
    """Returns per-step ``[alpha_min, alpha_max, remaining L1 share]`` in float64, computed as PAIR does."""
    alpha = (np.arange(steps, dtype=np.float64) + 1.0) / steps
    return np.stack([np.maximum(alpha - max_dist, 0.0), np.minimum(alpha + max_dist, 1.0), 1 - alpha], axis=1)


def _max_rounds(n: int, fraction: float) -> int:
    """An upper bound on the moves of one step: each move that does not finish it sends the
    ``floor(fraction (n - 1)) + 1`` (or all remaining) lowest-|gradient| features to their bound."""
    lowest = int(np.floor((n - 1) * fraction)) + 1
    return math.ceil(n / lowest) + 2


def _walk_step(static: _Static, x: jax.Array, grad: jax.Array, start: jax.Array, end: jax.Array,
               l1_total: jax.Array, row: jax.Array) -> jax.Array:
    """Returns the point after one step of the guided walk from ``x`` (all arrays ``(B, n)``).

    PAIR's inner loop, per example: pull laggards up to ``alpha_min``; stop if the L1 target is met;
    else move the lowest-|gradient| features (excluding those at ``alpha_max``) towards ``x_max``, all
    the way (and repeat) or by the fraction ``gamma`` that meets the target (and stop).
    """
    alpha_min, alpha_max, share = row[0], row[1], row[2]
    diff = end - start
    x_min, x_max = start + diff * alpha_min, start + diff * alpha_max
    l1_target = l1_total * share
    n = x.shape[1]
    lowest = int(np.floor((n - 1) * static.fraction))  # np.quantile(..., method="lower")
    # PAIR compares L1 distances with math.isclose(rel_tol=1e-9); float32 sums need more room
    tol = max(1e-9, 32 * float(jnp.finfo(x.dtype).eps)) * l1_total
    safe_diff = jnp.where(diff != 0, diff, 1)

    def body(state):
        x, grad, active, rounds = state
        x_alpha = jnp.where(diff != 0, (x - start) / safe_diff, alpha_max)
        x = jnp.where(active[:, None] & (x_alpha < alpha_min), x_min, x)
        l1_current = jnp.sum(jnp.abs(x - end), axis=1)
        close = jnp.abs(l1_target - l1_current) <= tol
        grad = jnp.where(x == x_max, jnp.inf, grad)
        magnitude = jnp.abs(grad)
        threshold = jnp.sort(magnitude, axis=1)[:, lowest]
        chosen = (magnitude <= threshold[:, None]) & (grad != jnp.inf)
        l1_chosen = jnp.sum(jnp.where(chosen, jnp.abs(x - x_max), 0), axis=1)
        gamma = (l1_current - l1_target) / jnp.where(l1_chosen > 0, l1_chosen, 1)
        partial = gamma <= 1
        # a gap left only by rounding (gamma <= 0) moves nothing
        moved = jnp.where(partial[:, None], x + jnp.maximum(gamma, 0)[:, None] * (x_max - x), x_max)
        go = active & ~close & (l1_chosen > 0)
        x = jnp.where(go[:, None] & chosen, moved, x)
        return x, grad, go & ~partial, rounds + 1

    def cond(state):
        _, _, active, rounds = state
        return jnp.any(active) & (rounds < _max_rounds(n, static.fraction))

    active = jnp.ones(x.shape[:1], bool)
    x, _, _, _ = jax.lax.while_loop(cond, body, (x, grad, active, jnp.zeros((), jnp.int32)))
    return x


def _walk(static: _Static, model: Any, spec: TargetSpec, index: Any, x: jax.Array, baseline: jax.Array):
    """Returns ``(attributions, F(x'))`` of one target along each example's guided path."""
    shape, dtype = x.shape, x.dtype
    flat = lambda v: v.reshape(shape[0], -1)
    end, start = flat(x), flat(baseline)
    l1_total = jnp.sum(jnp.abs(end - start), axis=1)
    schedule = jnp.asarray(_schedule(static.steps, static.max_dist), dtype)

    def one_step(carry, row):
        point, attr = carry
        value, grad = value_and_gradient(model, spec, index, point.reshape(shape))
        grad = flat(grad)
        # The path is chosen by comparisons (piecewise constant in f's parameters): walk it on
        # values only, so reverse-mode differentiation sees a fixed path and the gradients along it.
        after = _walk_step(static, jax.lax.stop_gradient(point), jax.lax.stop_gradient(grad),
                           jax.lax.stop_gradient(start), jax.lax.stop_gradient(end),
                           jax.lax.stop_gradient(l1_total), row)
        return (after, attr + (after - point) * grad), value

    (_, attr), values = jax.lax.scan(one_step, (start, jnp.zeros_like(start)), schedule)
    return attr.reshape(shape).astype(dtype), values[0]


def _guided_impl(static: _Static, problem: Problem):
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    baseline = problem.full_baseline()
    if spec.multi:  # one walk per output ("all", or the outputs of jaxig.outputs)
        ids = index if spec.kind == "outputs" else jnp.arange(n_outputs(problem.out_struct))
        batch = problem.batch
        walk_k = lambda i: _walk(static, model, TargetSpec("index"), jnp.full((batch,), i, jnp.int32), x, baseline)
        attributions, f_start = jax.vmap(walk_k)(ids)
    else:
        attributions, f_start = _walk(static, model, spec, index, x, baseline)
    # one forward pass more than the walk's: cheap enough to keep one compiled program with and without info
    delta = completeness_gap(attributions, select(spec, model(x), index), f_start, spec.multi)
    return attributions, delta


_guided_jit = jax.jit(_guided_impl, static_argnums=0)
