"""Quadrature rules for the path integral  IG = integral_0^1 g(alpha) d alpha.

A rule turns ``n`` (the number of gradient evaluations) into nodes ``alpha_k`` in [0, 1] and weights
``w_k`` with ``sum_k w_k = 1``, so that ``sum_k w_k g(alpha_k)`` approximates the integral. Tables are
computed in NumPy float64 at trace time and become constants of the compiled program.

Rules that are not a fixed table (adaptive, Monte Carlo with a key, exact piecewise-linear integration)
override :meth:`AbstractRule.integrate`, which receives the integrand itself; the entry function only
ever calls ``integrate``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from jax.core import Tracer

from .._pytree import Module
from .accumulate import weighted_sum

__all__ = ["AbstractRule"]


class AbstractRule(Module, abc.ABC):
    """Base class of quadrature rules on [0, 1].

    Subclasses implement :meth:`nodes_and_weights`; they may raise ``min_steps`` and refine
    :meth:`check_steps`. A rule whose nodes are not a fixed table overrides :meth:`integrate`.
    """

    min_steps: ClassVar[int] = 1
    #: True when ``integrate`` returns a fixed linear combination of integrand values whatever they
    #: are. Such a rule may be handed the integrand in a hidden space (the entry function moves an
    #: affine first layer of ``f`` out of the alpha loop and maps the sum back linearly); a rule that
    #: looks at the values (adaptive refinement) sets this to False and always sees input space.
    linear: ClassVar[bool] = True

    @abc.abstractmethod
    def nodes_and_weights(self, n: int) -> tuple[Any, Any]:
        """Returns ``(alphas, weights)``, each of shape ``(n,)``, alphas in [0, 1], weights summing to 1."""

    def check_steps(self, n: int) -> None:
        """Raises ``ValueError`` if this rule cannot use ``n`` steps."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n_steps must be a Python int, got {n!r} of type {type(n).__name__}")
        if n < self.min_steps:
            raise ValueError(
                f"{type(self).__name__} needs n_steps >= {self.min_steps}, got n_steps={n}; "
                f"pass n_steps={self.min_steps} or more"
            )

    def table(self, n: int, key: Any = None) -> tuple[Any, Any]:
        """Returns the ``(alphas, weights)`` that :meth:`integrate` uses (``key`` is for random rules)."""
        return self.nodes_and_weights(n)

    def integrate(
        self,
        integrand: Callable[[Any], Any],
        n: int,
        *,
        dtype: Any,
        alpha_batch_size: int | None = None,
        key: Any = None,
        alpha_mesh: Any = None,
    ) -> Any:
        """Returns ``sum_k w_k integrand(alpha_k)``, a pytree like one evaluation of the integrand.

        ``integrand`` maps a vector of alphas ``(m,)`` to a pytree whose leaves have a leading ``m``
        axis. With ``alpha_batch_size`` at most that many alphas are evaluated at once and the sum is
        accumulated chunk by chunk, so memory does not grow with ``n``. ``key`` is for random rules
        (:class:`jaxig.AbstractRandomRule`); a fixed table ignores it. With ``alpha_mesh`` (a
        ``jax.sharding.Mesh``) the alphas are split over its devices and the partial sums added.

        Raises ``ValueError`` if the table from :meth:`nodes_and_weights` has the wrong shapes or,
        when it is concrete (not traced, unlike a random rule's under ``jit``), holds a non-finite
        value, a node outside [0, 1] or weights not summing to 1.
        """
        alphas, weights = self.table(n, key)
        check_table(self, n, alphas, weights)
        return weighted_sum(integrand, alphas, weights, dtype=dtype, batch_size=alpha_batch_size, mesh=alpha_mesh)


def check_table(rule: AbstractRule, n: int, alphas: Any, weights: Any) -> None:
    """Raises ``ValueError`` unless ``(alphas, weights)`` is a table of ``n`` nodes on [0, 1] summing to 1.

    Shapes are always checked; values only when both arrays are concrete (a traced table, such as
    nodes drawn from a key under ``jit``, cannot be read at trace time).
    """
    call = f"{type(rule).__name__}.nodes_and_weights({n})"
    shapes = (np.shape(alphas), np.shape(weights))
    if shapes != ((n,), (n,)):
        raise ValueError(
            f"{call} returned alphas of shape {shapes[0]} and weights of shape {shapes[1]}; "
            f"both must have shape ({n},), one node and one weight per step"
        )
    if isinstance(alphas, Tracer) or isinstance(weights, Tracer):
        return
    alphas, weights = np.asarray(alphas), np.asarray(weights)
    for name, values in (("alphas", alphas), ("weights", weights)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(
                f"{call} returned {name}[{bad[0]}] = {float(values[bad[0]])}; nodes and weights must be finite"
            )
    # rounding slack: a node computed as 1 - tiny may land a few ulps outside
    slack = max(1e-12, 8 * float(np.finfo(alphas.dtype).eps)) if np.issubdtype(alphas.dtype, np.floating) else 0.0
    outside = np.flatnonzero((alphas < -slack) | (alphas > 1 + slack))
    if outside.size:
        k = outside[0]
        raise ValueError(
            f"{call} returned alphas[{k}] = {float(alphas[k])!r} outside [0, 1]; nodes must lie in [0, 1] "
            "(map a rule on [-1, 1] by alpha = (t + 1) / 2)"
        )
    total = float(np.sum(weights, dtype=np.float64))
    if not abs(total - 1.0) <= 1e-6:
        raise ValueError(
            f"{call} returned weights summing to {total:.9g}; weights must sum to 1 (the integral over "
            "[0, 1]; a rule on [-1, 1] has its weights halved)"
        )
