"""Split Integrated Gradients: IG over the unsaturated part of the path only.

Miglani, Kokhlikyan, Alsallakh, Martin and Reblitz-Richardson, "Investigating Saturation Effects in
Integrated Gradients", ICML 2020 Workshop on Human Interpretability (arXiv 2010.12697). Along the
path the output often reaches most of its final value early and then barely moves (saturates),
while gradients there still add up to a large share of IG; Split IG keeps the part of the integral
before the output has covered a given fraction of its change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as _checks
from .._gradients import gradient
from .._info import Info, completeness_gap
from .._paths.base import AbstractPath
from .._paths.checks import check_path, path_errors
from .._paths.straight import StraightLine
from .._problem import Problem, prepare
from .._quadrature.accumulate import check_batch_size
from .._quadrature.autobatch import auto_alpha_batch_size
from .._quadrature.base import AbstractRule
from .._quadrature.gauss import GaussLegendre
from .._targets import TargetSpec, n_outputs, select

__all__ = ["split_integrated_gradients"]

#: the split ratio of the authors' ImageNet experiments (notebooks/ImageNetSplitIG-Basic.ipynb)
DEFAULT_THRESHOLD = 0.95


@dataclasses.dataclass(frozen=True)
class _Static:
    n_steps: int
    n_search: int
    saturated: bool
    alpha_batch_size: int | None
    rule_type: type
    path_type: type


def split_integrated_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    threshold: Any = DEFAULT_THRESHOLD,
    saturated: bool = False,
    n_steps: int = 50,
    rule: AbstractRule = GaussLegendre(),
    path: AbstractPath = StraightLine(),
    n_search: int = 16,
    alpha_batch_size: int | None = None,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns the Split IG attributions of ``f`` at ``x`` (the unsaturated part), shaped like ``x``.

    With ``F`` the explained output along the path ``gamma`` and ``r = threshold``, the split point
    ``a*`` is the first ``a`` in [0, 1] where the output has covered the fraction ``r`` of its change,

        F(gamma(a*)) = F(x') + r (F(x) - F(x')),

    and the unsaturated attributions are IG over ``[0, a*]``:

        SplitIG_i(x) = integral_0^a* dF(gamma(a))/dgamma_i  gamma_i'(a) da
                     ~ a* sum_k w_k dF(gamma(a* t_k))/dgamma_i gamma_i'(a* t_k)

    (the rule's nodes ``t_k`` and weights ``w_k`` mapped onto ``[0, a*]``, per example). They sum to
    ``r (F(x) - F(x'))`` up to quadrature error. ``saturated=True`` returns the rest of IG, over
    ``[a*, 1]``, which sums to ``(1 - r) (F(x) - F(x'))``; the two parts add up to IG.

    The authors' reference computes IG with ``n`` right-Riemann nodes and splits the *sum* at the
    first node whose output exceeds ``F(x') + r (F(x) - F(x'))``, so its split point is only known
    to ``1/n``. Here ``a*`` is located inside the compiled program: ``F`` on a grid of
    ``n_search + 1`` equally spaced points finds the first grid interval where the fraction is
    reached (for outputs that decrease, "reached" means at or below the level), then bisection to
    the dtype's resolution; each part is then integrated with the rule's full accuracy. A crossing
    that starts and ends between two grid points is missed (raise ``n_search`` for outputs that
    oscillate along the path). Cost: ``n_steps`` gradients, ``n_search + ~20`` (float32) or
    ``~50`` (float64) forward passes, and two forward passes at the ends. Under ``jax.grad`` the split
    point moves with the parameters by the implicit function theorem
    (``da*/dtheta = -(dF/dtheta - dlevel/dtheta) / (dF/da)``), so gradients of the attributions with
    respect to parameters are those of the exact Split IG.

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`. ``target="all"``
        adds a leading ``K`` axis; each output has its own split point.
      threshold: the fraction ``r`` in [0, 1] of ``F(x) - F(x')`` that defines saturation (a float
        or an array ``(B,)``; traced, so new values compile nothing). Default 0.95, the ratio of
        the authors' ImageNet experiments. ``r = 1`` gives IG up to the first point where ``F``
        reaches ``F(x)``; ``r = 0`` gives zeros.
      saturated: return the saturated part (IG over ``[a*, 1]``) instead.
      n_steps: gradient evaluations for the part returned.
      rule: the quadrature rule, mapped onto the part's interval.
      path: the path from the baseline to ``x``.
      n_search: grid intervals of the search for the split point.
      alpha_batch_size: at most this many nodes at once (bounded memory); ``None`` chooses as
        :func:`jaxig.integrated_gradients` does.
      key: a PRNG key for random rules; fixed rules ignore it.
      return_info: return ``(attributions, info)``; ``info.delta`` is the completeness gap of the
        part: ``sum(attributions) - (F(gamma(a*)) - F(x'))`` (unsaturated) or
        ``sum(attributions) - (F(x) - F(gamma(a*)))`` (saturated), the quadrature error alone.

    Raises:
      ValueError: a ``threshold`` outside [0, 1] or of the wrong shape; ``n_search < 1``;
        ``n_steps`` below what the rule needs; a random rule without ``key`` (and the errors of
        :func:`jaxig.integrated_gradients` about ``f``, ``x`` and ``target``).
      TypeError: a rule or path of the wrong type; a non-boolean ``saturated``.

    Works under ``jax.jit`` (the split point is found in the compiled program), ``jax.vmap`` and
    ``jax.grad``.
    """
    _checks.check_rule_and_path(rule, path)
    rule.check_steps(n_steps)
    check_batch_size(alpha_batch_size)
    if not isinstance(saturated, bool):
        raise TypeError(f"saturated must be True or False, got {saturated!r}")
    if isinstance(n_search, bool) or not isinstance(n_search, (int, np.integer)) or n_search < 1:
        raise ValueError(f"n_search must be a positive int (grid intervals of the split search), got {n_search!r}")
    problem = prepare(f, x, baseline, target=target, args=args)
    ratio = jnp.asarray(threshold, problem.dtype)
    if ratio.ndim > 1 or (ratio.ndim == 1 and ratio.shape != (problem.batch,)):
        raise ValueError(
            f"threshold must be a number or an array of shape ({problem.batch},) (one per example), "
            f"got shape {ratio.shape}"
        )
    if _checks.is_concrete(ratio) and not bool(jnp.all((ratio >= 0) & (ratio <= 1))):
        raise ValueError(
            f"threshold must lie in [0, 1] (the fraction of F(x) - F(x') covered before saturation), "
            f"got {np.asarray(threshold)!r}; the authors use 0.95"
        )
    static = _Static(int(n_steps), int(n_search), saturated, alpha_batch_size, type(rule), type(path))
    attributions, delta, errors = _split_jit(static, problem, rule, path, key, ratio)
    if _checks.is_concrete(errors):
        check_path(path, errors)
    if return_info:
        return attributions, Info(delta=delta, n_evals=int(n_steps))
    return attributions


