"""Peak memory of adaptive IG against ``max_evals`` and against ``K`` for ``target="all"``.

For each case a fresh process imports jaxig from ``--before`` (an old checkout, e.g. made with
``git worktree add /tmp/adaptive-before c1e7e08``) or from this checkout, compiles
``jax.jit(lambda x: adaptive_integrated_gradients(f, x, ...))`` and prints the compiled program's
``memory_analysis()`` (temporaries, arguments, outputs); nothing runs unless ``--run``, which also
runs the program once and reports the process's peak RSS (skipped where the analysis exceeds
``--max-gib``).

Models: ``tanh(x W1) w2`` (smooth: ``Kronrod``) and ``relu(x W1) w2`` (piecewise linear: ``Piecewise``)
with 16 hidden units on a flattened ``S x S`` input, batch 1, ``max_evals`` in 1e3, 1e4, 2e5; and
``tanh/relu(x W1) W2`` with ``K`` outputs, 64 hidden units, ``x`` of shape (8, 2048), ``target="all"``
(the result is ``8 K 2048`` floats: 62.5 MiB at ``K = 1000``).

    python benchmarks/adaptive_memory.py --before /tmp/adaptive-before [--run] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(spec: dict) -> dict:
    sys.path.insert(0, spec["root"])
    import resource

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxig

    assert jaxig.__file__.startswith(spec["root"]), jaxig.__file__
    rng = np.random.default_rng(0)
    act = jnp.tanh if spec["model"] == "tanh" else jax.nn.relu
    if spec["kind"] == "evals":
        n_in, hidden, n_out, batch = spec["size"] ** 2, 16, 1, 1
    else:
        n_in, hidden, n_out, batch = 2048, 64, spec["k"], 8
    w1 = jnp.asarray(rng.standard_normal((n_in, hidden)) / np.sqrt(n_in), jnp.float32)
    w2 = jnp.asarray(rng.standard_normal((hidden, n_out)) / np.sqrt(hidden), jnp.float32)

    def f(z):
        out = act(z.reshape(z.shape[0], -1) @ w1) @ w2
        return out[:, 0] if spec["kind"] == "evals" else out

    shape = (batch, spec["size"], spec["size"]) if spec["kind"] == "evals" else (batch, n_in)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    kw: dict = dict(max_evals=spec["max_evals"], rtol=1e-3, warn=False, return_info=True)
    if spec["kind"] == "all":
        kw["target"] = "all"
    run = jax.jit(lambda z: jaxig.adaptive_integrated_gradients(f, z, **kw))
    mem = run.lower(x).compile().memory_analysis()
    assert mem is not None, "this backend reports no memory analysis"
    out = dict(spec, temp=mem.temp_size_in_bytes, argument=mem.argument_size_in_bytes,
               output=mem.output_size_in_bytes)
    total = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    if spec["run"] and total < spec["max_gib"] * 2**30:
        attr, info = jax.block_until_ready(run(x))
        out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["n_evals"] = int(np.max(np.asarray(info.n_evals)))
        out["converged"] = bool(np.all(np.asarray(info.converged)))
    return out


def _spawn(spec: dict) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        return dict(spec, error=(proc.stderr or "").strip().splitlines()[-1][:200])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(v):
    return "-" if v is None else f"{v / 2**20:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Peak memory of adaptive IG against max_evals and K.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--before", help="root of an old jaxig checkout to compare against")
    parser.add_argument("--run", action="store_true", help="also run each program and report peak RSS")
    parser.add_argument("--max-gib", type=float, default=12.0, help="do not run programs needing more")
    parser.add_argument("--quick", action="store_true", help="64x64 only, K up to 100")
    parser.add_argument("--out", help="write the rows as JSON lines here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    roots = ([("before", os.path.abspath(args.before))] if args.before else []) + [("after", HERE)]
    cases = []
    for size in (64,) if args.quick else (64, 256):
        for model in ("tanh", "relu"):
            for max_evals in (1_000, 10_000, 200_000):
                cases.append(dict(kind="evals", size=size, model=model, max_evals=max_evals, k=1))
    for model in ("tanh", "relu"):
        for k in (10, 100) if args.quick else (10, 100, 1000):
            cases.append(dict(kind="all", size=0, model=model, max_evals=2048, k=k))
    rows = []
    print(f"{'case':<34} {'version':<7} {'temp MiB':>12} {'args MiB':>9} {'out MiB':>9} {'peak RSS MiB':>13}")
    for case in cases:
        for name, root in roots:
            row = _spawn(dict(case, root=root, run=args.run, max_gib=args.max_gib, version=name))
            rows.append(row)
            label = (f"{case['model']} {case['size']}x{case['size']} max_evals={case['max_evals']}"
                     if case["kind"] == "evals" else f"{case['model']} target=all K={case['k']}")
            if "error" in row:
                print(f"{label:<34} {name:<7} error: {row['error']}")
                continue
            print(f"{label:<34} {name:<7} {_mib(row['temp']):>12} {_mib(row['argument']):>9} "
                  f"{_mib(row['output']):>9} {_mib(row.get('peak_rss')):>13}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
