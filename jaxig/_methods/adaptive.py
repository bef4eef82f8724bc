"""Adaptive Integrated Gradients with per-feature error control: kink-aware or Gauss–Kronrod."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.sharding import NamedSharding, PartitionSpec

from .. import _validate
from .._gradients import value_and_gradient
from .._info import Info, completeness_gap
from .._jaxpr.pwl import eval_with_switches, is_piecewise_linear, linear_piece
from .._problem import Problem, RowModel, lift_rows, prepare
from .._quadrature.autobatch import auto_alpha_batch_size
from .._quadrature.kronrod import NESTED_SIZES, PAIRS, nested_rules
from .._sharding import explicit_batch_axis, struct_like, vary_over, varying_axes
from .._targets import TargetSpec, n_explained, select
from .adaptive_modes import Auto, Kronrod, Piecewise, as_mode
from .adaptive_piecewise import integrate_piecewise, kink_switches, masked_set, smooth_piece

__all__ = ["adaptive_integrated_gradients", "AdaptiveInfo"]

#: Deprecated name: :func:`adaptive_integrated_gradients` returns a :class:`jaxig.Info`.
AdaptiveInfo = Info

@dataclasses.dataclass(frozen=True)
class _Static:
    target: TargetSpec
    mode: Any  # Kronrod or Piecewise
    max_evals: int
    max_intervals: int
    per_output: bool = False  # inside the vmap over the outputs of target="all" / jaxig.outputs


def adaptive_integrated_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    rtol: float = 1e-3,
    atol: float = 0.0,
    max_evals: int = 2048,
    max_intervals: int = 128,
    method: Any = Auto(),
    return_info: bool = False,
    warn: bool = True,
) -> Any:
    """Returns IG along the straight line integrated adaptively (with ``return_info``, ``(attr, info)``).

    With ``g_i(a) = dF/dx_i(x' + a (x - x')) (x_i - x'_i)``, ``attr_i = integral_0^1 g_i(a) da``.
    [0, 1] is split into intervals, each example on its own, until the per-feature error estimate
    meets ``max_i err_i <= atol + rtol * max_i |attr_i|`` (per output for ``target="all"``).

    ``method=Piecewise()`` (kink-aware; for ReLU/abs/max/max-pool networks) uses that ``g`` is
    piecewise constant and ``phi(a) = F(x' + a (x - x'))`` piecewise linear: one VJP gives ``phi``,
    ``g`` and the slope ``s = sum_i g_i``. With each evaluation at ``c`` it also reads, as
    :func:`jaxig.exact_integrated_gradients` does, c's whole linear piece ``[l, r]`` off the
    jaxpr's switch quantities (one forward-mode JVP, not counted in ``n_evals``; skipped when the
    jaxpr is not piecewise linear), which integrates exactly to ``g(c) (r - l)``. What is left are
    the *gaps* between known pieces (between points, when pieces are unknown), analysed from the
    data at their ends (``phi`` extended along each piece). A gap ``[a, b]`` is *resolved* when
    ``g(a) = g(b)`` and its chord matches the slope, ``|phi(b) - phi(a) - s(a) (b - a)| <= 64 eps
    scale`` (``scale`` = the example's largest ``|phi| + sum_i |g_i|`` seen); it integrates exactly
    to ``g(a) (b - a)``. Otherwise its value is the chord-consistent two-level model
    ``g(a) t + g(b) (w - t)``, ``w = b - a``, with ``t`` where the two end tangents cross (exact
    for a single kink; ``t = w / 2`` if the crossing is not inside), and it is split at that
    crossing. Without pieces, a point that lands on a kink is confirmed by one more evaluation within
    the kink's rounding width ``off = 2 * 64 eps scale / |s(b) - s(a)|``, since a tangent crossing
    can also fall inside the first or last piece of several kinks; intervals of width ``<= 2 off``
    around it count as resolved. Error estimates per feature: ``|g_i(b) - g_i(a)| w + |phi(b) -
    phi(a) - sum_i est_i|`` on open gaps, plus ``w max |g|`` (the largest ``|g_j|`` seen on the
    path, for every feature: a gap may hide pieces whose gradients neither end shows), a rounding
    term ``64 eps w (|g_i(a)| + |g_i(b)|)`` on resolved ones. Once every gap is resolved the result
    is exact to rounding (measured: about one evaluation per linear piece with pieces, as the exact
    method; 2 + about 3 without).

    ``method=Kronrod()`` (smooth ``f``) first applies the nested rules G1 < G3 < K7 < P15 to all of
    [0, 1] (Gauss 1 and 3 points, Kronrod 7, Patterson 15; each reuses every gradient of the one
    before, as QUADPACK's QNG), accepting rule ``Q_k`` (3, 7 or 15 evaluations) once the estimate
    ``e_i = |x_i - x'_i| |Q_k - Q_{k-1}|`` meets the tolerance. If P15 does not, it is discarded and
    [0, 1] is bisected (QAG): each interval ``j`` is integrated with a Gauss–Kronrod pair and its
    error estimated by the embedded Gauss rule, ``e_ji = |x_i - x'_i| |K_j - G_j|``, bisecting the
    interval with the largest ``max_i e_ji``. Where ``f`` has kinks before its smooth part (ReLU
    layers under a sigmoid head; read off the jaxpr as for the pieces above) an interval holding a
    kink gets the range of ``g`` on its nodes as its error, plus ``2 u max |g|`` for every feature
    (``u``: the width outside its middle's linear piece, where the nodes may miss whole pieces;
    ``max |g|``: the largest ``|g_j|`` seen on the path), and is split at the kink nearest its
    middle. Both estimates are the error of the *lower* rule, so
    for smooth integrands they overstate the accepted rule's error, often 10-1000x (measured on
    the benchmark's tanh/LSTM models); they are not scaled down (QUADPACK's
    ``min(1, (200 |K - G| / resasc)^1.5)`` heuristic is not used) so that they stay above it.

    ``method=Auto()`` (default) picks ``Piecewise()`` when ``f``'s jaxpr (composed with a callable
    target) is piecewise linear in the input, the same test :func:`jaxig.exact_integrated_gradients`
    applies, and ``Kronrod()`` otherwise.

    Limits of the estimates: they are estimates, not bounds. A hidden piece whose gradient
    exceeds every one seen on the path, or two kinks that cancel in the chord while per-feature
    gradients change (measure-zero coincidences), can still escape them. Measured on 60 random
    nets per kind (ReLU MLPs with ``Auto()`` and ``Kronrod()``, ReLU MLPs under a sigmoid head;
    6 examples each, float64, rtol 1e-2, 1e-3, 1e-4; ``tests/test_adaptive_honesty.py`` keeps the
    worst): no converged example over ``rtol``, the estimate above the true error everywhere
    (before the width terms: up to 26x ``rtol`` with a sigmoid head, 69x with ``Kronrod()`` on
    ReLU; they cost 0-11% more evaluations). ``f``
    must be continuous along the path (a jump, e.g. ``where(x > 0, x + 1, x)``, never resolves:
    the example is reported unconverged, with the jump in its error estimate).

    Memory does not grow with ``max_evals``: per example at most ``max_intervals`` intervals
    (``Kronrod``: each with its per-feature integral and error, 2 floats per feature) or points
    (``Piecewise``: each with its gradient, 1 float per feature) are held. ``Piecewise`` retires a
    gap once it is resolved (and a point once both its gaps are), so it can use many more
    evaluations than ``max_intervals``; ``Kronrod`` holds every interval it made. An example that
    needs more stops unconverged, with a warning to raise ``max_intervals``. Results do not depend
    on ``max_intervals`` while it suffices. ``target="all"`` integrates each output on its own
    (its own intervals and tolerance), a group of outputs at a time, so the buffers hold one
    output's gradients, not ``K`` of them. The loop is a ``lax.while_loop`` over these buffers, so
    the function runs under ``jax.jit`` and ``jax.vmap``.

    On a batch sharded over devices (``Auto`` or ``Explicit`` mesh) the result is the unsharded
    one, split like ``x``. Called per device inside ``jax.shard_map`` (``in_specs=P("batch")``),
    each device integrates its own block: refinement is per example, so an example gets the
    intervals it gets in the unsharded call, unless the smaller batch's float rounding flips a
    refinement decision; then per-device blocks choose different intervals, and the results agree
    with the unsharded call within the tolerance both meet (``atol + rtol * max |attr|`` per
    example).

    Args:
      f: maps a batch to outputs ``(B,)`` or ``(B, K)``; examples must not interact. Any callable
        (closure, NNX/Equinox module, ``Partial``): its arrays are inputs of the compiled program,
        so results follow its current weights (see :func:`jaxig.integrated_gradients`).
      x: float array or pytree of float arrays with a leading batch axis ``B``.
      baseline: ``None`` (zeros), a scalar, or a pytree like ``x``.
      target: as in :func:`jaxig.integrated_gradients` (``"all"`` controls every output's error).
      args: extra arguments of ``f``, ``f(x, *args)`` (leaves with the leading axis ``B`` go with
        their example).
      rtol, atol: stop when every feature's error estimate is below ``atol + rtol * max |attr|``
        (``Piecewise`` also stops when every interval is resolved).
      max_evals: gradient evaluations allowed per example (a compute budget; for ``target="all"``
        per output). Memory does not depend on it.
      max_intervals: intervals (``Kronrod``) or points (``Piecewise``) held at once per example:
        the memory, about ``max_intervals * 2`` (``Kronrod``) or ``* 1`` (``Piecewise``) floats per
        feature and example. Reaching it stops the example unconverged (with a warning).
      method: ``Auto()``, ``Piecewise(n_init=1)`` or ``Kronrod(pair=7, nested=True, n_init=1)``
        (the strings ``"auto"``, ``"piecewise"``, ``"kronrod"`` are shorthands for the defaults).
      return_info: return ``(attributions, info)``: a :class:`jaxig.Info` with ``n_evals`` (for
        ``target="all"`` single-output evaluations summed over the outputs),
        ``error`` (per feature, shaped like the attributions), ``n_intervals``, ``converged`` (per
        example) and ``delta`` (the completeness gap, two extra forward passes).
      warn: warn (``RuntimeWarning``, outside ``jit``) when an example did not converge within
        ``max_evals``, naming it; ``info.converged`` says the same.

    Returns:
      Attributions shaped like ``x`` (leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)`` with ``return_info=True``.

    Raises:
      ValueError: bad baseline/target, an unknown ``method``, ``max_evals`` below the first pass
        (3 with the nested start, else ``n_init * pair``; ``n_init + 1`` points for ``Piecewise``),
        ``max_intervals`` below what the first pass holds (``n_init`` intervals, ``n_init + 1``
        points), negative tolerances.

    Reference: Piessens et al., QUADPACK (1983), QNG and the globally adaptive strategy of QAG;
    Patterson, Math. Comp. 22 (1968); for piecewise-linear networks, Sotoudeh and Thakur,
    "Computing Linear Restrictions of Neural Networks", NeurIPS 2019.
    """
    mode = as_mode(method)
    for name, value in (("max_evals", max_evals), ("max_intervals", max_intervals)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    _check_tolerance("rtol", rtol)
    _check_tolerance("atol", atol)
    x, out_dtypes = _at_least_float32(x)
    if baseline is not None:
        baseline, _ = _at_least_float32(baseline)
    # prepare refuses a concrete out-of-range index before integrating (it would make the integrand
    # NaN, which never converges)
    problem = prepare(f, x, baseline, target=target, args=args)
    rows = lift_rows(f, problem)
    if isinstance(mode, Auto):
        mode = Piecewise() if _is_piecewise_linear(rows, problem.target, problem.x) else Kronrod()
    first = mode.first_pass()
    if max_evals < first:
        raise ValueError(
            f"max_evals={max_evals} is below the {first} evaluations of the first pass of "
            f"method={mode!r}; raise max_evals or lower n_init"
        )
    held, unit = _first_slots(mode)
    if max_intervals < held:
        raise ValueError(
            f"max_intervals={max_intervals} is below the {held} {unit} the first pass of method={mode!r} "
            "holds; raise max_intervals or lower n_init"
        )
    static = _Static(problem.target, mode, int(max_evals), int(max_intervals))
    attributions, info, full = _integrate(static, problem, rows, jnp.asarray(rtol, problem.dtype),
                                          jnp.asarray(atol, problem.dtype))
    attributions = _cast_like(attributions, out_dtypes)
    if warn and _validate.is_concrete(info.converged) and not np.all(np.asarray(info.converged)):
        bad = np.flatnonzero(~np.asarray(info.converged))
        n_full = int(np.sum(np.asarray(full)))
        cause = (f"within max_evals={max_evals}" if not n_full else
                 f"within max_evals={max_evals} and max_intervals={max_intervals} ({n_full} stopped "
                 f"because all {max_intervals} {unit} were in use: raise max_intervals, which sets the memory)")
        warnings.warn(
            f"jaxig: adaptive IG did not reach rtol={float(rtol):g}, atol={float(atol):g} {cause} "
            f"for {bad.size} of {problem.batch} example(s) (first: {bad[:8].tolist()}); their attributions "
            "may be inaccurate. Raise max_evals, loosen rtol, or for a piecewise-linear f use "
            "exact_integrated_gradients; info.error estimates the error",
            RuntimeWarning, stacklevel=2)
    return (attributions, info) if return_info else attributions


def _first_slots(mode: Any) -> tuple[int, str]:
    """Returns how many intervals (``Kronrod``) or points (``Piecewise``) the first pass holds, and which."""
    if isinstance(mode, Piecewise):
        return mode.n_init + 1, "points"
    return (1 if mode.nested and mode.n_init == 1 else mode.n_init), "intervals"



def _check_tolerance(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite non-negative real number (or a traced scalar)."""
    if isinstance(value, Tracer):
        return
    ok = not isinstance(value, (bool, np.bool_, str, bytes)) and np.ndim(value) == 0
    try:
        number = float(value) if ok else np.nan
    except (TypeError, ValueError):
        ok, number = False, np.nan
    if not (ok and np.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {name}={value!r}; "
                         f"pass e.g. {name}={1e-3 if name == 'rtol' else 0.0}")


def _at_least_float32(tree):
    """Returns ``(tree, dtypes)``: leaves below float32 (float16, bfloat16) cast up, and the original dtypes.

    The loop compares error estimates with tolerances near 1e-3 and resolves kinks to a few
    ``eps``: float16/bfloat16 have ``eps`` of 1e-3/8e-3, too coarse for either, and bfloat16 carries
    do not round-trip through ``lax.while_loop`` with float32 constants.
    """
    leaves, treedef = jax.tree.flatten(tree)
    dtypes = [getattr(v, "dtype", None) for v in leaves]

    def up(v):
        v = jnp.asarray(v)
        if jnp.issubdtype(v.dtype, jnp.floating) and jnp.finfo(v.dtype).bits < 32:
            return v.astype(jnp.float32)
        return v

    return jax.tree.unflatten(treedef, [up(v) for v in leaves]), dtypes


def _cast_like(tree, dtypes):
    """Returns ``tree`` with each leaf cast back to the input dtype it came from (a leading K axis is fine)."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [v.astype(d) if d is not None else v for v, d in zip(leaves, dtypes)])


def _explained(model: Callable, spec: TargetSpec) -> Callable:
    """Returns the integrand's function: ``f``, or ``target(f)`` for a callable target (softmax of
    logits, say, is part of the integrand; indices and ``"all"`` are linear)."""
    fn = spec.fn
    if spec.kind != "callable" or fn is None:
        return model
    return lambda z: fn(model(z))


# is_piecewise_linear answers from the program's structure and shapes alone: cached on them, since
# tracing it again costs more per call (14 ms on lstm_ts) than a smooth model's whole first pass saves
_PWL_CACHE: dict = {}


def _struct_key(tree) -> Any:
    """Returns a hashable key of ``tree``'s structure, its arrays' shapes and dtypes and its other leaves."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(v.shape), str(v.dtype)) if hasattr(v, "shape") else v for v in leaves)


