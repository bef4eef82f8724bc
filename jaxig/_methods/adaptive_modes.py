"""How :func:`jaxig.adaptive_integrated_gradients` integrates: mode objects, not strings.

- :class:`Kronrod` — globally adaptive Gauss–Kronrod (smooth ``f``), with the nested QNG-style start.
- :class:`Piecewise` — kink-aware integration for piecewise-linear ``f`` (ReLU, abs, max, max-pool).
- :class:`Auto` — ``Piecewise`` when the explained output is piecewise linear in the input (read
  from the jaxpr, no FLOPs), else ``Kronrod``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._pytree import Module, static_field
from .._quadrature.kronrod import PAIRS

__all__ = ["AbstractAdaptiveMode", "Auto", "Kronrod", "Piecewise", "as_mode"]


class AbstractAdaptiveMode(Module):
    """Base class of the integration modes of :func:`jaxig.adaptive_integrated_gradients`."""

    name: ClassVar[str] = ""

    def first_pass(self) -> int:
        """Returns the gradient evaluations of the first pass (0 for a mode that picks another)."""
        return 0


class Kronrod(AbstractAdaptiveMode):
    """Globally adaptive Gauss–Kronrod integration (QUADPACK QNG start, then QAG bisection).

    Attributes:
      pair: 7 (G3/K7, 7 evaluations per interval) or 15 (G7/K15).
      nested: with ``n_init=1``, start with the nested G1 < G3 < K7 < P15 rules (3, 7, 15
        evaluations); ``False`` starts with the Kronrod pair on [0, 1].
      n_init: the number of equal intervals to start from.
    """

    pair: int = static_field(default=7)
    nested: bool = static_field(default=True)
    n_init: int = static_field(default=1)
    name: ClassVar[str] = "kronrod"

    def __post_init__(self) -> None:
        if self.pair not in PAIRS:
            raise ValueError(f"Kronrod pair must be 7 or 15 (Gauss–Kronrod G3/K7 or G7/K15), got {self.pair!r}")
        _check_positive("n_init", self.n_init)

    def first_pass(self) -> int:
        """Returns the gradient evaluations of the first pass."""
        from .._quadrature.kronrod import NESTED_SIZES

        return NESTED_SIZES[1] if self.nested and self.n_init == 1 else self.n_init * self.pair


class Piecewise(AbstractAdaptiveMode):
    """Kink-aware adaptive integration for piecewise-linear ``f`` (see the method's docstring).

    Attributes:
      n_init: the number of equal intervals to start from (``n_init + 1`` first points).
      pieces: read each point's linear piece off the jaxpr (one forward-mode pass per point);
        ``False`` analyses the points alone (for studies).
    """

    n_init: int = static_field(default=1)
    pieces: bool = static_field(default=True)
    name: ClassVar[str] = "piecewise"

    def __post_init__(self) -> None:
        _check_positive("n_init", self.n_init)

    def first_pass(self) -> int:
        return self.n_init + 1


class Auto(AbstractAdaptiveMode):
    """:class:`Piecewise` when the explained output is piecewise linear in ``x``, else :class:`Kronrod`."""

    name: ClassVar[str] = "auto"


def as_mode(method: Any) -> AbstractAdaptiveMode:
    """Returns the mode object for ``method`` (an object, or the shorthand 'auto'/'kronrod'/'piecewise')."""
    if isinstance(method, AbstractAdaptiveMode):
        return method
    shorthand = {"auto": Auto, "kronrod": Kronrod, "piecewise": Piecewise}
    if isinstance(method, str) and method in shorthand:
        return shorthand[method]()
    raise ValueError(
        f"method must be jaxig.Auto(), jaxig.Kronrod(...) or jaxig.Piecewise(...) (or the shorthand "
        f"'auto', 'kronrod', 'piecewise'), got {method!r}"
    )


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
