"""Faithfulness metrics for attributions from any method or library (jaxig, Captum, SHAP...).

Every metric takes the attributions as arrays shaped like ``x`` (NumPy, JAX, or anything
``np.asarray`` reads, such as a CPU torch tensor), so the same yardstick scores every method:

* :func:`infidelity` and :func:`sensitivity_max`: Yeh et al., "On the (In)fidelity and Sensitivity of
  Explanations", NeurIPS 2019, with Captum's definitions (``captum.metrics``);
* :func:`deletion_curve` and :func:`insertion_curve` (:func:`perturbation_curve` with ``mode=``):
  Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
  BMVC 2018, over single features, groups of features (time steps, channels) or image patches;
* :func:`mass_fraction` and :func:`rank_correlation`: agreement with a known ground truth (the planted
  features of :mod:`jaxig.datasets`, or closed-form attributions).

Random metrics take an explicit ``key``; every perturbation can instead be passed in explicitly, so two
implementations can be compared on the same draws. Model evaluations run in one compiled program per
(model structure, settings, shapes), over perturbations in chunks (``lax.map`` of ``vmap``), so memory is
bounded by one chunk whatever the number of perturbations.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from ._methods.ablation import check_perturbations_per_eval, chunk_size, resolve_feature_mask
from ._problem import Problem, prepare
from ._targets import select

__all__ = ["Curve", "deletion_curve", "infidelity", "insertion_curve", "mass_fraction", "perturbation_curve",
           "rank_correlation", "sensitivity_max"]


# -- argument checks -----------------------------------------------------------------------------------

def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}; pass e.g. {name}=10")
    if value < 1:
        raise ValueError(f"{name}={value} is not allowed; pass an int >= 1, e.g. {name}=10")
    return int(value)


def _attributions_like(attributions: Any, x: Any, name: str = "attributions") -> Any:
    """Returns ``attributions`` as JAX arrays with ``x``'s structure, shapes and dtypes.

    Raises:
      ValueError: a structure or shape that differs from ``x`` (e.g. a leading ``K`` axis of ``target="all"``).
      TypeError: non-numeric leaves.
    """
    pairs = _validate.pair_with_x(attributions, x, name, f"pass {name} shaped like x (one array per leaf)")
    out = []
    for leaf_name, xi, ai in pairs:
        if not isinstance(ai, jax.Array):
            try:
                ai = np.asarray(ai)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(f"{leaf_name} ({type(ai).__name__}) is not an array of numbers ({err})") from None
        if not (jnp.issubdtype(ai.dtype, jnp.floating) or jnp.issubdtype(ai.dtype, jnp.integer)):
            raise TypeError(f"{leaf_name} has dtype {ai.dtype}; pass real-valued attributions")
        if tuple(ai.shape) != tuple(xi.shape):
            hint = (" (attributions for target='all' have a leading K axis: score one output at a time, "
                    "a[k] with target=k)" if tuple(ai.shape[1:]) == tuple(xi.shape) else "")
            raise ValueError(f"{leaf_name} has shape {tuple(ai.shape)} but x has shape {tuple(xi.shape)}; "
                             f"pass one attribution per input entry, shape {tuple(xi.shape)}{hint}")
        out.append(jnp.asarray(ai, xi.dtype))
    return jax.tree.unflatten(jax.tree.structure(x), out)


def _one_target(problem: Problem, what: str) -> None:
    if problem.all_k:
        raise ValueError(f"{what} scores one explained output per example; target='all' is not supported. "
                         "Score each output k separately with target=k")


def _flat(tree: Any) -> jax.Array:
    """Returns the leaves of a pytree of ``(B, ...)`` arrays flattened and joined: ``(B, D)``."""
    leaves = jax.tree.leaves(tree)
    return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)


def _dot(a: Any, b: Any) -> jax.Array:
    """Returns ``sum_i a_i b_i`` per example over every leaf: ``(B,)``."""
    terms = [jnp.sum((ai * bi).reshape(ai.shape[0], -1), axis=1) for ai, bi in zip(jax.tree.leaves(a),
                                                                                  jax.tree.leaves(b))]
    return functools.reduce(jnp.add, terms)


def _stack_like(tree: Any, x: Any, n: int | None, name: str) -> tuple[Any, int]:
    """Returns ``(tree as arrays (P,) + x's shapes, P)`` for explicitly passed perturbations."""
    pairs = _validate.pair_with_x(tree, x, name, f"pass {name} with x's structure, each leaf of shape (P,) + x.shape")
    out, count = [], None
    for leaf_name, xi, ti in pairs:
        ti = jnp.asarray(ti)
        if ti.ndim != xi.ndim + 1 or tuple(ti.shape[1:]) != tuple(xi.shape):
            raise ValueError(f"{leaf_name} has shape {tuple(ti.shape)}; pass shape (P,) + {tuple(xi.shape)}: "
                             "P perturbations of the whole batch")
        if count is not None and ti.shape[0] != count:
            raise ValueError(f"{name} leaves disagree on the number of perturbations ({count} and {ti.shape[0]})")
        count = ti.shape[0]
        out.append(ti.astype(xi.dtype))
    assert count is not None
    if count < 1:
        raise ValueError(f"{name} holds no perturbations (leading axis 0); pass at least one")
    if n is not None and n != count:
        raise ValueError(f"n_perturb={n} but {name} holds {count} perturbations; leave n_perturb=None")
    return jax.tree.unflatten(jax.tree.structure(x), out), int(count)


def _need_key(key: Any, what: str) -> None:
    if key is None:
        raise ValueError(f"{what} draws random perturbations: pass key=jax.random.key(0) (or explicit "
                         "perturbations)")


def _chunk(problem: Problem, n: int, batch_size: int | None) -> int:
    check_perturbations_per_eval(batch_size)
    return chunk_size(problem, n, batch_size)


# -- infidelity ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _InfidelityStatic:
    n_perturb: int
    chunk: int
    normalize: bool
    explicit: bool
    explicit_perturbed: bool
    perturb_fn: Callable[..., Any] | None


def infidelity(
    f: Callable[..., jax.Array],
    x: Any,
    attributions: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    n_perturb: int | None = None,
    noise_scale: float = 0.1,
    perturb_fn: Callable[..., Any] | None = None,
    perturbations: Any = None,
    perturbed_inputs: Any = None,
    normalize: bool = False,
    batch_size: int | None = None,
) -> jax.Array:
    """Returns the infidelity of ``attributions`` per example, shape ``(B,)``: lower is more faithful.

        INFD(a, F, x) = E_I [ (I . a - (F(x) - F(x_I)))^2 ]

    estimated as the mean over ``P`` perturbations ``(I_p, x_p)`` (``I . a`` sums over every entry).
    With ``normalize=True`` the attributions are first scaled by the least-squares factor
    ``beta = sum_p (I_p . a) dF_p / sum_p (I_p . a)^2`` (``beta = 0`` when the denominator is 0), which makes
    the score invariant to a constant rescaling of ``a``. This is ``captum.metrics.infidelity`` (its
    ``n_perturb_samples`` is ``n_perturb``). Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the
    (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.

    Perturbations, in order of precedence:

    * ``perturbations`` (and optionally ``perturbed_inputs``): explicit arrays ``(P,) + x.shape`` (pytrees
      like ``x``); ``perturbed_inputs`` defaults to ``x - perturbations``. Use them to score with the
      same draws as another implementation.
    * ``perturb_fn(key_p, x, baseline) -> (I_p, x_p)``: called for each perturbation with its own key
      (``jax.random.split(key, P)[p]``) on the whole batch, traced and compiled; it must be hashable (a
      module-level function, not a fresh lambda per call, or each call compiles again). For attributions
      that include the input factor (IG, gradient x input), the paper's choice is removing a random subset
      ``S``: ``x_p = where(S, baseline, x)`` with ``I_p = S`` (then ``I . a`` is the attribution of ``S``).
    * otherwise Gaussian noise: ``I_p ~ N(0, noise_scale^2)`` entrywise and ``x_p = x - I_p`` (the example
      of Captum's documentation), suited to local attributions such as gradients.

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`; the baseline is only passed
        to ``perturb_fn``. ``target`` must pick one output per example (not ``"all"``).
      attributions: shaped exactly like ``x`` (any array type ``np.asarray`` reads).
      key: a PRNG key, needed unless ``perturbations`` are given.
      n_perturb: the number of perturbations ``P`` (default 10); with explicit perturbations, their count.
      normalize: scale the attributions optimally first (see above).
      batch_size: perturbed copies of the batch per model call (``None``: chunks near 64 MiB).

    Raises:
      ValueError: attributions or perturbations not shaped like ``x``; ``n_perturb < 1``; no key for
        random perturbations; ``target="all"``.
      TypeError: non-numeric attributions; a non-int ``n_perturb``.
    """
    problem = prepare(f, x, baseline, target=target, args=args)
    _one_target(problem, "infidelity")
    a = _attributions_like(attributions, problem.x)
    if perturbed_inputs is not None and perturbations is None:
        raise ValueError("perturbed_inputs needs perturbations (the I of I . a) as well")
    if perturbations is not None:
        perturbations, n = _stack_like(perturbations, problem.x, n_perturb, "perturbations")
        if perturbed_inputs is not None:
            perturbed_inputs, _ = _stack_like(perturbed_inputs, problem.x, n, "perturbed_inputs")
    else:
        n = 10 if n_perturb is None else _positive_int(n_perturb, "n_perturb")
        _need_key(key, "infidelity")
        if perturb_fn is None and not (isinstance(noise_scale, (int, float, np.number)) and noise_scale >= 0):
            raise ValueError(f"noise_scale must be a number >= 0, got {noise_scale!r}")
    if perturb_fn is not None and not callable(perturb_fn):
        raise TypeError(f"perturb_fn must be a callable (key, x, baseline) -> (I, x_perturbed), got {perturb_fn!r}")
    static = _InfidelityStatic(n, _chunk(problem, n, batch_size), bool(normalize), perturbations is not None,
                               perturbed_inputs is not None, perturb_fn)
    return _infidelity_jit(static, problem, a, key, jnp.asarray(noise_scale, problem.dtype), perturbations,
                           perturbed_inputs)


def _infidelity_impl(static: _InfidelityStatic, problem: Problem, a, key, scale, perturbations, perturbed):
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    baseline = problem.full_baseline()
    f_x = select(spec, model(x), index)
    keys = None if static.explicit else jax.random.split(key, static.n_perturb)

    def one(item):
        k, given, given_x = item
        if static.explicit:
            eps = given
            xp = given_x if static.explicit_perturbed else jax.tree.map(jnp.subtract, x, eps)
        elif static.perturb_fn is not None:
            eps, xp = static.perturb_fn(k, x, baseline)
        else:
            leaves = jax.tree.leaves(x)
            ks = jax.random.split(k, len(leaves))
            eps = jax.tree.unflatten(jax.tree.structure(x), [scale * jax.random.normal(k, leaf.shape, leaf.dtype)
                                                            for k, leaf in zip(ks, leaves)])
            xp = jax.tree.map(jnp.subtract, x, eps)
        return _dot(a, eps), f_x - select(spec, model(xp), index)

    items = (keys, perturbations, perturbed)
    dots, diffs = jax.lax.map(one, items, batch_size=static.chunk)  # (P, B) each
    if static.normalize:
        num, den = jnp.sum(dots * diffs, 0), jnp.sum(dots * dots, 0)
        dots = dots * (num / jnp.where(den == 0, 1.0, den))
    return jnp.mean((dots - diffs) ** 2, axis=0)


_infidelity_jit = jax.jit(_infidelity_impl, static_argnums=0)


# -- sensitivity ---------------------------------------------------------------------------------------

def _norm_of(flat: jax.Array, norm: Any) -> jax.Array:
    if norm == "fro" or norm == 2:
        return jnp.sqrt(jnp.sum(flat * flat, axis=-1))
    return jnp.linalg.norm(flat, ord=norm, axis=-1)


def _check_norm(norm: Any) -> None:
    if norm == "fro":
        return
    if isinstance(norm, bool) or not isinstance(norm, (int, float, np.number)) or not (
            math.isinf(norm) or norm >= 1):
        raise ValueError(f"norm={norm!r} is not supported; pass 'fro' (Euclidean), a number p >= 1 or "
                         "float('inf')")


@functools.partial(jax.jit, static_argnums=0)
def _uniform_ball(n: int, key, x, radius):
    leaves = jax.tree.leaves(x)
    ks = jax.random.split(key, len(leaves))
    out = [leaf + jax.random.uniform(k, (n,) + leaf.shape, leaf.dtype, -radius, radius) for k, leaf in zip(ks, leaves)]
    return jax.tree.unflatten(jax.tree.structure(x), out)


@functools.partial(jax.jit, static_argnums=0)
def _relative_change(norm, e0, e):
    """Returns ``max_p ||e_p - e0|| / ||e0||`` per example (``||e0|| = 0`` read as 1): ``(B,)``.

    ``e`` holds the explanations of ``P`` perturbed batches merged perturbation-major: ``(P * B, ...)``.
    """
    base = _flat(e0)
    batch = base.shape[0]
    n0 = _norm_of(base, norm)
    n0 = jnp.where(n0 == 0, 1.0, n0)
    flat = _flat(e).reshape(-1, batch, base.shape[1])  # (P, B, D)
    return jnp.max(_norm_of(flat - base, norm) / n0, axis=0)


def sensitivity_max(
    explain: Callable[..., Any],
    x: Any,
    *,
    key: Any = None,
    radius: float = 0.02,
    n_perturb: int | None = None,
    norm: Any = "fro",
    perturb_fn: Callable[..., Any] | None = None,
    perturbed_inputs: Any = None,
    target: Any = None,
    batch_size: int | None = None,
) -> jax.Array:
    """Returns the max-sensitivity of an explanation per example, shape ``(B,)``: lower is more stable.

        SENS_MAX(explain, x) = max_p ||explain(x_p) - explain(x)|| / ||explain(x)||

    over ``P`` perturbed inputs ``x_p``, by default uniform in the L-infinity ball of radius ``radius``
    around ``x`` (Captum's ``default_perturb_func``). Norms are over all entries of one example (every
    leaf); an explanation of norm 0 divides by 1. This is ``captum.metrics.sensitivity_max``. Yeh et al.,
    "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019.

    Args:
      explain: maps a batch to its attributions (shaped like the batch), e.g.
        ``functools.partial(jaxig.integrated_gradients, f, n_steps=32)``. It is called on ``x`` and on
        batches of ``batch_size * B`` perturbed examples (perturbation-major), every call of one shape, so
        a compiled method compiles once. For a per-example ``target`` pass it here: it is repeated for each
        perturbation and passed as ``explain(batch, target=...)``. A random method should close over its key.
      x: an array or pytree of arrays with a leading batch axis ``B``.
      key: a PRNG key, needed unless ``perturbed_inputs`` are given.
      radius: half-width of the uniform noise.
      n_perturb: the number of perturbations ``P`` (default 10).
      norm: ``'fro'`` (Euclidean, the default), a number ``p >= 1`` or ``float('inf')``.
      perturb_fn: ``(key, x, radius) -> x_perturbed`` instead of uniform noise, one key per perturbation.
      perturbed_inputs: explicit perturbed inputs ``(P,) + x.shape`` (a pytree like ``x``).
      target: an int, or one int per example ``(B,)``, handed to ``explain`` (see above); None passes none.
      batch_size: perturbations per call of ``explain`` (default: all ``P`` at once).

    Raises:
      ValueError: ``n_perturb < 1`` or ``batch_size < 1``; explanations not shaped like their inputs;
        perturbed inputs not shaped ``(P,) + x.shape``; an unsupported ``norm``; no key for random draws.
    """
    x, batch = _validate.as_float_inputs(x)
    _check_norm(norm)
    if not callable(explain):
        raise TypeError(f"explain must be a callable batch -> attributions, got {explain!r}")
    if perturbed_inputs is not None:
        stacked, n = _stack_like(perturbed_inputs, x, n_perturb, "perturbed_inputs")
    else:
        n = 10 if n_perturb is None else _positive_int(n_perturb, "n_perturb")
        _need_key(key, "sensitivity_max")
        if perturb_fn is None:
            stacked = _uniform_ball(n, key, x, jnp.asarray(radius, jnp.result_type(*jax.tree.leaves(x))))
        else:
            keys = jax.random.split(key, n)
            stacked = jax.vmap(lambda k: perturb_fn(k, x, radius))(keys)
            stacked, _ = _stack_like(stacked, x, n, "perturb_fn's results")
    chunk = n if batch_size is None else min(_positive_int(batch_size, "batch_size"), n)
    e0 = _attributions_like(explain(x, **({} if target is None else {"target": target})), x, "explain(x)")
    kwargs = {}
    if target is not None:  # one target per perturbed example, in the perturbation-major order of the blocks
        tile = jnp.tile if isinstance(target, jax.Array) else np.tile
        kwargs = {"target": tile(target, chunk) if np.ndim(target) else target}
    worst = None
    for start in range(0, n, chunk):
        # The last block repeats the last perturbation so that explain sees one shape; a repeated
        # perturbation leaves the maximum unchanged.
        merged = _block(stacked, np.minimum(np.arange(start, start + chunk), n - 1))
        e = _attributions_like(explain(merged, **kwargs), merged, "explain(perturbed inputs)")
        s = _relative_change(norm, e0, e)
        worst = s if worst is None else jnp.maximum(worst, s)
    assert worst is not None  # n >= 1
    return worst


@jax.jit
def _block(stacked: Any, idx: Any) -> Any:
    """Returns the perturbations ``idx`` merged into one batch ``(len(idx) * B, ...)``, perturbation-major."""
    return jax.tree.map(lambda v: v[idx].reshape((-1,) + v.shape[2:]), stacked)


# -- deletion and insertion curves ---------------------------------------------------------------------

class Curve(NamedTuple):
    """A deletion or insertion curve.

    Attributes:
      fractions: ``(S,)`` the fraction of units (features, groups or patches) removed or inserted.
      outputs: ``(B, S)`` the explained output of each example at each fraction.
      auc: ``(B,)`` the area under the curve (trapezoid rule over ``fractions``).
    """

    fractions: jax.Array
    outputs: jax.Array
    auc: jax.Array


@dataclasses.dataclass(frozen=True)
class _CurveStatic:
    counts: tuple[int, ...]
    n_groups: int
    chunk: int
    insertion: bool
    absolute: bool


def _patch_mask(x: jax.Array, patch: int) -> np.ndarray:
    """Returns the int ids ``(H, W[, 1])`` of ``patch x patch`` squares of images ``(B, H, W[, C])``."""
    if x.ndim not in (3, 4):
        raise ValueError(f"patch= needs images of shape (B, H, W) or (B, H, W, C), got shape {tuple(x.shape)}; "
                         "for other inputs pass a feature_mask")
    height, width = x.shape[1], x.shape[2]
    cols = -(-width // patch)
    ids = (np.arange(height)[:, None] // patch) * cols + np.arange(width)[None, :] // patch
    return ids[..., None] if x.ndim == 4 else ids


def perturbation_curve(
    f: Callable[..., jax.Array],
    x: Any,
    attributions: Any,
    baseline: Any = None,
    *,
    mode: str = "deletion",
    target: Any = None,
    args: Any = (),
    feature_mask: Any = None,
    patch: int | None = None,
    n_steps: int | None = None,
    absolute: bool = False,
    batch_size: int | None = None,
) -> Curve:
    """Returns the deletion or insertion :class:`Curve` of ``attributions``: fractions, outputs and AUC.

    The units (every entry of ``x``, the groups of ``feature_mask``, or the ``patch x patch`` squares of
    an image) are ranked by their summed attribution ``s_g = sum_{i in g} a_i`` (``|a_i|`` with
    ``absolute=True``), largest first, ties by unit number. After the first ``k`` units:

        deletion:   x^(k) = x with those units set to the baseline     (starts at F(x))
        insertion:  x^(k) = the baseline with those units set to x     (starts at F(baseline))

    and the curve is ``F(x^(k))`` against ``k / G`` for ``G`` units; ``auc`` is its trapezoid area. A
    faithful ranking makes the deletion curve fall fast (low AUC) and the insertion curve rise fast (high
    AUC). For a linear model with exact attributions ``a_i = w_i (x_i - x'_i)`` the deletion curve is
    ``F(x) - (sum of the k largest a_i)``, the lowest of all orderings at every ``k``. Petsiuk, Das and
    Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018 (which uses
    class probabilities: pass ``f`` returning probabilities to match).

    Args:
      f, x, baseline, target, args: as in :func:`jaxig.integrated_gradients`. The baseline is the value a
        removed unit takes (zeros by default; a blurred copy of ``x`` is common for insertion).
        ``target`` must pick one output per example (not ``"all"``).
      attributions: shaped exactly like ``x`` (any array type ``np.asarray`` reads).
      mode: ``"deletion"`` or ``"insertion"``.
      feature_mask: integer unit ids as in :func:`jaxig.feature_ablation`: shape ``x.shape[1:]`` or
        broadcastable to it (per example with a leading axis ``B``). For time series ``(B, T, F)``:
        ``None`` ranks every (time, feature) cell, ``np.arange(F)[None, :]`` ranks whole features,
        ``np.arange(T)[:, None]`` whole time steps.
      patch: for images ``(B, H, W[, C])``: rank ``patch x patch`` squares (all channels together; the last
        row and column of squares may be smaller). Exclusive with ``feature_mask``.
      n_steps: evaluate after ``round(j G / n_steps)`` units for ``j = 0..n_steps``; ``None`` evaluates
        after every unit (``G + 1`` points).
      absolute: rank by summed magnitudes instead of signed sums.
      batch_size: perturbed copies of the batch per model call (``None``: chunks near 64 MiB).

    Raises:
      ValueError: a bad ``mode``; attributions not shaped like ``x``; both ``feature_mask`` and ``patch``;
        ``patch`` on inputs that are not images; ``n_steps < 1``; ``target="all"``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode={mode!r} is not understood; pass mode='deletion' or mode='insertion'")
    problem = prepare(f, x, baseline, target=target, args=args)
    _one_target(problem, f"the {mode} curve")
    a = _attributions_like(attributions, problem.x)
    if patch is not None:
        if feature_mask is not None:
            raise ValueError("pass either feature_mask or patch, not both")
        leaves = jax.tree.leaves(problem.x)
        if len(leaves) != 1:
            raise ValueError("patch= needs a single image array x; for a pytree pass a feature_mask")
        feature_mask = jax.tree.unflatten(jax.tree.structure(problem.x),
                                          [_patch_mask(leaves[0], _positive_int(patch, "patch"))])
    masks, n_groups = resolve_feature_mask(feature_mask, problem.x, problem.batch)
    if n_steps is None:
        counts = tuple(range(n_groups + 1))
    else:
        steps = _positive_int(n_steps, "n_steps")
        counts = tuple(sorted({int(round(j * n_groups / steps)) for j in range(steps + 1)}))
    static = _CurveStatic(counts, n_groups, _chunk(problem, len(counts), batch_size), mode == "insertion",
                          bool(absolute))
    outputs, auc = _curve_jit(static, problem, a, masks)
    fractions = jnp.asarray(np.asarray(counts, np.float64) / n_groups, problem.dtype)
    return Curve(fractions, outputs, auc)


def deletion_curve(f: Callable[..., jax.Array], x: Any, attributions: Any, baseline: Any = None, **kwargs) -> Curve:
    """Returns :func:`perturbation_curve` with ``mode="deletion"``: units set to the baseline, most important first."""
    return perturbation_curve(f, x, attributions, baseline, mode="deletion", **kwargs)


def insertion_curve(f: Callable[..., jax.Array], x: Any, attributions: Any, baseline: Any = None, **kwargs) -> Curve:
    """Returns :func:`perturbation_curve` with ``mode="insertion"``: units of ``x`` put on the baseline in order."""
    return perturbation_curve(f, x, attributions, baseline, mode="insertion", **kwargs)


def _curve_impl(static: _CurveStatic, problem: Problem, a, masks):
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    baseline = problem.full_baseline()
    batch, n_groups = problem.batch, static.n_groups

    def ids_of(leaf, mask):
        return jnp.broadcast_to(mask, (batch,) + leaf.shape[1:]).reshape(batch, -1)

    def scores_of(ai, mask):
        v = jnp.abs(ai) if static.absolute else ai
        ids = ids_of(ai, mask)
        return jax.vmap(lambda vals, g: jax.ops.segment_sum(vals, g, n_groups))(v.reshape(batch, -1), ids)

    scores = functools.reduce(jnp.add, [scores_of(ai, m) for ai, m in zip(jax.tree.leaves(a), jax.tree.leaves(masks))])
    order = jnp.argsort(-scores, axis=1, stable=True)
    rank = jnp.argsort(order, axis=1)  # rank[b, g]: the position of unit g in example b's order
    counts = jnp.asarray(static.counts, jnp.int32)

    def at_step(j):
        chosen = rank < counts[j]  # (B, G)

        def leaf(xi, bi, mask):
            hit = jnp.take_along_axis(chosen, ids_of(xi, mask), axis=1).reshape(xi.shape)
            return jnp.where(hit, xi, bi) if static.insertion else jnp.where(hit, bi, xi)

        return jax.tree.map(leaf, x, baseline, masks)

    def one(j):
        return select(spec, model(at_step(j)), index)

    outputs = jax.lax.map(one, jnp.arange(len(static.counts)), batch_size=static.chunk).T  # (B, S)
    fr = counts.astype(outputs.dtype) / n_groups
    auc = jnp.sum((outputs[:, 1:] + outputs[:, :-1]) * (fr[1:] - fr[:-1]) / 2, axis=1)
    return outputs, auc


_curve_jit = jax.jit(_curve_impl, static_argnums=0)


# -- ground truth --------------------------------------------------------------------------------------

def _pair(attributions: Any, other: Any, name: str) -> tuple[jax.Array, jax.Array]:
    """Returns ``(attributions, other)`` flattened to ``(B, D)``; ``other`` may omit the batch axis."""
    a_leaves = jax.tree.leaves(attributions)
    o_leaves = jax.tree.leaves(other)
    if len(a_leaves) != len(o_leaves) or not a_leaves:
        raise ValueError(f"{name} has {len(o_leaves)} leaves but attributions has {len(a_leaves)}; pass one "
                         "array per attribution array")
    a_out, o_out = [], []
    for ai, oi in zip(a_leaves, o_leaves):
        ai, oi = jnp.asarray(ai), jnp.asarray(oi)
        if ai.ndim < 2:
            raise ValueError(f"attributions have shape {tuple(ai.shape)}; pass a batch (B, ...) with at least "
                             "one feature axis (for one example, a[None])")
        try:
            oi = jnp.broadcast_to(oi, ai.shape)
        except ValueError:
            raise ValueError(f"{name} shape {tuple(oi.shape)} does not match attributions of shape "
                             f"{tuple(ai.shape)}; pass shape {tuple(ai.shape[1:])} or {tuple(ai.shape)}") from None
        a_out.append(ai.reshape(ai.shape[0], -1))
        o_out.append(oi.reshape(ai.shape[0], -1))
    return jnp.concatenate(a_out, 1), jnp.concatenate(o_out, 1)


@jax.jit
def _mass(a, m):
    mag = jnp.abs(a)
    return jnp.sum(mag * m, axis=1) / jnp.sum(mag, axis=1)


def mass_fraction(attributions: Any, mask: Any) -> jax.Array:
    """Returns the fraction of attribution mass on the masked features per example, shape ``(B,)``.

        mass = sum_{i in mask} |a_i| / sum_i |a_i|

    1 means every bit of attribution lies on the planted (truly relevant) features; an uninformative
    attribution scores about the masked share of the features. NaN for an all-zero attribution. The
    "relevance mass accuracy" of Arras, Osman and Samek, "CLEVR-XAI", Information Fusion 2022.

    Args:
      attributions: ``(B, ...)`` arrays (or a pytree of them).
      mask: booleans (or 0/1) of shape ``attributions.shape[1:]`` or the full shape, e.g. the
        ``coefs != 0`` of :func:`jaxig.datasets.time_series` or :func:`jaxig.datasets.image`.

    Raises:
      ValueError: a mask that does not broadcast to the attributions.
    """
    a, m = _pair(attributions, mask, "mask")
    return _mass(a, m.astype(a.dtype))


def _average_ranks(v: jax.Array) -> jax.Array:
    """Returns the 1-based ranks of a vector, ties sharing their average rank (as scipy's rankdata)."""
    s = jnp.sort(v)
    lower = jnp.searchsorted(s, v, side="left")
    upper = jnp.searchsorted(s, v, side="right")
    return (lower + upper + 1) / 2


@functools.partial(jax.jit, static_argnums=2)
def _spearman(a, r, absolute):
    if absolute:
        a, r = jnp.abs(a), jnp.abs(r)
    ra, rr = jax.vmap(_average_ranks)(a), jax.vmap(_average_ranks)(r)
    ra, rr = ra - ra.mean(1, keepdims=True), rr - rr.mean(1, keepdims=True)
    return jnp.sum(ra * rr, 1) / jnp.sqrt(jnp.sum(ra * ra, 1) * jnp.sum(rr * rr, 1))


def rank_correlation(attributions: Any, reference: Any, *, absolute: bool = False) -> jax.Array:
    """Returns Spearman's rank correlation of each example's attributions with a reference, shape ``(B,)``.

        rho = Pearson(rank(a), rank(r))     over the features of one example

    with tied values sharing their average rank (``scipy.stats.spearmanr``). 1 means the same ordering
    as the reference, e.g. the closed-form IG of :mod:`jaxig.datasets` (``coefs * (x - x')``). NaN when
    either vector is constant. Computed in float32 (or x64) JAX, batched and compiled.

    Args:
      attributions: ``(B, ...)`` arrays (or a pytree of them).
      reference: the same shape, or without the batch axis (one reference for every example).
      absolute: correlate magnitudes ``|a|`` and ``|r|`` instead of signed values.

    Raises:
      ValueError: a reference that does not broadcast to the attributions.
    """
    a, r = _pair(attributions, reference, "reference")
    dtype = jnp.result_type(a.dtype, r.dtype, jnp.float32)
    return _spearman(a.astype(dtype), r.astype(dtype), bool(absolute))
