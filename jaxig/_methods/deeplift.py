"""DeepLift (rescale rule) and DeepLiftSHAP for any JAX function, read from its jaxpr."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .. import _validate as _checks
from .._baselines import check_baseline
from .._info import Info, completeness_gap
from .._jaxpr.deeplift import rescale_linearize
from .._problem import Problem, prepare
from .._sharding import vary_like
from .._targets import cotangents, select

__all__ = ["deeplift", "deeplift_shap"]


@dataclasses.dataclass(frozen=True)
class _Static:
    """The settings that select a compiled program besides the problem's structure; hashed."""

    eps: float
    multiply_by_inputs: bool
    with_delta: bool


def _check_settings(eps):
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"eps must be a non-negative float (Captum's default is 1e-10), got {eps!r}")


def _multipliers(static: _Static, problem: Problem, reference: Any):
    """Returns ``(m, F(x), F(x'))``: DeepLift's multipliers (leading K for "all") and the explained outputs."""
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    program = model.program
    x_leaves, x_tree = jax.tree.flatten(x)
    r_leaves = jax.tree.leaves(reference)
    arg_leaves = jax.tree.leaves(model.args)

    def difference(t):
        outs, ref_outs, d_outs = rescale_linearize(
            program.jaxpr, model.consts, x_leaves + arg_leaves, r_leaves + arg_leaves,
            jax.tree.leaves(t) + [None] * len(arg_leaves), static.eps)
        unflat = lambda leaves: jax.tree.unflatten(program.out_tree, leaves)
        return unflat(d_outs), (unflat(outs), unflat(ref_outs))

    zeros = jax.tree.map(jnp.zeros_like, x)
    _, pullback, (out, ref_out) = jax.vjp(difference, zeros, has_aux=True)
    ct = vary_like(cotangents(spec, out, index), out)
    m = jax.vmap(pullback)(ct)[0] if spec.multi else pullback(ct)[0]
    return m, select(spec, out, index), select(spec, ref_out, index)


def _attributions(static: _Static, problem: Problem, reference: Any):
    m, f_x, f_ref = _multipliers(static, problem, reference)
    if static.multiply_by_inputs:
        m = jax.tree.map(lambda g, xi, ri: g * (xi - ri), m, problem.x, reference)
    return jax.tree.map(lambda a, xi: a.astype(xi.dtype), m, problem.x), f_x, f_ref


def _deeplift_impl(static: _Static, problem: Problem):
    attr, f_x, f_ref = _attributions(static, problem, problem.full_baseline())
    delta = completeness_gap(attr, f_x, f_ref, problem.all_k) if static.with_delta else None
    return attr, delta


def _shap_impl(static: _Static, problem: Problem, baselines: Any):
    def one(reference):
        reference = jax.tree.map(lambda r, xi: jnp.broadcast_to(r.astype(xi.dtype), xi.shape),
                                 reference, problem.x)
        return _attributions(static, problem, reference)

    attrs, f_x, f_refs = jax.vmap(one)(baselines)
    attr = jax.tree.map(lambda a: jnp.mean(a, axis=0), attrs)
    delta = None
    if static.with_delta:
        delta = completeness_gap(attr, f_x[0], jnp.mean(f_refs, axis=0), problem.all_k)
    return attr, delta


_deeplift_jit = jax.jit(_deeplift_impl, static_argnums=0)
_shap_jit = jax.jit(_shap_impl, static_argnums=0)


