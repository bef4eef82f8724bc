"""Times Integrated Gradients of one image with 1,024 alphas on 1 device and spread over 8 devices.

``integrated_gradients(..., alpha_sharding=True)`` splits the alphas into one block per device; each
device sums its block and the partial sums are added (``psum``). The number of devices is fixed when
JAX starts, so each setting runs in its own process (``XLA_FLAGS=--xla_force_host_platform_device_count``).

On a CPU the 8 "devices" are forced host devices sharing the same cores (2 here), so expect no
speed-up, only the overhead of the split; the figure that matters is on 8 accelerators (where each
evaluates 128 alphas instead of 1,024). The script also checks that the results agree.

Usage: ``python benchmarks/alpha_sharding.py [--quick] [--steps 1024] [--repeats 5] [--out DIR]``.
Needs only jax (a small CNN built in JAX, 32x32x3 input).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _model():
    import jax
    import jax.numpy as jnp

    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    w1 = jax.random.normal(k1, (3, 3, 3, 16)) / 5
    w2 = jax.random.normal(k2, (3, 3, 16, 16)) / 12
    w3 = jax.random.normal(k3, (16 * 8 * 8, 10)) / 32

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def f(x):  # (B, 32, 32, 3) -> (B, 10)
        h = pool(jax.nn.relu(conv(x, w1)))
        h = pool(jax.nn.relu(conv(h, w2)))
        return h.reshape(h.shape[0], -1) @ w3

    x = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3))
    return f, x


def _child(n_steps: int, repeats: int, sharded: bool) -> dict:
    import jax
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jaxig

    f, x = _model()
    run = lambda: jaxig.integrated_gradients(f, x, target=3, n_steps=n_steps, completeness_rtol=None,
                                             alpha_sharding=True if sharded else None).block_until_ready()
    start = time.perf_counter()
    out = run()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"devices": jax.device_count(), "alpha_sharding": sharded, "first_call_s": first,
            "median_s": statistics.median(times), "min_s": min(times), "sum": float(np.sum(out)),
            "checksum": np.asarray(out, np.float64).ravel()[::97].tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", nargs=2, metavar=("DEVICES", "SHARDED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    steps = 256 if args.quick and args.steps == 1024 else args.steps
    if args.child:
        print("JSON:" + json.dumps(_child(steps, repeats, args.child[1] == "1")))
        return
    rows = []
    for devices, sharded in ((1, False), (8, False), (8, True)):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
        cmd = [sys.executable, __file__, "--steps", str(steps), "--repeats", str(repeats),
               "--child", str(devices), "1" if sharded else "0"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON:")), None)
        if line is None:
            sys.exit(f"child {devices} devices failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(line[5:]))
    base = rows[0]
    print(f"IG of one 32x32x3 image through a small CNN, {steps} alphas, {os.cpu_count()} CPU cores, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'devices':>8} {'alpha_sharding':>15} {'first call s':>13} {'median s':>9} {'vs 1 device':>12} "
          f"{'max |diff|':>11}")
    for r in rows:
        diff = max(abs(a - b) for a, b in zip(r["checksum"], base["checksum"]))
        print(f"{r['devices']:>8} {str(r['alpha_sharding']):>15} {r['first_call_s']:>13.3f} {r['median_s']:>9.3f} "
              f"{r['median_s'] / base['median_s']:>11.2f}x {diff:>11.2e}")
    print("Forced CPU devices share the same cores: no speed-up is expected here, only the split's overhead.")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "alpha_sharding.json").write_text(json.dumps({"steps": steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
