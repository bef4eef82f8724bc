"""Perturbation attributions: feature ablation (groups set to the baseline) and occlusion (windows).

Both methods, and Shapley value sampling (``shapley.py``), evaluate the explained output at many
perturbed copies of the batch. :func:`perturbed_outputs` does that in bounded memory: a ``lax.map``
over chunks of ``perturbations_per_eval`` perturbations, each chunk one ``vmap`` of the batch-shaped
model over a leading perturbation axis, so the compiled program never holds more than one chunk's
perturbed inputs and activations. :func:`resolve_feature_mask` and :func:`spread` turn Captum-style
feature masks into contiguous group ids and group values back into per-feature attributions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.extend import core as jex_core

from .. import _validate as _checks
from .._info import Info, completeness_gap
from .._problem import Problem, lift_rows, prepare
from .._quadrature.autobatch import program_bytes
from .._sharding import explicit_batch_axis, varying_axes
from .._targets import n_outputs, select
from .integrated import _affine_split

__all__ = ["feature_ablation", "occlusion"]

#: With ``perturbations_per_eval=None``, a chunk's forward intermediates stay near this size.
CHUNK_BUDGET_BYTES = 64 * 2**20


# -- shared by the perturbation methods -------------------------------------------------------------

def check_perturbations_per_eval(value: Any) -> None:
    """Raises unless ``value`` is None or an int >= 1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"perturbations_per_eval must be an int >= 1 or None (automatic), got {value!r}")
    if value < 1:
        raise ValueError(
            f"perturbations_per_eval={value} is not allowed; pass an int >= 1 (perturbed batches per "
            "model call) or None to size chunks automatically"
        )


