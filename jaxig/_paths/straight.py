"""The straight-line path from the baseline to the input, the path of Integrated Gradients."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from .base import AbstractPath

__all__ = ["StraightLine"]


class StraightLine(AbstractPath):
    """The straight line ``gamma(alpha) = baseline + alpha * (x - baseline)``; derivative ``x - baseline``."""

    is_straight: ClassVar[bool] = True

    def __call__(self, alpha, x, baseline):
        return jax.tree.map(lambda xi, bi: bi + alpha.astype(xi.dtype) * (xi - bi), x, baseline)

    def derivative(self, alpha, x, baseline):
        return jax.tree.map(jnp.subtract, x, baseline)

    def value_and_derivative(self, alpha, x, baseline):
        return self(jnp.asarray(alpha), x, baseline), self.derivative(alpha, x, baseline)
