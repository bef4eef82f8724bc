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
from typing import Any, Callable, ClassVar

import numpy as np
from flax import struct

from ._accumulate import weighted_sum

__all__ = [
    "AbstractRule",
    "RiemannLeft",
    "RiemannRight",
    "RiemannMidpoint",
    "Trapezoid",
    "Simpson",
    "GaussLegendre",
]


class AbstractRule(struct.PyTreeNode, abc.ABC):
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

    def integrate(
        self,
        integrand: Callable[[Any], Any],
        n: int,
        *,
        dtype: Any,
        alpha_batch_size: int | None = None,
    ) -> Any:
        """Returns ``sum_k w_k integrand(alpha_k)``, a pytree like one evaluation of the integrand.

        ``integrand`` maps a vector of alphas ``(m,)`` to a pytree whose leaves have a leading ``m``
        axis. With ``alpha_batch_size`` at most that many alphas are evaluated at once and the sum is
        accumulated chunk by chunk, so memory does not grow with ``n``.
        """
        alphas, weights = self.nodes_and_weights(n)
        return weighted_sum(integrand, alphas, weights, dtype=dtype, batch_size=alpha_batch_size)


def _uniform(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return alphas, np.full(alphas.shape, 1.0 / alphas.size)


class RiemannLeft(AbstractRule):
    """Left Riemann sum: ``alpha_k = k / n``, ``k = 0 .. n-1``, ``w_k = 1 / n``. Exact for constants."""

    def nodes_and_weights(self, n):
        self.check_steps(n)
        return _uniform(np.arange(n, dtype=np.float64) / n)


class RiemannRight(AbstractRule):
    """Right Riemann sum: ``alpha_k = k / n``, ``k = 1 .. n``, ``w_k = 1 / n``.

    This is the rule of the original IG paper (Sundararajan et al., 2017, eq. 3).
    """

    def nodes_and_weights(self, n):
        self.check_steps(n)
        return _uniform(np.arange(1, n + 1, dtype=np.float64) / n)


class RiemannMidpoint(AbstractRule):
    """Midpoint rule: ``alpha_k = (k + 1/2) / n``, ``w_k = 1 / n``. Exact for linear integrands."""

    def nodes_and_weights(self, n):
        self.check_steps(n)
        return _uniform((np.arange(n, dtype=np.float64) + 0.5) / n)


class Trapezoid(AbstractRule):
    """Composite trapezoid rule on ``n`` equally spaced nodes including both ends.

    ``h = 1/(n-1)``, weights ``h/2, h, ..., h, h/2`` (they sum to 1, unlike Captum's
    ``riemann_trapezoid`` whose weights sum to ``(n-1)/n``). Exact for linear integrands.
    """

    min_steps: ClassVar[int] = 2

    def nodes_and_weights(self, n):
        self.check_steps(n)
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] *= 0.5
        return alphas, weights


class Simpson(AbstractRule):
    """Composite Simpson rule on ``n`` equally spaced nodes including both ends. Exact for cubics.

    For odd ``n`` this is the composite 1/3 rule (weights ``h/3 * [1, 4, 2, 4, ..., 4, 1]``). For
    even ``n >= 4`` (an odd number of intervals) the last three intervals use Simpson's 3/8 rule
    (weights ``3h/8 * [1, 3, 3, 1]``) and the rest the 1/3 rule, which keeps fourth-order accuracy.
    """

    min_steps: ClassVar[int] = 3

    def nodes_and_weights(self, n):
        self.check_steps(n)
        alphas = np.linspace(0.0, 1.0, n)
        h = 1.0 / (n - 1)
        weights = np.zeros(n)
        n_third = n if n % 2 == 1 else n - 3  # nodes covered by the 1/3 rule
        if n_third >= 3:
            w = np.ones(n_third)
            w[1:-1:2] = 4.0
            w[2:-1:2] = 2.0
            weights[:n_third] += w * h / 3.0
        if n % 2 == 0:
            weights[n - 4 :] += np.array([1.0, 3.0, 3.0, 1.0]) * 3.0 * h / 8.0
        return alphas, weights


class GaussLegendre(AbstractRule):
    """Gauss–Legendre rule mapped to [0, 1]. Exact for polynomials of degree ``2n - 1``.

    Nodes ``alpha_k = (t_k + 1) / 2`` and weights ``w_k = v_k / 2`` from the Legendre roots ``t_k`` and
    weights ``v_k`` on [-1, 1] (``numpy.polynomial.legendre.leggauss``); the same table as Captum's
    ``method="gausslegendre"``. Endpoints are not nodes.
    """

    def nodes_and_weights(self, n):
        self.check_steps(n)
        t, v = np.polynomial.legendre.leggauss(n)
        return (t + 1.0) / 2.0, v / 2.0
