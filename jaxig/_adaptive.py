"""Adaptive Integrated Gradients: globally adaptive Gauss–Kronrod with per-feature error control."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from ._baselines import resolve_baseline
from ._targets import TargetSpec, check_target_fits, cotangents, resolve_target

__all__ = ["adaptive_integrated_gradients", "AdaptiveInfo"]

# Gauss–Kronrod pairs on [-1, 1]: (Kronrod nodes, Kronrod weights, Gauss weights on the same nodes).
_K7 = np.array([0.960491268708020283423507092629080, 0.774596669241483377035853079956480,
                0.434243749346802558002071502844628, 0.0])
_WK7 = np.array([0.104656226026467265193823857192073, 0.268488089868333440728569280666710,
                 0.401397414775962222905051818618432, 0.450916538658474142345110087045571])
_WG3 = np.array([0.0, 5.0 / 9.0, 0.0, 8.0 / 9.0])
_K15 = np.array([0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
                 0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
                 0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
                 0.207784955007898467600689403773245, 0.0])
_WK15 = np.array([0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
                  0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
                  0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
                  0.204432940075298892414161999234649, 0.209482141084727828012999174891714])
_WG7 = np.array([0.0, 0.129484966168869693270611432679082, 0.0, 0.279705391489276667901467771423780,
                 0.0, 0.381830050505118944950369775488975, 0.0, 0.417959183673469387755102040816327])


def _symmetric(nodes, *weights):
    """Returns nodes on [0, 1] and weights summing to 1 from the non-negative half on [-1, 1]."""
    full = np.concatenate([-nodes[:-1], nodes[::-1]])
    ws = [np.concatenate([w[:-1], w[::-1]]) / 2.0 for w in weights]
    return ((full + 1.0) / 2.0, *ws)


_PAIRS = {7: _symmetric(_K7, _WK7, _WG3), 15: _symmetric(_K15, _WK15, _WG7)}


class AdaptiveInfo(NamedTuple):
    """What :func:`adaptive_integrated_gradients` did, per example.

    Attributes:
      n_evals: int ``(B,)``, gradient evaluations spent on each example.
      error: per-feature error estimate of the attributions, shaped like them.
      n_intervals: int ``(B,)``, the number of sub-intervals of [0, 1] at the end.
      converged: bool ``(B,)``, whether the tolerance was met within ``max_evals``.
    """

    n_evals: jax.Array
    error: Any
    n_intervals: jax.Array
    converged: jax.Array


@dataclasses.dataclass(frozen=True)
class _Static:
    f: Callable
    target: TargetSpec
    kronrod: int
    n_init: int
    max_evals: int


def adaptive_integrated_gradients(
    f: Callable[[Any], jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    rtol: float = 1e-3,
    atol: float = 0.0,
    max_evals: int = 2048,
    kronrod: int = 7,
    n_init: int = 1,
) -> tuple[Any, AdaptiveInfo]:
    """Returns ``(attributions, info)``: IG along the straight line, integrated adaptively.

    [0, 1] is split into intervals; on each, a Gauss–Kronrod rule gives the integral of every
    feature's gradient and the embedded Gauss rule an error estimate:

        I_j = sum_k wK_k g(a_k),   e_j = |I_j - sum_k wG_k g(a_k)|   (per feature, on interval j)
        attr_i = (x_i - x'_i) sum_j I_ji,   err_i = |x_i - x'_i| sum_j e_ji.

    While ``max_i err_i > atol + rtol * max_i |attr_i|`` the interval with the largest
    ``max_i |x_i - x'_i| e_ji`` is bisected, so evaluations go where the integrand changes
    (the kinks of a ReLU network, the transition of a saturating unit). Each example refines
    independently. The loop is a ``lax.while_loop`` over fixed-size buffers, so the function runs
    under ``jax.jit`` and ``jax.vmap``.

    ``|K - G|`` is an estimate, not a bound: when several kinks share an interval their effects on
    it can cancel. On a trained ReLU MLP (experiments/quadrature_benchmark.py) the true largest
    per-feature error exceeded ``rtol`` by up to 2x at ``rtol=1e-4``. For piecewise-linear ``f``,
    :func:`jaxig.exact_integrated_gradients` is exact and cheaper.

    Args:
      f: maps a batch to outputs ``(B,)`` or ``(B, K)``; examples must not interact.
      x: float array or pytree of float arrays with a leading batch axis ``B``.
      baseline: ``None`` (zeros), a scalar, or a pytree like ``x``.
      target: as in :func:`jaxig.integrated_gradients` (``"all"`` controls every output's error).
      rtol, atol: stop when every feature's error estimate is below ``atol + rtol * max |attr|``.
      max_evals: gradient evaluations allowed per example (sets the buffer sizes).
      kronrod: 7 (G3/K7, 7 evaluations per interval) or 15 (G7/K15, 15 per interval).
      n_init: number of equal intervals to start from.

    Returns:
      ``(attributions, info)``; attributions shaped like ``x`` (leading ``K`` axis for
      ``target="all"``), ``info`` an :class:`AdaptiveInfo` (evaluations counted per example).

    Raises:
      ValueError: bad baseline/target, ``kronrod`` not 7 or 15, ``max_evals`` below
        ``n_init * kronrod``, negative tolerances.

    Reference: Piessens et al., QUADPACK (1983), the globally adaptive strategy of QAG.
    """
    if not callable(f):
        raise TypeError(f"f must be a callable mapping a batch to outputs, got {type(f).__name__}")
    if kronrod not in _PAIRS:
        raise ValueError(f"kronrod must be 7 or 15 (Gauss–Kronrod G3/K7 or G7/K15), got {kronrod!r}")
    for name, v in (("max_evals", max_evals), ("n_init", n_init)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if max_evals < n_init * kronrod:
        raise ValueError(
            f"max_evals={max_evals} is below the {n_init * kronrod} evaluations of the first pass "
            f"(n_init={n_init} intervals x {kronrod} nodes); raise max_evals or lower n_init"
        )
    if _checks.is_concrete(rtol, atol) and (float(rtol) < 0 or float(atol) < 0):
        raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol}, atol={atol}")
    x, batch = _checks.as_float_inputs(x)
    baseline = resolve_baseline(baseline, x)
    spec, index = resolve_target(target, batch)
    out_struct = jax.eval_shape(f, x)
    _checks.check_output(out_struct, batch)
    check_target_fits(spec, out_struct)
    static = _Static(f, spec, int(kronrod), int(n_init), int(max_evals))
    return _adaptive(static, x, baseline, index, jnp.asarray(rtol), jnp.asarray(atol))


@functools.partial(jax.jit, static_argnums=0)
def _adaptive(static: _Static, x, baseline, index, rtol, atol):
    f, spec = static.f, static.target
    leaves, treedef = jax.tree.flatten(x)
    batch = leaves[0].shape[0]
    dtype = jnp.result_type(*leaves)
    direction = jax.tree.map(jnp.subtract, x, baseline)
    all_k = spec.kind == "all"

    def flat_grads(alpha):  # (B,) alphas, one per example -> (B, F) gradients
        point = jax.tree.map(lambda b, d: b + alpha.reshape((-1,) + (1,) * (b.ndim - 1)) * d,
                             baseline, direction)
        out, pullback = jax.vjp(f, point)
        ct = cotangents(spec, out, index)
        if all_k:
            g = jax.vmap(pullback)(ct)[0]  # leaves (K, B, ...)
            return jnp.concatenate([jnp.moveaxis(v, 0, 1).reshape(batch, -1) for v in jax.tree.leaves(g)], 1)
        return jnp.concatenate([v.reshape(batch, -1) for v in jax.tree.leaves(pullback(ct)[0])], 1)

    d_flat = jnp.concatenate([v.reshape(batch, -1) for v in jax.tree.leaves(direction)], 1)
    if all_k:
        n_out = out_struct_k(f, x)
        d_flat = jnp.concatenate([jnp.tile(v.reshape(batch, 1, -1), (1, n_out, 1)).reshape(batch, -1)
                                  for v in jax.tree.leaves(direction)], 1)
    d_abs = jnp.abs(d_flat)
    nodes, wk, wg = (jnp.asarray(t, dtype) for t in _PAIRS[static.kronrod])
    n_nodes = nodes.shape[0]

    def rule(lo, hi):  # (B,) intervals -> per-feature (B, F) integral and error estimate
        alphas = lo[None, :] + nodes[:, None] * (hi - lo)[None, :]
        g = jax.vmap(flat_grads)(alphas)  # (n_nodes, B, F)
        width = (hi - lo)[:, None]
        est_k = jnp.tensordot(wk, g, axes=(0, 0)) * width
        est_g = jnp.tensordot(wg, g, axes=(0, 0)) * width
        return est_k, jnp.abs(est_k - est_g)

    n_bisect = (static.max_evals - static.n_init * n_nodes) // (2 * n_nodes)
    size = static.n_init + n_bisect
    edges = jnp.linspace(0.0, 1.0, static.n_init + 1, dtype=dtype)
    lo0 = jnp.broadcast_to(edges[:-1, None], (static.n_init, batch))
    hi0 = jnp.broadcast_to(edges[1:, None], (static.n_init, batch))
    est0, err0 = jax.vmap(rule)(lo0, hi0)  # (n_init, B, F)
    pad = ((0, n_bisect), (0, 0))
    lo = jnp.pad(lo0, pad)
    hi = jnp.pad(hi0, pad)
    est = jnp.pad(est0, pad + ((0, 0),))
    err = jnp.pad(err0, pad + ((0, 0),))
    count = jnp.full((batch,), static.n_init)
    rows = jnp.arange(batch)

    def converged(state):
        _, _, est, err, _, _ = state
        attr = d_flat * est.sum(0)
        total = d_abs * err.sum(0)
        return jnp.max(total, 1) <= atol + rtol * jnp.max(jnp.abs(attr), 1)

    def active(state):
        return ~converged(state) & (state[5] < n_bisect)

    def cond(state):
        return jnp.any(active(state))

    def body(state):
        lo, hi, est, err, count, step = state
        live = active(state)
        worst = jnp.argmax(jnp.max(err * d_abs[None], 2), 0)  # (B,)
        a, b = lo[worst, rows], hi[worst, rows]
        mid = 0.5 * (a + b)
        est_l, err_l = rule(a, mid)
        est_r, err_r = rule(mid, b)
        slot = count

        def put(buf, left, right):
            new = buf.at[worst, rows].set(left).at[slot, rows].set(right)
            keep = live.reshape((1, batch) + (1,) * (buf.ndim - 2))
            return jnp.where(keep, new, buf)

        lo, hi = put(lo, a, mid), put(hi, mid, b)
        est, err = put(est, est_l, est_r), put(err, err_l, err_r)
        return lo, hi, est, err, count + live, step + live

    steps0 = jnp.zeros((batch,), jnp.int32)
    state = jax.lax.while_loop(cond, body, (lo, hi, est, err, count, steps0))
    _, _, est, err, count, steps = state

    def unflat(flat):
        out, start = [], 0
        for leaf in jax.tree.leaves(x):
            n = int(np.prod(leaf.shape[1:]))
            if all_k:
                k = n_out
                part = flat[:, start:start + k * n].reshape((batch, k) + leaf.shape[1:])
                out.append(jnp.moveaxis(part, 1, 0).astype(leaf.dtype))
                start += k * n
            else:
                out.append(flat[:, start:start + n].reshape(leaf.shape).astype(leaf.dtype))
                start += n
        return jax.tree.unflatten(treedef, out)

    attr = unflat(d_flat * est.sum(0))
    info = AdaptiveInfo(n_evals=n_nodes * (static.n_init + 2 * steps), error=unflat(d_abs * err.sum(0)),
                        n_intervals=count, converged=converged(state))
    return attr, info


def out_struct_k(f, x) -> int:
    shape = jax.eval_shape(f, x).shape
    return 1 if len(shape) == 1 else shape[1]
