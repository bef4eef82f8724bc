"""Shapley value sampling: average marginal contributions over random orderings of feature groups."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as _checks
from .._info import Info
from .._problem import Problem, prepare
from .._targets import select
from .ablation import (
    check_index,
    check_perturbations_per_eval,
    chunk_size,
    delta_of,
    perturbed_outputs,
    resolve_feature_mask,
    spread,
)

__all__ = ["shapley_value_sampling"]


@dataclasses.dataclass(frozen=True)
class _Static:
    n_samples: int
    n_groups: int
    chunk: int
    with_delta: bool
    injected: bool  # permutations given (else drawn from the key)


def shapley_value_sampling(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    n_samples: int = 25,
    feature_mask: Any = None,
    perturbations_per_eval: int | None = None,
    permutations: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns sampled Shapley values of the feature groups of ``x`` for ``f``, a pytree shaped like ``x``.

    For each of ``n_samples`` orderings ``pi`` of the ``G`` groups, start from the baseline and switch
    the groups to their values in ``x`` one by one in that order; group ``g`` is credited with the
    change of the explained output when it is switched on:

        phi_g = (1 / n_samples) sum_pi [F(S_pi,g + g) - F(S_pi,g)]

    with ``S_pi,g`` the input whose groups before ``g`` in ``pi`` come from ``x`` and the others from
    the baseline. Every feature of group ``g`` gets ``phi_g``. Over all ``G!`` orderings this is the
    Shapley value of the game ``v(S) = F(x_S, x'_rest)``; random orderings estimate it without bias.
    Castro, Gomez and Tejada, "Polynomial calculation of the Shapley value based on sampling",
    Computers & Operations Research 2009; Captum's ``ShapleyValueSampling``.

    Completeness holds exactly for every ordering: the credits of one ordering telescope to
    ``F(x) - F(x')``. So ``sum_g phi_g = F(x) - F(x')`` (up to rounding), which is
    ``sum_i A_i`` when every group is a single feature.

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`.
      key: a PRNG key (``jax.random.key(0)``) from which the orderings are drawn; required unless
        ``permutations`` is given.
      n_samples: the number of orderings (>= 1). Ignored when ``permutations`` is given (its first
        axis is the number of orderings).
      feature_mask: integer group ids, as in :func:`jaxig.feature_ablation` (``None``: one group per
        scalar feature). Group ``g`` is the ``g``-th smallest id.
      perturbations_per_eval: perturbed copies of the batch per model call (memory grows with it);
        ``None`` chooses chunks of about 64 MiB of intermediates.
      permutations: optional int array ``(n_samples, G)``, each row an ordering of ``0..G-1``, used
        instead of drawing from ``key`` (to reproduce another implementation's orderings, or to
        enumerate all ``G!`` orderings for exact Shapley values).
      return_info: return ``(attributions, info)``: ``info.n_evals = n_samples * (G - 1) + 2`` forward
        passes of the batch (the last state of every ordering is ``x`` itself, evaluated once), and
        ``info.delta`` the completeness gap ``sum_i A_i - (F(x) - F(x'))``: rounding only for
        singleton groups; with larger groups each feature carries its group's credit, so compare
        ``sum_g phi_g`` instead.

    Returns:
      The attributions (a pytree like ``x``; a leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)``.

    Raises:
      ValueError: no ``key`` and no ``permutations``; ``n_samples < 1``; ``permutations`` not of
        shape ``(n, G)`` or (when concrete) a row that is not an ordering of ``0..G-1``; a mask that
        does not fit ``x``; ``perturbations_per_eval < 1``; what :func:`jaxig.integrated_gradients`
        raises.
      TypeError: a non-integer or traced mask, non-integer ``permutations`` or ``n_samples``.
    """
    check_perturbations_per_eval(perturbations_per_eval)
    problem = prepare(f, x, baseline, target=target, args=args)
    masks, n_groups = resolve_feature_mask(feature_mask, problem.x, problem.batch)
    check_index(problem)
    if permutations is not None:
        permutations = _check_permutations(permutations, n_groups)
        n_samples = int(permutations.shape[0])
    else:
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
            raise TypeError(f"n_samples must be an int >= 1, got {n_samples!r}")
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples} is not allowed; pass n_samples >= 1 (orderings to average)")
        if key is None:
            raise ValueError(
                "shapley_value_sampling draws random orderings of the feature groups: pass "
                "key=jax.random.key(0) (or permutations=<int array (n_samples, G)>)"
            )
    n_perturbed = int(n_samples) * (n_groups - 1)
    static = _Static(int(n_samples), n_groups, chunk_size(problem, max(1, n_perturbed), perturbations_per_eval),
                     bool(return_info), permutations is not None)
    attributions, delta = _shapley_jit(static, problem, masks, permutations if permutations is not None else key)
    if return_info:
        return attributions, Info(delta=delta, n_evals=n_perturbed + 2)
    return attributions