def deeplift(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    eps: float = 1e-10,
    multiply_by_inputs: bool = True,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns the DeepLift (rescale rule) attributions of ``f`` at ``x``, a pytree shaped like ``x``.

        DL_i(x) = m_i(x, x') * (x_i - x'_i),   sum_i DL_i = F(x) - F(x')   (summation-to-delta)

    with ``m = L^T e``, ``L`` the linear map of input differences to output differences obtained by
    running ``f`` on ``x`` and the baseline ``x'`` together and replacing the derivative of every
    elementwise nonlinearity ``y = g(z)`` by its secant ``(g(z) - g(z')) / (z - z')`` (its derivative
    ``g'(z)`` where ``|z - z'| < eps``, as Captum); linear layers keep their exact linear map and
    max-pooling follows Captum's rule. No layer list is registered: the rules are read from ``f``'s
    jaxpr (``jaxig._jaxpr.deeplift``), so any JAX function built from the supported primitives works
    (activations called as functions, ``jit``/``custom_jvp`` wrappers, Flax or Equinox modules).
    Shrikumar, Greenside and Kundaje, "Learning Important Features Through Propagating Activation
    Differences", ICML 2017; the rescale rule as implemented by Captum's ``DeepLift``.

    Args:
      f: maps a batch to outputs of shape ``(B,)`` or ``(B, K)`` (see
        :func:`jaxig.integrated_gradients`); examples must not interact.
      x: a float array or a pytree of float arrays with a leading batch axis ``B``.
      baseline: ``None`` (zeros), a scalar, or a pytree like ``x`` whose leaves have shape
        ``x.shape``, ``(1,) + x.shape[1:]`` or ``x.shape[1:]``.
      target: which output to explain: ``None``, an int, an int array ``(B,)``, a callable
        ``outputs -> (B,)`` or ``"all"`` (adds a leading ``K`` axis).
      args: extra arguments of ``f``, called as ``f(x, *args)``; the same for ``x`` and the baseline.
      eps: where ``|z - z'| < eps`` the secant is replaced by the gradient at ``x`` (Captum's ``eps``).
      multiply_by_inputs: ``False`` returns the multipliers ``m`` (Captum's ``multiply_by_inputs``).
      key: ignored (DeepLift is deterministic); accepted so that every method takes it.
      return_info: return ``(attributions, info)``; ``info.delta`` is ``sum_i DL_i - (F(x) - F(x'))``
        per example (``(K, B)`` for ``"all"``; ``None`` with ``multiply_by_inputs=False``), zero up
        to rounding and the ``eps`` fallbacks; ``info.n_evals`` is 1 (one modified backward pass).

    Raises:
      TypeError: ``f`` applies an unsupported primitive to an input-dependent value (``reduce_max``
        of a softmax, ``argmax``, ``sort``, control flow...; the message names it); the input,
        target and output errors of :func:`jaxig.integrated_gradients`.
      ValueError: a baseline whose structure or shapes do not match ``x``; a negative ``eps``; a bad
        target index.

    Runs under the caller's ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (every rule is differentiable
    in the weights); compiled once per structure of ``f``, settings and shapes.
    """
    _check_settings(eps)
    problem = prepare(f, x, baseline, target=target, args=args)
    static = _Static(float(eps), bool(multiply_by_inputs), bool(return_info and multiply_by_inputs))
    attributions, delta = _deeplift_jit(static, problem)
    if return_info:
        return attributions, Info(delta=delta, n_evals=1)
    return attributions


def _check_baselines(baselines: Any, x: Any) -> Any:
    """Returns the baselines as ``(R,) + x.shape[1:]`` or ``(R,) + x.shape`` arrays, or raises."""
    if baselines is None:
        raise ValueError("deeplift_shap needs baselines: a pytree like x whose leaves have a leading "
                         "axis of R reference examples, e.g. x_train[:16]")
    out = []
    pairs = _checks.pair_with_x(baselines, x, "baselines", "pass references with the same keys/containers as x")
    for _, xi, bi in pairs:
        bi = jnp.asarray(bi)
        xs, bs = tuple(jnp.shape(xi)), tuple(bi.shape)
        if bi.ndim == len(xs) and bs[1:] == xs[1:] and bs[0] >= 1:
            bi = bi[:, None]
        elif not (bi.ndim == len(xs) + 1 and bs[1:] == xs and bs[0] >= 1):
            raise ValueError(
                f"baselines leaf shape {bs} does not fit input shape {xs}; pass R reference examples "
                f"of shape (R,) + {xs[1:]} (shared by the batch) or (R,) + {xs} (per example)"
            )
        check_baseline(bi[0], xi)
        out.append(bi)
    return jax.tree.unflatten(jax.tree.structure(x), out)


def deeplift_shap(
    f: Callable[..., jax.Array],
    x: Any,
    baselines: Any,
    *,
    target: Any = None,
    args: Any = (),
    eps: float = 1e-10,
    multiply_by_inputs: bool = True,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns DeepLiftSHAP attributions: DeepLift averaged over ``R`` baselines, shaped like ``x``.

        DLS_i(x) = (1/R) sum_r DL_i(x; x'_r),   sum_i DLS_i = F(x) - (1/R) sum_r F(x'_r)

    an approximation of SHAP values with the baselines as background distribution (Lundberg and Lee,
    "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017; Captum's ``DeepLiftShap``).

    Args:
      baselines: a pytree like ``x`` whose leaves carry a leading axis of ``R`` reference examples:
        shape ``(R,) + x.shape[1:]`` (every example uses every reference, as Captum) or
        ``(R,) + x.shape`` (references per example).
      return_info: ``info.delta`` is ``sum_i DLS_i - (F(x) - mean_r F(x'_r))`` per example and
        ``info.n_evals`` is ``R``.
      The other arguments are those of :func:`deeplift`.

    Raises:
      ValueError: ``baselines`` missing, of another structure, or without the leading ``R`` axis.
      TypeError, ValueError: as :func:`deeplift`.
    """
    _check_settings(eps)
    baselines = _check_baselines(baselines, x)
    problem = prepare(f, x, None, target=target, args=args)
    baselines = jax.tree.map(lambda b, xi: b.astype(xi.dtype), baselines, problem.x)
    static = _Static(float(eps), bool(multiply_by_inputs), bool(return_info and multiply_by_inputs))
    attributions, delta = _shap_jit(static, problem, baselines)
    if return_info:
        return attributions, Info(delta=delta, n_evals=int(jax.tree.leaves(baselines)[0].shape[0]))
    return attributions
