"""The Clenshaw–Curtis rule: both endpoints included, nested for n = 2^k + 1."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import AbstractRule

__all__ = ["ClenshawCurtis"]


class ClenshawCurtis(AbstractRule):
    """Clenshaw–Curtis rule on [0, 1] with ``n >= 2`` nodes ``(1 - cos(k pi / N)) / 2``, ``N = n - 1``.

    Weights (on [-1, 1], halved here): ``w_k = c_k / N (1 - sum_{j=1}^{N/2} b_j cos(2 j k pi / N)
    / (4 j^2 - 1))`` with ``c_0 = c_N = 1``, else 2, and ``b_j = 1`` for ``j = N/2``, else 2.
    Exact for polynomials of degree ``n - 1``; nested for ``n = 2^k + 1``; converges like
    Gauss–Legendre for analytic integrands. Trefethen, "Is Gauss quadrature better than
    Clenshaw–Curtis?", SIAM Review 2008.
    """

    min_steps: ClassVar[int] = 2

    def nodes_and_weights(self, n):
        self.check_steps(n)
        big_n = n - 1
        k = np.arange(n, dtype=np.float64)
        theta = k * np.pi / big_n
        j = np.arange(1, big_n // 2 + 1, dtype=np.float64)
        b = np.where(2 * j == big_n, 1.0, 2.0)
        w = 1.0 - (b / (4 * j**2 - 1)) @ np.cos(2 * np.outer(j, theta))
        w *= np.where((k == 0) | (k == big_n), 1.0, 2.0) / big_n
        return (1.0 - np.cos(theta)) / 2.0, w / 2.0