def _is_piecewise_linear(rows: RowModel, spec: TargetSpec, x) -> bool:
    """Returns whether the explained output is piecewise linear in x (from the jaxpr, no FLOPs)."""
    row = _row_structs(x)
    model = rows.with_args(rows.first())
    try:
        key = (model.program, spec, _struct_key(row), _struct_key(model.args))
        hash(key)
    except TypeError:  # an unhashable plain argument: no caching
        key = None
    if key is not None and key in _PWL_CACHE:
        return _PWL_CACHE[key]
    answer = is_piecewise_linear(_explained(model, spec), row)
    if key is not None:
        if len(_PWL_CACHE) >= 256:
            _PWL_CACHE.clear()
        _PWL_CACHE[key] = answer
    return answer


def _row_structs(x):
    """Returns one example's shapes of ``x``, typed as :func:`jaxig._problem.lift_rows` traced them
    (inside ``shard_map``: varying over the batch's manual axes)."""
    return jax.tree.map(lambda v: struct_like(v, (1,) + v.shape[1:]), x)


def _piece_finder(rows: RowModel, spec: TargetSpec, x, baseline, direction, smooth: bool = False):
    """Returns ``find(alpha, lo, hi) -> (left, right)``, alpha's linear piece clipped to [lo, hi], or None.

    As in :func:`jaxig.exact_integrated_gradients` (ExactLine): every switch quantity ``z`` of the
    integrand's jaxpr is affine in ``a`` on alpha's piece, ``z(a) = z(alpha) + (a - alpha) z'(alpha)``
    (``z'`` from one forward-mode pass), so the piece ends at the nearest zero crossing on either
    side. ``left = right = alpha`` when alpha sits on a kink (within ``4 eps``). None when the
    jaxpr is not piecewise linear (``method=Piecewise()`` forced on a smooth ``f``).

    ``smooth=True`` finds the pieces of a piecewise-*smooth* integrand (a ReLU network with a sigmoid
    head: every switch precedes the smooth parts), None when it has no switch or one follows a
    smooth part.
    """
    row = _row_structs(x)
    batch = jax.tree.leaves(direction)[0].shape[0]
    row_args = rows.take(jnp.arange(batch))

    def closed_for(args):
        return jax.make_jaxpr(_explained(rows.with_args(args), spec))(row)

    switches = kink_switches if smooth else (lambda c, *a: eval_with_switches(c, *a)[1])
    try:
        probe = closed_for(rows.first())
        found = jax.eval_shape(lambda *a: switches(probe, *a), *jax.tree.leaves(row))
    except TypeError:
        return None
    if smooth and not found:
        return None
    piece = smooth_piece if smooth else linear_piece

    def one(b, d, alpha, lo, hi, args):
        return piece(closed_for(args), b, d, alpha, lo, hi)

    def find(alpha, lo, hi):
        return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, rows.axes()))(baseline, direction, alpha, lo, hi, row_args)

    return find


