"""Where an Integrated Gradients call spends its time: the model's own work against jaxig's.

For each workload (``_workloads.py``) it times, in one process after a warm-up (best and median of
``--repeats`` calls, the calls of the variants interleaved):

- **jaxig**: ``jaxig.integrated_gradients(f, x, target=t, n_steps=n)`` as a user calls it;
- **bare**: the least any IG implementation must do, hand-written and ``jax.jit``-compiled once:
  ``n`` input-gradients of the model on the batch (``jax.vmap`` of ``jax.grad`` over the
  Gauss-Legendre nodes, summed with their weights), no checks, no completeness gap;
- **forward**: ``n`` forward passes of the batch alone (one ``vmap``), for scale.

``jaxig - bare`` is what the library adds (tracing ``f``, input checks, the completeness gap's two
extra forward passes, dispatch); ``bare`` is the model's forward and backward. The affine split and
alpha batching can make jaxig *faster* than ``bare`` (a negative overhead). For the MLPs it also
prints the float32 matmul rate of the machine (a 2048 x 2048 ``jnp.dot``, same run) and the share of
it that jaxig reaches on the nominal IG FLOPs (2x the forward per example and step).

Usage: ``python benchmarks/profile_ig.py [--workloads a,b] [--repeats 7]``. Needs torch (the
workloads copy PyTorch-initialised weights).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))
from _workloads import WORKLOADS, build  # noqa: E402
from vs_captum import gl_table, matmul_peak_gflops  # noqa: E402

import jaxig  # noqa: E402


def variants(w):
    """Returns {name: no-argument callable} for the workload (input workloads only)."""
    x = jnp.asarray(w.x)
    alphas, weights = (jnp.asarray(v, jnp.float32) for v in gl_table(w.n_steps))
    explained = lambda z: w.jax_fn(z)[:, w.target].sum()  # noqa: E731

    @jax.jit
    def bare(x):
        grads = jax.vmap(lambda a: jax.grad(explained)(a * x))(alphas)
        return x * jnp.tensordot(weights, grads, axes=1)

    @jax.jit
    def forward(x):
        return jax.vmap(lambda a: w.jax_fn(a * x))(alphas)

    return {
        "jaxig": lambda: jaxig.integrated_gradients(w.jax_fn, x, target=w.target, n_steps=w.n_steps),
        "bare": lambda: bare(x),
        "forward": lambda: forward(x),
    }


def profile(name, repeats):
    w = build(name)
    if w.layer:
        return None
    runs = variants(w)
    for fn in runs.values():
        jax.block_until_ready(fn())
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - t0)
    row = {"workload": name}
    for k, ts in times.items():
        row[k] = (1e3 * statistics.median(ts), 1e3 * min(ts))
    row["ours_fraction"] = (row["jaxig"][0] - row["bare"][0]) / row["jaxig"][0]
    if w.fwd_flops_per_example:
        flops = 2.0 * w.fwd_flops_per_example * w.x.shape[0] * w.n_steps
        row["gflops"] = flops / (row["jaxig"][1] / 1e3) / 1e9
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="mlp_california,mlp_linear96,lstm_ts,lstm_flax,cnn32")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    names = [n for n in args.workloads.split(",") if n]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {sorted(WORKLOADS)}")
    peak = matmul_peak_gflops()
    print(f"load {os.getloadavg()[0]:.2f}; float32 matmul peak {peak:.0f} GFLOP/s; median (best) ms of "
          f"{args.repeats} interleaved calls after a warm-up")
    print("| workload | jaxig ms | bare vmap(grad) ms | forward only ms | jaxig's own share | GFLOP/s (% peak) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        r = profile(name, args.repeats)
        if r is None:
            print(f"| {name} | layer workload: not profiled |  |  |  |  |")
            continue
        flops = f"{r['gflops']:.1f} ({100 * r['gflops'] / peak:.0f}%)" if "gflops" in r else ""
        print(f"| {name} | {r['jaxig'][0]:.1f} ({r['jaxig'][1]:.1f}) | {r['bare'][0]:.1f} ({r['bare'][1]:.1f}) | "
              f"{r['forward'][0]:.1f} ({r['forward'][1]:.1f}) | {100 * r['ours_fraction']:.0f}% | {flops} |",
              flush=True)


if __name__ == "__main__":
    main()