def _per_example(path: AbstractPath, alphas: jax.Array, x: Any, baseline: Any) -> tuple[Any, Any]:
    """Returns ``(gamma(alpha_b), gamma'(alpha_b))`` with a different alpha for each example ``b``."""
    if path.is_straight:
        point = jax.tree.map(lambda xi, bi: bi + _expand(alphas, xi).astype(xi.dtype) * (xi - bi), x, baseline)
        return point, jax.tree.map(jnp.subtract, x, baseline)

    def one(a, xi, bi):
        # the path sees a batch of one: a path written for batched inputs (a blur over axes 1..) still works
        up = lambda t: jax.tree.map(lambda v: v[None], t)
        point, tangent = path.value_and_derivative(a, up(xi), up(bi))
        return jax.tree.map(lambda v: v[0], (point, tangent))

    return jax.vmap(one)(alphas, x, baseline)


def _expand(scale: jax.Array, leaf: Any) -> jax.Array:
    return scale.reshape(scale.shape + (1,) * (leaf.ndim - scale.ndim))


def _bisection_steps(n_search: int, dtype: Any) -> int:
    """Halvings of a grid interval ``1 / n_search`` down to the dtype's resolution near 1."""
    return max(1, math.ceil(math.log2(1.0 / (n_search * float(jnp.finfo(dtype).eps))))) + 1


