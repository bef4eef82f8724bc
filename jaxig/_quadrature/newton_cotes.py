"""Equally spaced rules: Riemann sums (left, right, midpoint), the trapezoid and Simpson rules."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import AbstractRule

__all__ = ["RiemannLeft", "RiemannRight", "RiemannMidpoint", "Trapezoid", "Simpson"]


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
