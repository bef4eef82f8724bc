"""Integrated Hessians: pairwise feature interactions as the Integrated Gradients of Integrated Gradients.

Janizek, Sturmfels and Lee, "Explaining Explanations: Axiomatic Feature Interactions for Deep
Networks", JMLR 22 (2021). The interaction of features ``i`` and ``j`` is the IG (over alpha) of
feature ``j``'s effect on IG_i (over beta); the matrix's rows sum to IG and its entries to
``F(x) - F(x')``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._gradients import gradient
from .._info import Info, completeness_gap
from .._problem import Problem, prepare
from .._quadrature.accumulate import check_batch_size
from .._quadrature.autobatch import auto_alpha_batch_size
from .._quadrature.base import AbstractRule
from .._quadrature.gauss import GaussLegendre
from .._quadrature.random import AbstractRandomRule
from .._targets import select

__all__ = ["integrated_hessians"]

#: columns per chunk for convolutional models, whose per-pass memory the chunk sizing does not read
_CONV_COLUMNS = 8


@dataclasses.dataclass(frozen=True)
class _Static:
    n_steps: int
    inner_n_steps: int
    chunk_size: int
    alpha_batch_size: int | None
    with_delta: bool
    rule_type: type
    inner_rule_type: type


def integrated_hessians(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    n_steps: int = 16,
    rule: AbstractRule = GaussLegendre(),
    inner_n_steps: int | None = None,
    inner_rule: AbstractRule | None = None,
    chunk_size: int | None = None,
    alpha_batch_size: int | None = 1,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns the Integrated Hessians of ``f`` at ``x``: interactions of shape ``(B, D, D)``.

    With ``D = x - x'`` (per example) and ``F`` the explained output, along the straight line:

        Gamma_ij = D_i D_j  int_0^1 int_0^1 a b d2F/dx_i dx_j (x' + a b D) db da
                   + [i == j] D_i  int_0^1 int_0^1 dF/dx_i (x' + a b D) db da.

    This is ``Gamma_ij = D_j int_0^1 d IG_i(z) / dz_j |_(z = x' + a D) da`` with
    ``IG_i(z) = (z_i - x'_i) int_0^1 dF/dx_i (x' + b (z - x')) db``, the IG of IG; the second term
    on the diagonal is the product rule's derivative of the factor ``z_i - x'_i`` (the main effect).
    The outer integral (over ``a``) uses ``rule`` with ``n_steps`` nodes ``(a_m, v_m)``, the inner
    (over ``b``) ``inner_rule`` with ``inner_n_steps`` nodes ``(b_k, w_k)``:

        Gamma_ij ~ D_j sum_m v_m d/dz_j [ (z_i - x'_i) sum_k w_k dF/dx_i (x' + b_k (z - x')) ],
        z = x' + a_m D,

    which is exactly the double sum of the formula above with the product nodes. Properties that
    hold for the computed matrix: each row sums to ``IG_i`` up to the outer rule's error on
    ``d/da IG_i(x' + a D)`` (exactly when it is a polynomial the rule integrates, e.g. for a
    quadratic ``f``), and all entries sum to ``F(x) - F(x')`` up to quadrature error
    (``info.delta``). Symmetric for exact integration (``Gamma_ij = Gamma_ji`` off the diagonal).

    ReLU networks: their Hessian is zero almost everywhere; its mass sits on the kinks, which
    quadrature nodes never hit. Every off-diagonal interaction then comes out zero, and the
    diagonal is ``D_i int int dF/dx_i (x' + a b D)``, which is not IG: rows no longer sum to IG
    and ``info.delta`` is of the order of ``F(x) - F(x')`` itself. A ``RuntimeWarning`` says so
    when ``f`` is piecewise linear. As in the paper, replace ReLU by softplus
    (``jax.nn.softplus(beta * h) / beta``, close to ReLU for large ``beta``, which then needs more
    nodes) to measure interactions.

    Features: an array ``x`` of shape ``(B, ...)`` has ``D = prod(x.shape[1:])`` features in C
    order (the result indexes ``x.reshape(B, -1)``); a pytree ``x`` has its leaves' features
    concatenated in ``jax.tree.leaves`` order.

    Cost and memory: ``n_steps * inner_n_steps * D`` forward-over-reverse passes (a Hessian-vector
    product per column), taken ``chunk_size`` columns at a time. Peak memory is about
    ``alpha_batch_size * chunk_size * inner_n_steps`` times the memory of one forward-over-reverse
    pass of ``f`` at batch ``B``, plus the result (``B D^2`` values, ``K B D^2`` for ``"all"``);
    the ``(n_steps, inner_n_steps, B, D, D)`` array of all second derivatives is never formed.

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`; ``target="all"``
        returns ``(K, B, D, D)`` at ``K`` times the cost.
      n_steps, rule: nodes and rule of the outer integral (over ``a``). Default 16 Gauss–Legendre
        nodes, exact for polynomial ``f`` of degree up to 31 along the line.
      inner_n_steps, inner_rule: nodes and rule of the inner integral (over ``b``); default the
        outer ones.
      chunk_size: Hessian columns evaluated at once. ``None`` chooses the largest chunk whose
        ``chunk_size * inner_n_steps`` passes keep their intermediates near 64 MiB
        (``8`` columns for convolutional models).
      alpha_batch_size: outer nodes evaluated at once (default 1: one at a time); ``None``: all.
      key: a PRNG key for random rules (split between the two integrals); fixed rules ignore it.
      return_info: return ``(interactions, info)``; ``info.delta`` is ``sum_ij Gamma_ij -
        (F(x) - F(x'))`` per example (``(K, B)`` for ``"all"``); ``info.n_evals`` is
        ``n_steps * inner_n_steps * D`` (Hessian-vector products per example).

    Raises:
      TypeError: a rule of the wrong type (and :func:`jaxig.integrated_gradients`'s errors about
        ``f``, ``x`` and ``target``).
      ValueError: ``n_steps``/``inner_n_steps`` below what a rule needs; a bad ``chunk_size`` or
        ``alpha_batch_size``; a random rule without ``key``.

    Works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (third derivatives of ``f``).
    """
    inner_rule = rule if inner_rule is None else inner_rule
    inner_n_steps = n_steps if inner_n_steps is None else inner_n_steps
    for name, r in (("rule", rule), ("inner_rule", inner_rule)):
        if not isinstance(r, AbstractRule):
            raise TypeError(
                f"{name} must be an instance of jaxig.AbstractRule such as jaxig.GaussLegendre(), got {r!r}")
    rule.check_steps(n_steps)
    inner_rule.check_steps(inner_n_steps)
    check_batch_size(alpha_batch_size)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be None or a positive int (Hessian columns at once), got {chunk_size!r}")
    if key is None:
        for r in (rule, inner_rule):
            if isinstance(r, AbstractRandomRule):
                r.table(1, None)  # raises the rule's own "pass key=..." error
    problem = prepare(f, x, baseline, target=target, args=args)
    n_features = sum(math.prod(v.shape[1:]) for v in jax.tree.leaves(problem.x))
    if chunk_size is None:
        chunk_size = _auto_chunk(problem, int(inner_n_steps), n_features)
    _warn_if_piecewise_linear(problem)
    static = _Static(int(n_steps), int(inner_n_steps), min(int(chunk_size), n_features), alpha_batch_size,
                     bool(return_info), type(rule), type(inner_rule))
    interactions, delta = _hessians_jit(static, problem, rule, inner_rule, key)
    if return_info:
        return interactions, Info(delta=delta, n_evals=int(n_steps) * int(inner_n_steps) * n_features)
    return interactions


