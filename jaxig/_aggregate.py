"""Reduction of attributions to one number per feature (e.g. LSTM inputs ``[batch, time, features]``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._info import Info


def feature_attributions(
    attributions: Any,
    *,
    feature_axis: int = -1,
    absolute: bool = False,
    keep_batch: bool = True,
    output_axis: bool = False,
) -> Any:
    """Returns one attribution per feature: shape ``(B, F)``, or ``(F,)`` with ``keep_batch=False``.

    Sums over every axis except the batch axis and ``feature_axis``. For LSTM attributions of
    shape ``(B, T, F)`` this gives, per example and feature, ``sum_t attr[b, t, f]``.

    - ``absolute=False`` (signed): positive and negative contributions at different time steps
      cancel. Completeness carries over: ``sum_f result[b, f] = F(x_b) - F(x'_b)`` up to the
      quadrature error, so the numbers still explain the prediction.
    - ``absolute=True``: ``sum_t |attr[b, t, f]|``, how much the feature moved the output at all,
      whatever the sign. Use it to rank features by involvement; it no longer sums to the output.

    With ``keep_batch=False`` the per-example values are averaged over the batch (the usual
    dataset-level importance; for a ranking over a dataset prefer ``absolute=True``, since signed
    attributions of different examples also cancel).

    The layout contract: axis 0 is the batch axis, unless ``output_axis=True``, which says axis 0
    holds K explained outputs and axis 1 the batch, as in the ``(K, B, ..., F)`` result of
    ``target="all"`` or ``target=jaxig.outputs(...)``; the result then keeps K first: ``(K, B, F)``, or ``(K, F)`` with
    ``keep_batch=False``. The array alone cannot say which layout it has (a ``(K, B, T, F)``
    array reads as ``(B, T1, T2, F)``), so pass ``output_axis=True`` for ``"all"``/``outputs`` results;
    without it their K axis would be taken for the batch and the batch summed away.

    A pytree of attributions (one leaf per input, as returned for a pytree ``x``) is reduced leaf
    by leaf with the same settings and returned with the same structure; ``feature_axis`` then
    applies to every leaf.

    Args:
      attributions: an array ``(B, ..., F)`` (``(K, B, ..., F)`` with ``output_axis=True``), or a
        pytree of such arrays. Not the ``(attributions, info)`` pair of ``return_info=True``.
      feature_axis: the axis holding the features, an int indexing the array as passed (NumPy
        style, negative counts from the end); neither the batch axis nor the output axis.
      absolute: sum absolute values (bool).
      keep_batch: keep the batch axis (bool); False averages over it.
      output_axis: axis 0 holds K explained outputs (bool), e.g. ``target="all"`` results.

    Raises:
      TypeError: a setting has the wrong type (``feature_axis`` not an int; the flags not bools),
        or ``attributions`` is not an array or pytree of numeric arrays.
      ValueError: a leaf has too few axes for its layout, ``feature_axis`` is out of range or names
        the batch/output axis, or the batch is empty with ``keep_batch=False``.
    """
    for name, value in (("absolute", absolute), ("keep_batch", keep_batch), ("output_axis", output_axis)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name}={value!r} must be a bool; pass {name}=True or {name}=False")
    if isinstance(feature_axis, (bool, np.bool_)) or not isinstance(feature_axis, (int, np.integer)):
        raise TypeError(
            f"feature_axis={feature_axis!r} must be an int naming an axis of attributions, e.g. "
            "feature_axis=-1 for (B, ..., F) or feature_axis=1 for channels-first (B, F, ...)"
        )
    if isinstance(attributions, Info) or (
        isinstance(attributions, tuple) and any(isinstance(a, Info) for a in attributions)
    ):
        raise TypeError(
            "feature_attributions got the (attributions, info) pair returned with return_info=True; "
            "unpack it first: attr, info = method(..., return_info=True); feature_attributions(attr)"
        )
    if attributions is None:
        raise TypeError("attributions is None; pass the array (or pytree of arrays) returned by the method")
    pairs, treedef = jax.tree_util.tree_flatten_with_path(attributions)
    if isinstance(attributions, (list, tuple)) and pairs and all(
        isinstance(leaf, (int, float, np.number)) for _, leaf in pairs
    ):
        raise TypeError(
            "attributions is a (nested) list of numbers, which JAX reads as a pytree of scalars; "
            "pass an array: feature_attributions(jnp.asarray(attributions))"
        )
    if not pairs:
        raise ValueError(
            f"attributions {attributions!r} has no array leaves; pass the array (or pytree of arrays) "
            "returned by the method"
        )
    out = [
        _reduce(leaf, "attributions" + jax.tree_util.keystr(path), int(feature_axis), bool(absolute),
                bool(keep_batch), bool(output_axis))
        for path, leaf in pairs
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


def _reduce(leaf, name, feature_axis, absolute, keep_batch, output_axis):
    if isinstance(leaf, (str, bytes)):
        raise TypeError(f"{name} is {leaf!r}, a string; pass numeric attribution arrays")
    leaf = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
    if leaf.dtype.kind not in "iuf":
        raise TypeError(f"{name} has dtype {leaf.dtype}; pass numeric (float) attribution arrays")
    arr = jnp.asarray(leaf)
    ndim = arr.ndim
    first = 2 if output_axis else 1  # first axis that may hold the features
    if ndim < first + 1:
        layout = "(K, B, ..., F)" if output_axis else "(B, ..., F)"
        fix = (
            "with output_axis=True the array needs an output, a batch and a feature axis"
            if output_axis
            else "pass the (B, ..., F) array returned by the method (x[None] for a single example)"
        )
        raise ValueError(
            f"{name} of shape {arr.shape} need a batch axis and a feature axis, laid out as {layout}; {fix}"
        )
    if not -ndim <= feature_axis < ndim or feature_axis % ndim < first:
        what = "the output axis (0) and the batch axis (1)" if output_axis else "the batch axis (0)"
        raise ValueError(
            f"feature_axis={feature_axis} must name a non-batch axis of {name} with shape {arr.shape}, "
            f"not {what}: an int in [{first}, {ndim}) or [-{ndim - first}, -1]"
        )
    batch_axis = first - 1
    if not keep_batch and arr.shape[batch_axis] == 0:
        raise ValueError(
            f"{name} of shape {arr.shape} has an empty batch (axis {batch_axis}); the mean over examples "
            "(keep_batch=False) is undefined. Pass at least one example, or keep_batch=True"
        )
    feature_axis %= ndim
    values = jnp.abs(arr) if absolute else arr
    others = tuple(a for a in range(first, ndim) if a != feature_axis)
    per_example = values.sum(axis=others)
    return per_example if keep_batch else per_example.mean(axis=batch_axis)
