"""Should the default integrate piecewise-linear models exactly? Time and accuracy of the candidates.

For each piecewise-linear benchmark workload (ReLU MLPs, the ReLU CNN with max-pooling) it times, in
one process after a warm-up, the default ``integrated_gradients`` (50-step Gauss–Legendre, Captum's
default too), ``exact_integrated_gradients`` and ``adaptive_integrated_gradients`` (rtol 1e-3), and
measures each one's error against exact IG run in float64: the largest per-feature error relative to
the example's largest attribution, and how many examples exceed 1%. The numbers behind the default
documented in the README (section "Behaviour worth knowing").

Usage: ``python benchmarks/accurate_default.py [--workloads a,b] [--repeats 5]``. Needs ``[compare]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))
from _workloads import build  # noqa: E402

import jaxig  # noqa: E402

PWL_WORKLOADS = ("mlp_california", "mlp_linear96", "cnn32")


def timed(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def errors(attr, ref):
    a = np.asarray(attr, np.float64).reshape(ref.shape[0], -1)
    r = ref.reshape(ref.shape[0], -1)
    rel = np.abs(a - r).max(1) / np.maximum(np.abs(r).max(1), 1e-30)
    return float(rel.max()), int((rel > 1e-2).sum())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default=",".join(PWL_WORKLOADS))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print("| workload | examples | method | ms (median) | max rel. error | examples > 1% |")
    print("|---|---|---|---|---|---|")
    for name in args.workloads.split(","):
        w = build(name)
        x = jnp.asarray(w.x)
        f, kw = w.jax_fn, dict(target=w.target)
        with jax.enable_x64(True):  # float32 weights, float64 inputs: the search and sums in float64
            ref = np.asarray(jaxig.exact_integrated_gradients(w.jax_fn, x.astype(jnp.float64), **kw))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            runs = {
                "default (GL 50)": functools.partial(jaxig.integrated_gradients, f, x, n_steps=w.n_steps, **kw),
                "exact": functools.partial(jaxig.exact_integrated_gradients, f, x, **kw),
                "adaptive rtol=1e-3": functools.partial(jaxig.adaptive_integrated_gradients, f, x, rtol=1e-3, **kw),
            }
            for label, call in runs.items():
                ms = timed(call, args.repeats)
                worst, n_bad = errors(call(), ref)
                print(f"| {name} | {x.shape[0]} | {label} | {ms:.1f} | {worst:.2e} | {n_bad} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