def _auto_chunk(problem: Problem, inner_n_steps: int, n_features: int) -> int:
    """Columns per chunk: ``chunk * inner_n_steps`` passes within the 64 MiB budget of the autobatcher."""
    per_budget = auto_alpha_batch_size(problem.model, problem.x, 2**62)  # None only for convolutions
    if per_budget is None:
        return min(n_features, _CONV_COLUMNS)
    return max(1, min(n_features, per_budget // inner_n_steps))


# (program, target) -> piecewise linear: read once per structure, as the completeness warning does
_PIECEWISE: dict = {}


def _warn_if_piecewise_linear(problem: Problem) -> None:
    from .._jaxpr.pwl import is_piecewise_linear

    spec = problem.target
    cache_key = (problem.model.program, spec)
    if cache_key not in _PIECEWISE:
        structs = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), problem.x)
        fn = spec.fn
        g = problem.model if fn is None else (lambda z: fn(problem.model(z)))
        _PIECEWISE[cache_key] = is_piecewise_linear(g, structs)
    if _PIECEWISE[cache_key]:
        warnings.warn(
            "jaxig: f is piecewise linear (ReLU, max, abs...): its Hessian is zero almost everywhere and "
            "concentrated on the kinks, which quadrature never hits, so Integrated Hessians gives zero "
            "interactions off the diagonal and a matrix that does not sum to F(x) - F(x') (its rows are "
            "not IG). Replace ReLU by softplus (Janizek et al. 2021) to measure interactions",
            RuntimeWarning, stacklevel=3)


