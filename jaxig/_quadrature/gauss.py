"""Gaussian rules on [0, 1]: Gauss–Legendre (endpoints excluded) and Gauss–Lobatto (both included).

Both tables come from Newton's method in ``theta`` (``t = cos theta`` on [-1, 1]) started from
asymptotic guesses, in O(n) work per step instead of a dense O(n^3) eigenproblem: 4096 nodes take
milliseconds and 20,000 tens of milliseconds. ``P_n(cos theta)`` and ``dP_n / d theta`` come from
Stieltjes' asymptotic expansion where ``2 n sin theta >= 50`` and from the three-term recurrence
(``scipy.special``) at the few nodes nearer the endpoints, where the expansion fails; this is the
scheme of Hale and Townsend, "Fast and accurate computation of Gauss–Legendre and Gauss–Jacobi
quadrature nodes and weights", SIAM J. Sci. Comput. 35 (2013), with the recurrence in place of their
Bessel-type boundary expansion. Working in ``theta`` keeps nodes near the endpoints accurate
relative to their distance from them, so the weights there are accurate to ~1e-14 relative, where the
eigenvalue route (``numpy.polynomial.legendre.leggauss``) loses digits as ``1 / theta^2``.

Tables are cached per ``n`` (``functools.lru_cache``) and returned read-only, so a compile with
``n_steps=20000`` does not recompute them and no caller can corrupt the cache.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import numpy as np
import scipy.special

from .base import AbstractRule

__all__ = ["GaussLegendre", "GaussLobatto"]

_N_TERMS = 20  # Stieltjes terms; the 20th is below 1e-17 of the first once 2 n sin(theta) >= 50
_STIELTJES_MIN = 50.0
_LEGGAUSS_MAX = 100  # GaussLegendre keeps numpy's (Captum's) table bit for bit up to here


def _legendre_constant(n: int) -> float:
    """Returns ``C_n = (4 / pi) prod_{j=1}^n j / (j + 1/2)``, Stieltjes' normalisation of ``P_n``.

    Summed as logs with ``math.fsum``: ``lgamma(n + 1) - lgamma(n + 3/2)`` would cancel ~1e-11 away.
    """
    j = np.arange(1, n + 1, dtype=np.float64)
    return 4.0 / math.pi * math.exp(-math.fsum(np.log1p(0.5 / j)))


def _stieltjes(n: int, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(P_n(cos theta), dP_n/dtheta)`` by Stieltjes' expansion (Szegő, Thm 8.21.5).

    ``P_n(cos theta) = C_n sum_m h_m cos(a_m) / (2 sin theta)^(m + 1/2)`` with
    ``a_m = (n + m + 1/2) theta - (m + 1/2) pi / 2``, ``h_0 = 1`` and
    ``h_m = h_{m-1} (m - 1/2)^2 / (m (n + m + 1/2))``; accurate where ``2 n sin theta`` is large.
    """
    sin, cot = np.sin(theta), 1.0 / np.tan(theta)
    inv = 0.5 / sin
    value, slope = np.zeros_like(theta), np.zeros_like(theta)
    h = np.ones_like(theta)  # h_m / (2 sin theta)^m
    for m in range(_N_TERMS):
        a = (n + m + 0.5) * theta - (m + 0.5) * (math.pi / 2)
        cos_a, sin_a = np.cos(a), np.sin(a)
        value += h * cos_a
        slope -= h * ((n + m + 0.5) * sin_a + (m + 0.5) * cot * cos_a)
        h = h * ((m + 0.5) ** 2 / ((m + 1) * (n + m + 1.5))) * inv
    scale = _legendre_constant(n) * np.sqrt(inv)
    return scale * value, scale * slope