def _flatten(tree, batch):
    return jnp.concatenate([v.reshape(batch, -1) for v in jax.tree.leaves(tree)], 1)


def _path_gradients(model, spec: TargetSpec, index, baseline, direction, alpha, batch, dtype):
    """Returns ``(phi (B, K), grad (B, K, F))`` at ``x' + alpha (x - x')``, one alpha ``(B,)`` per example.

    ``phi`` is the explained output, ``grad`` its input gradient flattened over x's leaves (``K``
    outputs for ``target="all"``, else 1).
    """
    point = jax.tree.map(lambda b, d: b + alpha.reshape((-1,) + (1,) * (b.ndim - 1)).astype(b.dtype) * d,
                         baseline, direction)
    phi, grads = value_and_gradient(model, spec, index, point)
    if spec.multi:
        flat = jax.vmap(lambda g: _flatten(g, batch))(grads)  # (K, B, F)
        return phi.T.astype(dtype), jnp.moveaxis(flat, 0, 1)
    return phi[:, None].astype(dtype), _flatten(grads, batch)[:, None]


def _with_delta(problem: Problem, baseline, attributions, info: Info) -> Info:
    """Returns ``info`` with the completeness gap of ``attributions`` (two forward passes)."""
    spec, index = problem.target, problem.index
    f_x = select(spec, problem.model(problem.x), index)
    f_b = select(spec, problem.model(baseline), index)
    return info.replace(delta=completeness_gap(attributions, f_x, f_b, spec.multi))


