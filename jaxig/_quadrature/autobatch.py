"""Chooses how many alphas to evaluate at once: all in one vmap, or chunks of bounded size.

Measured on 2 CPU cores (benchmarks/README.md): evaluating all alphas in one ``vmap`` is 1.5-3x
*slower* than chunks of a few alphas for the larger MLPs and LSTMs, because the stacked activations
fall out of cache; but XLA:CPU runs convolutions inside a ``lax.scan`` (the chunk loop) 2-3x slower
than outside one, so convolutional models are fastest with every alpha in one ``vmap``. The budget
is in bytes of the jaxpr's intermediates, which overstates the working set (XLA fuses most of them
away): 64 MiB of them was the fastest setting measured (mlp_linear96, 100 steps: chunks of 4 alphas
11.2 ms, 10-50 alphas 7.9-8.3 ms, all 100 22 ms; mlp_california, 50 steps: all at once 3.2 ms,
chunks of 14 4.2 ms).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

__all__ = ["auto_alpha_batch_size", "program_bytes"]

#: Intermediates of one chunk (forward values and their cotangents) are kept below this size.
CHUNK_BUDGET_BYTES = 64 * 2**20
#: A chunk holds at least this many (example, alpha) pairs: below it every operation is too small to
#: pay for XLA:CPU's per-operation dispatch over its threads (measured on the benchmark's transformer,
#: 64 sequences: 1 alpha at a time 542 ms, 2 at a time 413 ms, 5 453 ms, all 50 650 ms).
MIN_CHUNK_ROWS = 128


def _walk(jaxpr) -> tuple[int, bool]:
    """Returns (bytes of every equation's outputs, whether a convolution occurs), nested included."""
    total, conv = 0, False
    for eqn in jaxpr.eqns:
        conv |= eqn.primitive.name == "conv_general_dilated"
        for v in eqn.outvars:
            shape = getattr(v.aval, "shape", None)
            if shape is not None:
                total += int(np.prod(shape, dtype=np.int64)) * v.aval.dtype.itemsize  # PRNG key dtypes too
        repeat = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
        for sub in jex_core.jaxprs_in_params(eqn.params):
            sub_total, sub_conv = _walk(sub)
            total += repeat * sub_total
            conv |= sub_conv
    return total, conv


@functools.lru_cache(maxsize=256)
def program_bytes(program: Any) -> tuple[int, bool]:
    """Returns :func:`_walk` of a lifted model's program (a ``jaxig._model.Program``), cached on it:
    host-side chunk sizing runs on every call, and walking the jaxpr cost 0.2 ms of a 1 ms call."""
    return _walk(program.jaxpr)


def auto_alpha_batch_size(f: Callable, x: Any, n_steps: int, *,
                          budget_bytes: int = CHUNK_BUDGET_BYTES) -> int | None:
    """Returns the number of alphas per chunk for ``f`` at inputs like ``x``, or None for all at once.

    ``k = max(budget_bytes // (2 * b), ceil(MIN_CHUNK_ROWS / B))`` with ``b`` the bytes of all
    intermediate values of one forward pass of ``f`` (read from its jaxpr; the factor 2 counts their
    cotangents), so one chunk's working set stays near ``budget_bytes``, and ``B`` the batch (the
    leading axis of ``x``), so that a chunk's operations are not too small to run well on several
    threads; then evened out over the chunks it implies (``ceil(n_steps / ceil(n_steps / k))``),
    since the last chunk is padded to full size. None (one ``vmap`` over all alphas) when
    ``k >= n_steps`` or when ``f`` contains a convolution (slow inside XLA:CPU loops).
    """
    per_alpha, has_conv = _walk(jax.make_jaxpr(f)(x).jaxpr)
    if has_conv:
        return None
    leaves = jax.tree.leaves(x)
    batch = int(leaves[0].shape[0]) if leaves and leaves[0].ndim else 1
    k = max(1, budget_bytes // max(1, 2 * per_alpha), -(-MIN_CHUNK_ROWS // max(1, batch)))
    if k >= n_steps:
        return None
    return int(-(-n_steps // -(-n_steps // k)))  # the same number of chunks, the least padding