def _recurrence(n: int, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(P_n(cos theta), dP_n/dtheta)`` by the three-term recurrence, O(n) per point.

    ``x = cos theta`` rounds to ``x~`` with an error comparable to ``theta^2`` near ``theta = 0``;
    a first-order correction by the exactly computed ``cos theta - x~`` keeps the result accurate
    relative to ``theta``. ``P'_n = (n + 1) / 2 P^(1,1)_{n-1}`` avoids the cancellation in
    ``n (P_{n-1} - x P_n) / (1 - x^2)``; ``P''_n`` comes from Legendre's equation.
    """
    x = np.cos(theta)
    half = np.sin(0.5 * theta)
    # 1 - x is exact for x >= 1/2 (Sterbenz); below, the rounding is harmless relative to theta.
    delta = np.where(x >= 0.5, (1.0 - x) - 2.0 * half * half, 0.0)
    p = scipy.special.eval_legendre(n, x)
    dp = (n + 1) / 2 * scipy.special.eval_jacobi(n - 1, 1.0, 1.0, x)
    d2p = (2.0 * x * dp - n * (n + 1) * p) / ((1.0 - x) * (1.0 + x))
    return p + dp * delta, -np.sin(theta) * (dp + d2p * delta)


def _legendre_theta(n: int, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(P_n(cos theta), dP_n/dtheta)`` for ``theta`` in (0, pi / 2]."""
    inner = 2.0 * n * np.sin(theta) >= _STIELTJES_MIN
    value, slope = np.empty_like(theta), np.empty_like(theta)
    value[inner], slope[inner] = _stieltjes(n, theta[inner])
    value[~inner], slope[~inner] = _recurrence(n, theta[~inner])
    return value, slope


def _newton(theta: np.ndarray, step, spacing: float) -> np.ndarray:
    """Returns ``theta`` after Newton steps ``theta -= step(theta)`` until the last is tiny.

    Convergence is quadratic, so once a step is below ``1e-8`` of the node spacing the error left
    is below rounding.
    """
    for _ in range(20):
        delta = step(theta)
        theta = theta - delta
        if np.max(np.abs(delta), initial=0.0) < 1e-8 * spacing:
            return theta
    raise RuntimeError(f"Newton's method for Gauss nodes did not converge (max step {np.abs(delta).max():.2e}); "
                       "please report this as a bug with the n_steps used")


def _mirror(alphas_left: np.ndarray, weights_left: np.ndarray, odd: bool) -> tuple[np.ndarray, np.ndarray]:
    """Returns the full symmetric table from its left half (which ends with the centre if ``odd``)."""
    right = slice(None, -1) if odd else slice(None)
    if odd:
        alphas_left = np.concatenate([alphas_left[:-1], [0.5]])
    alphas = np.concatenate([alphas_left, 1.0 - alphas_left[right][::-1]])
    weights = np.concatenate([weights_left, weights_left[right][::-1]])
    return alphas, weights


def _read_only(alphas: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # the tables are cached and shared between calls: nobody may write into them
    for a in (alphas, weights):
        a.flags.writeable = False
    return alphas, weights


def _gauss_legendre_newton(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the Gauss–Legendre table on [0, 1] by Newton's method in theta (see module docstring).

    On [-1, 1] the nodes are the roots ``t_k = -cos theta_k`` of ``P_n`` and the weights are
    ``2 / ((1 - t_k^2) P_n'(t_k)^2) = 2 / (dP_n/dtheta)^2``; here ``alpha_k = (t_k + 1) / 2 =
    sin^2(theta_k / 2)`` and ``w_k`` is half that. Newton starts from Tricomi's
    ``theta_k = phi_k + cot(phi_k) / (8 rho^2)``, ``phi_k = (k - 1/4) pi / rho``, ``rho = n + 1/2``.
    """
    rho = n + 0.5
    phi = (np.arange(1, (n + 1) // 2 + 1) - 0.25) * (math.pi / rho)
    theta = phi + 1.0 / (8.0 * rho**2 * np.tan(phi))

    def step(theta):
        value, slope = _legendre_theta(n, theta)
        return value / slope

    theta = _newton(theta, step, math.pi / rho)
    if n % 2:
        theta[-1] = math.pi / 2
    _, slope = _legendre_theta(n, theta)
    return _mirror(np.sin(0.5 * theta) ** 2, 1.0 / slope**2, odd=bool(n % 2))


@functools.lru_cache(maxsize=64)
def _gauss_legendre_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    if n <= _LEGGAUSS_MAX:
        t, v = np.polynomial.legendre.leggauss(n)
        return _read_only((t + 1.0) / 2.0, v / 2.0)
    return _read_only(*_gauss_legendre_newton(n))


@functools.lru_cache(maxsize=64)
def _gauss_lobatto_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the Gauss–Lobatto table on [0, 1] with ``n >= 2`` nodes (see ``GaussLobatto``).

    With ``m = n - 1``, the interior nodes are the roots of ``dP_m/dtheta`` found by Newton with
    ``d^2P_m/dtheta^2 = -cot(theta) dP_m/dtheta - m (m + 1) P_m`` (Legendre's equation), started
    from ``theta_k = (k + 1/4) pi / (m + 1/2)``, the zeros of the leading asymptotic term.
    """
    m, inner = n - 1, n - 2
    rho = m + 0.5
    theta = (np.arange(1, (inner + 1) // 2 + 1) + 0.25) * (math.pi / rho)

    def step(theta):
        value, slope = _legendre_theta(m, theta)
        return slope / (-slope / np.tan(theta) - m * (m + 1) * value)

    value = np.zeros(0)  # n = 2: no interior nodes
    if inner:
        theta = _newton(theta, step, math.pi / rho)
        if inner % 2:
            theta[-1] = math.pi / 2
        value, _ = _legendre_theta(m, theta)
    alphas, weights = _mirror(np.sin(0.5 * theta) ** 2, 1.0 / (m * (m + 1) * value**2), odd=bool(inner % 2))
    end = 1.0 / (n * (n - 1))
    return _read_only(np.concatenate([[0.0], alphas, [1.0]]), np.concatenate([[end], weights, [end]]))


class GaussLegendre(AbstractRule):
    """Gauss–Legendre rule mapped to [0, 1]. Exact for polynomials of degree ``2n - 1``.

    Nodes ``alpha_k = (t_k + 1) / 2`` and weights ``w_k = v_k / 2`` from the Legendre roots ``t_k`` and
    weights ``v_k = 2 / ((1 - t_k^2) P_n'(t_k)^2)`` on [-1, 1]. Endpoints are not nodes. For
    ``n <= 100`` the table is ``numpy.polynomial.legendre.leggauss``'s, the one Captum's
    ``method="gausslegendre"`` uses, bit for bit; above, it comes from Newton's method on asymptotic
    expansions (module docstring), O(n) per step, so ``n_steps`` in the tens of thousands compiles in
    well under a second. Tables are cached per ``n`` and read-only.
    """

    def nodes_and_weights(self, n):
        self.check_steps(n)
        return _gauss_legendre_table(int(n))


class GaussLobatto(AbstractRule):
    """Gauss–Lobatto rule on [0, 1] with ``n >= 2`` nodes, both endpoints included.

    On [-1, 1] the interior nodes are the roots of ``P'_{n-1}`` and the weights are
    ``2 / (n (n-1) P_{n-1}(t_k)^2)`` (``2 / (n (n-1))`` at the endpoints); halved here. Exact for
    polynomials of degree ``2n - 3``. Abramowitz and Stegun 25.4.32. Nodes by Newton's method on
    asymptotic expansions (module docstring); tables are cached per ``n`` and read-only.
    """

    min_steps: ClassVar[int] = 2

    def nodes_and_weights(self, n):
        self.check_steps(n)
        return _gauss_lobatto_table(int(n))