def _unflat(flat, x, all_k: bool):
    """Returns the ``(B, K, F)`` array ``flat`` as a pytree like ``x`` (leading ``K`` axis if ``all_k``)."""
    leaves, treedef = jax.tree.flatten(x)
    out, start = [], 0
    for leaf in leaves:
        n = int(np.prod(leaf.shape[1:]))
        part = flat[:, :, start:start + n]
        start += n
        if all_k:
            out.append(jnp.moveaxis(part, 1, 0).reshape((-1,) + leaf.shape).astype(leaf.dtype))
        else:
            out.append(part[:, 0].reshape(leaf.shape).astype(leaf.dtype))
    return jax.tree.unflatten(treedef, out)


# target="all" integrates each output on its own, as many at once as fit in this many bytes of
# interval buffers (a speed setting only: an output's result does not depend on its group)
_GROUP_BYTES = 2**26


@functools.partial(jax.jit, static_argnums=0)
def _integrate(static: _Static, problem: Problem, rows: RowModel, rtol, atol):
    """Returns ``(attributions, info, full)``; ``full`` (B,): stopped because every slot was in use.

    On a mesh whose axes are ``Explicit`` (the default of ``jax.make_mesh``) every array's type
    carries its sharding, and the loop's per-example bookkeeping (scatters into buffers built from
    constants, vmaps over examples) would have to name it at each step. The loop runs instead with
    those axes ``Auto`` (``jax.sharding.auto_axes``): XLA keeps the batch split over the devices as
    it does on an ``Auto`` mesh, and the results come back split over the batch axis like ``x``.
    """
    mesh, batch_axis = explicit_batch_axis(problem.x)
    if mesh is None:
        return _integrate_here(static, problem, rows, rtol, atol)

    def split(lead):  # the batch axis after ``lead`` leading axes (K for target="all")
        return NamedSharding(mesh, PartitionSpec(*([None] * lead), batch_axis))

    lead = 1 if static.target.multi else 0
    attr = jax.tree.map(lambda _: split(lead), problem.x)
    info = Info(delta=split(lead), n_evals=split(0), error=attr, converged=split(0), n_intervals=split(0))
    body = jax.sharding.auto_axes(lambda args: _integrate_here(static, *args), out_sharding=(attr, info, split(0)))
    return body((problem, rows, rtol, atol))