def _flatten(tree: Any, dtype: Any) -> jax.Array:
    return jnp.concatenate([v.reshape(v.shape[0], -1).astype(dtype) for v in jax.tree.leaves(tree)], axis=1)


def _unflattener(like: Any) -> Callable[[jax.Array], Any]:
    leaves, treedef = jax.tree.flatten(like)
    sizes = [math.prod(v.shape[1:]) for v in leaves]
    cuts = np.cumsum(sizes)[:-1].tolist()

    def unflatten(flat):
        parts = jnp.split(flat, cuts, axis=-1)
        return jax.tree.unflatten(treedef, [p.reshape(p.shape[:-1] + v.shape[1:]).astype(v.dtype)
                                            for p, v in zip(parts, leaves)])

    return unflatten


def _hessians_impl(static: _Static, problem: Problem, rule: AbstractRule, inner_rule: AbstractRule, key):
    spec, index, dtype = problem.target, problem.index, problem.dtype
    unflatten = _unflattener(problem.x)
    model = lambda flat: problem.model(unflatten(flat))
    x, start = _flatten(problem.x, dtype), _flatten(problem.full_baseline(), dtype)
    diff = x - start
    n_features = x.shape[1]
    outer_key, inner_key = jax.random.split(key) if key is not None else (None, None)

    def ig(z):
        """IG_i(z) with the inner rule: (z - x') * sum_k w_k grad F(x' + b_k (z - x'))."""
        step = z - start
        summed = inner_rule.integrate(
            jax.vmap(lambda b: gradient(model, spec, index, start + b.astype(dtype) * step)),
            static.inner_n_steps, dtype=dtype, key=inner_key)
        return summed * step

    def columns(cols):
        """Gamma[..., :, cols] as (len(cols), ..., B, D); a column index D is padding (zero tangent)."""
        tangents = jax.nn.one_hot(cols, n_features, dtype=dtype)[:, None, :] * diff[None]

        def at_alpha(alpha):
            z = start + alpha.astype(dtype) * diff
            return jax.vmap(lambda t: jax.jvp(ig, (z,), (t,))[1])(tangents)

        return rule.integrate(jax.vmap(at_alpha), static.n_steps, dtype=dtype,
                              alpha_batch_size=static.alpha_batch_size, key=outer_key)

    c = static.chunk_size
    n_chunks = -(-n_features // c)
    cols = jnp.arange(n_chunks * c).reshape(n_chunks, c)  # indices >= D give zero tangents
    stacked = jax.lax.map(columns, cols)  # (n_chunks, c, [K,] B, D)
    stacked = stacked.reshape((n_chunks * c,) + stacked.shape[2:])[:n_features]
    interactions = jnp.moveaxis(stacked, 0, -1)  # ([K,] B, D, D): row i, column j

    delta = None
    if static.with_delta:
        f_x, f_start = select(spec, model(x), index), select(spec, model(start), index)
        delta = completeness_gap(interactions, f_x, f_start, spec.multi)
    return interactions, delta


_hessians_jit = jax.jit(_hessians_impl, static_argnums=0)