def _check_permutations(permutations: Any, n_groups: int) -> jax.Array:
    perms = permutations if isinstance(permutations, jax.Array) else jnp.asarray(permutations)
    if not jnp.issubdtype(perms.dtype, jnp.integer):
        raise TypeError(f"permutations must be an int array (n_samples, {n_groups}), got dtype {perms.dtype}")
    if perms.ndim != 2 or perms.shape[1] != n_groups or perms.shape[0] < 1:
        raise ValueError(
            f"permutations has shape {tuple(perms.shape)}; pass an int array (n_samples, {n_groups}): "
            f"n_samples >= 1 orderings of the {n_groups} feature groups"
        )
    if _checks.is_concrete(perms):
        rows = np.sort(np.asarray(perms), axis=1)
        bad = np.nonzero(np.any(rows != np.arange(n_groups), axis=1))[0]
        if bad.size:
            raise ValueError(
                f"permutations row {int(bad[0])} ({np.asarray(perms)[bad[0]].tolist()}) is not an ordering "
                f"of 0..{n_groups - 1}; every row must contain each group id exactly once"
            )
    return perms.astype(jnp.int32)


def _shapley_impl(static: _Static, problem: Problem, masks: Any, perms_or_key: Any):
    n, n_groups = static.n_samples, static.n_groups
    if static.injected:
        perms = perms_or_key
    else:
        keys = jax.random.split(perms_or_key, n)
        perms = jax.vmap(lambda k: jax.random.permutation(k, n_groups))(keys).astype(jnp.int32)
    rank = jnp.argsort(perms, axis=1).astype(jnp.int32)  # rank[s, g]: g's place in ordering s
    x, baseline = problem.x, problem.full_baseline()
    spec, index = problem.target, problem.index
    f_x = select(spec, problem.model(x), index)
    f_base = select(spec, problem.model(baseline), index)

    def state(t):  # ordering t // (G-1) after switching on its first t % (G-1) + 1 groups
        s, k = t // (n_groups - 1), t % (n_groups - 1)
        switched_on = rank[s]
        return jax.tree.map(lambda xi, bi, mi: jnp.where(switched_on[mi] <= k, xi, bi), x, baseline, masks)

    tail = f_x[None, None]
    if n_groups > 1:
        middle = perturbed_outputs(problem, state, n * (n_groups - 1), static.chunk)
        middle = middle.reshape((n, n_groups - 1) + f_x.shape)
        tail = jnp.broadcast_to(tail, (n, 1) + f_x.shape)
        values = jnp.concatenate([middle, tail], axis=1)  # F after each switch, in ordering order
    else:
        values = jnp.broadcast_to(tail, (n, 1) + f_x.shape)
    before = jnp.concatenate([jnp.broadcast_to(f_base[None, None], (n, 1) + f_x.shape), values[:, :-1]], axis=1)
    gains = values - before  # gains[s, k]: credit of group perms[s, k]
    extra = (1,) * f_x.ndim
    credit = jnp.take_along_axis(gains, rank.reshape(rank.shape + extra), axis=1)  # (n, G, [K,] B)
    phi = jnp.mean(credit, axis=0)
    attributions = spread(phi, masks, x, problem.all_k)
    delta = delta_of(problem, attributions, f_x) if static.with_delta else None
    return attributions, delta


_shapley_jit = jax.jit(_shapley_impl, static_argnums=0)
