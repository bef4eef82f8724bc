"""The ``target`` argument: which output (or outputs) of ``f`` to explain.

A target turns ``f``'s outputs ``(B,)`` or ``(B, K)`` into one scalar per example (or, for
``"all"``, ``K`` scalars per example). Its gradient is taken as a vector-Jacobian product with a
cotangent on the outputs, so that explaining all ``K`` outputs shares one forward pass per alpha.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._validate import is_concrete

ALL = "all"

# Outputs, or their shape and dtype alone (``Problem.out_struct`` from ``jax.eval_shape``): all the
# shape helpers below read is ``.shape`` and ``.ndim``.
Shaped = jax.Array | jax.ShapeDtypeStruct
#: integer output indices ``(B,)``: a NumPy array for host data, a jax array when given as one
Index = jax.Array | np.ndarray


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """The static part of a target: its kind (``none``, ``index``, ``callable``, ``all``) and callable.

    ``fn`` is set exactly when ``kind == "callable"``; its result is checked by :func:`check_target_fits`.
    """

    kind: str
    fn: Callable[[jax.Array], Any] | None = None


def resolve_target(target: Any, batch: int) -> tuple[TargetSpec, Index | None]:
    """Returns ``(spec, index)``: the static spec and, for integer targets, an int32 array ``(B,)``
    (a NumPy array for host data, which the compiled program receives in one transfer).

    Raises:
      TypeError: the target is of an unsupported type (float, bool, string other than ``"all"``).
      ValueError: a negative index, or an index array whose length is not the batch size.
    """
    if target is None:
        return TargetSpec("none"), None
    if isinstance(target, str):
        if target != ALL:
            raise TypeError(f"target={target!r} is not understood; the only string target is 'all'")
        return TargetSpec("all"), None
    if callable(target) and not hasattr(target, "dtype"):
        return TargetSpec("callable", target), None
    if isinstance(target, bool) or (hasattr(target, "dtype") and target.dtype == bool):
        raise TypeError(f"target must be an int, an int array, a callable or 'all', got boolean {target!r}")
    # Host data (an int, a list, a NumPy array) is checked and shaped in NumPy: one transfer when the
    # compiled program receives it, no eager device operations per call.
    host = not isinstance(target, jax.Array)
    index = np.asarray(target) if host else target
    if not jnp.issubdtype(index.dtype, jnp.integer):
        raise TypeError(
            f"target must be an int, an int array of shape ({batch},), a callable or 'all', "
            f"got dtype {index.dtype}; class indices are integers"
        )
    if index.ndim == 0:
        index = np.broadcast_to(index, (batch,)) if host else jnp.broadcast_to(index, (batch,))
    elif index.shape != (batch,):
        raise ValueError(
            f"target array has shape {tuple(index.shape)} but the batch has {batch} examples; "
            f"pass one target per example (shape ({batch},)) or a single int"
        )
    if is_concrete(index) and index.size:
        values = np.asarray(index)
        if int(values.min()) < 0:
            raise ValueError(
                f"target contains negative indices ({int(values.min())}); negative "
                "indexing is not supported, pass indices in [0, K) where K is the number of outputs"
            )
        if int(values.max()) > np.iinfo(np.int32).max:
            raise ValueError(
                f"target index {int(values.max())} is too large to name an output (at most 2**31 - 1); "
                "pass indices in [0, K) where K is the number of outputs"
            )
    if host:
        return TargetSpec("index"), np.ascontiguousarray(index, np.int32)
    return TargetSpec("index"), index.astype(jnp.int32)


def check_index_range(index: Index | None, out: Shaped, what: str = "f") -> None:
    """Raises ``ValueError`` when a concrete integer target is ``>= K`` (K outputs per example).

    Under tracing it cannot be checked: the explained value is then NaN (see :func:`select`).
    """
    if index is None or not is_concrete(index) or not np.size(index):
        return
    k = n_outputs(out)
    values = np.asarray(index)
    if int(values.max()) >= k:
        bad = sorted({int(i) for i in values[values >= k]})
        raise ValueError(
            f"target index {bad[0] if len(bad) == 1 else bad} is out of range for {what} with {k} "
            f"output(s) per example; pass indices in [0, {k})"
        )


def n_outputs(out: Shaped) -> int:
    """Returns K for outputs of shape ``(B, K)`` and 1 for ``(B,)``."""
    return 1 if out.ndim == 1 else out.shape[1]


def check_target_fits(spec: TargetSpec, out: Shaped) -> None:
    """Raises at trace time when ``spec`` cannot explain outputs shaped like ``out``."""
    if spec.kind == "none" and n_outputs(out) != 1:
        raise ValueError(
            f"f returns {n_outputs(out)} outputs per example (shape {tuple(out.shape)}); say which to "
            "explain: target=<int>, an int array of shape (B,), a callable outputs -> (B,), or "
            "target='all' for every output at once"
        )
    if spec.kind == "callable":
        assert spec.fn is not None
        chosen = jax.eval_shape(spec.fn, out)
        if getattr(chosen, "shape", None) != out.shape[:1]:
            raise ValueError(
                f"target callable must map outputs of shape {tuple(out.shape)} to shape "
                f"({out.shape[0]},), one scalar per example; it returned "
                f"{getattr(chosen, 'shape', type(chosen).__name__)}"
            )


def _as_2d(out: jax.Array) -> jax.Array:
    return out[:, None] if out.ndim == 1 else out


def index_valid(out: Shaped, index: Index) -> Any:
    """Returns a boolean ``(B,)``: whether each index lies in ``[0, K)``."""
    return (index >= 0) & (index < n_outputs(out))


def select(spec: TargetSpec, out: jax.Array, index: Index | None) -> jax.Array:
    """Returns the explained outputs: ``(B,)``, or ``(K, B)`` for ``"all"``. Invalid indices give NaN."""
    if spec.kind == "none":
        return _as_2d(out)[:, 0]
    if spec.kind == "callable":
        assert spec.fn is not None
        return spec.fn(out)
    if spec.kind == "all":
        return _as_2d(out).T
    assert index is not None, "an index target carries its index (resolve_target)"
    picked = jnp.take_along_axis(_as_2d(out), jnp.clip(index, 0, n_outputs(out) - 1)[:, None], axis=1)
    return jnp.where(index_valid(out, index), picked[:, 0], jnp.nan)


def cotangents(spec: TargetSpec, out: jax.Array, index: Index | None) -> jax.Array:
    """Returns the output cotangent(s) whose VJP is the gradient of the explained outputs.

    Shape ``out.shape``, or ``(K,) + out.shape`` for ``"all"``. An out-of-range index (possible only
    under tracing, where it cannot be checked) poisons its example's cotangent with NaN so the
    attributions are NaN rather than silently zero.
    """
    if spec.kind == "none":
        return jnp.ones_like(out)
    if spec.kind == "callable":
        assert spec.fn is not None
        _, pullback = jax.vjp(spec.fn, out)
        return pullback(jnp.ones(out.shape[:1], out.dtype))[0]
    k = n_outputs(out)
    eye = jnp.eye(k, dtype=out.dtype)
    if spec.kind == "all":
        cts = jnp.broadcast_to(eye[:, None, :], (k, out.shape[0], k))
        return cts.reshape((k,) + out.shape)
    assert index is not None, "an index target carries its index (resolve_target)"
    onehot = (jnp.arange(k)[None, :] == index[:, None]).astype(out.dtype)
    onehot = jnp.where(index_valid(out, index)[:, None], onehot, jnp.nan)
    return onehot.reshape(out.shape)