def _integrate_here(static: _Static, problem: Problem, rows: RowModel, rtol, atol):
    baseline = problem.full_baseline()
    x = problem.x
    batch = problem.batch
    run = _piecewise if isinstance(static.mode, Piecewise) else _kronrod
    if not static.target.multi:
        est, err, n_evals, n_intervals, converged, full = run(static, problem, rows, baseline, rtol, atol)
        attributions, error = _unflat(est, x, False), _unflat(err, x, False)
    else:
        # Each output on its own (its own intervals and tolerance): the buffers hold one output's
        # gradients, not K of them; groups of outputs run side by side (vmap) to share the loop.
        n_out = n_explained(static.target, problem.index, problem.out_struct)
        ids = problem.index if static.target.kind == "outputs" else jnp.arange(n_out, dtype=jnp.int32)
        one = TargetSpec("index")
        static_one = dataclasses.replace(static, target=one, per_output=True)

        def output(k):  # the k-th explained output: output k for "all", the k-th listed for outputs
            p = problem.replace(index=jnp.full((batch,), ids[k], jnp.int32), target=one)
            return run(static_one, p, rows, baseline, rtol, atol)

        n_feat = sum(int(np.prod(v.shape[1:])) for v in jax.tree.leaves(x))
        slots = min(static.max_intervals, static.max_evals)
        lane = (2 * slots + 16) * batch * n_feat * jnp.dtype(problem.dtype).itemsize
        n_groups = -(-n_out // max(1, min(n_out, _GROUP_BYTES // lane)))
        size = -(-n_out // n_groups)
        ks = jnp.minimum(jnp.arange(n_groups * size), n_out - 1).reshape(n_groups, size)
        outs = jax.lax.map(jax.vmap(output), ks)
        est, err, n_evals, n_intervals, converged, full = (v.reshape((-1,) + v.shape[2:])[:n_out] for v in outs)

        def layout(v):  # (K, B, 1, F) -> pytree like x with a leading K axis
            return _unflat(jnp.moveaxis(v[:, :, 0], 0, 1), x, True)

        attributions, error = layout(est), layout(err)
        # n_evals: single-output gradient evaluations, summed over the outputs
        n_evals, n_intervals = n_evals.sum(0), n_intervals.max(0)
        converged, full = converged.all(0), full.any(0)
    info = Info(n_evals=n_evals, error=error, n_intervals=n_intervals, converged=converged)
    return attributions, _with_delta(problem, baseline, attributions, info), full


def _piecewise(static: _Static, problem: Problem, rows: RowModel, baseline, rtol, atol):
    """Returns ``(est, err (B, K, F), n_evals, n_intervals, converged, full)`` of the kink-aware mode."""
    model, spec, index, x = problem.model, static.target, problem.index, problem.x
    leaves = jax.tree.leaves(x)
    batch = leaves[0].shape[0]
    dtype = jnp.result_type(*leaves)
    direction = jax.tree.map(jnp.subtract, x, baseline)
    d_flat = _flatten(direction, batch)

    find_piece = _piece_finder(rows, spec, x, baseline, direction) if static.mode.pieces else None

    def evaluate(alpha, lo, hi):  # (B,) -> phi (B, K), g (B, K, F) with g = grad F * (x - x'), piece
        phi, grads = _path_gradients(model, spec, index, baseline, direction, alpha, batch, dtype)
        left, right = find_piece(alpha, lo, hi) if find_piece else (alpha, alpha)
        return phi, grads * d_flat[:, None], left, right

    res = integrate_piecewise(evaluate, batch, dtype, static.max_evals, static.mode.n_init, rtol, atol,
                              capacity=static.max_intervals)
    return res.est, res.err, res.n_evals, res.n_evals - 1, res.converged, res.full


def _kronrod(static: _Static, problem: Problem, rows: RowModel, baseline, rtol, atol):
    """Returns ``(est, err (B, K, F), n_evals, n_intervals, converged, full)`` of the Gauss–Kronrod mode.

    Per example, at most ``max_intervals`` intervals are held (each with its per-feature integral
    and error); an example that needs more stops unconverged (``full``).
    """
    model, spec, index, x = problem.model, static.target, problem.index, problem.x
    mode = static.mode
    leaves = jax.tree.leaves(x)
    batch = leaves[0].shape[0]
    dtype = jnp.result_type(*leaves)
    direction = jax.tree.map(jnp.subtract, x, baseline)
    n_out = n_explained(spec, index, problem.out_struct)
    # inside shard_map: what every input varies over; loop carries and cond branches built from
    # constants are cast to it so that their type does not change once per-device values arrive
    axes = varying_axes((problem, rows, baseline, rtol, atol))
    eager = static.per_output and bool(axes)

    def flat_grads(alpha):  # (B,) alphas, one per example -> (B, K * F) gradients, output-major
        return _path_gradients(model, spec, index, baseline, direction, alpha, batch, dtype)[1].reshape(batch, -1)

    # the nodes' gradients in chunks of alphas sized as integrated_gradients sizes them (measured on
    # lstm_ts: the nested start's 3 + 4 nodes in one vmap each took 1.8x the time of 7 IG steps)
    chunk = auto_alpha_batch_size(model, x, 2 * PAIRS[mode.pair][0].shape[0])

    def node_grads(alphas):  # (m, B) alphas -> (m, B, K * F) gradients
        if chunk is None or chunk >= alphas.shape[0]:
            return jax.vmap(flat_grads)(alphas)
        return jax.lax.map(flat_grads, alphas, batch_size=chunk)

    d_flat = jnp.tile(_flatten(direction, batch), (1, n_out))  # matches flat_grads' (K, F) layout
    d_abs = jnp.abs(d_flat)
    nodes, wk, wg = (jnp.asarray(t, dtype) for t in PAIRS[mode.pair])
    n_nodes = nodes.shape[0]
    # Kinks (ReLU layers before a smooth head): |K - G| cancels across a jump of g, so an interval
    # holding a kink gets the node range as its error and is split at the kink (found as for
    # exact IG, one forward-mode pass): measured, a ReLU+sigmoid net reported converged with 3x rtol.
    find_piece = _piece_finder(rows, spec, x, baseline, direction, smooth=True)

    def cut(lo, hi):  # (B,) -> whether [lo, hi] holds a kink, the kink nearest its middle, unknown width
        mid = 0.5 * (lo + hi)
        if find_piece is None:
            return jnp.zeros(lo.shape, bool), mid, jnp.zeros_like(lo)
        left, right = find_piece(mid, lo, hi)
        kinked = (left > lo) | (right < hi)
        at = jnp.where((left > lo) & ((mid - left <= right - mid) | (right >= hi)), left,
                       jnp.where(right < hi, right, mid))
        return kinked, jnp.where(kinked, at, mid), (left - lo) + (hi - right)

    def rule(lo, hi):  # (B,) -> per-feature (B, F) integral and error, split point, unknown width, scale
        alphas = lo[None, :] + nodes[:, None] * (hi - lo)[None, :]
        g = node_grads(alphas)  # (n_nodes, B, F)
        width = (hi - lo)[:, None]
        est_k = jnp.tensordot(wk, g, axes=(0, 0)) * width
        est_g = jnp.tensordot(wg, g, axes=(0, 0)) * width
        kinked, at, unknown = cut(lo, hi)
        spread = (g.max(0) - g.min(0)) * width
        err = jnp.where(kinked[:, None], jnp.maximum(jnp.abs(est_k - est_g), spread), jnp.abs(est_k - est_g))
        return est_k, err, at, jnp.where(kinked, unknown, 0.0), jnp.max(jnp.abs(g) * d_abs[None], (0, 2))

    # Outside the middle's piece the nodes of a kinked interval may miss whole pieces (a narrow one
    # between two close kinks: measured, 2.6e-3 true error reported as 3e-7). Their width is known
    # (``unknown``), their gradient is not: charge it at twice the largest ``|g_i (x_i - x'_i)|``
    # seen on the example's path so far (a kink can switch on a unit that the nodes beside it never
    # see: measured, 7x the local largest value), for every feature.
    def hidden(unknown, scale):
        return 2 * unknown * scale

    def meets(est, err, hid):  # (B, F) and (B,) totals -> (B,) tolerance met
        return jnp.max(d_abs * err, 1) + hid <= atol + rtol * jnp.max(jnp.abs(d_flat * est), 1)

    def refine(lo0, hi0, est0, err0, at_0, unk0, scale0, count, base, n_bisect):
        """Bisects the worst interval of every unconverged example until the tolerance or a limit."""
        # one slot per interval the budget allows, at most max_intervals: memory does not grow with max_evals
        n_slots = min(lo0.shape[0] + n_bisect, static.max_intervals)
        pad = ((0, n_slots - lo0.shape[0]), (0, 0))
        lo = jnp.pad(lo0, pad)
        hi = jnp.pad(hi0, pad)
        est = jnp.pad(est0, pad + ((0, 0),))
        err = jnp.pad(err0, pad + ((0, 0),))
        at = jnp.pad(at_0, pad)
        unknown = jnp.pad(unk0, pad)
        priority = jnp.max(err * d_abs[None], 2)  # (slots, B): the interval's largest error (without hidden)
        examples = jnp.arange(batch)

        def converged(state):
            return meets(state["est"].sum(0), state["err"].sum(0), hidden(state["unknown"].sum(0), state["scale"]))

        def active(state):
            return ~converged(state) & (state["step"] < n_bisect) & (state["count"] < n_slots)

        def body(state):
            s = dict(state)
            live = active(state)
            worst = jnp.argmax(jnp.maximum(s["priority"], hidden(s["unknown"], s["scale"])), 0)  # (B,)
            a, b = s["lo"][worst, examples], s["hi"][worst, examples]
            mid = s["at"][worst, examples]  # the middle, or the kink nearest it
            est_l, err_l, at_l, unk_l, scale_l = rule(a, mid)
            est_r, err_r, at_r, unk_r, scale_r = rule(mid, b)
            slot = jnp.minimum(s["count"], n_slots - 1)  # (a finished example writes nothing)
            parts = dict(lo=(a, mid), hi=(mid, b), est=(est_l, est_r), err=(err_l, err_r), at=(at_l, at_r),
                         unknown=(unk_l, unk_r), priority=(jnp.max(err_l * d_abs, 1), jnp.max(err_r * d_abs, 1)))
            for name, (left, right) in parts.items():
                s[name] = masked_set(masked_set(s[name], worst, left, examples, live), slot, right, examples, live)
            s["count"], s["step"] = s["count"] + live, s["step"] + live
            s["scale"] = jnp.where(live, jnp.maximum(s["scale"], jnp.maximum(scale_l, scale_r)), s["scale"])
            return s

        state = dict(lo=lo, hi=hi, est=est, err=err, at=at, unknown=unknown, priority=priority, count=count,
                     step=jnp.zeros((batch,), jnp.int32), scale=scale0)
        state = jax.lax.while_loop(lambda s: jnp.any(active(s)), body, vary_over(state, axes))
        done = converged(state)
        full = ~done & (state["step"] < n_bisect) & (state["count"] >= n_slots)
        # hidden pieces: every feature (0 * inf for an example with no kinked interval left is 0)
        hid = jnp.where(state["unknown"].sum(0) > 0, hidden(state["unknown"].sum(0), state["scale"]), 0.0)
        error = d_abs * state["err"].sum(0) + hid[:, None]
        return ((d_flat * state["est"].sum(0)).reshape(shape), error.reshape(shape),
                base + 2 * n_nodes * state["step"], state["count"], done, full)

    shape = (batch, n_out, -1)
    if not (mode.nested and mode.n_init == 1):
        n_bisect = (static.max_evals - mode.n_init * n_nodes) // (2 * n_nodes)
        edges = jnp.linspace(0.0, 1.0, mode.n_init + 1, dtype=dtype)
        lo0 = jnp.broadcast_to(edges[:-1, None], (mode.n_init, batch))
        hi0 = jnp.broadcast_to(edges[1:, None], (mode.n_init, batch))
        est0, err0, at_0, unk0, scale0 = jax.vmap(rule)(lo0, hi0)  # (n_init, B, F)
        count = jnp.full((batch,), mode.n_init, jnp.int32)
        return refine(lo0, hi0, est0, err0, at_0, unk0, scale0.max(0), count, n_nodes * count, n_bisect)

    zeros, ones = jnp.zeros(batch, dtype), jnp.ones(batch, dtype)
    kinked0, at0, _ = cut(zeros, ones)
    # the nested rules never see a kink's jump: with one on the path, go straight to bisection
    est1, err1, spent, done = _nested_start(node_grads, batch, dtype, static.max_evals, eager,
                                            lambda e, r: meets(e, r, 0.0) & ~kinked0)
    split_cost = NESTED_SIZES[-1] + 2 * n_nodes
    if static.max_evals >= split_cost and static.max_intervals >= 2:
        def bisect():  # not met after P15: discard it and bisect [0, 1] with the Kronrod pair (QAG after QNG)
            halves = jax.vmap(rule)(jnp.stack([zeros, at0]), jnp.stack([at0, ones]))
            keep = done[None, :, None]
            est0 = jnp.where(keep, jnp.stack([est1, jnp.zeros_like(est1)]), halves[0])
            err0 = jnp.where(keep, jnp.stack([err1, jnp.zeros_like(err1)]), halves[1])
            at_0 = jnp.where(done, 0.5, halves[2])
            unk0 = jnp.where(done, 0.0, halves[3])
            lo0 = jnp.where(done, 0.0, jnp.stack([zeros, at0]))
            hi0 = jnp.where(done, jnp.stack([ones, zeros]), jnp.stack([at0, ones]))
            count = jnp.where(done, 1, 2).astype(jnp.int32)
            base = jnp.where(done, spent, split_cost)
            n_bisect = (static.max_evals - split_cost) // (2 * n_nodes)
            return refine(lo0, hi0, est0, err0, at_0, unk0, halves[4].max(0), count, base, n_bisect)

        def settled():  # every example met the tolerance with a nested rule (no kink on its path)
            return ((d_flat * est1).reshape(shape), (d_abs * err1).reshape(shape), spent,
                    jnp.ones((batch,), jnp.int32), done, jnp.zeros((batch,), bool))

        # skipping the interval buffers when nothing needs them: their set-up and sums over
        # max_intervals slots cost 2x the gradients of a smooth model (measured, lstm_ts)
        return _cond(jnp.all(done), lambda: vary_over(settled(), axes), lambda: vary_over(bisect(), axes), eager)
    # no budget to bisect: the nested result stands, unconverged where it did not meet the tolerance
    lo0, hi0 = jnp.zeros((1, batch), dtype), jnp.ones((1, batch), dtype)
    at_0 = jnp.full((1, batch), 0.5, dtype)
    # a kink the nested rules never saw: nothing is known of its pieces' gradients
    unk0 = jnp.where(kinked0, 1.0, 0.0).astype(dtype)[None]
    scale0 = jnp.where(kinked0, jnp.inf, 0.0).astype(dtype)
    return refine(lo0, hi0, est1[None], err1[None], at_0, unk0, scale0, jnp.ones((batch,), jnp.int32), spent, 0)

def _cond(pred, true_fun: Callable, false_fun: Callable, eager: bool) -> Any:
    """Returns ``lax.cond(pred, true_fun, false_fun)``, or where ``eager`` both branches and a select.

    Under ``vmap`` over outputs (``target="all"``) ``pred`` differs between outputs, and JAX runs
    such a cond as both branches and a select anyway, after selecting its operands with the batched
    predicate. Inside ``shard_map`` that selection makes the model's weights (the same on every device)
    vary, and the cast to varying that the model's trace applies to them then fails ("pvary is a
    invariant->variant collective"). ``eager`` computes the same select without the operand
    selection: the same values and work.
    """
    if not eager:
        return jax.lax.cond(pred, true_fun, false_fun)
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), true_fun(), false_fun())


