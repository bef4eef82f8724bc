"""Small helpers for running inside ``shard_map``, where values carry the mesh axes they vary over.

Inside ``jax.shard_map`` (with its default ``check_vma=True``) every value's type records the manual
mesh axes it varies over. A value built from settings alone (a one-hot cotangent for an int target,
a table of alphas) is the same on every device, and JAX refuses to combine it with a per-device value
in a primitive bound directly (as jaxig's lifted models do) or to hand it to a VJP whose output
varies. These helpers cast such values where they meet.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.core import Tracer
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = ["struct_like", "explicit_batch_axis", "varying_axes", "vary_like", "batch_sharding", "replicated",
           "put_global", "with_leading_axes", "to_host", "alpha_mesh",
           "place", "match_varying", "vary_over"]


def struct_like(leaf: Any, shape: tuple | None = None) -> jax.ShapeDtypeStruct:
    """Returns the shape and dtype of an array, and inside ``shard_map`` the manual axes it varies over.

    A trace at plain shapes would take a per-device value for one that is the same on every device;
    binding that trace's equations to the value later fails ("dot_general requires varying manual
    axes to match"). Traced at the full type, JAX inserts the casts of replicated weights itself.
    ``shape`` replaces the leaf's shape (one example of a batch: ``(1,) + leaf.shape[1:]``).
    """
    shape = tuple(leaf.shape) if shape is None else tuple(shape)
    if not isinstance(leaf, Tracer):
        return jax.ShapeDtypeStruct(shape, leaf.dtype)
    aval = jax.typeof(leaf)
    mat = getattr(aval, "manual_axis_type", None)
    if mat is not None and mat.varying:
        return jax.ShapeDtypeStruct(shape, leaf.dtype, sharding=aval.sharding, manual_axis_type=mat)
    return jax.ShapeDtypeStruct(shape, leaf.dtype)


def varying_axes(tree: Any) -> frozenset:
    """Returns the manual mesh axes that any leaf of ``tree`` varies over (empty outside ``shard_map``)."""
    axes: frozenset = frozenset()
    for leaf in jax.tree.leaves(tree):
        mat = getattr(jax.typeof(leaf), "manual_axis_type", None) if hasattr(leaf, "dtype") else None
        if mat is not None:
            axes |= mat.varying
    return axes


def vary_like(value: Any, like: Any) -> Any:
    """Returns ``value`` with the sharding type of ``like``, values unchanged (a no-op outside meshes).

    Inside ``shard_map`` it is cast to vary over the manual axes ``like`` varies over; on an
    ``Explicit`` mesh (sharding in the type, under ``jax.set_mesh``) it is resharded like ``like``,
    whose spec applies to the trailing axes (a cotangent for ``target="all"`` has ``K`` in front).
    A cotangent built from the target alone (a one-hot) needs both to meet its output in a VJP.
    """
    like_leaves = jax.tree.leaves(like)
    like_aval = jax.typeof(like_leaves[0]) if len(like_leaves) == 1 else None
    axes = varying_axes(like)

    def cast(v):
        v = vary_over(v, axes)
        if like_aval is None or AxisType.Explicit not in like_aval.sharding.mesh.axis_types:
            return v
        spec = tuple(like_aval.sharding.spec)
        want = PartitionSpec(*((None,) * (v.ndim - len(spec)) + spec))
        if tuple(jax.typeof(v).sharding.spec) == tuple(want):
            return v
        return jax.sharding.reshard(v, NamedSharding(like_aval.sharding.mesh, want))

    return jax.tree.map(cast, value)


def vary_over(tree: Any, axes: frozenset) -> Any:
    """Returns ``tree`` with every array leaf cast to vary over the manual mesh ``axes`` (values unchanged).

    A loop's carry or a ``lax.cond``'s branches must keep one type: inside ``shard_map`` a buffer
    built from constants (``jnp.zeros``) is the same on every device until the first per-device value
    is written into it, which changes its type. Cast to the axes every input varies over
    (:func:`varying_axes` of the inputs), it has its final type from the start. Empty ``axes``
    (outside ``shard_map``) returns ``tree`` unchanged.
    """
    if not axes:
        return tree

    def cast(v):
        if not hasattr(v, "dtype"):
            return v
        missing = tuple(sorted(axes - varying_axes(v)))
        return jax.lax.pcast(v, missing, to="varying") if missing else v

    return jax.tree.map(cast, tree)


def match_varying(vals: list) -> list:
    """Returns the operands of one primitive cast to vary over the same manual mesh axes.

    JAX's own functions (``jnp.multiply``...) insert these casts before binding; jaxig's jaxpr
    interpreters bind primitives themselves, so inside ``shard_map`` a weight (the same on every
    device) meeting an input (different on each) must be cast here. Outside ``shard_map`` nothing
    varies and ``vals`` comes back unchanged. Only for primitives without a nested jaxpr, whose
    input types are fixed by that jaxpr.
    """
    arrays = [v for v in vals if hasattr(v, "dtype")]
    if not arrays or not any(isinstance(v, Tracer) for v in arrays):
        return vals
    axes = varying_axes(arrays)
    if not axes:
        return vals
    return [vary_like(v, arrays) if hasattr(v, "dtype") else v for v in vals]


def explicit_batch_axis(x: Any) -> tuple[Any, Any]:
    """Returns ``(mesh, axis)``: the mesh of x's type and the mesh axis its batch dimension is split
    over, when that mesh has ``Explicit`` axes; ``(None, None)`` otherwise."""
    for leaf in jax.tree.leaves(x):
        sharding = getattr(jax.typeof(leaf), "sharding", None)
        mesh = getattr(sharding, "mesh", None)
        if sharding is None or mesh is None or mesh.empty or AxisType.Explicit not in mesh.axis_types:
            continue
        spec = sharding.spec
        return mesh, (spec[0] if len(spec) else None)
    return None, None


def batch_sharding(x: Any) -> NamedSharding | None:
    """Returns the ``NamedSharding`` of ``x``'s first leaf when it spans several devices, else None.

    Methods that leave the compiled world (exact IG's host loop) use it to spread their work over the
    same devices and to put the result back where the input was.
    """
    leaf = jax.tree.leaves(x)[0]
    sharding = getattr(leaf, "sharding", None) if isinstance(leaf, jax.Array) and not isinstance(leaf, Tracer) \
        else None
    if isinstance(sharding, NamedSharding) and len(sharding.device_set) > 1:
        return sharding
    return None


def replicated(sharding: NamedSharding) -> NamedSharding:
    """Returns the sharding that keeps a full copy on every device of ``sharding``'s mesh."""
    return NamedSharding(sharding.mesh, PartitionSpec())


def with_leading_axes(sharding: NamedSharding, n: int, ndim: int) -> NamedSharding:
    """Returns ``sharding`` for an array of ``ndim`` dims with ``n`` new unsharded leading axes
    (``target="all"`` puts ``K`` in front of the batch axis)."""
    spec = tuple(sharding.spec) + (None,) * (ndim - n - len(sharding.spec))
    return NamedSharding(sharding.mesh, PartitionSpec(*((None,) * n + spec)))


def put_global(value: Any, sharding: NamedSharding) -> jax.Array:
    """Returns the host array ``value`` (the same on every process) as a global array with ``sharding``.

    ``jax.make_array_from_callback`` copies only the slices this process's devices hold, so it also
    works when the mesh spans several hosts (``jax.device_put`` needs addressable devices).
    """
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def to_host(value: Any) -> Any:
    """Returns a jax array's full value as a NumPy array, gathered from every process when the array
    spans several hosts (a plain ``np.asarray`` only reads arrays this process holds entirely)."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable and not value.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def alpha_mesh(alpha_sharding: Any) -> Mesh | None:
    """Returns the mesh to split alphas over: None for ``None``/``False``, every device (of every
    process) for ``True``, or the given ``jax.sharding.Mesh``.

    Raises:
      TypeError: anything else.
    """
    if alpha_sharding is None or alpha_sharding is False:
        return None
    if alpha_sharding is True:
        return jax.make_mesh((jax.device_count(),), ("alphas",), axis_types=(AxisType.Auto,))
    if isinstance(alpha_sharding, Mesh):
        return alpha_sharding
    raise TypeError(
        f"alpha_sharding must be None, True (every device) or a jax.sharding.Mesh, got {alpha_sharding!r}; "
        "e.g. alpha_sharding=jax.make_mesh((jax.device_count(),), ('alphas',))"
    )


def place(tree: Any, sharding: NamedSharding) -> Any:
    """Returns ``tree`` laid out with ``sharding`` inside a compiled program: ``reshard`` on a mesh
    with ``Explicit`` axes (the layout is part of the type), a sharding constraint otherwise."""
    if AxisType.Explicit in sharding.mesh.axis_types:
        return jax.sharding.reshard(tree, sharding)
    return jax.lax.with_sharding_constraint(tree, sharding)
