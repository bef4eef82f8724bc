"""Blur IG with PAIR's discretisation: a left Riemann sum over blur widths along the blur path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .._paths.blur import BlurPath, check_image_axes
from .._pytree import static_field
from .._quadrature.base import AbstractRule
from .integrated import integrated_gradients

__all__ = ["blur_integrated_gradients"]


class BlurSigmaSteps(AbstractRule):
    """PAIR's nodes on a blur path linear in sigma: ``sigma_i = s_i * sigma_max``, ``i = 0 .. n-1``,
    weighted by ``s_{i+1} - s_i``, with ``s_i = i / n`` or ``sqrt(i / n)`` (``sqrt=True``).

    On :class:`BlurPath` with ``sigma(alpha) = (1 - alpha) sigma_max`` the nodes are ``alpha_i = 1 - s_i``
    and ``w_i * d gamma / d alpha = -(sigma_{i+1} - sigma_i) d blur / d sigma``: PAIR's sum term by term.
    """

    sqrt: bool = static_field(default=False)

    def nodes_and_weights(self, n):
        self.check_steps(n)
        s = np.arange(n + 1, dtype=np.float64) / n
        if self.sqrt:
            s = np.sqrt(s)
        return 1.0 - s[:-1], np.diff(s)


def blur_integrated_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    steps: int = 100,
    max_sigma: float = 50.0,
    grad_step: float | None = 0.01,
    sqrt: bool = False,
    axes: tuple[int, ...] = (1, 2),
    alpha_batch_size: int | None = None,
    key: Any = None,
    return_info: bool = False,
    completeness_rtol: float | None = 1e-2,
) -> Any:
    """Returns the Blur IG attributions of ``f`` at images ``x`` ``(B, H, W, C)``, shaped like ``x``.

    PAIR's ``saliency.core.BlurIG`` computed for a batch in one compiled program:

        A(x) = -sum_{i=0}^{steps-1} (sigma_{i+1} - sigma_i) * D_i * grad F(blur(x, sigma_i))
        D_i  = (blur(x, sigma_i + grad_step) - blur(x, sigma_i)) / grad_step

    with ``sigma_i = i * max_sigma / steps`` (``sqrt=True``: ``sqrt(i * max_sigma / steps)``, so the
    most blurred image has width ``sqrt(max_sigma)``, as in PAIR) and ``blur`` the Gaussian filter of
    ``scipy.ndimage.gaussian_filter(mode="constant", truncate=4.0)`` over the spatial ``axes``. It is
    a Riemann sum of the path integral along :class:`jaxig.BlurPath` from the most blurred image to
    ``x``, so ``sum_i A_i ~ F(x) - F(blur(x, sigma_steps))`` as ``steps`` grows. Xu, Venugopalan,
    Sundararajan et al., "Attribution in Scale and Space", CVPR 2020.

    Args:
      f, target, args: as in :func:`jaxig.integrated_gradients` (``target="all"`` adds a leading ``K``).
      x: one float array of images with a leading batch axis; blurred over ``axes`` only.
      baseline: must be ``None``: the path starts at the blurred image, not at a baseline.
      steps: the number of gradient evaluations (PAIR's ``steps``).
      max_sigma: the largest blur width (PAIR's ``max_sigma``; see ``sqrt``).
      grad_step: PAIR's forward-difference step for ``d blur / d sigma``; ``None`` differentiates exactly.
      sqrt: space the sigmas as PAIR's ``sqrt=True``.
      axes: the spatial axes of ``x`` (default ``(1, 2)`` for ``(B, H, W, C)``).
      alpha_batch_size, completeness_rtol: as in :func:`jaxig.integrated_gradients`.
      key: ignored (the method is deterministic).
      return_info: return ``(attributions, info)``, ``info.delta`` the completeness gap against
        ``F(x) - F(most blurred x)``.

    Raises:
      ValueError: ``steps < 1``, ``max_sigma <= 0``, ``grad_step <= 0``, a baseline, images with fewer
        dimensions than ``axes`` need (and the errors of :func:`jaxig.integrated_gradients`).
      TypeError: ``x`` is a pytree rather than one array; a non-integer ``steps``.
    """
    del key
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be a Python int (the number of blur steps), got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got steps={steps}; PAIR's default is steps=100")
    if baseline is not None:
        raise ValueError(
            "blur_integrated_gradients takes no baseline: its path starts at the most blurred image "
            "(blur(x, max_sigma)); pass baseline=None, or use integrated_gradients for a baseline path"
        )
    for name, value in (("max_sigma", max_sigma), ("grad_step", grad_step)):
        if name == "grad_step" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
            np.isfinite(value) and value > 0
        ):
            raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")
    path = BlurPath(max_sigma=float(max_sigma), sqrt=False, grad_step=grad_step, axes=tuple(axes))
    if sqrt:  # PAIR's sigma_i = sqrt(i max_sigma / n): the same straight-in-sigma path, sqrt-spaced nodes
        path = path.replace(max_sigma=float(np.sqrt(max_sigma)))
    check_image_axes(x, path.axes, "blur_integrated_gradients")
    return integrated_gradients(
        f, x, None, target=target, args=args, n_steps=int(steps), rule=BlurSigmaSteps(sqrt=bool(sqrt)), path=path,
        alpha_batch_size=alpha_batch_size, return_info=return_info, completeness_rtol=completeness_rtol,
    )