def _nested_start(node_grads, batch, dtype, max_evals, eager, meets):
    """Returns ``(est, err, evals, met)`` per example from the nested rules G1 < G3 < K7 < P15 on [0, 1].

    Rule ``k`` (3, 7 or 15 nodes) is accepted with the estimate ``err = |Q_k - Q_{k-1}|`` per
    feature (the error of the *previous*, lower-degree rule: an overestimate for smooth integrands,
    where each level's error is far below the one before); an example moves to the next level,
    reusing every gradient, only while ``meets`` fails and ``max_evals`` allows. Levels no example
    needs are skipped (``lax.cond``; both branches run under ``vmap``, and always where ``eager``:
    see :func:`_cond`).
    """
    nodes, weights = (jnp.asarray(t, dtype) for t in nested_rules())

    def grads_at(lo, hi):
        return node_grads(jnp.broadcast_to(nodes[lo:hi, None], (hi - lo, batch)))

    g3 = grads_at(0, NESTED_SIZES[1])
    g = jnp.zeros((NESTED_SIZES[-1],) + g3.shape[1:], g3.dtype).at[: NESTED_SIZES[1]].set(g3)
    est = jnp.tensordot(weights[1], g, axes=(0, 0))
    err = jnp.abs(est - jnp.tensordot(weights[0], g, axes=(0, 0)))
    evals = jnp.full((batch,), NESTED_SIZES[1], jnp.int32)
    met = meets(est, err)
    for k in range(2, len(NESTED_SIZES)):
        lo, hi = NESTED_SIZES[k - 1], NESTED_SIZES[k]
        if hi > max_evals:
            break
        g = _cond(jnp.any(~met), lambda g=g, lo=lo, hi=hi: g.at[lo:hi].set(grads_at(lo, hi)), lambda g=g: g, eager)
        new = jnp.tensordot(weights[k], g, axes=(0, 0))
        keep = met[:, None]
        est, err = jnp.where(keep, est, new), jnp.where(keep, err, jnp.abs(new - est))
        evals = jnp.where(met, evals, hi)
        met = met | meets(est, err)
    return est, err, evals, met
