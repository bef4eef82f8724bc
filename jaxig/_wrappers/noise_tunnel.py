"""The noise tunnel: any method, applied to Gaussian-perturbed copies of the input and reduced.

``noise_tunnel(method, ...)`` returns a new method with the same signature (plus ``noise=``), as
optax's ``apply_if_finite(inner)`` returns a new transformation. SmoothGrad, SmoothGrad² and VarGrad
differ only in ``reduce``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._info import Info
from .._problem import Problem, prepare
from .._targets import as_argument
from .._validate import as_float_inputs, is_concrete, pair_with_x

__all__ = ["noise_tunnel", "NoiseTunnel", "REDUCES"]

#: the reductions over noisy samples, named as Captum's ``NoiseTunnel`` ``nt_type``
REDUCES = ("smoothgrad", "smoothgrad_sq", "vargrad")
#: PAIR saliency's default noise level: 15% of each example's value range
DEFAULT_STDEV_SPREAD = 0.15


def noise_tunnel(
    method: Callable[..., Any],
    *,
    n_samples: int = 8,
    stdev: float | None = None,
    stdev_spread: float | None = None,
    reduce: str = "smoothgrad",
    sample_batch_size: int | None = None,
) -> NoiseTunnel:
    """Returns ``method`` averaged over noisy inputs: a new (random) method with the same signature.

    For ``s = 1..N`` (``N = n_samples``) the input is perturbed, ``x_s = x + eps_s`` with
    ``eps_s ~ N(0, sigma^2)`` independently per entry, ``A_s = method(f, x_s, baseline, ...)``, and

        smoothgrad:     mean_s A_s
        smoothgrad_sq:  mean_s A_s^2
        vargrad:        mean_s A_s^2 - (mean_s A_s)^2     (the population variance, as Captum)

    The noise scale ``sigma`` is either absolute (``stdev``) or relative to each example's value
    range, ``sigma_b = stdev_spread * (max_i x_bi - min_i x_bi)`` with ``i`` running over all
    features of example ``b`` in one leaf of ``x`` (for a pytree input each leaf gets its own range,
    since leaves usually hold different quantities; for an array input the range is over the whole
    example). With neither given, ``stdev_spread=0.15`` (PAIR saliency's default). The baseline is
    not perturbed. Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017 (smoothgrad,
    ``stdev_spread``); Adebayo et al., "Local Explanation Methods for Deep Neural Networks Lack
    Sensitivity to Parameter Values", 2018 (vargrad). Captum's ``NoiseTunnel``.

    Args:
      method: an attribution method ``method(f, x, baseline, *, target, args, key, return_info)``,
        e.g. :func:`jaxig.saliency` or ``functools.partial(jaxig.integrated_gradients, n_steps=16)``.
        It is called inside a compiled program on traced inputs with ``f`` lifted to a model traced
        at ``x``'s shapes (every jaxig method supports this; a method of your own must not call
        ``f`` at other batch sizes, though ``jax.vmap`` over ``f`` is fine), and with the extra
        ``args`` folded into that model (it receives ``args=()``).
      n_samples: the number ``N`` of noisy copies, at least 1.
      stdev: the absolute standard deviation of the noise, ``>= 0`` (Captum's ``stdevs``).
      stdev_spread: the relative noise level, ``>= 0`` (PAIR's ``stdev_spread``). Give at most one of
        ``stdev`` and ``stdev_spread``.
      reduce: ``"smoothgrad"``, ``"smoothgrad_sq"`` or ``"vargrad"`` (Captum's ``nt_type`` names).
      sample_batch_size: run at most this many noisy copies at once (``jax.vmap`` within a chunk,
        ``lax.scan`` over chunks, accumulating the reduction), bounding memory independently of
        ``n_samples``; ``None`` runs all copies in one ``vmap``. Results agree up to rounding order.

    Returns:
      A :class:`NoiseTunnel`: call it as ``tunnel(f, x, baseline=None, *, target=None, args=(),
      key=None, return_info=False, noise=None)``. It needs ``key`` (split into the noise's key and
      one key per sample for random inner methods) unless ``noise`` is injected; ``noise`` is a
      pytree like ``x`` whose leaves have shape ``(n_samples,) + leaf.shape``: the perturbations
      ``eps_s`` themselves (``stdev``/``stdev_spread`` then play no part), e.g. to reproduce another
      implementation's draws. ``tunnel.draw_noise(key, x)`` returns the noise that
      ``tunnel(..., key=key)`` draws. Build the tunnel once and reuse it: its compiled programs are
      cached on it (and on ``method``).

    Raises:
      TypeError: ``method`` is not callable or not hashable; ``n_samples`` or ``sample_batch_size``
        not an int; ``stdev``/``stdev_spread`` not a real number.
      ValueError: ``n_samples < 1``; a negative or non-finite ``stdev``/``stdev_spread``; both given;
        an unknown ``reduce``; ``sample_batch_size < 1``.
    """
    if not callable(method):
        raise TypeError(
            f"method must be an attribution method such as jaxig.saliency or "
            f"functools.partial(jaxig.integrated_gradients, n_steps=16), got {type(method).__name__}"
        )
    try:
        hash(method)
    except TypeError as err:
        raise TypeError(
            f"method must be hashable (it selects compiled programs), got an unhashable "
            f"{type(method).__name__}; wrap it: lambda *a, **k: method(*a, **k)"
        ) from err
    n_samples = _positive_int(n_samples, "n_samples", "n_samples=8")
    if sample_batch_size is not None:
        sample_batch_size = _positive_int(sample_batch_size, "sample_batch_size", "sample_batch_size=4")
    if stdev is not None and stdev_spread is not None:
        raise ValueError(
            f"give at most one of stdev (absolute, got {stdev!r}) and stdev_spread (relative to each "
            f"example's range, got {stdev_spread!r})"
        )
    if stdev is None and stdev_spread is None:
        stdev_spread = DEFAULT_STDEV_SPREAD
    stdev = None if stdev is None else _scale(stdev, "stdev")
    stdev_spread = None if stdev_spread is None else _scale(stdev_spread, "stdev_spread")
    if reduce not in REDUCES:
        raise ValueError(f"reduce={reduce!r} is not one of {REDUCES}; pass e.g. reduce='smoothgrad'")
    return NoiseTunnel(method, n_samples, stdev, stdev_spread, reduce, sample_batch_size)


@dataclasses.dataclass(frozen=True)
class NoiseTunnel:
    """A method wrapped by :func:`noise_tunnel` (build it with that function). Hashable: its fields
    select compiled programs, so equal tunnels share them."""

    method: Callable[..., Any]
    n_samples: int
    stdev: float | None
    stdev_spread: float | None
    reduce: str
    sample_batch_size: int | None

    def __call__(
        self,
        f: Callable[..., jax.Array],
        x: Any,
        baseline: Any = None,
        *,
        target: Any = None,
        args: Any = (),
        key: Any = None,
        return_info: bool = False,
        noise: Any = None,
    ) -> Any:
        """Returns the reduced attributions of the wrapped method over noisy copies of ``x``.

        Shaped like ``x`` (a leading ``K`` axis for ``target="all"``); see :func:`noise_tunnel`.
        With ``return_info=True`` returns ``(attributions, info)``: ``info.n_evals`` is the inner
        ``n_evals`` summed over the samples, ``info.converged`` (when the inner method reports it)
        whether every sample converged, and ``info.delta`` (``"smoothgrad"`` only, when the inner
        method reports it) the mean of the samples' completeness gaps, which is the gap of the
        averaged attributions against the averaged output:
        ``sum_i SG_i - (mean_s F(x_s) - F(x'))``, not against ``F(x)``. Other fields are ``None``.

        Raises:
          ValueError: no ``key`` and no ``noise``; ``noise`` whose structure or shapes do not match
            ``(n_samples,) + x.shape``; and whatever ``prepare`` raises for ``f``, ``x``, the
            baseline and the target (as every method).
        """
        problem = prepare(f, x, baseline, target=target, args=args)
        if key is None and noise is None:
            raise ValueError(
                "noise_tunnel draws random noise: pass key=jax.random.key(0) (or inject the "
                "perturbations with noise=..., e.g. tunnel.draw_noise(key, x))"
            )
        if noise is not None:
            noise = self._check_noise(noise, problem.x)
        attributions, stats = _tunnel_jit(self, bool(return_info), problem, noise, key)
        if not return_info:
            return attributions
        n_evals = stats["n_evals"]
        if n_evals is not None and n_evals.ndim == 0 and is_concrete(n_evals):
            n_evals = int(n_evals)
        return attributions, Info(delta=stats["delta"], n_evals=n_evals, converged=stats["converged"])

    def draw_noise(self, key: Any, x: Any) -> Any:
        """Returns the perturbations ``eps`` that ``self(f, x, key=key)`` adds: a pytree like ``x``
        with leaves of shape ``(n_samples,) + leaf.shape``."""
        x, _ = as_float_inputs(x)
        return _draw_jit(self, key, x)

    def _check_noise(self, noise: Any, x: Any) -> Any:
        out = []
        pairs = pair_with_x(noise, x, "noise", "pass a pytree like x, e.g. tunnel.draw_noise(key, x)")
        for name, xi, ni in pairs:
            want = (self.n_samples,) + tuple(xi.shape)
            if tuple(np.shape(ni)) != want:
                raise ValueError(
                    f"{name} has shape {tuple(np.shape(ni))}; pass shape {want}: "
                    f"(n_samples,) + the input's shape, one perturbation per sample"
                )
            ni = jnp.asarray(ni)
            if not jnp.issubdtype(ni.dtype, jnp.floating):
                raise TypeError(f"{name} has dtype {ni.dtype}; pass float perturbations")
            out.append(ni.astype(xi.dtype))
        return jax.tree.unflatten(jax.tree.structure(x), out)


def _positive_int(value: Any, name: str, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {value!r}; pass e.g. {example}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}; pass e.g. {example}")
    return int(value)


def _scale(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}; pass e.g. {name}=0.15")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}; pass e.g. {name}=0.15")
    return float(value)


def _sigma(tunnel: NoiseTunnel, leaf: jax.Array) -> jax.Array:
    """Returns the noise scale for one leaf: a scalar, or ``(B, 1, ...)`` per example for a spread."""
    if tunnel.stdev is not None:
        return jnp.asarray(tunnel.stdev, leaf.dtype)
    axes = tuple(range(1, leaf.ndim))
    span = jnp.max(leaf, axis=axes, keepdims=True) - jnp.min(leaf, axis=axes, keepdims=True)
    assert tunnel.stdev_spread is not None  # noise_tunnel sets exactly one of stdev, stdev_spread
    return tunnel.stdev_spread * span


def _draw(tunnel: NoiseTunnel, noise_key: Any, x: Any) -> Any:
    leaves, treedef = jax.tree.flatten(x)
    keys = jax.random.split(noise_key, len(leaves))
    eps = [jax.random.normal(k, (tunnel.n_samples,) + leaf.shape, leaf.dtype) * _sigma(tunnel, leaf)
           for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, eps)


def _split(key: Any) -> tuple[Any, Any]:
    """Returns ``(noise_key, method_key)``: the one place the call's key is divided."""
    keys = jax.random.split(key)
    return keys[0], keys[1]


def _draw_impl(tunnel: NoiseTunnel, key: Any, x: Any) -> Any:
    return _draw(tunnel, _split(key)[0], x)


_draw_jit = jax.jit(_draw_impl, static_argnums=0)


def _inner_target(problem: Problem) -> Any:
    """Returns the ``target`` argument that reproduces ``problem``'s target for the inner method."""
    return as_argument(problem.target, problem.index, problem.out_struct)


def _tunnel_impl(tunnel: NoiseTunnel, with_info: bool, problem: Problem, noise: Any, key: Any):
    x, n = problem.x, tunnel.n_samples
    dtype = problem.dtype
    sample_keys = None
    if key is not None:
        noise_key, method_key = _split(key)
        sample_keys = jax.random.split(method_key, n)
        if noise is None:
            noise = _draw(tunnel, noise_key, x)
    noisy = jax.tree.map(lambda xi, ei: xi[None] + ei, x, noise)
    target = _inner_target(problem)
    squared = tunnel.reduce == "smoothgrad_sq"
    with_m2 = tunnel.reduce == "vargrad"

    def one(x_s, key_s):
        # problem.model, not f: the weights stay inputs of this program (see jaxig._model).
        out = tunnel.method(problem.model, x_s, problem.baseline, target=target, key=key_s,
                            return_info=with_info)
        if not with_info:
            return out, {}
        attributions, info = out
        terms = {}
        if getattr(info, "delta", None) is not None and tunnel.reduce == "smoothgrad":
            terms["delta"] = jnp.asarray(info.delta).astype(dtype)
        if getattr(info, "n_evals", None) is not None:
            terms["n_evals"] = jnp.asarray(info.n_evals).astype(jnp.int32)
        if getattr(info, "converged", None) is not None:
            terms["converged"] = jnp.asarray(info.converged).astype(bool)
        return attributions, terms

    def chunk(x_chunk, key_chunk):
        """Returns (count, mean, M2, info sums) of one chunk of samples, vmapped."""
        attributions, terms = jax.vmap(one)(x_chunk, key_chunk)
        size = jax.tree.leaves(attributions)[0].shape[0]
        values = jax.tree.map(jnp.square, attributions) if squared else attributions
        mean = jax.tree.map(lambda v: jnp.mean(v, 0), values)
        m2 = jax.tree.map(lambda v, mu: jnp.sum(jnp.square(v - mu), 0), values, mean) if with_m2 else None
        sums = {k: (jnp.all(v, 0) if k == "converged" else jnp.sum(v, 0)) for k, v in terms.items()}
        return jnp.asarray(size, dtype), mean, m2, sums

    def combine(a, b):
        # Chan, Golub and LeVeque's pairwise update: exact mean and M2 of the union, no E[a^2]-E[a]^2.
        (na, mean_a, m2_a, sums_a), (nb, mean_b, m2_b, sums_b) = a, b
        total = na + nb
        diff = jax.tree.map(jnp.subtract, mean_b, mean_a)
        mean = jax.tree.map(lambda mu, d: mu + d * (nb / total), mean_a, diff)
        m2 = None
        if with_m2:
            m2 = jax.tree.map(lambda p, q, d: p + q + jnp.square(d) * (na * nb / total), m2_a, m2_b, diff)
        sums = {k: (jnp.logical_and(v, sums_b[k]) if k == "converged" else v + sums_b[k])
                for k, v in sums_a.items()}
        return total, mean, m2, sums

    size = min(tunnel.sample_batch_size or n, n)
    full, rest = divmod(n, size)
    take = lambda t, lo, hi: jax.tree.map(lambda a: a[lo:hi], t)
    acc = chunk(take(noisy, 0, size), take(sample_keys, 0, size))
    if full > 1:
        stacked = jax.tree.map(lambda a: a[size:full * size].reshape((full - 1, size) + a.shape[1:]),
                               (noisy, sample_keys))
        acc, _ = jax.lax.scan(lambda carry, c: (combine(carry, chunk(*c)), None), acc, stacked)
    if rest:
        acc = combine(acc, chunk(take(noisy, full * size, n), take(sample_keys, full * size, n)))
    _, mean, m2, sums = acc

    attributions = jax.tree.map(lambda v: v / n, m2) if with_m2 else mean
    attributions = jax.tree.map(lambda a, xi: a.astype(xi.dtype), attributions, x)
    stats = {
        "delta": sums["delta"] / n if "delta" in sums else None,
        "n_evals": sums.get("n_evals"),
        "converged": sums.get("converged"),
    }
    return attributions, stats


_tunnel_jit = jax.jit(_tunnel_impl, static_argnums=(0, 1))
