"""Weighted sums of an integrand over alphas, all at once or in chunks of bounded memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


def _contract(weights: jax.Array, values: Any) -> Any:
    """Returns ``sum_k weights[k] * leaf[k]`` for every leaf of ``values``."""
    return jax.tree.map(lambda v: jnp.tensordot(weights.astype(v.dtype), v, axes=(0, 0)), values)


def check_batch_size(batch_size: Any) -> None:
    """Raises if ``batch_size`` is neither ``None`` nor a positive Python int."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"alpha_batch_size must be None or a positive int, got {batch_size!r}; "
            "pass e.g. alpha_batch_size=8 to evaluate 8 alphas at a time"
        )


def weighted_sum(
    integrand: Callable[[jax.Array], Any],
    alphas: Any,
    weights: Any,
    *,
    dtype: Any,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> Any:
    """Returns ``sum_k weights[k] * integrand(alphas)[k]`` leaf by leaf.

    ``integrand`` maps ``(m,)`` alphas to a pytree of arrays with a leading ``m`` axis. With
    ``batch_size=None`` (or ``>= len(alphas)``) it is called once on all alphas (one ``vmap``).
    Otherwise alphas are split into chunks of ``batch_size`` and a ``lax.scan`` accumulates the sum,
    so peak memory is that of one chunk whatever the number of alphas. The last chunk is padded by
    repeating the last alpha with weight zero; the sum is the same up to rounding order.

    With a ``mesh``, the alphas are split into one contiguous block per device of the mesh (all its
    axes), each device sums its block (in chunks of ``batch_size``) and the partial sums are added
    across devices (``psum``): the work on few examples and many alphas is spread over the devices.
    The integrand's other inputs (the examples, the weights) must be the same on every device.
    """
    check_batch_size(batch_size)
    alphas = jnp.asarray(alphas, dtype=dtype)
    weights = jnp.asarray(weights, dtype=dtype)
    if mesh is not None:
        return _sharded_sum(integrand, alphas, weights, dtype, batch_size, mesh)
    n = alphas.shape[0]
    if batch_size is None or batch_size >= n:
        return _contract(weights, integrand(alphas))

    n_chunks = -(-n // batch_size)
    pad = n_chunks * batch_size - n
    if pad:
        alphas = jnp.concatenate([alphas, jnp.broadcast_to(alphas[-1], (pad,))])
        weights = jnp.concatenate([weights, jnp.zeros((pad,), dtype)])
    alphas = alphas.reshape(n_chunks, batch_size)
    weights = weights.reshape(n_chunks, batch_size)

    shapes = jax.eval_shape(integrand, alphas[0])
    init = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], s.dtype), shapes)

    def step(total, chunk):
        a, w = chunk
        part = _contract(w, integrand(a))
        return jax.tree.map(jnp.add, total, part), None

    total, _ = jax.lax.scan(step, init, (alphas, weights))
    return total


def _sharded_sum(integrand, alphas, weights, dtype, batch_size, mesh: Mesh) -> Any:
    axes = tuple(mesh.axis_names)
    n_devices = int(np.prod([mesh.shape[a] for a in axes], dtype=np.int64))
    pad = -alphas.shape[0] % n_devices  # padded alphas repeat the last one with weight zero
    if pad:
        alphas = jnp.concatenate([alphas, jnp.broadcast_to(alphas[-1], (pad,))])
        weights = jnp.concatenate([weights, jnp.zeros((pad,), dtype)])

    def local(a, w):
        part = weighted_sum(integrand, a, w, dtype=dtype, batch_size=batch_size)
        return jax.tree.map(lambda v: jax.lax.psum(v, axes), part)

    # check_vma=False: the integrand closes over replicated values (the examples, the lifted model
    # whose equations are bound one by one), which a varying-type check would refuse to mix with
    # the per-device alphas; the psum makes the result the same on every device, as out_specs says.
    split = PartitionSpec(axes)
    if AxisType.Explicit in mesh.axis_types:  # sharding is part of the type: say where they go
        alphas, weights = jax.sharding.reshard((alphas, weights), NamedSharding(mesh, split))
    return jax.shard_map(local, mesh=mesh, in_specs=(split, split), out_specs=PartitionSpec(),
                         check_vma=False)(alphas, weights)
