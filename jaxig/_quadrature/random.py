"""Random rules: Monte Carlo and randomised quasi-Monte Carlo alphas from a PRNG key given at call time.

They give unbiased estimates of the integral (the expected-gradients family samples alphas this way).
The key is an argument of the method (``integrated_gradients(..., key=key)``), never a field of the
rule, so one rule object serves every draw and keys are split where the caller sees them.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import AbstractRule

__all__ = ["AbstractRandomRule", "MonteCarlo", "QuasiMonteCarlo"]


class AbstractRandomRule(AbstractRule):
    """Base class of rules whose nodes are drawn from a PRNG key passed at call time.

    Subclasses implement ``nodes_and_weights(n, key)``. Methods pass their ``key`` argument through
    ``integrate``; without one it raises ``ValueError`` saying how to pass it.
    """

    @abc.abstractmethod
    def nodes_and_weights(self, n: int, key: Any = None) -> tuple[Any, Any]:  # type: ignore[override]
        """Returns ``(alphas, weights)`` drawn with ``key``."""

    def table(self, n: int, key: Any = None) -> tuple[Any, Any]:
        return self.nodes_and_weights(n, key)


def _check_key(rule: AbstractRule, key: Any) -> None:
    if key is None:
        raise ValueError(
            f"{type(rule).__name__} draws its nodes at random and needs a PRNG key: pass key=jax.random.key(0) "
            f"to the method (e.g. integrated_gradients(f, x, rule={type(rule).__name__}(), key=key)), "
            "and split the key for fresh draws"
        )


class MonteCarlo(AbstractRandomRule):
    """Monte Carlo rule: ``n`` alphas drawn uniformly from [0, 1) with ``key``, weights ``1 / n``.

    Unbiased; error ``O(n^-1/2)``. Split the key to draw fresh alphas. The nodes are a traced
    function of ``key``, so the rule works under ``jax.jit`` and ``jax.vmap`` over keys.
    """

    def nodes_and_weights(self, n, key=None):
        self.check_steps(n)
        _check_key(self, key)
        alphas = jax.random.uniform(key, (n,), dtype=float)
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


class QuasiMonteCarlo(AbstractRandomRule):
    """Randomised quasi-Monte Carlo: the van der Corput sequence shifted by ``u ~ U[0, 1)`` mod 1.

    ``alpha_k = (vdc(k) + u) mod 1``, weights ``1 / n``, with ``u`` drawn from ``key``
    (Cranley–Patterson rotation). Unbiased; for ``n`` a power of two the points are a shifted
    equispaced grid, so the error is ``O(1/n)`` for integrands of bounded variation (ReLU networks)
    and the sequence extends without discarding earlier points.
    """

    def nodes_and_weights(self, n, key=None):
        self.check_steps(n)
        _check_key(self, key)
        shift = jax.random.uniform(key, (), dtype=float)
        alphas = jnp.mod(jnp.asarray(_van_der_corput(n), shift.dtype) + shift, 1.0)
        return alphas, jnp.full((n,), 1.0 / n, alphas.dtype)
