"""Reduction of attributions to one number per feature (e.g. LSTM inputs ``[batch, time, features]``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def feature_attributions(
    attributions: jax.Array,
    *,
    feature_axis: int = -1,
    absolute: bool = False,
    keep_batch: bool = True,
) -> jax.Array:
    """Returns one attribution per feature: shape ``(B, F)``, or ``(F,)`` with ``keep_batch=False``.

    Sums over every axis except the batch axis (0) and ``feature_axis``. For LSTM attributions of
    shape ``(B, T, F)`` this gives, per example and feature, ``sum_t attr[b, t, f]``.

    - ``absolute=False`` (signed): positive and negative contributions at different time steps
      cancel. Completeness carries over: ``sum_f result[b, f] = F(x_b) - F(x'_b)`` up to the
      quadrature error, so the numbers still explain the prediction.
    - ``absolute=True``: ``sum_t |attr[b, t, f]|``, how much the feature moved the output at all,
      whatever the sign. Use it to rank features by involvement; it no longer sums to the output.

    With ``keep_batch=False`` the per-example values are averaged over the batch (the usual
    dataset-level importance; for a ranking over a dataset prefer ``absolute=True``, since signed
    attributions of different examples also cancel).

    Raises:
      ValueError: ``attributions`` has fewer than 2 axes, or ``feature_axis`` is the batch axis or
        out of range.
    """
    attributions = jnp.asarray(attributions)
    ndim = attributions.ndim
    if ndim < 2:
        raise ValueError(
            f"attributions of shape {attributions.shape} need a batch axis and a feature axis; "
            "pass the (B, ..., F) array returned by integrated_gradients"
        )
    if not -ndim <= feature_axis < ndim or feature_axis % ndim == 0:
        raise ValueError(
            f"feature_axis={feature_axis} must name a non-batch axis of attributions with shape "
            f"{attributions.shape}: an int in [1, {ndim}) or [-{ndim - 1}, -1]"
        )
    feature_axis %= ndim
    values = jnp.abs(attributions) if absolute else attributions
    others = tuple(a for a in range(1, ndim) if a != feature_axis)
    per_example = values.sum(axis=others)
    return per_example if keep_batch else per_example.mean(axis=0)

