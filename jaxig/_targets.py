"""The ``target`` argument: which output (or outputs) of ``f`` to explain.

``f`` returns outputs ``(B,)``, ``(B, K)`` or ``(B, K1, K2, ...)``. A target turns them into the
explained value: one scalar per example ``(B,)``, or ``K`` scalars per example ``(K, B)`` for the
targets that explain several outputs in one call (``"all"``, :func:`outputs`), which add a leading
``K`` axis to the attributions. The spellings:

- ``None``: the only output (``f`` returns ``(B,)`` or ``(B, 1)``).
- ``3``, ``[3]``, ``jnp.array([3])``: output 3 of every example (a one-element array broadcasts).
- ``[0, 2, 1]``, an int array of length ``B``: one output per example (``target[b]`` for example ``b``).
- ``(i, j)``, or an int array ``(B, 2)``: for outputs ``(B, K1, K2)``, output ``[i, j]`` of every
  example, or one coordinate row per example (Captum's tuple targets).
- ``"all"``: every output, on a leading ``K`` axis (``K1 * K2 * ...`` for N-D outputs, row-major).
- ``outputs(0, 2, 3)``: the listed outputs of every example, on a leading axis of 3 (in that order);
  ``outputs("cat", "dog", names=labels)`` by label name.
- ``weighted(w)``: ``sum_k w[b, k] f(x)[b, k]`` per example, ``w`` of shape ``(B, K)`` or ``(K,)``;
  multi-hot labels are ``w`` in {0, 1}.
- a callable ``outputs -> (B,)``: any reduction of ``f``'s outputs; it sees the raw ``(B, ...)``
  outputs, so it may reduce N-D outputs. It returns one value per example: a callable returning
  ``(K, B)`` is refused (with ``K == B`` it could not be told from ``(B, K)`` by its shape); use
  :func:`outputs` or one call per callable.

For outputs ``(B,)`` or ``(B, K)`` a plain list or array is always "one output per example"
(``target[b]``), so its length must be ``B`` (or 1): ``[0, 2, 3]`` means per-example indices when
``B == 3`` and is an error otherwise, whose message names ``outputs(0, 2, 3)``. To explain several
outputs of every example, spell it :func:`outputs`. (For N-D outputs a 1-D target is one coordinate
tuple, a 2-D one a row per example.)

There is no single-example mode: ``x`` carries a leading batch axis. One example passed without it
(``x`` of shape ``(D,)``) is caught where the shapes show it (``f(x)`` a scalar or with a leading axis
other than ``D``, or outputs that mix the "examples") and the message says ``x[None]``.

Every target but a callable is linear in ``f``'s outputs; its gradient is a vector-Jacobian product
with a cotangent on the outputs, so that explaining ``K`` outputs shares one forward pass per
evaluation.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import Module
from ._sharding import vary_like
from ._validate import is_concrete

__all__ = ["TargetSpec", "outputs", "weighted", "resolve_target", "select", "cotangents"]

ALL = "all"

# Outputs, or their shape and dtype alone (``Problem.out_struct`` from ``jax.eval_shape``): all the
# shape helpers below read is ``.shape`` and ``.ndim``.
Shaped = jax.Array | jax.ShapeDtypeStruct
#: integer output indices ``(B,)``: a NumPy array for host data, a jax array when given as one
Index = jax.Array | np.ndarray

_KINDS = ("none", "index", "callable", "all", "outputs", "weighted")


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """The static part of a target: its kind and, for ``callable``, the callable.

    Kinds and the array that goes with them (``Problem.index``):

    - ``none``: the only output; no array.
    - ``index``: int32 ``(B,)``, one flat output index per example (N-D coordinates are flattened
      row-major).
    - ``callable``: ``fn(outputs) -> (B,)``; no array.
    - ``all``: every output, leading ``K`` axis; no array.
    - ``outputs``: int32 ``(K,)`` flat indices, leading ``K`` axis (``"all"`` restricted).
    - ``weighted``: float ``(B, K_flat)`` weights, ``sum_k w[b, k] out[b, k]`` per example.

    Out-of-range indices (possible only under tracing, where they cannot be checked) are ``-1``
    after flattening and give NaN explained values and gradients.
    """

    kind: str
    fn: Callable[[jax.Array], Any] | None = None

    def __post_init__(self) -> None:
        assert self.kind in _KINDS, self.kind

    @property
    def multi(self) -> bool:
        """Whether the explained values carry a leading ``K`` axis (``"all"``, :func:`outputs`)."""
        return self.kind in ("all", "outputs")


# -- public spellings ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outputs:
    """A subset of outputs explained in one call; made by :func:`outputs`."""

    ids: tuple
    names: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        return f"jaxig.outputs({', '.join(map(repr, self.ids))}{'' if self.names is None else ', names=...'})"


class Weighted(Module):
    """A weighted sum of outputs per example; made by :func:`weighted`. A pytree (``w`` is traced)."""

    w: Any


def outputs(*ids: Any, names: Sequence[str] | None = None) -> Outputs:
    """Returns a target explaining the listed outputs of every example, stacked on a leading axis.

    ``integrated_gradients(f, x, target=outputs(0, 2, 3))`` equals ``target="all"`` restricted to
    outputs 0, 2 and 3 in that order: attributions of shape ``(3,) + x.shape``, ``[k]`` explaining
    output ``ids[k]``, computed from one forward pass per evaluation (not three calls).

    Args:
      *ids: the outputs, each an int (outputs ``(B, K)``), a tuple of coordinates ``(i, j)``
        (outputs ``(B, K1, K2)``), or a label name (with ``names``). A single list or int array
        also works: ``outputs([0, 2, 3])``, ``outputs(jnp.array([0, 2, 3]))``, or an int array of
        shape ``(n, d)`` of coordinate rows. A jax array may be traced (its values then cannot be
        checked: out-of-range entries give NaN attributions).
      names: the label names of the ``K`` outputs (``names[k]`` names output ``k``; for N-D outputs,
        of the row-major flattened outputs), so that ids can be names: ``outputs("cat", "dog",
        names=label_names)``. For one label name as a ``(B,)``-shaped result, pass its position:
        ``target=label_names.index("cat")``.

    Raises:
      ValueError: no ids. (Range, name and shape errors are raised by the method, which knows f's
        outputs.)
      TypeError: an id that is not an int, a tuple of ints or a string; ``names`` not strings.
    """
    if len(ids) == 1 and isinstance(ids[0], (list, np.ndarray, jax.Array)):
        ids = (ids[0],) if isinstance(ids[0], jax.Array) else _ids_from_array(ids[0])
    ids = tuple(int(i) if _is_int_scalar(i) else i for i in ids)
    if not ids:
        raise ValueError("outputs() needs at least one output: outputs(0, 2) or outputs('cat', names=labels)")
    for i in ids:
        ok = (isinstance(i, str) or _is_int(i) or (isinstance(i, jax.Array) and len(ids) == 1)
              or (isinstance(i, tuple) and i and all(_is_int(c) for c in i)))
        if not ok:
            raise TypeError(
                f"outputs() takes ints, tuples of ints (coordinates of N-D outputs) or label names, got "
                f"{i!r}; e.g. outputs(0, 2), outputs((0, 1), (2, 3)) or outputs('cat', names=labels)")
    return Outputs(tuple(ids), _check_names(names))


def weighted(w: Any, *, names: Sequence[str] | None = None) -> Weighted:
    """Returns a target explaining ``F_b = sum_k w[b, k] f(x)[b, k]``, one weighted sum per example.

    DeepExplain's ``ys``: for a multi-label model, ``w`` multi-hot (0/1) explains the sum of the
    present labels' outputs; other weights give any linear combination (a contrast ``cat - dog``
    is ``w = e_cat - e_dog``). The sum is linear in the outputs, so every method (exact IG included)
    treats it like a single output, and the attributions of ``weighted(w)`` equal
    ``sum_k w[b, k]`` times the attributions of output ``k``.

    Args:
      w: weights of shape ``(B, K)`` (one row per example), ``(K,)`` or ``(1, K)`` (the same for every
        example); for outputs ``(B, K1, K2, ...)``, ``(B, K1, K2, ...)`` or ``(K1, K2, ...)``. Float,
        int or bool (multi-hot) values; cast to the outputs' dtype. A mapping ``{name: weight}``
        with ``names`` (other outputs weigh 0).
      names: the label names of the ``K`` outputs, for a mapping ``w``.

    Raises:
      TypeError: ``w`` is a string, or a mapping without ``names``. (Shape errors are raised by
        the method, which knows f's outputs.)
    """
    names = _check_names(names)
    if isinstance(w, Mapping):
        if names is None:
            raise TypeError("weighted({name: weight}) needs names=label_names (the names of f's outputs)")
        vec = np.zeros(len(names), np.float64)
        for name, value in w.items():
            vec[_position(name, names)] += float(value)
        w = vec
    elif isinstance(w, (str, bytes)):
        raise TypeError(f"weighted() takes an array of weights, got the string {w!r}")
    return Weighted(w if isinstance(w, jax.Array) else np.asarray(w))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_int_scalar(v: Any) -> bool:
    """Whether ``v`` is a concrete 0-d integer array (a NumPy or jax scalar), usable as an int id."""
    return (isinstance(v, (np.ndarray, np.integer, jax.Array)) and np.ndim(v) == 0 and is_concrete(v)
            and jnp.issubdtype(jnp.result_type(v), jnp.integer) and not isinstance(v, bool))


def _ids_from_array(values: Any) -> tuple:
    """Returns the ids held by one list or NumPy array: ints, label names, or coordinate rows."""
    arr = np.asarray(values)
    if arr.ndim == 1 and arr.dtype.kind in "US":
        return tuple(str(v) for v in arr)
    if np.issubdtype(arr.dtype, np.integer) and arr.ndim == 1:
        return tuple(int(v) for v in arr)
    if np.issubdtype(arr.dtype, np.integer) and arr.ndim == 2:
        return tuple(tuple(int(c) for c in row) for row in arr)
    raise TypeError(
        f"outputs() takes a list of ids (ints or label names) or an (n, d) int array of coordinate rows, "
        f"got {values!r}")


def _check_names(names: Any) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a sequence of label strings, one per output, got {names!r}")
    return tuple(names)


def _position(name: str, names: tuple[str, ...]) -> int:
    hits = [k for k, n in enumerate(names) if n == name]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ValueError(f"label {name!r} appears {len(hits)} times in names (outputs {hits}); names must be unique")
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else f"; names are {list(names[:8])}" + (
        "..." if len(names) > 8 else "")
    raise ValueError(f"label {name!r} is not one of the {len(names)} names{hint}")


def as_argument(spec: TargetSpec, index: Any, out: Shaped) -> Any:
    """Returns a public ``target`` argument that resolves to ``(spec, index)`` again against outputs
    shaped like ``out``: how a wrapper (noise tunnel) hands its target to the method it wraps."""
    if spec.kind in ("none", "callable", "all"):
        return {"none": None, "callable": spec.fn, "all": ALL}[spec.kind]
    if spec.kind == "weighted":
        return Weighted(index.reshape(index.shape[:1] + tuple(out.shape[1:])))
    rows = index
    if out.ndim > 2:  # back to coordinate rows; an invalid (-1) index stays invalid
        axes = tuple(out.shape[1:])
        coords = jnp.stack(jnp.unravel_index(jnp.maximum(index, 0), axes), axis=-1)
        rows = jnp.where((index >= 0)[:, None], coords, -1)
    return Outputs((jnp.asarray(rows),)) if spec.kind == "outputs" else rows


# -- resolution ---------------------------------------------------------------------------------


def n_outputs(out: Shaped) -> int:
    """Returns the number of outputs per example: ``K1 * K2 * ...`` for ``(B, K1, K2, ...)``, 1 for ``(B,)``."""
    return int(np.prod(out.shape[1:], dtype=np.int64))


def n_explained(spec: TargetSpec, index: Any, out: Shaped) -> int:
    """Returns the length of the leading ``K`` axis of the explained values (1 without one)."""
    if spec.kind == "all":
        return n_outputs(out)
    if spec.kind == "outputs":
        return int(index.shape[0])
    return 1


def _out_axes(out: Shaped | None) -> tuple[int, ...]:
    """The per-example output shape as indices see it: ``(B,)`` outputs count as ``(B, 1)``."""
    return (1,) if out is None or out.ndim <= 1 else tuple(out.shape[1:])


def _shape_of(out: Shaped, batch: int, what: str) -> str:
    return f"{what} returned shape {tuple(out.shape)} for a batch of {batch}"


def resolve_target(target: Any, batch: int, out: Shaped | None = None, what: str = "f(x)") -> tuple[TargetSpec, Any]:
    """Returns ``(spec, array)``: the static spec and the target's array (see :class:`TargetSpec`).

    Host data (ints, lists, NumPy arrays) stays in NumPy, so the compiled program receives it in one
    transfer. ``out`` (``f``'s output shape, e.g. ``jax.eval_shape``) is needed for N-D outputs,
    :func:`outputs` and :func:`weighted`; with it, ranges and shapes are checked here, against it.
    Without it the outputs are taken as ``(B, K)``.

    Raises:
      TypeError: the target is of an unsupported type (float, bool, a string other than ``"all"``).
      ValueError: a negative or out-of-range index, an index array whose shape fits neither one
        output per example nor one for all, a weight array of the wrong shape, an unknown label.
    """
    if target is None:
        return TargetSpec("none"), None
    if isinstance(target, str):
        if target != ALL:
            raise TypeError(
                f"target={target!r} is not understood; the only string target is 'all'. To explain an "
                f"output by its label name use jaxig.outputs({target!r}, names=label_names)")
        return TargetSpec("all"), None
    if isinstance(target, Outputs):
        return TargetSpec("outputs"), _resolve_outputs(target, out, batch, what)
    if isinstance(target, Weighted):
        return TargetSpec("weighted"), _resolve_weights(target.w, out, batch, what)
    if callable(target) and not hasattr(target, "dtype"):
        return TargetSpec("callable", target), None
    if isinstance(target, bool) or (hasattr(target, "dtype") and target.dtype == bool):
        raise TypeError(
            f"target must be an int, an int array, a callable or 'all', got boolean {target!r}; for "
            "multi-hot labels (explain the sum of the present labels' outputs) pass jaxig.weighted(labels)")
    index = _as_index_array(target)
    if not jnp.issubdtype(index.dtype, jnp.integer):
        raise TypeError(
            f"target must be an int, an int array of shape ({batch},), a callable or 'all', "
            f"got dtype {index.dtype}; class indices are integers. For weights per output use "
            "jaxig.weighted(w)"
        )
    axes = _out_axes(out)
    if len(axes) == 1:
        index = _per_example(index, batch)
        return TargetSpec("index"), _flat_index(index[:, None], axes, out, what, batch)
    # N-D outputs: an index is a row of len(axes) coordinates, for every example or one per example
    d = len(axes)
    if index.ndim == 1 and index.shape[0] == d:
        index = index[None]
    if index.ndim != 2 or index.shape[1] != d or index.shape[0] not in (1, batch):
        assert out is not None
        raise ValueError(
            f"{_shape_of(out, batch, what)}, outputs with {d} axes per example, so a target names one "
            f"by {d} coordinates: target=({', '.join('ijklmn'[:d])}) for every example, or an int array "
            f"of shape ({batch}, {d}), one row per example; got target of shape {tuple(index.shape)}. "
            "A callable reducing the outputs to one value per example also works"
        )
    index = _broadcast(index, (batch, d))
    return TargetSpec("index"), _flat_index(index, axes, out, what, batch)


def _as_index_array(target: Any) -> Any:
    if isinstance(target, jax.Array):
        return target
    if isinstance(target, (list, tuple)) and any(isinstance(v, jax.Array) for v in jax.tree.leaves(target)):
        return jnp.asarray(target)
    return np.asarray(target)


def _broadcast(a: Any, shape: tuple) -> Any:
    return np.broadcast_to(a, shape) if isinstance(a, np.ndarray) else jnp.broadcast_to(a, shape)


def _per_example(index: Any, batch: int) -> Any:
    """Returns an index of shape (B,): a scalar or a one-element array applies to every example."""
    if index.ndim == 0 or index.shape == (1,):
        return _broadcast(index.reshape(()), (batch,))
    if index.shape != (batch,):
        subset = ""
        if index.ndim == 1 and is_concrete(index) and index.size <= 8:
            subset = f" (here jaxig.outputs({', '.join(str(int(v)) for v in np.asarray(index))}))"
        raise ValueError(
            f"target array has shape {tuple(index.shape)} but the batch has {batch} examples; a list or "
            f"array target names one output per example (shape ({batch},)), or one output for every "
            f"example (a single int or a one-element array). To explain several outputs of every "
            f"example in one call, use target=jaxig.outputs(...){subset}, or target='all'"
        )
    return index


def _flat_index(rows: Any, axes: tuple[int, ...], out: Shaped | None, what: str, batch: int) -> Any:
    """Returns int32 flat indices for coordinate rows ``(n, d)``: checked when concrete, -1 where
    invalid under tracing (see :func:`select`)."""
    host = isinstance(rows, np.ndarray)
    if is_concrete(rows) and rows.size:
        values = np.asarray(rows).astype(np.int64)
        if int(values.min()) < 0:
            raise ValueError(
                f"target contains negative indices ({int(values.min())}); negative indexing is not "
                f"supported, pass indices in [0, K) where K is the number of outputs")
        if out is not None:
            for axis, k in enumerate(axes):
                if int(values[:, axis].max()) >= k:
                    bad = sorted({int(i) for i in values[:, axis][values[:, axis] >= k]})
                    where = f" on output axis {axis + 1}" if len(axes) > 1 else ""
                    raise ValueError(
                        f"target index {bad[0] if len(bad) == 1 else bad} is out of range{where} for "
                        f"{what.split('(')[0]} with {k} output(s) per example{' on that axis' if where else ''}; "
                        f"pass indices in [0, {k})")
        elif int(values.max()) > np.iinfo(np.int32).max:
            raise ValueError(
                f"target index {int(values.max())} is too large to name an output (at most 2**31 - 1); "
                "pass indices in [0, K) where K is the number of outputs")
    if len(axes) == 1:
        flat = rows[:, 0]
        return np.ascontiguousarray(flat, np.int32) if host else flat.astype(jnp.int32)
    if host:
        return np.ascontiguousarray(np.ravel_multi_index(tuple(np.asarray(rows).T), axes), np.int32)
    valid = jnp.all((rows >= 0) & (rows < jnp.asarray(axes)), axis=1)
    strides = np.cumprod((1,) + axes[:0:-1])[::-1]
    return jnp.where(valid, jnp.sum(rows * jnp.asarray(strides), axis=1), -1).astype(jnp.int32)


def _resolve_outputs(target: Outputs, out: Shaped | None, batch: int, what: str) -> Any:
    axes = _out_axes(out)
    ids = target.ids
    if target.names is not None and out is not None and len(target.names) != n_outputs(out):
        raise ValueError(
            f"names has {len(target.names)} labels but {_shape_of(out, batch, what)}, "
            f"{n_outputs(out)} outputs per example; pass one name per output")
    if len(ids) == 1 and isinstance(ids[0], jax.Array):
        rows = ids[0]
        if not jnp.issubdtype(rows.dtype, jnp.integer):
            raise TypeError(f"outputs() takes an int array of output ids, got dtype {rows.dtype}")
        rows = rows.reshape(-1, 1) if rows.ndim <= 1 else rows
    else:
        coords = []
        for i in ids:
            if isinstance(i, str):
                if target.names is None:
                    raise ValueError(
                        f"outputs({i!r}) names an output by its label; pass the labels too: "
                        f"jaxig.outputs({i!r}, ..., names=label_names)")
                i = _position(i, target.names)
                coords.append(np.unravel_index(i, axes) if len(axes) > 1 else (i,))
            else:
                coords.append(i if isinstance(i, tuple) else (i,))
        lengths = {len(c) for c in coords}
        rows = np.asarray(coords, np.int64) if len(lengths) == 1 else np.zeros((0, 0), np.int64)
    if rows.ndim != 2 or rows.shape[1] != len(axes):
        assert out is not None or len(axes) == 1
        shape = "(B, K)" if out is None else str(tuple(out.shape))
        raise ValueError(
            f"target={target!r} does not fit outputs of shape {shape}, with {len(axes)} axes per example; "
            "name each output by "
            + ("an int" if len(axes) == 1 else f"a tuple of {len(axes)} ints, e.g. outputs({(0,) * len(axes)})"))
    return _flat_index(rows, axes, out, what, batch)


def _resolve_weights(w: Any, out: Shaped | None, batch: int, what: str) -> Any:
    host = isinstance(w, np.ndarray)
    dtype = w.dtype
    if not any(jnp.issubdtype(dtype, kind) for kind in (jnp.floating, jnp.integer, jnp.bool_)):
        raise TypeError(f"weighted() takes numeric (float, int or bool) weights, got dtype {dtype}")
    if out is None:  # outputs taken as (B, K), K from the weights
        out = jax.ShapeDtypeStruct((batch, w.shape[-1] if w.ndim else 1), np.promote_types(dtype, np.float32))
    per = tuple(out.shape[1:])
    k = n_outputs(out)
    if w.shape == per or w.shape == (1,) + per:
        w = w.reshape((1, k))
    elif w.shape == (batch,) + per:
        w = w.reshape((batch, k))
    else:
        raise ValueError(
            f"weights of shape {tuple(w.shape)} do not fit: {_shape_of(out, batch, what)}; pass one "
            f"weight per output, of shape {per} (the same for every example) or {(batch,) + per} "
            "(one row per example)")
    if host:
        w = np.ascontiguousarray(np.broadcast_to(w.astype(out.dtype), (batch, k)))
        if not np.all(np.isfinite(w)):
            raise ValueError("weighted() weights contain NaN or Inf; pass finite weights")
        return w
    return jnp.broadcast_to(w.astype(out.dtype), (batch, k))


def resolve_target_for(target: Any, out: Any, batch: int, what: str = "f(x)",
                       x_shape: tuple | None = None) -> tuple[TargetSpec, Any]:
    """Returns ``(spec, array)`` for ``target`` against ``f``'s outputs ``out`` (shapes and dtypes),
    raising if the two do not fit: the one place outputs and targets are checked together.

    The batch axis is checked first (its message names ``x[None]`` when ``x`` lacks one), then the
    target is resolved against the output shape, then a callable target's result is checked.
    """
    check_outputs(None, out, batch, what, x_shape)
    spec, index = resolve_target(target, batch, out, what)
    check_outputs(spec, out, batch, what, x_shape)
    return spec, index


def check_outputs(spec: TargetSpec | None, out: Any, batch: int, what: str = "f(x)",
                  x_shape: tuple | None = None) -> None:
    """Raises when ``f``'s outputs ``out`` (shapes and dtypes) cannot be explained by ``spec``.

    Outputs are a float array with the leading batch axis; beyond it any number of axes, except
    that without a target there must be one output per example. A callable target is applied
    first and must return ``(B,)``. ``spec=None`` checks only what holds for every target.
    ``x_shape`` (the first input's shape) improves the message when ``x`` seems to lack its batch axis.

    Raises:
      TypeError: the outputs are not a float array.
      ValueError: outputs without the batch axis; several outputs and no target; a callable
        target whose result is not ``(B,)``.
    """
    if not hasattr(out, "shape") or not hasattr(out, "dtype"):
        raise TypeError(f"{what} must return an array of shape (B,) or (B, K), got {type(out).__name__}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"{what} returned dtype {out.dtype}; it must return float outputs (logits, probabilities "
            "or regression values), not labels from argmax or a cast to int"
        )
    if out.ndim == 0 or out.shape[0] != batch:
        hint = ""
        if x_shape is not None:
            x_shape = tuple(x_shape)
            hint = (f". If x (shape {x_shape}) is one example rather than a batch of {batch}, add a batch "
                    f"axis: x[None] (shape {(1,) + x_shape})")
        elif out.ndim == 0:
            hint = (f". If x holds a single example (its first axis, of size {batch}, being a feature axis), "
                    "add a batch axis: x[None]")
        raise ValueError(
            f"{_shape_of(out, batch, what)}; it must return shape ({batch},), ({batch}, K) or "
            f"({batch}, K1, K2, ...): the leading axis is the batch, one output (or several) per example"
            + hint
        )
    if spec is None:
        return
    if spec.kind == "callable":
        assert spec.fn is not None
        chosen = jax.eval_shape(spec.fn, out)
        if getattr(chosen, "shape", None) != (batch,):
            got = getattr(chosen, "shape", type(chosen).__name__)
            several = ""
            if getattr(chosen, "ndim", 0) == 2 and batch in chosen.shape:
                several = ("; a callable explains one value per example: for several outputs at once use "
                           "target=jaxig.outputs(...), 'all', or call once per callable")
            raise ValueError(
                f"target callable must map outputs of shape {tuple(out.shape)} to shape ({batch},), one "
                f"scalar per example; it returned {tuple(got) if isinstance(got, tuple) else got}{several}"
            )
    if spec.kind == "none" and n_outputs(out) != 1:
        if out.ndim <= 2:
            raise ValueError(
                f"f returns {n_outputs(out)} outputs per example (shape {tuple(out.shape)}); say which to "
                "explain: target=<int>, an int array of shape (B,), a callable outputs -> (B,), "
                "jaxig.outputs(i, j, ...) for several, or target='all' for every output at once"
            )
        d = out.ndim - 1
        raise ValueError(
            f"{_shape_of(out, batch, what)}, {n_outputs(out)} outputs per example on {d} axes; say which "
            f"to explain: target=({', '.join('ijklmn'[:d])}) (one output of every example), an int array "
            f"({batch}, {d}) of coordinates per example, a callable outputs -> ({batch},), "
            f"jaxig.weighted(w) with w of shape {tuple(out.shape[1:])}, or target='all' (every output, "
            "flattened row-major)"
        )


def check_target_fits(spec: TargetSpec, out: Shaped) -> None:
    """Raises at trace time when ``spec`` cannot explain outputs shaped like ``out``."""
    check_outputs(spec, out, out.shape[0] if out.ndim else 0)


def index_valid(out: Shaped, index: Index) -> Any:
    """Returns a boolean array like ``index``: whether each flat index lies in ``[0, K)``."""
    return (index >= 0) & (index < n_outputs(out))


def _flat(out: jax.Array) -> jax.Array:
    return out.reshape(out.shape[:1] + (-1,))


def select(spec: TargetSpec, out: jax.Array, index: Any) -> jax.Array:
    """Returns the explained outputs: ``(B,)``, or ``(K, B)`` for ``"all"``/``outputs``. Invalid
    indices give NaN."""
    if spec.kind == "callable":
        assert spec.fn is not None
        return spec.fn(out)
    flat = _flat(out)
    if spec.kind == "none":
        return flat[:, 0]
    if spec.kind == "all":
        return flat.T
    assert index is not None, f"a {spec.kind} target carries its array (resolve_target)"
    if spec.kind == "weighted":
        return jnp.sum(flat * index.astype(flat.dtype), axis=1)
    safe = jnp.clip(index, 0, flat.shape[1] - 1)
    if spec.kind == "outputs":
        picked = jnp.take(flat, safe, axis=1).T  # (K, B)
        return jnp.where(index_valid(out, index)[:, None], picked, jnp.nan)
    picked = jnp.take_along_axis(flat, safe[:, None], axis=1)
    return jnp.where(index_valid(out, index), picked[:, 0], jnp.nan)


def cotangents(spec: TargetSpec, out: jax.Array, index: Any) -> jax.Array:
    """Returns the output cotangent(s) whose VJP is the gradient of the explained outputs.

    Shape ``out.shape``, or ``(K,) + out.shape`` for ``"all"``/``outputs``. An out-of-range index
    (possible only under tracing, where it cannot be checked) poisons its cotangent with NaN so the
    attributions are NaN rather than silently zero.
    """
    if spec.kind == "none":
        return jnp.ones_like(out)
    if spec.kind == "callable":
        assert spec.fn is not None
        y, pullback = jax.vjp(spec.fn, out)
        # inside shard_map the ones must vary like the outputs they are the cotangent of
        return pullback(vary_like(jnp.ones(out.shape[:1], out.dtype), y))[0]
    if spec.kind == "weighted":
        return index.astype(out.dtype).reshape(out.shape)
    k, batch = n_outputs(out), out.shape[0]
    if spec.kind == "all":
        eye = jnp.eye(k, dtype=out.dtype)
        return jnp.broadcast_to(eye[:, None, :], (k, batch, k)).reshape((k,) + out.shape)
    assert index is not None, f"a {spec.kind} target carries its array (resolve_target)"
    onehot = (jnp.arange(k)[None, :] == index[:, None]).astype(out.dtype)
    onehot = jnp.where(index_valid(out, index)[:, None], onehot, jnp.nan)
    if spec.kind == "outputs":  # (K', k): the same rows for every example
        return jnp.broadcast_to(onehot[:, None, :], (index.shape[0], batch, k)).reshape((index.shape[0],) + out.shape)
    return onehot.reshape(out.shape)
