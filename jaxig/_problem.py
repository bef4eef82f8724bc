"""The one setup step every method shares: ``prepare(f, x, baseline, target=..., args=...)``.

It validates what can be known from shapes and dtypes, resolves the target, and lifts ``f`` into a
:class:`~jaxig._model.Model` whose arrays are inputs of the compiled program (so results always
follow the model's current weights). The result, a :class:`Problem`, is a pytree: pass it to a
``jax.jit``-compiled method body as one argument.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from . import _validate
from ._baselines import check_baseline, resolve_baseline
from ._model import Model, lift
from ._pytree import Module, static_field
from ._targets import TargetSpec, check_target_fits, resolve_target

__all__ = ["Problem", "prepare"]


class Problem(Module):
    """A validated attribution problem: the lifted model, inputs, baseline and target.

    Attributes:
      model: ``f`` (with its extra ``args``) as a :class:`Model`, traced at ``x``'s shapes.
      x: the inputs, a pytree of float arrays with a leading batch axis.
      baseline: the baseline as given (``0.0`` for ``None``); :meth:`full_baseline` broadcasts it.
        Broadcasting happens inside the compiled program, where it costs no dispatch per call.
      index: int32 ``(B,)`` output indices for integer targets, else ``None``.
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
        return self.target.kind == "all"

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
      ValueError: inputs without a batch axis or with leaves of different batch sizes; outputs not
        of shape ``(B,)``/``(B, K)``; several outputs and no target; a bad target index or shape; a
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
    spec, index = resolve_target(target, batch)
    baseline = 0.0 if baseline is None else baseline  # None and scalars share one compiled program
    # Checked here, once, by shapes (free); the broadcast itself runs inside the compiled program.
    check_baseline(baseline, x)
    model = lift(f, x, tuple(args))
    _validate.check_output(model.program.out_struct, batch)
    check_target_fits(spec, model.program.out_struct)
    return Problem(model=model, x=x, baseline=baseline, index=index, target=spec)
