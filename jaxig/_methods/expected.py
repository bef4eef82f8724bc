"""Attributions against a *distribution* of baselines: expected gradients (random) and its deterministic twin.

``expected_gradients`` is the Monte Carlo estimator of Erion et al. (Captum's ``GradientShap``): one
random reference, one random alpha (and optional input noise) per draw. ``expected_integrated_gradients``
computes the same expectation over the alphas with any quadrature rule and averages exactly over the
given references: the mean of ``integrated_gradients(f, x, b_r)`` over ``r``, in bounded memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as _checks
from .._gradients import value_and_gradient
from .._info import Info, completeness_gap
from .._paths.base import AbstractPath
from .._paths.straight import StraightLine
from .._problem import Problem, prepare
from .._pytree import Module
from .._quadrature.accumulate import check_batch_size
from .._quadrature.autobatch import auto_alpha_batch_size
from .._quadrature.base import AbstractRule
from .._quadrature.gauss import GaussLegendre
from .._quadrature.random import AbstractRandomRule
from .._targets import select
from .integrated import _ig_impl
from .integrated import _Static as _IGStatic

__all__ = ["ExpectedGradientsDraws", "expected_gradients", "expected_integrated_gradients"]

_DEFAULT_SAMPLES = 5  # Captum's GradientShap default


class ExpectedGradientsDraws(Module):
    """The random numbers of :func:`expected_gradients`, to fix or inject them (e.g. to match Captum).

    Attributes:
      index: int ``(B, n_samples)``: the row of ``baselines`` that draw ``s`` of example ``b`` uses.
      alpha: float ``(B, n_samples)``: the position on the line, ``point = alpha x~ + (1 - alpha) b``.
      noise: ``None``, or a pytree like ``x`` whose leaves have shape ``(B, n_samples) + x.shape[1:]``:
        the noise *itself* (already scaled) added to ``x`` in that draw, ``x~ = x + noise``.

    Captum draws row ``b * n_samples + s`` for draw ``s`` of example ``b``: its flat index, alpha and
    noise arrays reshape to these fields with ``.reshape(B, n_samples, ...)``.
    """

    index: Any
    alpha: Any
    noise: Any = None


@dataclasses.dataclass(frozen=True)
class _EGStatic:
    n_samples: int
    multiply_by_inputs: bool
    sample_batch_size: int | None
    with_info: bool
    draw: bool  # draw index/alpha/noise from the key inside the program (else they were injected)
    has_noise: bool


@dataclasses.dataclass(frozen=True)
class _EIGStatic:
    ig: _IGStatic
    baseline_batch_size: int | None
    keyed: bool


def expected_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baselines: Any,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    n_samples: int | None = None,
    stdev: Any = 0.0,
    draws: ExpectedGradientsDraws | None = None,
    multiply_by_inputs: bool = True,
    sample_batch_size: int | None = None,
    return_info: bool = False,
) -> Any:
    """Returns the expected gradients of ``f`` at ``x`` (a pytree shaped like ``x``), a Monte Carlo estimate.

    For example ``x`` and reference distribution ``D`` (the rows of ``baselines``, or a sampler):

        EG_i(x) = E_{b ~ D, a ~ U[0,1], e ~ N(0, stdev^2)} [ (x~_i - b_i) dF(b + a (x~ - b)) / dx_i ],
        x~ = x + e,

    estimated with ``n_samples`` draws per example, each a uniformly random row ``b`` of
    ``baselines``, ``a ~ U[0, 1)`` and Gaussian noise ``e``:

        EG_i(x) ~ 1/n sum_s (x~_s,i - b_s,i) dF(a_s x~_s + (1 - a_s) b_s) / dx_i.

    This is Captum's ``GradientShap`` draw for draw (same noise placement, same point
    ``a x~ + (1 - a) b``, same multiplier ``x~ - b``); with ``stdev=0`` and one reference it is
    Integrated Gradients with Monte Carlo alphas. For pytree inputs one reference row serves every
    leaf (Captum draws a separate row per input tensor). Erion, Janizek, Sturmfels, Lundberg and Lee,
    "Improving performance of deep learning models with axiomatic attribution priors and expected
    gradients", Nature Machine Intelligence 2021; Lundberg and Lee, NeurIPS 2017 (GradientSHAP).

    Args:
      f: maps a batch to outputs ``(B,)`` or ``(B, K)`` (see :func:`jaxig.integrated_gradients`).
      x: a float array or pytree of float arrays with the leading batch axis ``B``.
      baselines: the reference distribution: a pytree like ``x`` whose leaves have shape
        ``(R,) + x.shape[1:]`` (``R >= 1`` reference examples, drawn uniformly with replacement), or
        a sampler ``sampler(key, n) -> references`` returning such a pytree with ``R = n``. The
        sampler is called once with ``n = B * n_samples``; row ``b * n_samples + s`` is draw ``s``
        of example ``b``.
      target: which output to explain (``None``, int, int array ``(B,)``, callable, or ``"all"``,
        which adds a leading ``K`` axis).
      args: extra arguments of ``f``, called as ``f(x, *args)``.
      key: a PRNG key, required unless ``draws`` is given. Split it for fresh draws.
      n_samples: draws per example (default 5, Captum's default; the error shrinks like
        ``n_samples ** -0.5``). With ``draws`` it defaults to their size.
      stdev: standard deviation of the Gaussian noise added to ``x`` in each draw: a non-negative
        float, or a pytree like ``x`` of floats (one per leaf, like Captum's tuple of ``stdevs``).
      draws: an :class:`ExpectedGradientsDraws` to use instead of drawing from ``key`` (tests,
        cross-checks, common random numbers). Only with an array of ``baselines``; with a sampler,
        sample the references yourself and pass them with ``index = arange(B * n).reshape(B, n)``.
      multiply_by_inputs: ``False`` returns the mean gradient without the factor ``x~ - b``.
      sample_batch_size: evaluate at most this many draws at once and accumulate (bounded memory).
        ``None`` chooses chunks whose intermediates stay near 64 MiB, as ``integrated_gradients``.
      return_info: return ``(attributions, info)``: ``info.delta`` ``(B,)`` (``(K, B)`` for "all") is
        ``sum(attributions) - mean_s (F(x~_s) - F(b_s))``, a Monte Carlo residual with mean zero
        that shrinks like ``n_samples ** -0.5`` (``None`` with ``multiply_by_inputs=False``);
        ``info.error`` is the standard error of each attribution (``None`` for one draw);
        ``info.n_evals`` is ``n_samples``.

    Returns:
      The attributions (with a leading ``K`` axis for ``target="all"``), or ``(attributions, info)``.

    Raises:
      ValueError: no ``key`` and no ``draws``; ``n_samples < 1``; a negative ``stdev``; baselines
        without the leading reference axis, with ``R = 0`` or leaves disagreeing on ``R``; a sampler
        returning the wrong structure or shapes; ``draws`` of the wrong shapes, or with a sampler, or
        with ``stdev > 0`` (the noise is then in ``draws.noise``); plus every error of
        :func:`jaxig.integrated_gradients` about ``f``, ``x`` and ``target``.
      TypeError: non-numeric baselines; a non-integer ``n_samples``; a ``draws`` of the wrong type.

    Works under ``jax.jit`` and ``jax.vmap`` (e.g. over keys) and is differentiable with respect to
    parameters closed over by ``f``.
    """
    if draws is not None and not isinstance(draws, ExpectedGradientsDraws):
        raise TypeError(f"draws must be a jaxig.ExpectedGradientsDraws or None, got {type(draws).__name__}")
    if sample_batch_size is not None:
        _check_count("sample_batch_size", sample_batch_size)
    problem = prepare(f, x, None, target=target, args=args)
    x, batch = problem.x, problem.batch
    if draws is not None:
        n_drawn = tuple(np.shape(draws.alpha))[1:2]
        if n_samples is not None and n_drawn and n_drawn[0] != n_samples:
            raise ValueError(f"n_samples={n_samples} but draws hold {n_drawn[0]} samples per example; "
                             "leave n_samples out to use the draws' size")
        n_samples = n_drawn[0] if n_drawn else n_samples
    n_samples = _DEFAULT_SAMPLES if n_samples is None else n_samples
    _check_count("n_samples", n_samples)
    stdevs = _check_stdev(stdev, x)
    has_noise = any(s > 0 for s in stdevs)

    if _is_sampler(baselines):
        if draws is not None:
            raise ValueError(
                "draws= indexes an array of baselines, but baselines is a sampler; sample the "
                f"references yourself, refs = sampler(key, {batch * n_samples}), and pass "
                f"baselines=refs with draws.index = jnp.arange({batch * n_samples}).reshape({batch}, {n_samples})"
            )
        _require_key(key, "expected_gradients")
        key, sample_key = jax.random.split(key)
        refs = baselines(sample_key, batch * n_samples)
        refs = _check_distribution(refs, x, "sampler(key, n) returned references", expect_r=batch * n_samples)
        draws = ExpectedGradientsDraws(index=jnp.arange(batch * n_samples, dtype=jnp.int32).reshape(batch, n_samples),
                                       alpha=None)
        # index is fixed; alpha and noise still come from the key inside the program
        static_draw, key_in = True, key
    else:
        refs = _check_distribution(baselines, x, "baselines")
        if draws is None:
            _require_key(key, "expected_gradients")
            static_draw, key_in = True, key
        else:
            if has_noise:
                raise ValueError(f"stdev={stdev!r} with draws=: the noise is draws.noise itself; pass stdev=0.0")
            _check_draws(draws, x, batch, n_samples, _n_refs(refs))
            static_draw, key_in = False, None
            has_noise = draws.noise is not None

    static = _EGStatic(int(n_samples), bool(multiply_by_inputs), sample_batch_size,
                       bool(return_info), static_draw, has_noise)
    stdev_arrays = tuple(jnp.asarray(s, problem.dtype) for s in stdevs)
    attributions, delta, error = _eg_jit(static, problem, refs, draws, key_in, stdev_arrays)
    if return_info:
        return attributions, Info(delta=delta, n_evals=int(n_samples), error=error)
    return attributions


def _eg_impl(static: _EGStatic, problem: Problem, refs: Any, draws: Any, key: Any, stdevs: tuple):
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    batch, n, dtype = problem.batch, static.n_samples, problem.dtype
    if static.draw:
        draws = _draw(key, draws, refs, x, batch, n, dtype, stdevs if static.has_noise else None)
    # draws lead with (B, n); the loop runs over n, so put the sample axis first
    per_sample = (jnp.swapaxes(draws.index, 0, 1), jnp.swapaxes(draws.alpha.astype(dtype), 0, 1),
                  None if draws.noise is None else jax.tree.map(lambda e: jnp.swapaxes(e, 0, 1), draws.noise))

    def one_draw(rows, alpha, noise):
        ref = jax.tree.map(lambda r: r[rows], refs)
        x_tilde = x if noise is None else jax.tree.map(lambda xi, e: xi + e.astype(xi.dtype), x, noise)
        point = jax.tree.map(lambda xi, bi: _lead(alpha, xi) * xi + (1 - _lead(alpha, xi)) * bi, x_tilde, ref)
        _, grad = value_and_gradient(model, spec, index, point)
        diff = jax.tree.map(jnp.subtract, x_tilde, ref)
        attr = jax.tree.map(jnp.multiply, grad, diff) if static.multiply_by_inputs else grad
        out = {"attr": attr}
        if static.with_info and n > 1:
            out["sq"] = jax.tree.map(jnp.square, attr)
        if static.with_info and static.multiply_by_inputs:
            out["gap"] = select(spec, model(x_tilde), index) - select(spec, model(ref), index)
        return out

    batch_size = static.sample_batch_size
    if batch_size is None:
        batch_size = auto_alpha_batch_size(model, x, n)
    sums = _chunked_sum(jax.vmap(one_draw), per_sample, n, batch_size)
    attributions = jax.tree.map(lambda t, xi: (t / n).astype(xi.dtype), sums["attr"], x)
    delta = error = None
    if static.with_info:
        if static.multiply_by_inputs:
            gap = sums["gap"] / n
            delta = completeness_gap(attributions, gap, jnp.zeros_like(gap), spec.multi)
        if n > 1:
            # standard error of the mean from the sample variance (Bessel-corrected)
            error = jax.tree.map(lambda m, s: jnp.sqrt(jnp.maximum(s / n - m * m, 0) * n / (n - 1) / n).astype(m.dtype),
                                 attributions, sums["sq"])
    return attributions, delta, error


_eg_jit = jax.jit(_eg_impl, static_argnums=0)


def _draw(key, draws, refs, x, batch, n, dtype, stdevs):
    """Returns the draws for ``(B, n)``: uniform rows of ``refs`` (unless fixed), uniform alphas, noise.

    All of them come from one ``jax.random.uniform`` call (normals by Box-Muller): every separate
    PRNG call adds a threefry kernel, about a second of compile time each on a small CPU.
    """
    leaves, treedef = jax.tree.flatten(x)
    sizes = [int(np.prod(xi.shape[1:], dtype=np.int64)) for xi in leaves]
    n_pairs = -(-sum(sizes) // 2) if stdevs is not None else 0
    u = jax.random.uniform(key, (batch, n, 2 + 2 * n_pairs), dtype=dtype)
    if draws is not None and draws.index is not None:
        rows = draws.index
    else:
        n_refs = _n_refs(refs)
        rows = jnp.minimum(jnp.floor(u[..., 0] * n_refs).astype(jnp.int32), n_refs - 1)
    alpha = u[..., 1]
    noise = None
    if stdevs is not None:
        u1, u2 = 1 - u[..., 2:2 + n_pairs], u[..., 2 + n_pairs:]  # 1 - u lies in (0, 1]: no log(0)
        radius = jnp.sqrt(-2 * jnp.log(u1))
        normals = jnp.concatenate([radius * jnp.cos(2 * np.pi * u2), radius * jnp.sin(2 * np.pi * u2)], -1)
        offsets = np.cumsum([0] + sizes)
        noise = jax.tree.unflatten(treedef, [
            s * normals[..., lo:hi].reshape((batch, n) + xi.shape[1:]).astype(xi.dtype)
            for s, xi, lo, hi in zip(stdevs, leaves, offsets[:-1], offsets[1:])
        ])
    return ExpectedGradientsDraws(index=rows, alpha=alpha, noise=noise)


def expected_integrated_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baselines: Any,
    *,
    target: Any = None,
    args: Any = (),
    n_steps: int = 50,
    rule: AbstractRule = GaussLegendre(),
    path: AbstractPath = StraightLine(),
    key: Any = None,
    alpha_batch_size: int | None = None,
    baseline_batch_size: int | None = None,
    return_info: bool = False,
) -> Any:
    """Returns the mean over the given baselines of the Integrated Gradients of ``f`` at ``x``.

    With ``R`` references ``b_1..b_R`` (the rows of ``baselines``):

        EIG_i(x) = 1/R sum_r IG_i(x; b_r)
                 ~ 1/R sum_r (x_i - b_r,i) sum_k w_k dF(b_r + a_k (x - b_r)) / dx_i

    the expected gradients of :func:`expected_gradients` (``stdev = 0``) with the expectation over
    the references taken exactly and the one over alpha by the quadrature ``rule``: no sampling
    noise, and completeness against the mean reference output,
    ``sum_i EIG_i(x) = F(x) - 1/R sum_r F(b_r)`` up to the rule's error. Each term is
    :func:`jaxig.integrated_gradients` (same rules, paths and affine-prefix speed-up), vmapped over
    chunks of references. Erion et al., Nature Machine Intelligence 2021 (expected gradients);
    Sundararajan, Taly and Yan, ICML 2017 (IG).

    Args:
      f, x, target, args: as in :func:`jaxig.integrated_gradients`.
      baselines: a pytree like ``x`` whose leaves have shape ``(R,) + x.shape[1:]``, ``R >= 1``
        reference examples shared by every example of the batch. To average over a sampler's
        distribution, draw the references first: ``baselines = sampler(key, R)``.
      n_steps: nodes of the rule per reference.
      rule: an :class:`jaxig.AbstractRule`; a random rule (``MonteCarlo()``) needs ``key`` and draws
        fresh alphas for every reference.
      path: an :class:`jaxig.AbstractPath` from each reference to ``x``.
      key: a PRNG key for random rules; fixed rules ignore it.
      alpha_batch_size: alphas evaluated at once within one reference (see ``integrated_gradients``).
      baseline_batch_size: references evaluated at once (one ``vmap``), accumulated by a ``lax.scan``
        over chunks so memory does not grow with ``R``. ``None`` chooses chunks whose intermediates
        stay near 64 MiB (all references at once for convolutional models, as IG does for alphas).
      return_info: return ``(attributions, info)``: ``info.delta`` ``(B,)`` (``(K, B)`` for "all") is
        ``sum(attributions) - (F(x) - 1/R sum_r F(b_r))`` (for other paths ``b_r`` is the path's
        start); ``info.n_evals`` is ``n_steps * R``.

    Returns:
      The attributions (a pytree like ``x``, with a leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)``.

    Raises:
      ValueError: baselines without the leading reference axis, ``R = 0`` or leaves disagreeing on
        ``R``; a random rule without ``key``; ``n_steps`` below the rule's minimum; a bad batch size;
        plus every error of :func:`jaxig.integrated_gradients` about ``f``, ``x`` and ``target``.
      TypeError: a sampler (callable) as ``baselines``; non-numeric baselines; a rule or path of the
        wrong type.

    Works under ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (e.g. with respect to parameters of ``f``).
    """
    _checks.check_rule_and_path(rule, path)
    rule.check_steps(n_steps)
    check_batch_size(alpha_batch_size)
    if baseline_batch_size is not None:
        _check_count("baseline_batch_size", baseline_batch_size)
    if _is_sampler(baselines):
        raise TypeError(
            "expected_integrated_gradients averages over given references; draw them from the sampler "
            "first (baselines = sampler(key, R)), or use expected_gradients for a sampler"
        )
    keyed = isinstance(rule, AbstractRandomRule)
    if keyed:
        _require_key(key, f"expected_integrated_gradients with rule={type(rule).__name__}()")
    x_checked, _ = _checks.as_float_inputs(x)
    refs = _check_distribution(baselines, x_checked, "baselines")
    # the first reference stands in for the baseline so prepare() checks it like any baseline
    problem = prepare(f, x_checked, jax.tree.map(lambda r: r[0], refs), target=target, args=args)
    ig_static = _IGStatic(int(n_steps), True, alpha_batch_size, bool(return_info), type(rule), type(path))
    static = _EIGStatic(ig_static, baseline_batch_size, keyed)
    attributions, delta = _eig_jit(static, problem, rule, path, refs, key if keyed else None)
    if return_info:
        return attributions, Info(delta=delta, n_evals=int(n_steps) * _n_refs(refs))
    return attributions


def _eig_impl(static: _EIGStatic, problem: Problem, rule: AbstractRule, path: AbstractPath, refs: Any, key: Any):
    n_refs, n_steps = _n_refs(refs), static.ig.n_steps
    keys = jax.random.split(key, n_refs) if static.keyed else jnp.zeros((n_refs,))

    def one_reference(ref, k):
        attr, delta, _, _ = _ig_impl(static.ig, problem.replace(baseline=ref), rule, path, k if static.keyed else None)
        return {"attr": attr, "delta": delta} if static.ig.with_delta else {"attr": attr}

    batch_size = static.baseline_batch_size
    if batch_size is None:
        # as many references as keep n_steps alphas each within the budget one IG call uses
        per_chunk = auto_alpha_batch_size(problem.model, problem.x, n_steps * n_refs)
        batch_size = None if per_chunk is None else max(1, per_chunk // n_steps)
    sums = _chunked_sum(jax.vmap(one_reference), (refs, keys), n_refs, batch_size)
    attributions = jax.tree.map(lambda t, xi: (t / n_refs).astype(xi.dtype), sums["attr"], problem.x)
    delta = sums["delta"] / n_refs if static.ig.with_delta else None
    return attributions, delta


_eig_jit = jax.jit(_eig_impl, static_argnums=0)


def _chunked_sum(fn: Callable[..., Any], xs: tuple, n: int, batch_size: int | None) -> Any:
    """Returns ``sum_j fn(*xs)[j]`` over the leading axis ``n`` of ``xs``, ``batch_size`` rows at a time.

    ``fn`` maps arguments with a leading ``m`` axis to a pytree with a leading ``m`` axis. Chunks run in a
    ``lax.scan`` so memory is that of one chunk; the last chunk is padded with copies of the last row
    that are masked out of the sum.
    """
    if batch_size is None or batch_size >= n:
        return jax.tree.map(lambda v: jnp.sum(v, 0), fn(*xs))
    n_chunks = -(-n // batch_size)
    pad = n_chunks * batch_size - n
    padded = jax.tree.map(lambda v: jnp.concatenate([v, jnp.repeat(v[-1:], pad, 0)]) if pad else v, xs)
    chunks = jax.tree.map(lambda v: v.reshape((n_chunks, batch_size) + v.shape[1:]), padded)
    mask = (jnp.arange(n_chunks * batch_size) < n).reshape(n_chunks, batch_size)
    shapes = jax.eval_shape(fn, *jax.tree.map(lambda v: v[0], chunks))
    init = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], s.dtype), shapes)

    def step(total, chunk):
        part, keep = chunk
        out = fn(*part)
        summed = jax.tree.map(lambda v: jnp.tensordot(keep.astype(v.dtype), v, axes=(0, 0)), out)
        return jax.tree.map(jnp.add, total, summed), None

    total, _ = jax.lax.scan(step, init, (chunks, mask))
    return total


def _lead(a: jax.Array, leaf: jax.Array) -> jax.Array:
    """Returns the per-example ``a`` ``(B,)`` shaped to broadcast against ``leaf`` ``(B, ...)``."""
    return a.reshape(a.shape + (1,) * (leaf.ndim - 1)).astype(leaf.dtype)


def _is_sampler(baselines: Any) -> bool:
    return callable(baselines) and not hasattr(baselines, "shape")


def _n_refs(refs: Any) -> int:
    return jax.tree.leaves(refs)[0].shape[0]


def _check_distribution(baselines: Any, x: Any, what: str, expect_r: int | None = None) -> Any:
    """Returns ``baselines`` as a pytree like ``x`` with leaves ``(R,) + x.shape[1:]`` in ``x``'s dtypes.

    Raises ValueError for a structure or shape mismatch, ``R = 0``, leaves disagreeing on ``R`` or
    (for a sampler) ``R != expect_r``; TypeError for non-numeric leaves.
    """
    x_leaves, x_def = jax.tree_util.tree_flatten_with_path(x)
    if baselines is None or isinstance(baselines, (int, float)):
        raise ValueError(
            f"{what} must be a distribution of reference examples: a pytree like x whose leaves have "
            f"shape (R,) + x.shape[1:], got {baselines!r}; for a single baseline b of shape x.shape[1:] "
            "pass b[None], or use jaxig.integrated_gradients"
        )
    out, n_refs = [], None
    for name, xi, bi in _checks.pair_with_x(baselines, x, what,
                                            "pass references with the same keys/containers as x"):
        dtype = bi.dtype if hasattr(bi, "dtype") else np.result_type(bi)
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)) or dtype == jnp.bool_:
            raise TypeError(f"{name} has dtype {dtype}; references must hold real numbers")
        shape, per_example = tuple(np.shape(bi)), tuple(xi.shape[1:])
        if len(shape) != xi.ndim or shape[1:] != per_example:
            raise ValueError(
                f"{name} has shape {shape} but x has shape {tuple(xi.shape)}: references need a leading "
                f"reference axis R and x's per-example shape, i.e. shape (R,) + {per_example}; "
                + (f"a sampler(key, n) must return shape ({expect_r},) + {per_example} for n = {expect_r}"
                   if expect_r is not None else
                   f"for one baseline of shape {per_example} pass it as baseline[None] (R = 1)")
            )
        if n_refs is None:
            n_refs = shape[0]
        elif shape[0] != n_refs:
            raise ValueError(f"{name} has {shape[0]} references but the first leaf has {n_refs}; every leaf "
                             "needs the same leading reference axis R")
        out.append(jnp.asarray(bi, dtype=xi.dtype))
    if n_refs == 0:
        raise ValueError(f"{what} holds R = 0 references; pass at least one reference example")
    if expect_r is not None and n_refs != expect_r:
        raise ValueError(f"{what} with R = {n_refs} rows for n = {expect_r}; a sampler(key, n) must return "
                         f"n references (leaves of shape ({expect_r},) + x.shape[1:])")
    return jax.tree_util.tree_unflatten(x_def, out)


def _check_draws(draws: ExpectedGradientsDraws, x: Any, batch: int, n: int, n_refs: int) -> None:
    want = (batch, n)
    for name, value in (("index", draws.index), ("alpha", draws.alpha)):
        if value is None or tuple(np.shape(value)) != want:
            raise ValueError(f"draws.{name} has shape {None if value is None else tuple(np.shape(value))}; "
                             f"it needs shape (B, n_samples) = {want}")
    if not jnp.issubdtype(jnp.result_type(draws.index), jnp.integer):
        raise TypeError(f"draws.index must hold integer rows of baselines, got dtype {jnp.result_type(draws.index)}")
    if _checks.is_concrete(draws.index):
        rows = np.asarray(draws.index)
        if rows.size and (rows.min() < 0 or rows.max() >= n_refs):
            raise ValueError(f"draws.index holds rows in [{rows.min()}, {rows.max()}] but baselines has "
                             f"R = {n_refs} rows; indices must lie in [0, {n_refs})")
    if draws.noise is not None:
        for name, xi, ei in _checks.pair_with_x(draws.noise, x, "draws.noise", "pass noise shaped like x"):
            expect = want + tuple(xi.shape[1:])
            if tuple(np.shape(ei)) != expect:
                raise ValueError(f"{name} has shape {tuple(np.shape(ei))}; "
                                 f"it needs (B, n_samples) + x.shape[1:] = {expect}")


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}; pass e.g. {name}=16")


def _check_stdev(stdev: Any, x: Any) -> tuple[float, ...]:
    """Returns one non-negative float per leaf of ``x`` from a float or a pytree like ``x`` of floats."""
    n_leaves = len(jax.tree.leaves(x))
    if isinstance(stdev, (int, float, np.number)) and not isinstance(stdev, bool):
        values = (float(stdev),) * n_leaves
    else:
        leaves = jax.tree.leaves(stdev)
        if len(leaves) != n_leaves or not all(isinstance(s, (int, float, np.number)) for s in leaves):
            raise ValueError(f"stdev must be a float or a pytree like x with one float per leaf "
                             f"({n_leaves} leaves), got {stdev!r}")
        values = tuple(float(s) for s in leaves)
    bad = [s for s in values if not s >= 0]
    if bad:
        raise ValueError(f"stdev must be non-negative, got {bad[0]}; pass stdev=0.0 for no input noise")
    return values


def _require_key(key: Any, where: str) -> None:
    if key is None:
        raise ValueError(f"{where} draws at random and needs a PRNG key: pass key=jax.random.key(0), "
                         "and split the key for fresh draws")
