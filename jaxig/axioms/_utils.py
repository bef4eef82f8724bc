"""Helpers for `jaxig.axioms`: the result object, per-feature flattening of pytrees, targets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._targets import Outputs, check_target_fits, resolve_target
from .._targets import select as select_outputs

_MAX_LINES = 10


@dataclasses.dataclass(frozen=True, eq=False)
class AxiomResult:
    """Returns nothing; holds the outcome of one axiom check.

    Attributes:
      axiom: which axiom was checked, e.g. ``"completeness"``.
      passed: True iff every example met the criterion. ``bool(result)`` is ``passed``.
      measured: the measured quantity, NumPy array of shape (B,) (or (K, B) for ``target="all"``).
      tolerance: the bound it was compared against, same shape as ``measured``.
      quantity: what ``measured`` is, in words / plain math.
      criterion: how ``measured`` and ``tolerance`` were compared, e.g. ``"measured <= tolerance"``.
      failures: one readable line per failing (example, feature), naming where it failed.
      notes: extra facts about the check (e.g. which features were found to be dummies).
    """

    axiom: str
    passed: bool
    measured: np.ndarray
    tolerance: np.ndarray
    quantity: str
    criterion: str
    failures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.passed)

    def raise_if_failed(self) -> AxiomResult:
        """Returns self if the check passed; raises AssertionError with the report otherwise."""
        if not self.passed:
            raise AssertionError(self.report())
        return self

    def report(self) -> str:
        """Returns a multi-line, human-readable account of the check."""
        n = self.measured.size
        n_bad = len(self.failures)
        status = "passed" if self.passed else "FAILED"
        head = f"{self.axiom}: {status}"
        if self.measured.size:
            finite = np.isfinite(self.measured)
            worst = (
                f"worst measured {_fmt(np.max(self.measured[finite]))}"
                if self.criterion.startswith("measured <=") and finite.any()
                else f"smallest measured {_fmt(np.min(self.measured[finite]))}" if finite.any() else ""
            )
            head += f" ({n} example{'s' if n != 1 else ''}{', ' + worst if worst else ''})"
        lines = [head, f"  measured: {self.quantity}", f"  criterion: {self.criterion}"]
        lines += [f"  note: {s}" for s in self.notes]
        for s in self.failures[:_MAX_LINES]:
            lines.append(f"  failed: {s}")
        if n_bad > _MAX_LINES:
            lines.append(f"  ... and {n_bad - _MAX_LINES} more failures")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"AxiomResult({self.report()})"

    __str__ = report


def _fmt(v: float) -> str:
    return f"{float(v):.4g}"


# ---------------------------------------------------------------------------- pytrees <-> (B, D)


@dataclasses.dataclass(frozen=True)
class FlatSpec:
    """Layout of a pytree of (B, ...) arrays flattened to one (B, D) feature matrix."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]  # per-example shapes of the leaves
    dtypes: tuple[Any, ...]
    paths: tuple[str, ...]
    batch: int

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s, dtype=int)) for s in self.shapes)

    @property
    def n_features(self) -> int:
        return sum(self.sizes)

    def name(self, d: int) -> str:
        """Returns how flat feature ``d`` is indexed in x, e.g. ``x[:, 3]`` or ``x['a'][:, 1, 2]``."""
        for path, shape, size in zip(self.paths, self.shapes, self.sizes):
            if d < size:
                idx = np.unravel_index(d, shape) if shape else ()
                inner = ", ".join([":"] + [str(int(i)) for i in idx])
                return f"x{path}[{inner}]"
            d -= size
        raise IndexError(d)


def flatten(x: Any, what: str = "x") -> tuple[np.ndarray, FlatSpec]:
    """Returns x as a NumPy (B, D) array (leaves raveled per example and concatenated) and its layout.

    NumPy, not jnp: the checks only rearrange entries, and eager jnp ops would compile one XLA kernel per
    new shape.
    """
    pairs, treedef = jax.tree_util.tree_flatten_with_path(x)
    if not pairs:
        raise ValueError(f"{what} has no array leaves; pass an array or a pytree of arrays")
    leaves = []
    for path, raw in pairs:
        name = f"{what}{jax.tree_util.keystr(path)}"
        if isinstance(raw, (str, bytes)):
            raise TypeError(f"{name} is the string {raw!r}; every leaf of {what} must be a float array")
        leaf = np.asarray(raw)
        # dtype before ndim: a string or object leaf is a type error, not a missing batch axis
        if leaf.dtype.kind not in "biufc":
            raise TypeError(
                f"{name} is a {type(raw).__name__} (dtype {leaf.dtype}); every leaf of {what} must be a float array"
            )
        if leaf.ndim == 0:
            raise ValueError(
                f"{name} is a scalar; inputs need a leading batch axis. For a single example pass "
                f"{what}[None] (shape (1, ...))"
            )
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(f"{name} has dtype {leaf.dtype}; pass floats, e.g. {name}.astype(jnp.float32)")
        leaves.append(leaf)
    batch = leaves[0].shape[0]
    for (path, _), leaf in zip(pairs, leaves):
        if leaf.shape[0] != batch:
            first = f"{what}{jax.tree_util.keystr(pairs[0][0])}"
            raise ValueError(
                f"{what}{jax.tree_util.keystr(path)} has batch size {leaf.shape[0]} (shape {leaf.shape}) but "
                f"{first} has {batch}; every leaf of {what} needs the same leading batch axis"
            )
    if batch == 0:
        raise ValueError(
            f"{what} has an empty batch (leaf shapes {[leaf.shape for leaf in leaves]}); the checks measure "
            "each example, so pass at least one example"
        )
    dtype = np.result_type(*leaves)
    flat = np.concatenate([leaf.reshape(batch, -1).astype(dtype) for leaf in leaves], axis=1)
    spec = FlatSpec(
        treedef=treedef,
        shapes=tuple(leaf.shape[1:] for leaf in leaves),
        dtypes=tuple(leaf.dtype for leaf in leaves),
        paths=tuple(jax.tree_util.keystr(p) for p, _ in pairs),
        batch=batch,
    )
    return flat, spec


