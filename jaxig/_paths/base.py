"""Path functions gamma(alpha) from a baseline (alpha = 0) to the input (alpha = 1).

IG along a path gamma is  sum_i integral_0^1 d f(gamma(a)) / d gamma_i * d gamma_i / d a  d a
(Sundararajan et al., 2017, section 3). A path is a small immutable pytree: array fields are traced,
vmapped and differentiated; Python settings are static (``jaxig._pytree.static_field()``).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from .._pytree import Module

__all__ = ["AbstractPath"]


class AbstractPath(Module, abc.ABC):
    """Base class of paths. ``path(alpha, x, baseline)`` returns a point shaped like ``x``.

    Subclasses implement ``__call__`` with ``path(0, x, b) == b`` and ``path(1, x, b) == x``;
    ``derivative`` defaults to a forward-mode ``jax.jvp`` in alpha. ``alpha`` is a scalar; the
    entry function ``vmap``s over it.
    """

    #: True when d gamma / d alpha == x - baseline for every alpha, which lets the entry function
    #: multiply by (x - baseline) once after summing gradients instead of at every alpha.
    is_straight: ClassVar[bool] = False
    #: True when ``path(0, x, b) == b``. A path that starts elsewhere by design (a blurred input)
    #: sets False: methods then take ``f(path(0))`` as the reference value of completeness.
    starts_at_baseline: ClassVar[bool] = True

    @abc.abstractmethod
    def __call__(self, alpha: jax.Array, x: Any, baseline: Any) -> Any:
        """Returns the point gamma(alpha), a pytree like ``x``."""

    def derivative(self, alpha: jax.Array, x: Any, baseline: Any) -> Any:
        """Returns d gamma / d alpha at ``alpha``, a pytree like ``x``."""
        return self.value_and_derivative(alpha, x, baseline)[1]

    def value_and_derivative(self, alpha: jax.Array, x: Any, baseline: Any) -> tuple[Any, Any]:
        """Returns ``(gamma(alpha), d gamma / d alpha)``."""
        alpha = jnp.asarray(alpha)
        return jax.jvp(lambda a: self(a, x, baseline), (alpha,), (jnp.ones_like(alpha),))
