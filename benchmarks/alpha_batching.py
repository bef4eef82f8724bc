"""Times jaxig on each workload for several ``alpha_batch_size`` values (and CNN layouts).

``alpha_batch_size=None`` evaluates all alphas in one ``vmap``; ``k`` evaluates ``k`` alphas at a
time inside a ``lax.scan`` (``1`` is fully sequential). The best choice depends on the model: the
sequential LSTM keeps its per-step working set in cache, the CNN's convolutions prefer big batches.
Calls are interleaved across settings so that machine load hits all of them alike.

Usage: ``python benchmarks/alpha_batching.py [--quick] [--workloads a,b] [--sizes none,1,5,10]
[--out DIR]``. Needs torch (the workloads are built from PyTorch weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import torch  # noqa: F401
except ImportError as err:  # pragma: no cover
    sys.exit(f"benchmarks/alpha_batching.py needs torch to build the workloads ({err})")

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))
from _workloads import WORKLOADS, build, cnn32, lstm_ts  # noqa: E402

import jaxig  # noqa: E402


def _size(text):
    return None if text.lower() == "none" else int(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--sizes", default="none,1,2,5,10,25")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    sizes = [_size(s) for s in args.sizes.split(",")]
    repeats = args.repeats or (2 if args.quick else 5)
    results = {"load_before": os.getloadavg(), "jaxig_from": str(Path(jaxig.__file__).parent),
               "rows": []}
    for name in args.workloads.split(","):
        variants = {name: build(name)}
        if name == "cnn32":
            variants["cnn32_nchw"] = cnn32(layout="NCHW")
        if name == "lstm_ts":
            variants["lstm_ts_scan"] = lstm_ts(unroll=False)
        for label, w in variants.items():
            x = jnp.asarray(w.x)
            runs = {}
            for s in sizes:
                def run(s=s, w=w, x=x):
                    out = jaxig.integrated_gradients(w.jax_fn, x, target=w.target,
                                                     n_steps=w.n_steps, alpha_batch_size=s)
                    return np.asarray(jax.block_until_ready(out))
                t0 = time.perf_counter()
                ref = run()
                runs[s] = (run, time.perf_counter() - t0, ref)
            times = {s: [] for s in sizes}
            for _ in range(repeats):
                for s in sizes:
                    t0 = time.perf_counter()
                    runs[s][0]()
                    times[s].append(time.perf_counter() - t0)
            base = runs[sizes[0]][2]
            for s in sizes:
                row = {"workload": label, "alpha_batch_size": s,
                       "median_ms": 1e3 * statistics.median(times[s]),
                       "first_call_s": runs[s][1],
                       "rel_diff_vs_first": float(np.max(np.abs(runs[s][2] - base))
                                                  / np.max(np.abs(base)))}
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
    results["load_after"] = os.getloadavg()
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "alpha_batching.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
