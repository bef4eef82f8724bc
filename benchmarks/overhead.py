"""Per-call time of ``jaxig.integrated_gradients`` for two checkouts of jaxig, in separate processes.

Measures what lifting the model (tracing ``f`` and passing its arrays to the compiled program) costs
per call against an older checkout that cached the compiled program on ``f`` itself. Each
(checkout, workload) runs in its own fresh process, the checkouts alternate, and each side keeps its
best round, so machine load drifts hit both alike. The calls are timed as a user makes them: the
same ``f`` (a closure over the weights), and, new checkout only, with the default completeness check
off (``completeness_rtol=None``) and with a new lambda on every call.

Usage::

    git worktree add /tmp/jaxig-old 18df71e   # the checkout before models-as-arguments
    python benchmarks/overhead.py --old /tmp/jaxig-old [--rounds 3] [--calls 200] [--out DIR]

Needs the ``[compare]`` extra (the workloads are built from PyTorch models, as in vs_captum.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW = HERE.parent
WORKLOADS = ("mlp_california", "mlp_linear96")

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, {bench!r})
sys.path.insert(0, {checkout!r})
import jax, jax.numpy as jnp
import jaxig
assert jaxig.__file__.startswith({checkout!r}), jaxig.__file__
from _workloads import build
w = build({workload!r})
x = jnp.asarray(w.x)
kw = dict(target=w.target, n_steps=w.n_steps)

def timed(call, calls):
    call().block_until_ready()
    call().block_until_ready()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call().block_until_ready()
        times.append(time.perf_counter() - t)
    return {{"best_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times)}}

out = {{"closure": timed(lambda: jaxig.integrated_gradients(w.jax_fn, x, **kw), {calls})}}
if {extra}:
    fn = w.jax_fn
    out["new_lambda"] = timed(lambda: jaxig.integrated_gradients(lambda z: fn(z), x, **kw), {calls})
    out["no_check"] = timed(lambda: jaxig.integrated_gradients(fn, x, completeness_rtol=None, **kw), {calls})
print("RESULT " + json.dumps(out))
"""


def run_child(checkout: Path, workload: str, calls: int, extra: bool) -> dict:
    code = CHILD.format(bench=str(HERE), checkout=str(checkout), workload=workload, calls=calls, extra=extra)
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"child for {checkout} / {workload} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, required=True, help="an older jaxig checkout (its root folder)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per checkout (best kept)")
    p.add_argument("--calls", type=int, default=200, help="timed calls per process")
    p.add_argument("--out", type=Path, default=None, help="write overhead.json here")
    args = p.parse_args(argv)
    best: dict = {}
    for r in range(args.rounds):
        for name in WORKLOADS:
            for side, checkout in (("old", args.old.resolve()), ("new", NEW)) if r % 2 == 0 else \
                    (("new", NEW), ("old", args.old.resolve())):
                res = run_child(checkout, name, args.calls, extra=side == "new")
                for kind, t in res.items():
                    key = (name, side, kind)
                    if key not in best or t["median_ms"] < best[key]["median_ms"]:
                        best[key] = t
                print(f"round {r + 1}: {name} {side} {res}", flush=True)
    print("\n| workload | old ms (median / best) | new ms (median / best) | new / old (median) | "
          "new, completeness_rtol=None ms | new, new lambda per call ms |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in WORKLOADS:
        old, new = best[(name, "old", "closure")], best[(name, "new", "closure")]
        lam = best.get((name, "new", "new_lambda"), {"median_ms": float("nan")})
        bare = best.get((name, "new", "no_check"), {"median_ms": float("nan")})
        ratio = new["median_ms"] / old["median_ms"]
        rows.append({"workload": name, "old": old, "new": new, "new_lambda": lam, "no_check": bare, "ratio": ratio})
        print(f"| {name} | {old['median_ms']:.2f} / {old['best_ms']:.2f} | {new['median_ms']:.2f} / "
              f"{new['best_ms']:.2f} | {ratio:.3f} | {bare['median_ms']:.2f} | {lam['median_ms']:.2f} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "overhead.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
