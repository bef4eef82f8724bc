"""Exact Integrated Gradients for piecewise-linear functions (ReLU networks, CNNs with max-pooling)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from .. import _validate
from .._baselines import resolve_baseline
from .._gradients import value_and_gradient
from .._info import Info, completeness_gap
from .._jaxpr.pwl import linear_piece, not_piecewise_linear_reason
from .._problem import RowModel, lift_rows, prepare
from .._sharding import batch_sharding, place, put_global, replicated, to_host, with_leading_axes
from .._targets import TargetSpec, select

__all__ = ["exact_integrated_gradients", "ExactInfo"]

#: Deprecated name: :func:`exact_integrated_gradients` returns a :class:`jaxig.Info`.
ExactInfo = Info


@dataclasses.dataclass(frozen=True)
class _Static:
    target: TargetSpec
    # With x sharded over several devices: their mesh, and the mesh axes the batch is split over,
    # which each round's rows are split over in turn.
    mesh: Any = None
    row_axes: tuple = ()


def exact_integrated_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    multiply_by_inputs: bool = True,
    max_segments: int = 100_000,
    chunk_size: int = 1024,
    return_info: bool = False,
) -> Any:
    """Returns the exact Integrated Gradients of a piecewise-linear ``f`` along the straight line.

    Along ``p(a) = x' + a (x - x')`` a piecewise-linear ``F`` is affine on pieces
    ``[a_{j-1}, a_j]`` of [0, 1], so its gradient is constant there and

        IG_i = (x_i - x'_i) * sum_j (a_j - a_{j-1}) * dF/dx_i(p(m_j)),   m_j inside piece j.

    The pieces are found from ``f``'s jaxpr (ExactLine): at a point ``m`` every switch quantity
    ``z`` of a ``max``/``min``/``abs``/comparison/``clamp``/``reduce_max``/max-pool is affine in
    ``a`` on m's piece, ``z(a) = z(m) + (a - m) z'(m)`` (``z'`` from one forward-mode pass), so the
    piece ends at the nearest zero crossing ``m - z(m) / z'(m)`` on either side. Each gradient
    evaluation thus finds one whole piece; the rest of the interval is searched the same way. The
    result is exact up to floating-point rounding (completeness gap ~1e-12 in float64).

    Runs eagerly (a host loop over batched, compiled rounds); it cannot be traced by ``jax.jit``.
    Examples must not interact inside ``f``.

    Args:
      f: maps a batch to outputs ``(B,)`` or ``(B, K)``; piecewise linear in its input.
      x: float array or pytree of float arrays with a leading batch axis ``B``.
      baseline: ``None`` (zeros), a scalar, or a pytree like ``x`` (leaves ``x.shape``,
        ``(1,) + x.shape[1:]`` or ``x.shape[1:]``).
      target: as in :func:`jaxig.integrated_gradients` (``None``, int, int array, callable, ``"all"``).
      args: extra arguments of ``f``, ``f(x, *args)``; leaves with the leading batch axis ``B`` go
        with their example, others are shared (as in :func:`jaxig.integrated_gradients`).
      key: ignored (the method is deterministic); accepted so that every method takes one.
      multiply_by_inputs: ``False`` returns the path-averaged gradient without the ``x - x'`` factor.
      max_segments: raise if an example's path has more pieces than this.
      chunk_size: at most this many pieces are evaluated in one compiled call (bounds memory).
      return_info: also return a :class:`jaxig.Info` with ``n_segments`` (pieces per example),
        ``n_evals`` (gradient evaluations over the batch, one per piece), ``n_rounds`` (batched
        passes), ``breakpoints`` (one sorted float64 array of piece boundaries per example) and
        ``delta`` (the completeness gap; rounding only).

    Returns:
      Attributions shaped like ``x`` (leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)`` with ``return_info=True``.

    Raises:
      TypeError: ``f`` is not piecewise linear in its input (the message names the primitive, e.g.
        ``'tanh'``), ``f`` is not callable, inputs are not float, or ``x`` is a tracer.
      ValueError: bad baseline or target (see :func:`jaxig.integrated_gradients`), or more than
        ``max_segments`` pieces.

    Reference: Sotoudeh and Thakur, "Computing Linear Restrictions of Neural Networks",
    NeurIPS 2019; Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """
    for name, v in (("max_segments", max_segments), ("chunk_size", chunk_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    problem = prepare(f, x, baseline, target=target, args=args)
    x, batch, spec, index = problem.x, problem.batch, problem.target, problem.index
    if not _validate.is_concrete(x, problem.model):
        raise TypeError(
            "exact_integrated_gradients searches breakpoints in a host loop and cannot run under "
            "jax.jit/vmap/grad; call it on concrete arrays, or use adaptive_integrated_gradients"
        )
    half = [jnp.dtype(v.dtype).name for v in jax.tree.leaves(x) if jnp.finfo(v.dtype).bits < 32]
    if half:
        raise TypeError(
            f"exact_integrated_gradients needs float32 or float64 inputs, got {half[0]}: in half precision "
            "the piece boundaries round together (errors of 4-14% measured). Cast x (and half-precision "
            "weights) to float32"
        )
    baseline = resolve_baseline(problem.baseline, x)
    rows = lift_rows(f, problem)
    if spec.kind == "callable":
        # the target is part of the integrand: softmax of ReLU logits is not piecewise linear
        row_struct = jax.tree.map(lambda v: jax.ShapeDtypeStruct((1,) + v.shape[1:], v.dtype), x)
        model = rows.with_args(rows.first())
        target_fn = spec.fn
        assert target_fn is not None
        why = not_piecewise_linear_reason(lambda z: target_fn(model(z)), row_struct)
        if why is not None:
            raise TypeError(
                f"the target callable makes the explained output non-piecewise-linear ({why}); exact IG "
                "integrates piecewise-linear outputs only. Explain the logits (an int target, or a linear "
                "combination of outputs), or use adaptive_integrated_gradients for this target"
            )
    direction = jax.tree.map(jnp.subtract, x, baseline)
    # A sharded batch: the pending (example, interval) rows of each round are spread over the devices
    # that hold x, each reading the examples it needs from a full copy (x is small next to the work).
    where = batch_sharding(x)
    n_row_devices, row_sharding, static = 1, None, _Static(spec)
    if where is not None:
        baseline, direction, index, rows = jax.device_put((baseline, direction, index, rows), replicated(where))
        axes = where.spec[0] if len(where.spec) else None
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        n_row_devices = int(np.prod([where.mesh.shape[a] for a in axes], dtype=np.int64))
        row_sharding = NamedSharding(where.mesh, PartitionSpec(axes or None))
        static = _Static(spec, where.mesh, axes)
    dtype = jnp.result_type(*jax.tree.leaves(x))
    snap = 64 * float(jnp.finfo(dtype).eps)  # gaps below this are rounding, not pieces
    k_axis = spec.multi

    acc = None
    bounds: list[list[float]] = [[0.0, 1.0] for _ in range(batch)]
    n_segments = np.zeros(batch, dtype=np.int64)
    pend_idx = np.arange(batch)
    pend_lo, pend_hi = np.zeros(batch), np.ones(batch)
    n_evals = n_rounds = 0
    while pend_idx.size:
        n_rounds += 1
        new_idx, new_lo, new_hi = [], [], []
        for s in range(0, pend_idx.size, chunk_size):
            chunk = slice(s, s + chunk_size)
            idx, lo, hi = pend_idx[chunk], pend_lo[chunk], pend_hi[chunk]
            m = idx.size
            size = min(8 ** max(1, -(-(m - 1).bit_length() // 3)), chunk_size)  # few shapes to compile
            size = -(-size // n_row_devices) * n_row_devices
            pad = lambda a, extra=size - m: np.concatenate([a, np.repeat(a[-1:], extra)])  # noqa: E731
            put = (lambda a: put_global(a, row_sharding)) if row_sharding is not None else jnp.asarray
            left, right, grads = _round(static, rows, baseline, direction, index, put(pad(idx)),
                                        put(pad(lo).astype(dtype)), put(pad(hi).astype(dtype)))
            left = np.asarray(left, np.float64)[:m]
            right = np.asarray(right, np.float64)[:m]
            left = np.where(left - lo <= snap, lo, np.clip(left, lo, hi))
            right = np.where(hi - right <= snap, hi, np.clip(right, lo, hi))
            weight = right - left
            grads = jax.tree.map(lambda g: np.asarray(g, np.float64), grads)
            if acc is None:
                acc = jax.tree.map(lambda g: np.zeros(
                    (g.shape[0], batch) + g.shape[2:] if k_axis else (batch,) + g.shape[1:]), grads)
            for a, g in zip(jax.tree.leaves(acc), jax.tree.leaves(grads)):
                g = np.moveaxis(g, 1, 0) if k_axis else g
                w = weight.reshape((m,) + (1,) * (g.ndim - 1))
                np.add.at(np.moveaxis(a, 1, 0) if k_axis else a, idx, g[:m] * w)
            np.add.at(n_segments, idx, weight > 0)
            n_evals += m
            for i, lo_i, l_i, r_i, hi_i in zip(idx, lo, left, right, hi):
                bounds[i].extend((l_i, r_i))
                for a_, b_ in ((lo_i, l_i), (r_i, hi_i)):
                    if b_ > a_:
                        new_idx.append(i)
                        new_lo.append(a_)
                        new_hi.append(b_)
        if n_segments.max() > max_segments:
            raise ValueError(
                f"example {int(n_segments.argmax())} has more than max_segments={max_segments} "
                "linear pieces on its path; raise max_segments or use adaptive_integrated_gradients"
            )
        pend_idx = np.asarray(new_idx, dtype=np.int64)
        pend_lo, pend_hi = np.asarray(new_lo), np.asarray(new_hi)

    total = jax.tree.map(lambda a, d: a * np.asarray(d, np.float64) if multiply_by_inputs else a,
                         acc, direction)
    attributions = jax.tree.map(lambda t, xi: _like(np.asarray(t, xi.dtype), xi, k_axis), total, x)
    if not return_info:
        return attributions
    delta = None
    if multiply_by_inputs:
        f_x, f_b = (to_host(select(spec, problem.model(p), index)).astype(np.float64) for p in (x, baseline))
        delta = np.asarray(completeness_gap(jax.tree.map(np.asarray, total), f_x, f_b, k_axis))
    info = Info(n_segments=n_segments, n_evals=n_evals, n_rounds=n_rounds,
                breakpoints=tuple(np.unique(b) for b in bounds), delta=delta)
    return attributions, info


def _like(value: np.ndarray, xi: Any, k_axis: bool) -> jax.Array:
    """Returns ``value`` on the devices and with the sharding of the input leaf ``xi`` (``K`` in front)."""
    where = batch_sharding(xi)
    if where is None:
        return jnp.asarray(value)
    return put_global(value, with_leading_axes(where, int(k_axis), value.ndim))


_SPLIT = 0.5 - 1 / (8 * np.pi)


@functools.partial(jax.jit, static_argnums=0)
def _round(static: _Static, rows: RowModel, baseline, direction, index, idx, lo, hi):
    """Returns ``(left, right, grads)`` for rows ``(example idx, interval [lo, hi])``.

    The gradient is taken at ``m = lo + 0.46 (hi - lo)``; ``[left, right]`` is the linear piece
    that contains ``m``, clipped to ``[lo, hi]`` (``left = right = m`` when m sits on a kink).
    On a mesh, each device takes its block of rows (the examples they read are copied to every
    device) and the results are gathered onto every device for the host loop.
    """
    body = functools.partial(_round_rows, static.target)
    if static.mesh is None:
        return body(rows, baseline, direction, index, idx, lo, hi)
    rows_spec, full = PartitionSpec(static.row_axes or None), PartitionSpec()
    grads_spec = PartitionSpec(None, static.row_axes or None) if static.target.multi else rows_spec
    # check_vma=False: the lifted model is bound equation by equation, so JAX could not insert the
    # casts of its replicated weights that a varying-type check would ask for.
    out = jax.shard_map(body, mesh=static.mesh, in_specs=(full, full, full, full, rows_spec, rows_spec, rows_spec),
                        out_specs=(rows_spec, rows_spec, grads_spec), check_vma=False)(
        rows, baseline, direction, index, idx, lo, hi)
    return place(out, NamedSharding(static.mesh, full))


def _round_rows(spec: TargetSpec, rows: RowModel, baseline, direction, index, idx, lo, hi):
    base = jax.tree.map(lambda v: v[idx], baseline)
    d = jax.tree.map(lambda v: v[idx], direction)
    shared = spec.kind == "outputs"  # one (K,) index for every example; others are per example
    row_index = None if index is None else index if shared else index[idx][:, None]
    row_args = rows.take(idx)
    # Off-centre, so that round thresholds (a kink at exactly 1/2) are not hit by the first point.
    alpha = lo + _SPLIT * (hi - lo)
    row = jax.tree.map(lambda v: jax.ShapeDtypeStruct((1,) + v.shape[1:], v.dtype), baseline)

    def one(b, dd, a, lo_, hi_, args, i):
        model = rows.with_args(args)
        # A kink exactly at the evaluation point claims no piece: the two halves are searched instead.
        left, right = linear_piece(jax.make_jaxpr(model)(row), b, dd, a, lo_, hi_)
        point = jax.tree.map(lambda bb, v: (bb + a.astype(bb.dtype) * v)[None], b, dd)
        grads = value_and_gradient(model, spec, i, point)[1]
        squeeze = (lambda g: g[:, 0]) if spec.multi else (lambda g: g[0])
        return left, right, jax.tree.map(squeeze, grads)

    in_axes = (0, 0, 0, 0, 0, rows.axes(), None if index is None or shared else 0)
    left, right, grads = jax.vmap(one, in_axes=in_axes)(base, d, alpha, lo, hi, row_args, row_index)
    if spec.multi:  # (m, K, ...) -> (K, m, ...), the layout the accumulator expects
        grads = jax.tree.map(lambda g: jnp.moveaxis(g, 1, 0), grads)
    return left, right, grads
