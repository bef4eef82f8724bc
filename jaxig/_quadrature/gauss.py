"""Gaussian rules on [0, 1]: Gauss–Legendre (endpoints excluded) and Gauss–Lobatto (both included)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.linalg

from .base import AbstractRule

__all__ = ["GaussLegendre", "GaussLobatto"]


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


def _legendre(n: int, t: np.ndarray) -> np.ndarray:
    """Returns P_n(t) by the three-term recurrence (stable for large n)."""
    p0, p1 = np.ones_like(t), t
    if n == 0:
        return p0
    for k in range(1, n):
        p0, p1 = p1, ((2 * k + 1) * t * p1 - k * p0) / (k + 1)
    return p1


class GaussLobatto(AbstractRule):
    """Gauss–Lobatto rule on [0, 1] with ``n >= 2`` nodes, both endpoints included.

    On [-1, 1] the interior nodes are the roots of ``P'_{n-1}`` (eigenvalues of the Jacobi matrix
    of the Jacobi polynomials with alpha = beta = 1, off-diagonal ``sqrt(k (k+2) / ((2k+1)(2k+3)))``)
    and the weights are ``2 / (n (n-1) P_{n-1}(t_k)^2)``. Exact for polynomials of degree
    ``2n - 3``. Abramowitz and Stegun 25.4.32.
    """

    min_steps: ClassVar[int] = 2

    def nodes_and_weights(self, n):
        self.check_steps(n)
        m = n - 2
        if m:
            k = np.arange(1, m, dtype=np.float64)
            off = np.sqrt(k * (k + 2) / ((2 * k + 1) * (2 * k + 3)))
            inner = scipy.linalg.eigvalsh_tridiagonal(np.zeros(m), off) if m > 1 else np.zeros(1)
        else:
            inner = np.zeros(0)
        t = np.concatenate([[-1.0], np.sort(inner), [1.0]])
        w = 2.0 / (n * (n - 1) * _legendre(n - 1, t) ** 2)
        return (t + 1.0) / 2.0, w / w.sum()