def chunk_size(problem: Problem, n: int, perturbations_per_eval: int | None) -> int:
    """Returns how many perturbations one model call evaluates: the setting, or a memory-bounded guess.

    ``None`` gives ``max(1, CHUNK_BUDGET_BYTES // b)`` with ``b`` the bytes of every intermediate of one
    forward pass of the batch (read from the model's jaxpr), capped at ``n``.
    """
    if perturbations_per_eval is not None:
        return int(max(1, min(perturbations_per_eval, n)))
    per_pass, _ = program_bytes(problem.model.program)
    per_pass += sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(problem.x))
    return int(max(1, min(n, CHUNK_BUDGET_BYTES // max(1, per_pass))))


def perturbed_outputs(problem: Problem, make_input: Callable[[jax.Array], Any], n: int, chunk: int) -> jax.Array:
    """Returns the explained outputs at ``make_input(p)`` for ``p = 0..n-1``: ``(n, B)`` or ``(n, K, B)``.

    ``chunk`` perturbations are evaluated per model call (one ``vmap`` over a leading axis); the
    chunks run in a ``lax.map``, so memory is bounded by one chunk whatever ``n``.
    """
    model, spec, index = problem.model, problem.target, problem.index

    def one(p):
        return select(spec, model(make_input(p)), index)

    ps = jnp.arange(n, dtype=jnp.int32)
    if chunk >= n:
        return jax.vmap(one)(ps)
    return jax.lax.map(one, ps, batch_size=chunk)


def resolve_feature_mask(feature_mask: Any, x: Any, batch: int) -> tuple[Any, int]:
    """Returns ``(masks, n_groups)``: int32 group ids ``0..n_groups-1`` per leaf, shaped ``(1 or B,) + leaf.shape[1:]``.

    ``None`` makes every scalar of every leaf its own group (numbered leaf after leaf). Otherwise the
    distinct values of the mask (all leaves together, so a group may span leaves) are the groups, in
    increasing order: group ``g`` is the ``g``-th smallest value.

    Raises:
      TypeError: a traced mask (the number of groups must be known when compiling), a non-integer dtype.
      ValueError: a structure or shape that does not fit ``x``.
    """
    x_leaves, x_def = jax.tree_util.tree_flatten_with_path(x)
    if feature_mask is None:
        masks, offset = [], 0
        for _, leaf in x_leaves:
            size = int(np.prod(leaf.shape[1:], dtype=np.int64))
            masks.append(np.arange(offset, offset + size, dtype=np.int64).reshape((1,) + tuple(leaf.shape[1:])))
            offset += size
        return jax.tree.unflatten(x_def, [m.astype(np.int32) for m in masks]), offset
    pairs = _checks.pair_with_x(feature_mask, x, "feature_mask",
                                "pass a mask with the same keys/containers as x (one int array per leaf)")
    masks = []
    for name, leaf, m in pairs:
        if isinstance(m, Tracer):
            raise TypeError(
                f"{name} is a traced value; the number of feature groups must be known when compiling, "
                "so pass the mask as a NumPy or concrete JAX array (close over it rather than passing "
                "it through jax.jit or jax.vmap)"
            )
        m = np.asarray(m)
        if m.dtype == bool or not np.issubdtype(m.dtype, np.integer):
            raise TypeError(
                f"{name} has dtype {m.dtype}; a feature mask holds integer group ids (features with the "
                "same id are ablated together), e.g. np.array([0, 0, 1, 2])"
            )
        per = tuple(leaf.shape[1:])
        allowed = f"{per} (or broadcastable to it), {(1,) + per} or {(batch,) + per}"
        try:
            if m.ndim == leaf.ndim:  # a leading batch axis, as Captum's masks have
                if m.shape[0] not in (1, batch):
                    raise ValueError
                m = np.broadcast_to(m, (m.shape[0],) + per)
            else:
                m = np.broadcast_to(m, per)[None]
        except ValueError:
            raise ValueError(
                f"{name} shape {m.shape} does not fit input shape {tuple(leaf.shape)}; pass an int array "
                f"of shape {allowed}"
            ) from None
        masks.append(m)
    values = np.unique(np.concatenate([m.ravel() for m in masks]))
    # NumPy, not jnp: an eager device conversion per leaf cost 0.2 ms a call (a third of a small MLP's)
    remapped = [np.searchsorted(values, m).astype(np.int32) for m in masks]
    return jax.tree.unflatten(x_def, remapped), int(values.size)


def spread(values: jax.Array, masks: Any, x: Any, all_k: bool) -> Any:
    """Returns per-feature attributions: feature ``i`` of example ``b`` gets ``values[mask[b, i], b]``.

    ``values`` is ``(G, B)``, or ``(G, K, B)`` with ``all_k`` (then a leading ``K`` axis is added).
    """
    by_example = jnp.moveaxis(values, 0, -1)  # (B, G) or (K, B, G)

    def one(leaf, mask):
        ids = jnp.broadcast_to(mask, leaf.shape).reshape(leaf.shape[0], -1)
        if all_k:
            ids = jnp.broadcast_to(ids, by_example.shape[:1] + ids.shape)
            shape = by_example.shape[:1] + leaf.shape
        else:
            shape = leaf.shape
        return jnp.take_along_axis(by_example, ids, axis=-1).reshape(shape).astype(leaf.dtype)

    return jax.tree.map(one, x, masks)


def check_index(problem: Problem) -> None:
    """Raises when a concrete integer target is out of range for ``f``'s outputs."""
    if problem.target.kind != "index" or not _checks.is_concrete(problem.index):
        return
    k = n_outputs(problem.out_struct)
    index = np.asarray(problem.index)
    if np.any(index >= k):
        bad = sorted({int(i) for i in index[index >= k]})
        raise ValueError(
            f"target index {bad[0] if len(bad) == 1 else bad} is out of range for f with {k} "
            f"output(s) per example; pass indices in [0, {k})"
        )


def delta_of(problem: Problem, attributions: Any, f_x: jax.Array) -> jax.Array:
    """Returns the completeness gap ``sum(attributions) - (F(x) - F(x'))`` per example."""
    f_base = select(problem.target, problem.model(problem.full_baseline()), problem.index)
    return completeness_gap(attributions, f_x, f_base, problem.all_k)


# -- feature ablation -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _AblationStatic:
    n_groups: int
    chunk: int
    with_delta: bool
    sparse: bool = False  # group indices given: try the affine first layer on the sparse change


#: The sparse path holds an ``(F, hidden)`` table of the first layer's columns: at most this many features.
_SPARSE_MAX_FEATURES = 4096


def group_indices(masks: Any, n_groups: int, batch: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Returns ``(idx, valid)``, each ``(G, m)``: the flat per-example feature indices of every group
    (padded to the largest group, ``m``), or None where the sparse path does not pay or apply.

    It applies to one input array with one mask for all examples; it pays when every group holds at
    most a quarter of the ``F`` features and building the table (``F`` rows through the affine
    part) costs less than the ``G * B`` rows the dense path sends through it.
    """
    leaves = jax.tree.leaves(masks)
    if len(leaves) != 1 or leaves[0].shape[0] != 1 or isinstance(leaves[0], Tracer):
        return None
    flat = np.asarray(leaves[0]).reshape(-1)
    n_feat = flat.size
    counts = np.bincount(flat, minlength=n_groups)
    m = int(counts.max())
    if n_feat > _SPARSE_MAX_FEATURES or 4 * m > n_feat or n_feat >= n_groups * batch:
        return None
    order = np.argsort(flat, kind="stable")
    ids = flat[order]
    pos = np.arange(n_feat) - np.concatenate([[0], np.cumsum(counts)[:-1]])[ids]
    idx = np.zeros((n_groups, m), np.int32)
    valid = np.zeros((n_groups, m), bool)
    idx[ids, pos] = order
    valid[ids, pos] = True
    return idx, valid


def _matmul_macs(jaxpr: Any) -> int:
    """Returns the multiply-adds of a jaxpr's dot_general and convolution equations (nested included)."""
    total = 0
    for eqn in jaxpr.eqns:
        out = int(np.prod(eqn.outvars[0].aval.shape, dtype=np.int64)) if eqn.outvars else 0
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            total += out * int(np.prod([eqn.invars[0].aval.shape[i] for i in contract], dtype=np.int64))
        elif eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            total += out * int(np.prod(rhs, dtype=np.int64)) // rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
        repeat = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
        for sub in jex_core.jaxprs_in_params(eqn.params):
            total += repeat * _matmul_macs(sub)
    return total


def sparse_ablated_outputs(problem: Problem, rows: Any, baseline: Any, idx: jax.Array, valid: jax.Array,
                           chunk: int) -> jax.Array | None:
    """Returns the explained outputs with each group set to the baseline, as :func:`perturbed_outputs`,
    when one example's ``f = g o A`` with ``A`` affine: ``A(x with group p ablated) = A(x) + sum_{i in p}
    (x'_i - x_i) L e_i``; None when ``f`` has no affine first part worth splitting off.

    ``L e_i`` (the linear part of ``A`` on the unit example ``e_i``) is tabulated once; each ablated
    copy then costs ``m`` table rows per example instead of a pass of ``A`` over all ``F`` features.
    ``A`` and ``g`` are read from the one-example program (``rows``) and mapped over the examples, so
    the batch axis of every value at the cut is known.
    """
    x = problem.x
    (leaf,), tree = jax.tree.flatten(x)  # one array (possibly inside a container)
    batch = leaf.shape[0]
    n_feat = int(np.prod(leaf.shape[1:], dtype=np.int64))
    one_row = jax.tree.map(lambda v: v[:1], x)
    split = _affine_split(rows.model, one_row)
    if split is None:
        return None
    affine, rest = split
    # worth it only where the affine part is most of the model's work (a dense first layer on many
    # features); measured on the benchmark's LSTM, whose input projection is a tenth, 10% slower
    if 2 * _matmul_macs(jax.make_jaxpr(affine)(one_row).jaxpr) < _matmul_macs(rows.model.program.jaxpr):
        return None
    with_row_axis = lambda z: jax.tree.map(lambda v: v[None], z)  # noqa: E731
    hidden_x = jax.vmap(lambda z: affine(with_row_axis(z)))(x)  # each (B,) + the cut's one-row shape
    units = jnp.eye(n_feat, dtype=leaf.dtype).reshape((n_feat, 1) + leaf.shape[1:])
    table = jax.vmap(lambda u: jax.jvp(affine, (one_row,), (jax.tree.unflatten(tree, [u]),))[1])(units)
    change = (jax.tree.leaves(baseline)[0] - leaf).reshape(batch, n_feat)

    def one(p):
        w = jnp.where(valid[p], change[:, idx[p]], 0.0)  # (B, m)
        hidden = tuple(h + jnp.tensordot(w, t[idx[p]], axes=(1, 0)).astype(h.dtype)
                       for h, t in zip(hidden_x, table))
        out = jax.vmap(rest)(hidden)  # (B, 1) + f's per-example output shape
        return select(problem.target, out.reshape((batch,) + out.shape[2:]), problem.index)

    ps = jnp.arange(idx.shape[0], dtype=jnp.int32)
    if chunk >= idx.shape[0]:
        return jax.vmap(one)(ps)
    return jax.lax.map(one, ps, batch_size=chunk)


def feature_ablation(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    feature_mask: Any = None,
    perturbations_per_eval: int | None = None,
    return_info: bool = False,
) -> Any:
    """Returns the feature-ablation attributions of ``f`` at ``x``, a pytree shaped like ``x``.

    Every feature ``i`` in group ``g`` gets the drop of the explained output when the whole group is
    set to the baseline:

        A_i(x) = F(x) - F(x with x_j := x'_j for every j in g)

    (Captum's ``FeatureAblation``; the "leave one out" or ablation study of e.g. Zeiler and Fergus,
    "Visualizing and Understanding Convolutional Networks", ECCV 2014). For a model additive over the
    groups, ``F(x) = sum_g h_g(x_g)``, this is ``h_g(x_g) - h_g(x'_g)`` exactly (``w_i (x_i - x'_i)``
    for a linear model with singleton groups), as are Shapley values and Integrated Gradients.

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`. The baseline is the
        value an ablated feature takes (zeros by default; a per-example baseline is allowed).
      key: ignored (the method is deterministic); accepted so every method has the same signature.
      feature_mask: integer group ids. ``None``: every scalar feature is its own group. An int array
        of the per-example shape ``x.shape[1:]`` (or broadcastable to it: ``(T, 1)`` groups the
        features of each time step), or with a leading batch axis of 1 or ``B`` (Captum's layout,
        per-example groups). For a pytree ``x``, a pytree of such arrays like ``x``; one id in
        several leaves makes one group across them. Ids need not be contiguous: the distinct values
        are the groups. The mask must be concrete (its number of groups ``G`` sets the program).
      perturbations_per_eval: how many ablated copies of the batch one model call evaluates (memory
        grows with it); the ``G`` copies run in ``ceil(G / perturbations_per_eval)`` calls of a
        ``lax.map``. ``None`` sizes chunks so that one chunk's intermediates stay near 64 MiB.
      return_info: return ``(attributions, info)`` with ``info.n_evals = G + 2`` (forward passes of
        the batch: ``x``, each ablated copy, and the baseline for ``delta``) and ``info.delta``, the
        completeness gap ``sum_i A_i - (F(x) - F(x'))`` per example (``(K, B)`` for ``"all"``). Unlike
        IG's, this gap is **not** zero in general: ablation attributions are complete only for
        models additive over singleton groups; a group of ``m`` features credits each of them with
        the group's whole effect, and interactions are counted once per group they touch. Read it
        as a measure of how far ``f`` is from additive on these groups.

    Returns:
      The attributions (a pytree like ``x``; a leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)`` with ``return_info=True``.

    Raises:
      TypeError: as :func:`jaxig.integrated_gradients`; a mask of non-integer dtype or traced; a
        non-int ``perturbations_per_eval``.
      ValueError: as :func:`jaxig.integrated_gradients`; a mask whose structure or shape does not fit
        ``x``; ``perturbations_per_eval < 1``.

    Compiled with ``jax.jit`` once per (model structure, shapes, ``G``, chunk size); new weights, inputs,
    baselines or mask values with the same number of groups compile nothing. Works under the caller's
    ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (with respect to ``f``'s parameters).

    Where ``f`` starts with an affine part that does most of its multiply-adds (a dense first layer on
    many features), one array input, one mask for all examples and small groups, each ablated copy
    updates that part's output by the ablated features' columns instead of recomputing it: the same
    values up to rounding (measured 2e-7), 2.2-2.5x faster on a 96-64-32-1 MLP with one group per feature.
    """
    del key
    check_perturbations_per_eval(perturbations_per_eval)
    problem = prepare(f, x, baseline, target=target, args=args)
    masks, n_groups = resolve_feature_mask(feature_mask, problem.x, problem.batch)
    check_index(problem)
    # not per device inside shard_map, nor on an Explicit mesh (the table's rows are not the batch's)
    plain = (not varying_axes(problem.x) and explicit_batch_axis(problem.x)[0] is None
             and not jax.tree.leaves(problem.model.args))
    groups = group_indices(masks, n_groups, problem.batch) if plain else None
    if groups is not None:
        groups = (lift_rows(f, problem),) + groups
    static = _AblationStatic(n_groups, chunk_size(problem, n_groups, perturbations_per_eval), bool(return_info),
                             groups is not None)
    attributions, delta = _ablation_jit(static, problem, masks, groups)
    if return_info:
        return attributions, Info(delta=delta, n_evals=n_groups + 2)
    return attributions


def _ablation_impl(static: _AblationStatic, problem: Problem, masks: Any, groups: Any):
    x, baseline = problem.x, problem.full_baseline()
    f_x = select(problem.target, problem.model(x), problem.index)

    def ablated(g):
        return jax.tree.map(lambda xi, bi, mi: jnp.where(mi == g, bi, xi), x, baseline, masks)

    # an affine first part (a dense layer): ablating a few features changes its output by a few of
    # its columns, so it need not run again on every ablated copy
    outputs = None
    if static.sparse:
        rows, idx, valid = groups
        outputs = sparse_ablated_outputs(problem, rows, baseline, idx, valid, static.chunk)
    if outputs is None:
        outputs = perturbed_outputs(problem, ablated, static.n_groups, static.chunk)
    dropped = f_x[None] - outputs
    attributions = spread(dropped, masks, x, problem.all_k)
    delta = delta_of(problem, attributions, f_x) if static.with_delta else None
    return attributions, delta


_ablation_jit = jax.jit(_ablation_impl, static_argnums=0)


# -- occlusion --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _OcclusionStatic:
    window: tuple[int, ...]
    strides: tuple[int, ...]
    counts: tuple[int, ...]  # window positions per dimension
    chunk: int
    with_delta: bool


def _check_window(window: Any, strides: Any, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
    """Returns ``(window, strides, counts)`` as int tuples, or raises naming the offending value."""
    d = len(shape)
    if isinstance(window, (int, np.integer)) and not isinstance(window, bool):
        window = (window,) * d if d == 1 else window
    if not isinstance(window, (tuple, list)) or not all(
            isinstance(w, (int, np.integer)) and not isinstance(w, bool) for w in window):
        raise TypeError(f"window must be a tuple of {d} ints (one per per-example dimension {shape}), got {window!r}")
    window = tuple(int(w) for w in window)
    if len(window) != d:
        raise ValueError(
            f"window {window} has {len(window)} dimension(s) but each example has shape {shape}; pass "
            f"a window of {d} ints, e.g. {tuple(min(3, n) for n in shape)}"
        )
    if any(w < 1 for w in window) or any(w > n for w, n in zip(window, shape)):
        raise ValueError(
            f"window {window} must be positive and no larger than the example shape {shape} in every "
            "dimension"
        )
    if strides is None:
        strides = (1,) * d
    elif isinstance(strides, (int, np.integer)) and not isinstance(strides, bool):
        strides = (int(strides),) * d
    if not isinstance(strides, (tuple, list)) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in strides):
        raise TypeError(f"strides must be None, an int or a tuple of {d} ints, got {strides!r}")
    strides = tuple(int(s) for s in strides)
    if len(strides) != d or any(s < 1 for s in strides):
        raise ValueError(f"strides {strides} must be {d} positive ints, one per dimension of {shape}")
    for s, w, n in zip(strides, window, shape):
        if w < n and s > w:
            raise ValueError(
                f"strides {strides} leave features of no window: a stride ({s}) larger than its window "
                f"size ({w}) skips features; pass strides <= window {window} in every dimension"
            )
    counts = tuple(-(-(n - w) // s) + 1 for n, w, s in zip(shape, window, strides))
    return window, strides, counts


def occlusion(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    window: tuple[int, ...],
    strides: int | tuple[int, ...] | None = None,
    perturbations_per_eval: int | None = None,
    return_info: bool = False,
) -> Any:
    """Returns the occlusion attributions of ``f`` at ``x``, an array shaped like ``x``.

    A hyper-rectangle of shape ``window`` slides over each example's dimensions, starting at index 0
    and moving by ``strides`` until it has covered every dimension (the last window in a dimension
    may be cut off by the edge). With ``W_i`` the windows containing feature ``i``,

        A_i(x) = (1 / |W_i|) sum_{w in W_i} [F(x) - F(x with window w set to the baseline)]

    Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014; the same
    positions and the same average as Captum's ``Occlusion`` (which divides the summed output drops by
    the number of windows covering each feature).

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`; ``x`` is one array
        ``(B, d_1, ..., d_D)``, e.g. images ``(B, H, W, C)`` or time series ``(B, T, F)``.
      key: ignored (deterministic).
      window: the window shape, ``D`` ints with ``1 <= window[k] <= d_k``: ``(3, 3, C)`` occludes
        3x3 patches of every channel of an ``(H, W, C)`` image.
      strides: an int or ``D`` ints (default 1). Where a window is smaller than its dimension, its
        stride may not exceed it (otherwise some features would never be occluded).
      perturbations_per_eval: occluded copies of the batch per model call (as in
        :func:`feature_ablation`); ``None`` chooses chunks of about 64 MiB of intermediates.
      return_info: return ``(attributions, info)``: ``info.n_evals`` = windows + 2 forward passes of
        the batch, ``info.delta`` the completeness gap ``sum_i A_i - (F(x) - F(x'))`` (not zero in
        general; see :func:`feature_ablation`).

    Returns:
      The attributions shaped like ``x`` (a leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)``.

    Raises:
      TypeError: ``x`` is a pytree of several arrays (use :func:`feature_ablation` with a mask); a
        window or strides not given as ints; what :func:`jaxig.integrated_gradients` raises.
      ValueError: a window with the wrong number of dimensions, non-positive or larger than the
        example; non-positive strides or strides larger than the window; ``perturbations_per_eval < 1``.
    """
    del key
    check_perturbations_per_eval(perturbations_per_eval)
    if len(jax.tree.leaves(x)) != 1 or not hasattr(jax.tree.leaves(x)[0], "shape"):
        raise TypeError(
            "occlusion takes x as one array (B, d_1, ..., d_D); for a pytree of inputs use "
            "feature_ablation with a feature_mask of window ids"
        )
    problem = prepare(f, x, baseline, target=target, args=args)
    shape = tuple(jax.tree.leaves(problem.x)[0].shape[1:])
    window, strides, counts = _check_window(window, strides, shape)
    check_index(problem)
    n_windows = int(np.prod(counts))
    static = _OcclusionStatic(window, strides, counts, chunk_size(problem, n_windows, perturbations_per_eval),
                              bool(return_info))
    attributions, delta = _occlusion_jit(static, problem)
    if return_info:
        return attributions, Info(delta=delta, n_evals=n_windows + 2)
    return attributions


def _cover_tables(static: _OcclusionStatic, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Returns per dimension ``C_k`` of shape ``(d_k, counts_k)``: ``C_k[i, p] = 1`` if window ``p`` covers ``i``."""
    tables = []
    for n, w, s, c in zip(shape, static.window, static.strides, static.counts):
        i, start = np.arange(n)[:, None], (np.arange(c) * s)[None, :]
        tables.append(((i >= start) & (i < start + w)).astype(np.float64))
    return tables


def _occlusion_impl(static: _OcclusionStatic, problem: Problem):
    x = jax.tree.leaves(problem.x)[0]
    baseline = jax.tree.leaves(problem.full_baseline())[0]
    shape, dtype = x.shape[1:], x.dtype
    f_x = select(problem.target, problem.model(problem.x), problem.index)
    treedef = jax.tree.structure(problem.x)

    def occluded(p):
        position = jnp.unravel_index(p, static.counts)
        inside = jnp.ones(shape, bool)
        for k, (w, s) in enumerate(zip(static.window, static.strides)):
            i = jax.lax.broadcasted_iota(jnp.int32, shape, k)
            start = position[k].astype(jnp.int32) * s
            inside = inside & (i >= start) & (i < start + w)
        return jax.tree.unflatten(treedef, [jnp.where(inside, baseline, x)])

    n_windows = int(np.prod(static.counts))
    dropped = f_x[None] - perturbed_outputs(problem, occluded, n_windows, static.chunk)  # (P, [K,] B)
    lead = dropped.shape[1:]
    total = jnp.moveaxis(dropped, 0, -1).reshape(lead + static.counts)
    tables = _cover_tables(static, shape)
    # sum over windows of drop * indicator, one dimension at a time (the indicator is separable)
    for table in tables:
        total = jnp.tensordot(total, jnp.asarray(table, dtype), axes=([len(lead)], [1]),
                              precision=jax.lax.Precision.HIGHEST)
    covering = np.ones(shape)
    for k, table in enumerate(tables):
        covering = covering * table.sum(1).reshape((-1,) + (1,) * (len(shape) - 1 - k))
    attributions = (total / jnp.asarray(covering, dtype)).astype(dtype)
    attributions = jax.tree.unflatten(treedef, [attributions])
    delta = delta_of(problem, attributions, f_x) if static.with_delta else None
    return attributions, delta


_occlusion_jit = jax.jit(_occlusion_impl, static_argnums=0)
