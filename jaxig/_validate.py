"""Input validation shared by the entry functions: what can be known from shapes and dtypes."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


def leaf_name(path: tuple) -> str:
    """Returns a readable name for a pytree leaf: ``x`` for a bare array, ``x['a'][0]`` inside a pytree."""
    return "x" + jax.tree_util.keystr(path)


def as_float_inputs(x: Any) -> tuple[Any, int]:
    """Returns ``(x, B)`` with every leaf a JAX array of a float dtype sharing the leading batch size ``B``.

    Raises:
      TypeError: a leaf is not floating point (integer or boolean inputs have no gradient).
      ValueError: ``x`` has no leaves, a leaf is a scalar, or leaves disagree on the batch size.
    """
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(x)
    if not leaves_with_path:
        raise ValueError(f"x has no array leaves (got {x!r}); pass an array or a pytree of arrays")
    leaves, batch = [], None
    for path, leaf in leaves_with_path:
        name = leaf_name(path)
        if not isinstance(leaf, jax.Array):
            try:
                leaf = jnp.asarray(leaf)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"{name} ({type(leaf).__name__}) could not be converted to an array ({err}); pass "
                    "float arrays (jax or NumPy) with a leading batch axis, not strings, objects or "
                    "ragged nested lists"
                ) from err
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{name} has dtype {leaf.dtype}; integrated gradients needs float inputs because "
                "it differentiates f with respect to them. For token ids or categorical codes, "
                "attribute at the embedding layer: embed the ids first and pass f a function of the "
                "(float) embeddings. For float data stored as integers, cast with x.astype(jnp.float32)."
            )
        if leaf.ndim == 0:
            raise ValueError(
                f"{name} is a scalar; inputs need a leading batch axis. "
                "For a single example pass x[None] (shape (1, ...)); a nested list is read as a pytree "
                "of scalars, so convert it first: np.asarray(x, np.float32)."
            )
        if leaf.shape[0] == 0:
            raise ValueError(
                f"{name} has an empty batch (shape {tuple(leaf.shape)}); there is nothing to attribute. "
                "Skip empty batches before calling (the dataset runner does)"
            )
        if batch is None:
            batch, first = leaf.shape[0], name
        elif leaf.shape[0] != batch:
            raise ValueError(
                f"{name} has batch size {leaf.shape[0]} but {first} has {batch}; every leaf of x "
                "needs the same leading batch axis"
            )
        leaves.append(leaf)
    assert batch is not None  # x has a leaf (checked above), and the first one set it
    return jax.tree_util.tree_unflatten(treedef, leaves), int(batch)


def is_concrete(*trees: Any) -> bool:
    """Returns True when no leaf of the trees is a tracer (we are not inside jit/vmap/grad of them)."""
    return not any(isinstance(leaf, Tracer) for t in trees for leaf in jax.tree.leaves(t))


def check_finite(attributions: Any) -> None:
    """Raises ``ValueError`` naming the leaves with NaN or Inf attributions (concrete values only)."""
    if not is_concrete(attributions):
        raise TypeError(
            "check_finite=True needs concrete values and cannot run under jax.jit, jax.vmap or "
            "jax.grad; there, use jax.config.update('jax_debug_nans', True) instead"
        )
    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(attributions)[0]:
        n_bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(np.asarray(leaf))))
        if n_bad:
            bad.append(f"{leaf_name(path)}: {n_bad} of {np.size(leaf)} values")
    if bad:
        raise ValueError(
            "attributions are not finite (" + "; ".join(bad) + "). Check that f, x and the baseline "
            "are finite along the whole path (e.g. log or division by zero at the baseline)"
        )


def pair_with_x(tree: Any, x: Any, name: str, hint: str) -> list[tuple[str, Any, Any]]:
    """Returns ``[(leaf name, x leaf, tree leaf)]`` for a pytree that must be shaped like ``x``.

    A tree with ``x``'s structure pairs leaf by leaf; a bare array (a single leaf) pairs with a
    single-leaf ``x`` whatever containers wrap ``x``. Used for baselines, masks, noise and references.

    Raises:
      ValueError: the structures differ; ``hint`` says what to pass.
    """
    x_leaves, x_def = jax.tree_util.tree_flatten_with_path(x)
    t_leaves, t_def = jax.tree_util.tree_flatten(tree)
    bare = jax.tree_util.treedef_is_leaf(t_def)
    if t_def != x_def and not (len(x_leaves) == 1 and len(t_leaves) == 1 and bare):
        raise ValueError(f"{name} structure {t_def} does not match input structure {x_def}; {hint}")
    return [(name + leaf_name(path)[1:], xi, ti) for (path, xi), ti in zip(x_leaves, t_leaves)]


def check_rule_and_path(rule: Any, path: Any) -> None:
    """Raises ``TypeError`` unless ``rule`` is an :class:`AbstractRule` and ``path`` an :class:`AbstractPath`."""
    from ._paths.base import AbstractPath
    from ._quadrature.base import AbstractRule

    if not isinstance(rule, AbstractRule):
        raise TypeError(
            f"rule must be an instance of jaxig.AbstractRule such as jaxig.GaussLegendre(), got {rule!r}"
        )
    if not isinstance(path, AbstractPath):
        raise TypeError(f"path must be an instance of jaxig.AbstractPath such as jaxig.StraightLine(), got {path!r}")
