"""The one setup step every method shares: ``prepare(f, x, baseline, target=..., args=...)``.

It validates what can be known from shapes and dtypes, resolves the target, and lifts ``f`` into a
:class:`~jaxig._model.Model` whose arrays are inputs of the compiled program (so results always
follow the model's current weights). The result, a :class:`Problem`, is a pytree: pass it to a
``jax.jit``-compiled method body as one argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from . import _validate
from ._baselines import check_baseline, resolve_baseline
from ._model import Model, lift
from ._pytree import Module, static_field
from ._sharding import struct_like
from ._targets import TargetSpec, resolve_target_for

__all__ = ["Problem", "prepare", "RowModel", "lift_rows"]


class Problem(Module):
    """A validated attribution problem: the lifted model, inputs, baseline and target.

    Attributes:
      model: ``f`` (with its extra ``args``) as a :class:`Model`, traced at ``x``'s shapes.
      x: the inputs, a pytree of float arrays with a leading batch axis.
      baseline: the baseline as given (``0.0`` for ``None``); :meth:`full_baseline` broadcasts it.
        Broadcasting happens inside the compiled program, where it costs no dispatch per call.
      index: the target's array (``None`` for ``None``, ``"all"`` and callable targets): int32
        ``(B,)`` flat output indices, int32 ``(K,)`` for :func:`jaxig.outputs`, float ``(B, K)``
        weights for :func:`jaxig.weighted` (see :class:`~jaxig._targets.TargetSpec`).
      target: the static part of the target (its kind and callable).
    """

    model: Model
    x: Any
    baseline: Any
    index: Any
    target: TargetSpec = static_field()

    @property
    def batch(self) -> int:
        return jax.tree.leaves(self.x)[0].shape[0]

    @property
    def dtype(self) -> Any:
        return jnp.result_type(*jax.tree.leaves(self.x))

    @property
    def out_struct(self) -> jax.ShapeDtypeStruct:
        return self.model.program.out_struct

    @property
    def all_k(self) -> bool:
        """Whether results carry a leading ``K`` axis (``target="all"`` or :func:`jaxig.outputs`)."""
        return self.target.multi

    def full_baseline(self) -> Any:
        """Returns the baseline broadcast to ``x``'s structure, shapes and dtypes."""
        return resolve_baseline(self.baseline, self.x)


def prepare(
    f: Callable[..., Any],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
) -> Problem:
    """Returns the :class:`Problem` for explaining ``f(x, *args)`` relative to ``baseline``.

    Raises:
      TypeError: ``f`` is not callable or not traceable; non-float inputs; ``f`` returns non-float
        outputs; a target of unsupported type; ``args`` not a tuple or list.
      ValueError: inputs without a batch axis or with leaves of different batch sizes (``x`` of
        shape ``(D,)`` holding one example: the message says ``x[None]``); outputs without the
        leading batch axis; several outputs and no target; a bad target index, weight or label; a
        baseline whose structure or shapes do not match ``x``.
    """
    if not callable(f):
        raise TypeError(f"f must be a callable mapping a batch to outputs, got {type(f).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(
            f"args must be a tuple of extra arguments of f (f(x, *args)), got {type(args).__name__}; "
            "for one extra argument m pass args=(m,)"
        )
    x, batch = _validate.as_float_inputs(x)
    baseline = 0.0 if baseline is None else baseline  # None and scalars share one compiled program
    # Checked here, once, by shapes (free); the broadcast itself runs inside the compiled program.
    check_baseline(baseline, x)
    model = lift(f, x, tuple(args))
    spec, index = resolve_target_for(target, model.program.out_struct, batch, x_shape=jax.tree.leaves(x)[0].shape)
    check_independent(model, x)
    return Problem(model=model, x=x, baseline=baseline, index=index, target=spec)


# Programs already probed for mixing examples (one probe per structure; bounded like jit's own cache).
_PROBED: dict = {}