def unflatten(flat: Any, spec: FlatSpec) -> Any:
    """Returns the pytree of jax arrays with spec's layout whose features are the columns of flat (N, D)."""
    xp = np if isinstance(flat, np.ndarray) else jnp
    n = flat.shape[0]
    cuts = np.cumsum(spec.sizes)[:-1]
    parts = xp.split(flat, cuts, axis=1)
    # jax arrays either way: user functions may rely on jax-only methods such as x.at[...]
    leaves = [jnp.asarray(p.reshape((n,) + s).astype(dt)) for p, s, dt in zip(parts, spec.shapes, spec.dtypes)]
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


def flatten_attr(attr: Any, spec: FlatSpec, target: Any, n: int, name: str = "method") -> np.ndarray:
    """Returns attributions as a float64 NumPy array (K, n, D); K = 1 unless target == "all"."""
    try:
        leaves = spec.treedef.flatten_up_to(attr)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} returned attributions whose structure differs from x's: {e}") from e
    out = []
    for leaf, shape, path in zip(leaves, spec.shapes, spec.paths):
        leaf = np.asarray(leaf, dtype=np.float64)
        want = (n,) + shape
        if is_all(target):
            if leaf.ndim != len(want) + 1 or leaf.shape[1:] != want:
                raise ValueError(
                    f"{name} returned attributions{path} of shape {leaf.shape} for target='all'; "
                    f"expected (K,) + {want}"
                )
            out.append(leaf.reshape(leaf.shape[0], n, -1))
        else:
            if leaf.shape != want:
                raise ValueError(f"{name} returned attributions{path} of shape {leaf.shape}; expected {want}")
            out.append(leaf.reshape(1, n, -1))
    return np.concatenate(out, axis=2)


# ------------------------------------------------------------------------------------- targets


def is_all(target: Any) -> bool:
    """Whether the target explains several outputs at once (a leading K axis): "all" or jaxig.outputs."""
    return (isinstance(target, str) and target == "all") or isinstance(target, Outputs)


def tile_target(target: Any, reps: int) -> Any:
    """Returns the target for a batch made of `reps` copies of the original (row r <-> example r % B)."""
    if target is None or callable(target) or is_all(target) or np.ndim(target) == 0:
        return target
    return np.tile(np.asarray(target), reps)


def select(out: Any, target: Any, n: int) -> jax.Array:
    """Returns the explained outputs as a (K, n) array; K = 1 unless target == "all"."""
    if callable(target):
        r = jnp.asarray(target(out))
        if r.shape != (n,):
            raise ValueError(f"target(outputs) has shape {r.shape}; a callable target must return ({n},)")
        return r[None]
    out = jnp.asarray(out)
    if out.ndim not in (1, 2) or out.shape[0] != n:
        raise ValueError(f"f returned outputs of shape {out.shape}; expected ({n},) or ({n}, K)")
    if target is not None and not is_all(target) and out.ndim == 1:
        raise ValueError(f"target={target!r} selects a column but f returned outputs of shape {out.shape}")
    spec, index = resolve_target(target, n)
    check_target_fits(spec, out)
    chosen = select_outputs(spec, out, index)
    return chosen if is_all(target) else chosen[None]


def call_method(method: Callable, f: Callable, x: Any, baseline: Any, target: Any) -> Any:
    """Returns method(f, x, baseline), passing target by keyword only when one was given."""
    if target is None:
        return method(f, x, baseline)
    return method(f, x, baseline, target=target)


def method_flat(
    method: Callable,
    f: Callable,
    flat_x: np.ndarray,
    flat_b: np.ndarray,
    spec: FlatSpec,
    target: Any,
    batch_size: int | None,
) -> np.ndarray:
    """Returns the method's attributions for flat inputs (N, D) as (K, N, D), in chunks of batch_size."""
    n = flat_x.shape[0]
    step = n if batch_size is None else int(batch_size)
    if step < 1:
        raise ValueError(f"batch_size={batch_size}; pass a positive int or None")
    chunks = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        t = target
        if target is not None and not callable(target) and not is_all(target) and np.ndim(target) == 1:
            t = np.asarray(target)[start:stop]
        attr = call_method(method, f, unflatten(flat_x[start:stop], spec), unflatten(flat_b[start:stop], spec), t)
        chunks.append(flatten_attr(attr, spec, target, stop - start))
    return np.concatenate(chunks, axis=1)


def where(k: int, e: int, target: Any) -> str:
    """Returns a phrase naming example e (and output k for target='all')."""
    return f"target {k}, example {e}" if is_all(target) else f"example {e}"


def squeeze(a: np.ndarray, target: Any) -> np.ndarray:
    """Returns (K, B) as (B,) unless target == 'all'."""
    return a if is_all(target) else a[0]
