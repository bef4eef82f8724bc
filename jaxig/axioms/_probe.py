"""Probing f for `jaxig.axioms`: points on and around the straight path, and dummy-feature detection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._gradients import explain_at
from .._problem import prepare
from ._utils import select, tile_target, unflatten

_ROWS_PER_CALL = 1 << 16  # rows of f evaluations per call when probing many features at once


def _rng(key) -> np.random.Generator:
    """Returns a NumPy generator seeded by the key's bits (deterministic in key; default key(0))."""
    key = jax.random.key(0) if key is None else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def sample_points(flat_x, flat_b, key, n_path, n_random):
    """Returns points (n_path + n_random, B, D) on and near the straight path, and a label per point.

    Path points are b + alpha (x - b) for alpha = 0, ..., 1 (evenly spaced). Random points are path points
    at alpha ~ U(0, 1) plus Gaussian noise of standard deviation 0.5 * s per feature, where s is the
    example's root-mean-square |x - b| over features (1 where x == b), so they probe a tube around the path.
    They are drawn in NumPy from a generator seeded by ``key`` (cheaper than compiling jax.random).
    """
    diff = flat_x - flat_b
    alphas = np.linspace(0.0, 1.0, n_path)
    pts = [flat_b[None] + alphas[:, None, None] * diff[None]]
    labels = [f"alpha={float(a):.3g} on the straight path" for a in alphas]
    if n_random:
        rng = _rng(key)
        a = rng.uniform(size=(n_random, flat_x.shape[0], 1))
        noise = rng.normal(size=(n_random,) + flat_x.shape)
        pts.append(flat_b[None] + a * diff[None] + 0.5 * _width(flat_x, flat_b)[None] * noise)
        labels += [f"random point {r} near the path" for r in range(n_random)]
    return np.concatenate(pts, axis=0).astype(flat_x.dtype), labels


def _width(flat_x, flat_b):
    """Returns each example's RMS |x - b| over features as (B, 1), 1 where x == b."""
    s = np.sqrt(np.mean((flat_x.astype(np.float64) - flat_b) ** 2, axis=1, keepdims=True))
    return np.where(s > 0, s, 1.0)


def dummy_mask(dummies, spec, K) -> np.ndarray:
    D = spec.n_features
    arr = None
    try:
        arr = np.asarray(dummies)
    except (ValueError, TypeError):
        pass
    if arr is not None and arr.dtype != object and np.issubdtype(arr.dtype, np.integer):
        idx = arr.reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= D):
            raise ValueError(f"dummies={dummies!r}; flat feature indices must lie in [0, {D})")
        mask = np.zeros(D, bool)
        mask[idx] = True
    else:
        try:
            leaves = spec.treedef.flatten_up_to(dummies)
            mask = np.concatenate(
                [np.broadcast_to(np.asarray(m, bool), s).reshape(-1) for m, s in zip(leaves, spec.shapes)]
            )
        except (ValueError, TypeError) as e:
            raise ValueError(
                "dummies must be flat feature indices or a pytree of bool masks shaped like one "
                f"example of x (per-example shapes {spec.shapes}); got {dummies!r}"
            ) from e
    return np.broadcast_to(mask, (K, D))


def detect_dummies(f, flat_x, flat_b, spec, target, key, n_points, dependence_rtol, scale_out):
    """Returns a (K, D) mask of features with no detected influence on the explained output(s)."""
    B, D = flat_x.shape
    pts, _ = sample_points(flat_x, flat_b, key, n_points - n_points // 2, n_points // 2)
    n = pts.shape[0]
    P = pts.reshape(n * B, D)
    t_big = tile_target(target, n)

    problem = prepare(lambda p: f(unflatten(p, spec)), jnp.asarray(P), target=t_big)
    out, grads = (np.asarray(a, np.float64) for a in explain_at(problem))
    out = out.reshape(-1, n * B)  # (K, nB)
    K = out.shape[0]
    grads = grads.reshape(K, n * B, D)
    width = np.tile(_width(flat_x, flat_b), (n, 1))
    tau = dependence_rtol * np.maximum(np.max(np.abs(out), axis=1), scale_out)  # (K,)
    # (K, D): the largest first-order output change per feature over all probe points
    grad_dep = np.max(np.abs(grads) * width, axis=1)
    mask = grad_dep <= tau[:, None]
    # Zero gradient everywhere sampled is not enough (step functions have zero gradient a.e.), so every
    # candidate is also replaced by its value at another sampled point of the same example.
    cand = np.nonzero(mask.any(axis=0))[0]
    rolled = np.roll(P, B, axis=0)
    # compare like with like: f evaluated the same (eager) way as on the replaced points below
    base_out = np.asarray(select(f(unflatten(P, spec)), t_big, n * B), np.float64)
    per_call = max(1, _ROWS_PER_CALL // (n * B))
    for start in range(0, cand.size, per_call):
        chunk = cand[start:start + per_call]
        rep = np.tile(P, (chunk.size, 1))
        rows = np.arange(chunk.size * n * B)
        cols = np.repeat(chunk, n * B)
        rep[rows, cols] = np.tile(rolled, (chunk.size, 1))[rows, cols]
        o = np.asarray(select(f(unflatten(rep, spec)), tile_target(target, n * chunk.size), rows.size))
        change = np.abs(o - np.tile(base_out, (1, chunk.size))).reshape(K, chunk.size, n * B).max(axis=2)
        mask[:, chunk] &= change <= tau[:, None]
    return mask