def check_independent(model: Model, x: Any) -> None:
    """Raises ``ValueError`` when one example's output depends on another example's input.

    Every method differentiates (or perturbs) each example as if the others were not there; a
    softmax or normalisation over the batch axis, or BatchNorm in training mode, breaks that
    silently (attributions ~1e-9 where the output moved by 0.37). The probe is one forward-mode
    pass with a tangent on example 0 only, run once per model structure (compiled like the
    method itself), on concrete inputs with at least two examples.
    """
    batch = jax.tree.leaves(x)[0].shape[0]
    if batch < 2 or not _validate.is_concrete(x, model) or model.program in _PROBED:
        return
    probe = _mixing_probe(model, x)
    if not _validate.is_concrete(probe):  # inside a caller's transformation: values are not known
        return
    own, other = (float(v) for v in probe)
    _PROBED[model.program] = True
    if other > 1e-5 * own + 1e-30:
        del _PROBED[model.program]
        raise ValueError(
            f"f mixes examples: its output for example 1 or later changes with the input of example 0 "
            f"(derivative {other:.3g}, against {own:.3g} for example 0 itself). Attribution methods "
            "explain each example on its own; common causes are a softmax or normalisation over the "
            "batch axis (axis 0), BatchNorm in training mode (use eval mode, e.g. "
            "use_running_average=True), a reshape that moves the batch axis, or x being one example "
            f"without its batch axis (x of shape {tuple(jax.tree.leaves(x)[0].shape)}: add one, x[None]). "
            "Fix f, or explain one example at a time (x[i:i+1])"
        )


@jax.jit
def _mixing_probe(model: Model, x: Any) -> tuple[jax.Array, jax.Array]:
    # A product, not a scatter: a scatter into a batch axis sharded on an Explicit mesh has no
    # unambiguous output sharding; ones_like(v) times a replicated 0/1 column keeps x's.
    def first_example(v):
        column = (jnp.arange(v.shape[0]) == 0).astype(v.dtype).reshape((-1,) + (1,) * (v.ndim - 1))
        return jnp.ones_like(v) * column

    tangent = jax.tree.map(first_example, x)
    _, dout = jax.jvp(model, (x,), (tangent,))
    flat = jnp.abs(jnp.reshape(dout, (dout.shape[0], -1)).astype(jnp.float32))
    first = (jnp.arange(flat.shape[0]) == 0).astype(flat.dtype)[:, None]  # masks, not slices (sharding)
    return jnp.max(flat * first), jnp.max(flat * (1 - first))


class RowModel(Module):
    """``f`` traced for one example, for methods that evaluate examples at different points.

    ``model`` takes inputs with a leading axis of 1; ``args`` are the extra arguments as given, and
    ``per_example`` says which of their leaves carry the batch axis (leading axis ``B``: masks,
    lengths) and are therefore sliced with their example; the other leaves are shared.
    """

    model: Model
    args: tuple
    per_example: tuple = static_field()

    def take(self, rows: Any) -> tuple:
        """Returns the args for the examples ``rows`` (int array ``(m,)``): per-example leaves get a
        leading axis ``m`` (each slice shaped for one example), shared leaves are unchanged."""
        leaves, treedef = jax.tree.flatten(self.args)
        taken = [leaf[rows][:, None] if per else leaf for leaf, per in zip(leaves, self.per_example)]
        return jax.tree.unflatten(treedef, taken)

    def first(self) -> tuple:
        """Returns the args of the first example (per-example leaves sliced to a leading axis of 1)."""
        leaves, treedef = jax.tree.flatten(self.args)
        return jax.tree.unflatten(treedef, [leaf[:1] if per else leaf for leaf, per in zip(leaves, self.per_example)])

    def axes(self) -> Any:
        """Returns ``vmap`` in_axes for :meth:`take`'s result: 0 on per-example leaves, None elsewhere."""
        treedef = jax.tree.structure(self.args)
        return jax.tree.unflatten(treedef, [0 if per else None for per in self.per_example])

    def with_args(self, args: tuple) -> Model:
        """Returns the one-example model with the given (one example's) args."""
        return self.model.replace(args=args)


def lift_rows(f: Callable[..., Any], problem: Problem) -> RowModel:
    """Returns ``f`` (with ``problem``'s args) traced for one example as a :class:`RowModel`."""
    batch = problem.batch
    args = problem.model.args
    leaves, treedef = jax.tree.flatten(args)
    per = tuple(bool(getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == batch) for leaf in leaves)
    # one example's shapes; inside shard_map also the manual axes the batch varies over, so that the
    # trace casts the weights where they meet it (see _sharding.struct_like)
    row = lambda v: struct_like(v, (1,) + tuple(v.shape[1:]))  # noqa: E731
    row_args = jax.tree.unflatten(treedef, [row(leaf) if p else leaf for leaf, p in zip(leaves, per)])
    model = lift(f, jax.tree.map(row, problem.x), row_args)
    return RowModel(model=model.replace(args=args), args=args, per_example=per)
