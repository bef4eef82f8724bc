"""Probing f for `jaxig.axioms`: points on and around the straight path, and dummy-feature detection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._axioms_utils import select, tile_target, unflatten

_ROWS_PER_CALL = 1 << 16  # rows of f evaluations per call when probing many features at once


def sample_points(flat_x, flat_b, key, n_path, n_random):
    """Returns points (n_path + n_random, B, D) on and near the straight path, and a label per point.

    Path points are b + alpha (x - b) for alpha = 0, ..., 1 (evenly spaced). Random points are path points
    at alpha ~ U(0, 1) plus Gaussian noise of standard deviation 0.5 * s per feature, where s is the
    example's root-mean-square |x - b| over features (1 where x == b), so they probe a tube around the path.
    """
    diff = flat_x - flat_b
    alphas = jnp.linspace(0.0, 1.0, n_path)
    pts = [flat_b[None] + alphas[:, None, None] * diff[None]]
    labels = [f"alpha={float(a):.3g} on the straight path" for a in alphas]
    if n_random:
        key = jax.random.key(0) if key is None else key
        ka, kn = jax.random.split(key)
        scale = jnp.sqrt(jnp.mean(diff**2, axis=1, keepdims=True))
        scale = jnp.where(scale > 0, scale, 1.0)
        a = jax.random.uniform(ka, (n_random, flat_x.shape[0], 1), dtype=flat_x.dtype)
        noise = jax.random.normal(kn, (n_random,) + flat_x.shape, dtype=flat_x.dtype)
        pts.append(flat_b[None] + a * diff[None] + 0.5 * scale[None] * noise)
        labels += [f"random point {r} near the path" for r in range(n_random)]
    return jnp.concatenate(pts, axis=0), labels


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

    def sel(p):
        return select(f(unflatten(p, spec)), t_big, n * B)

    out, vjp = jax.vjp(sel, P)
    K = out.shape[0]
    width = jnp.tile(jnp.sqrt(jnp.mean((flat_x - flat_b) ** 2, axis=1, keepdims=True)), (n, 1))
    width = jnp.where(width > 0, width, 1.0)
    tau = dependence_rtol * np.maximum(np.max(np.abs(np.asarray(out)), axis=1), scale_out)  # (K,)
    # (K, D): the largest first-order output change per feature over all probe points
    grad_dep = np.stack(
        [np.max(np.abs(np.asarray(vjp(jnp.zeros_like(out).at[k].set(1.0))[0] * width)), axis=0) for k in range(K)]
    )
    mask = grad_dep <= tau[:, None]
    # Zero gradient everywhere sampled is not enough (step functions have zero gradient a.e.), so every
    # candidate is also replaced by its value at another sampled point of the same example.
    cand = np.nonzero(mask.any(axis=0))[0]
    rolled = jnp.roll(P, B, axis=0)
    base_out = np.asarray(out)
    per_call = max(1, _ROWS_PER_CALL // (n * B))
    for start in range(0, cand.size, per_call):
        chunk = cand[start:start + per_call]
        rep = jnp.tile(P, (chunk.size, 1))
        rows = np.arange(chunk.size * n * B)
        cols = np.repeat(chunk, n * B)
        rep = rep.at[rows, cols].set(jnp.tile(rolled, (chunk.size, 1))[rows, cols])
        o = np.asarray(select(f(unflatten(rep, spec)), tile_target(target, n * chunk.size), rows.size))
        change = np.abs(o - np.tile(base_out, (1, chunk.size))).reshape(K, chunk.size, n * B).max(axis=2)
        mask[:, chunk] &= change <= tau[:, None]
    return mask