def _split_one(static: _Static, problem: Problem, spec: TargetSpec, index: Any, rule, path, key, ratio):
    """Split IG for one explained output per example (``spec`` is not ``"all"``)."""
    model, x = problem.model, problem.x
    baseline = problem.full_baseline()
    dtype = problem.dtype
    batch_size = static.alpha_batch_size
    if batch_size is None:
        batch_size = auto_alpha_batch_size(model, x, static.n_steps)
    explained = lambda point: select(spec, model(point), index)
    start, end = path(jnp.zeros((), dtype), x, baseline), path(jnp.ones((), dtype), x, baseline)
    f_start, f_end = explained(start), explained(end)
    level = f_start + ratio * (f_end - f_start)
    sign = jnp.where(f_end >= f_start, 1, -1).astype(dtype)
    reached = lambda values: sign * (values - level) >= 0
    value_at = lambda alphas: explained(_per_example(path, alphas, x, baseline)[0])

    # Coarse search: the first grid point where the fraction is reached (alpha = 1 always is).
    grid = jnp.linspace(0.0, 1.0, static.n_search + 1, dtype=dtype)
    on_grid = jax.lax.map(lambda a: explained(path(a, x, baseline)), grid, batch_size=batch_size)
    hit = reached(on_grid).at[-1].set(True)
    first = jnp.argmax(hit, axis=0)
    hi, lo = grid[first], grid[jnp.maximum(first - 1, 0)]

    def halve(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        now = reached(value_at(mid))
        return jnp.where(now, lo, mid), jnp.where(now, mid, hi)

    lo, hi = jax.lax.fori_loop(0, _bisection_steps(static.n_search, dtype), halve, (lo, hi))
    split = jax.lax.stop_gradient(hi)

    # The split point as a function of the parameters: a* solves F(gamma(a*)) = level, so
    # da*/dtheta = -(dF/dtheta - dlevel/dtheta) / (dF/da). Added as a zero-valued correction whose
    # derivative is exactly that (an implicit-function step), the value stays the searched one.
    f_split, slope = jax.jvp(value_at, (split,), (jnp.ones_like(split),))
    residual = f_split - level
    movable = (split > 0) & (slope != 0)
    step = jnp.where(movable, -residual / jnp.where(movable, jax.lax.stop_gradient(slope), 1), 0)
    split = split + (step - jax.lax.stop_gradient(step))

    lower, length = (split, 1 - split) if static.saturated else (jnp.zeros_like(split), split)

    def one(t):
        alphas = lower + t.astype(dtype) * length
        point, tangent = _per_example(path, alphas, x, baseline)
        grads = gradient(model, spec, index, point)
        return jax.tree.map(lambda g, d: g * d * _expand(length, g).astype(g.dtype), grads, tangent)

    total = rule.integrate(jax.vmap(one), static.n_steps, dtype=dtype, alpha_batch_size=batch_size, key=key)
    total = jax.tree.map(lambda t, xi: t.astype(xi.dtype), total, x)
    hi_value, lo_value = (f_end, f_split) if static.saturated else (f_split, f_start)
    delta = completeness_gap(total, hi_value, lo_value, False)
    return total, delta, path_errors(path, x, baseline, start, end)


def _split_impl(static: _Static, problem: Problem, rule, path, key, ratio):
    spec = problem.target
    if not spec.multi:
        return _split_one(static, problem, spec, problem.index, rule, path, key, ratio)
    # Every output has its own split point, hence its own points on the path: one output at a time.
    ids = problem.index if spec.kind == "outputs" else jnp.arange(n_outputs(problem.out_struct))
    index_spec = TargetSpec("index")

    def for_output(j):
        index = jnp.full((problem.batch,), j, jnp.int32)
        return _split_one(static, problem, index_spec, index, rule, path, key, ratio)[:2]

    total, delta = jax.vmap(for_output)(ids)
    baseline = problem.full_baseline()
    dtype = problem.dtype
    start, end = path(jnp.zeros((), dtype), problem.x, baseline), path(jnp.ones((), dtype), problem.x, baseline)
    return total, delta, path_errors(path, problem.x, baseline, start, end)


_split_jit = jax.jit(_split_impl, static_argnums=0)
