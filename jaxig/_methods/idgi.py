"""IDGI: Integrated Gradients restricted to the important direction, on any path and with any rule.

Yang, Wang and Bilgic, "IDGI: A Framework to Eliminate Explanation Noise from Integrated
Gradients", CVPR 2023. At each point of the path only the component of the step along the
gradient changes the output; IDGI hands that change ``dF`` to the features in proportion to
``g_i^2 / ||g||^2``, discarding the orthogonal part of the step (the "noise" of IG).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .. import _validate as _checks
from .._gradients import gradient
from .._info import Info, completeness_gap
from .._paths.base import AbstractPath
from .._paths.checks import check_path, path_errors
from .._paths.straight import StraightLine
from .._problem import Problem, prepare
from .._quadrature.accumulate import check_batch_size
from .._quadrature.autobatch import auto_alpha_batch_size
from .._quadrature.base import AbstractRule, check_table
from .._quadrature.gauss import GaussLegendre
from .._targets import select

__all__ = ["idgi"]


@dataclasses.dataclass(frozen=True)
class _Static:
    n_steps: int
    finite_difference: bool
    alpha_batch_size: int | None
    with_delta: bool
    rule_type: type  # field-less rules of different classes share a treedef: the class keys the cache
    path_type: type


def feature_sum(tree: Any, lead: int) -> jax.Array:
    """Returns the sum over every feature axis of every leaf, keeping the first ``lead`` axes."""
    sums = [jnp.sum(v.reshape(v.shape[:lead] + (-1,)), -1) for v in jax.tree.leaves(tree)]
    return functools.reduce(jnp.add, sums)


def _expand(scale: jax.Array, leaf: jax.Array) -> jax.Array:
    return scale.reshape(scale.shape + (1,) * (leaf.ndim - scale.ndim))


def idgi(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    n_steps: int = 50,
    rule: AbstractRule = GaussLegendre(),
    path: AbstractPath = StraightLine(),
    finite_difference: bool = False,
    alpha_batch_size: int | None = None,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns the IDGI attributions of ``f`` at ``x``, a pytree shaped like ``x``.

    With ``g_k = grad F(gamma(a_k))`` at the rule's nodes ``a_k`` and ``dF_k`` the change of the
    explained output ``F`` attributed to node ``k``:

        IDGI_i(x) = sum_k g_k,i^2 / ||g_k||^2 * dF_k

    (``||g||^2`` sums over every feature of every leaf of one example; a node where the gradient
    vanishes contributes nothing). Two choices of ``dF_k``:

    * ``finite_difference=False`` (default), the derivative form: ``dF_k = w_k <g_k, gamma'(a_k)>``,
      the rule's estimate of ``dF/da`` times its weight. This is the continuous IDGI integral
      ``integral_0^1 g_i^2 / ||g||^2 dF(gamma(a))/da da`` with any rule, including random ones; the
      attributions sum to exactly what IG's do with the same rule, ``F(x) - F(x')`` up to the rule's
      quadrature error (reported in ``info.delta``).
    * ``finite_difference=True``, the paper's form: the sorted nodes cut [0, 1] into intervals
      ``[c_k, c_k+1]`` with ``c_1 = 0``, ``c_k = a_k`` (``k >= 2``) and ``c_n+1 = 1``, and
      ``dF_k = F(gamma(c_k+1)) - F(gamma(c_k))``; each gradient weighs the output change over the
      interval it opens (the first also covers ``[0, a_1]``). The changes telescope, so the
      attributions sum to ``F(x) - F(x')`` exactly, whatever the rule; the weights are unused.
      With ``rule=RiemannLeft()`` (nodes ``k / n``) this is Algorithm 1 of the paper: gradients
      at ``x' + k/n (x - x')``, ``k = 0 .. n-1``, and output differences between consecutive points
      up to ``x``. Costs ``n`` extra forward passes (the outputs at the nodes).

    On a linear model ``F = w.x + c`` both forms give ``IDGI_i = w_i^2 / ||w||^2 (F(x) - F(x'))``,
    whatever ``x - x'``: IDGI splits the output change along the gradient direction only, whereas IG
    gives ``w_i (x_i - x'_i)``.

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients` (``target="all"`` adds a
        leading ``K`` axis; each output is normalised by its own gradient's norm).
      n_steps: number of nodes (gradient evaluations).
      rule: the quadrature rule (its nodes; its weights in the derivative form).
      path: the path from the baseline to ``x`` (IDGI composes with any path: the paper applies it
        to IG, Guided IG and Blur IG).
      finite_difference: use the paper's output differences instead of the derivative form.
      alpha_batch_size: at most this many nodes at once (bounded memory); ``None`` chooses as
        :func:`jaxig.integrated_gradients` does.
      key: a PRNG key for random rules; fixed rules ignore it.
      return_info: return ``(attributions, info)``: ``info.delta`` is ``sum(attributions) -
        (F(x) - F(x'))`` per example (``(K, B)`` for ``"all"``; rounding only with
        ``finite_difference=True``), ``info.n_evals`` is ``n_steps``.

    Raises:
      TypeError: a rule or path of the wrong type (and :func:`jaxig.integrated_gradients`'s errors
        about ``f``, ``x`` and ``target``).
      ValueError: ``n_steps`` below what the rule needs, a bad ``alpha_batch_size``, a random rule
        without ``key``, a path that does not run from the baseline to ``x``.

    Works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (with respect to parameters of ``f``).
    """
    _checks.check_rule_and_path(rule, path)
    rule.check_steps(n_steps)
    check_batch_size(alpha_batch_size)
    if not isinstance(finite_difference, bool):
        raise TypeError(f"finite_difference must be True or False, got {finite_difference!r}")
    problem = prepare(f, x, baseline, target=target, args=args)
    static = _Static(int(n_steps), finite_difference, alpha_batch_size, bool(return_info), type(rule), type(path))
    attributions, delta, errors = _idgi_jit(static, problem, rule, path, key)
    if _checks.is_concrete(errors):
        check_path(path, errors)
    if return_info:
        return attributions, Info(delta=delta, n_evals=int(n_steps))
    return attributions


