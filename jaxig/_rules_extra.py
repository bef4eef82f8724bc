"""More quadrature rules for IG: Gauss–Lobatto, Clenshaw–Curtis, Monte Carlo and quasi-Monte Carlo.

Gauss–Lobatto and Clenshaw–Curtis include both endpoints (the baseline and the input), and
Clenshaw–Curtis with ``n = 2^k + 1`` nodes is nested. The random rules take an explicit PRNG key
and give unbiased estimates of the integral (the expected-gradients family samples alphas this way).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ._rules import AbstractRule

__all__ = ["GaussLobatto", "ClenshawCurtis", "MonteCarlo", "QuasiMonteCarlo"]


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


def _check_key(rule, key) -> None:
    if key is None:
        raise ValueError(
            f"{type(rule).__name__} needs an explicit PRNG key: pass "
            f"{type(rule).__name__}(key=jax.random.key(0))"
        )


class MonteCarlo(AbstractRule):
    """Monte Carlo rule: ``n`` alphas drawn uniformly from [0, 1) with ``key``, weights ``1 / n``.

    Unbiased; error ``O(n^-1/2)``. Split the key to draw fresh alphas. The nodes are a traced
    function of ``key``, so the rule works under ``jax.jit`` and ``jax.vmap`` over keys.
    """

    key: Any = None

    def nodes_and_weights(self, n):
        self.check_steps(n)
        _check_key(self, self.key)
        alphas = jax.random.uniform(self.key, (n,), dtype=float)
        return alphas, jnp.full((n,), 1.0 / n, alphas.dtype)


def _van_der_corput(n: int) -> np.ndarray:
    """Returns the first ``n`` points of the base-2 van der Corput sequence (bit reversal)."""
    k = np.arange(n, dtype=np.int64)
    out = np.zeros(n)
    scale = 0.5
    while np.any(k):
        out += (k & 1) * scale
        k >>= 1
        scale /= 2
    return out


class QuasiMonteCarlo(AbstractRule):
    """Randomised quasi-Monte Carlo: the van der Corput sequence shifted by ``u ~ U[0, 1)`` mod 1.

    ``alpha_k = (vdc(k) + u) mod 1``, weights ``1 / n``, with ``u`` drawn from ``key``
    (Cranley–Patterson rotation). Unbiased; for ``n`` a power of two the points are a shifted
    equispaced grid, so the error is ``O(1/n)`` for integrands of bounded variation (ReLU networks)
    and the sequence extends without discarding earlier points.
    """

    key: Any = None

    def nodes_and_weights(self, n):
        self.check_steps(n)
        _check_key(self, self.key)
        shift = jax.random.uniform(self.key, (), dtype=float)
        alphas = jnp.mod(jnp.asarray(_van_der_corput(n), shift.dtype) + shift, 1.0)
        return alphas, jnp.full((n,), 1.0 / n, alphas.dtype)

