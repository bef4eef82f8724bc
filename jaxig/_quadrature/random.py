"""Random rules: Monte Carlo and randomised quasi-Monte Carlo alphas from an explicit PRNG key.

They give unbiased estimates of the integral (the expected-gradients family samples alphas this way).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import AbstractRule

__all__ = ["MonteCarlo", "QuasiMonteCarlo"]


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