def _shares(grads: Any, change: jax.Array, lead: int) -> Any:
    """Returns ``g_i^2 / ||g||^2 * change`` leaf by leaf (zero where ``g = 0``)."""
    squares = jax.tree.map(jnp.square, grads)
    norm2 = feature_sum(squares, lead)
    safe = jnp.where(norm2 > 0, norm2, 1)
    scale = jnp.where(norm2 > 0, change / safe, 0)
    return jax.tree.map(lambda s: s * _expand(scale, s), squares)


def _node_sum(fn: Callable, xs: Any, batch_size: int | None) -> Any:
    """Returns ``sum_k fn(xs[k])`` for ``fn`` mapping a chunk ``(m, ...)`` to leaves with a leading ``m``.

    At most ``batch_size`` entries at once (a ``lax.scan`` over chunks); padding entries repeat the
    last one and are multiplied by zero, so they add nothing.
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    if batch_size is None or batch_size >= n:
        return jax.tree.map(lambda v: jnp.sum(v, 0), fn(xs))
    n_chunks = -(-n // batch_size)
    pad = n_chunks * batch_size - n
    keep = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))])
    xs = jax.tree.map(lambda v: jnp.concatenate([v, jnp.broadcast_to(v[-1:], (pad,) + v.shape[1:])]), xs)
    chunks = jax.tree.map(lambda v: v.reshape((n_chunks, batch_size) + v.shape[1:]), (xs, keep.reshape(-1)))

    def step(total, chunk):
        part, mask = chunk
        out = fn(part)
        out = jax.tree.map(lambda v: jnp.tensordot(mask.astype(v.dtype), v, axes=(0, 0)), out)
        return jax.tree.map(jnp.add, total, out), None

    shapes = jax.eval_shape(fn, jax.tree.map(lambda v: v[0], chunks[0]))
    init = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], s.dtype), shapes)
    return jax.lax.scan(step, init, chunks)[0]


def _idgi_impl(static: _Static, problem: Problem, rule: AbstractRule, path: AbstractPath, key):
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    baseline = problem.full_baseline()
    dtype = problem.dtype
    lead = 2 if spec.multi else 1
    start, end = path(jnp.zeros((), dtype), x, baseline), path(jnp.ones((), dtype), x, baseline)
    f_start, f_end = select(spec, model(start), index), select(spec, model(end), index)
    batch_size = static.alpha_batch_size
    if batch_size is None:
        batch_size = auto_alpha_batch_size(model, x, static.n_steps)

    if not static.finite_difference:
        def one(alpha):
            point, tangent = path.value_and_derivative(alpha, x, baseline)
            grads = gradient(model, spec, index, point)
            change = feature_sum(jax.tree.map(jnp.multiply, grads, tangent), lead)
            return _shares(grads, change, lead)

        total = rule.integrate(jax.vmap(one), static.n_steps, dtype=dtype, alpha_batch_size=batch_size, key=key)
    else:
        alphas, weights = rule.table(static.n_steps, key)
        check_table(rule, static.n_steps, alphas, weights)
        alphas = jnp.sort(jnp.asarray(alphas, dtype))
        value_at = lambda a: select(spec, model(path(a, x, baseline)), index)
        values = jax.lax.map(value_at, alphas, batch_size=batch_size)  # (n, B) or (n, K, B)
        upper = jnp.concatenate([values[1:], f_end[None]])
        lower = jnp.concatenate([f_start[None], values[1:]])

        def chunk(nodes):
            a, change = nodes
            return jax.vmap(lambda ai, ci: _shares(gradient(model, spec, index, path(ai, x, baseline)), ci, lead))(
                a, change)

        total = _node_sum(chunk, (alphas, upper - lower), batch_size)
    total = jax.tree.map(lambda t, xi: t.astype(xi.dtype), total, x)
    delta = completeness_gap(total, f_end, f_start, spec.multi) if static.with_delta else None
    return total, delta, path_errors(path, x, baseline, start, end)


_idgi_jit = jax.jit(_idgi_impl, static_argnums=0)
