"""Times Gauss–Legendre and Gauss–Lobatto tables, old (dense eigenproblems) against new (Newton on
asymptotic expansions), and one ``integrated_gradients`` call with ``n_steps=20000`` end to end.

Old: ``numpy.polynomial.legendre.leggauss`` (eigenvalues of a dense companion matrix, O(n^3)) and the
Lobatto eigenvalues of the tridiagonal Jacobi matrix by ``scipy.linalg.eigvalsh_tridiagonal``, timed
only up to n=4096 (leggauss takes 10-40 s there and does not finish in minutes at 20,000). New:
``jaxig._quadrature.gauss``'s uncached table functions (GaussLegendre still returns leggauss's table
for n <= 100, so its n=64 row shows the Newton path, which it uses from n=101 on). Also printed:
the largest differences new - old (nodes absolute on [-1, 1], weights relative).

Usage: ``python benchmarks/gauss_tables.py [--quick] [--out DIR]`` (``--quick`` stops the old
method at n=1024).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.append(str(Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxig  # noqa: E402
from jaxig._quadrature import gauss  # noqa: E402

SIZES = (64, 1024, 4096, 20000)


def old_legendre(n):
    t, v = np.polynomial.legendre.leggauss(n)
    return (t + 1) / 2, v / 2


def old_lobatto(n):
    m = n - 2
    k = np.arange(1, m, dtype=np.float64)
    off = np.sqrt(k * (k + 2) / ((2 * k + 1) * (2 * k + 3)))
    inner = scipy.linalg.eigvalsh_tridiagonal(np.zeros(m), off) if m > 1 else np.zeros(m)
    t = np.concatenate([[-1.0], np.sort(inner), [1.0]])
    p0, p1 = np.ones_like(t), t
    for j in range(1, n - 1):
        p0, p1 = p1, ((2 * j + 1) * t * p1 - j * p0) / (j + 1)
    w = 1.0 / (n * (n - 1) * p1**2)
    return (t + 1) / 2, w / w.sum()


def timed(fn, n):
    start = time.perf_counter()
    out = fn(n)
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    old_max = 1024 if args.quick else 4096
    rows = []
    rules = (("GaussLegendre", old_legendre, gauss._gauss_legendre_newton),
             ("GaussLobatto", old_lobatto, gauss._gauss_lobatto_table.__wrapped__))
    print(f"{'rule':14s} {'n':>6s} {'old s':>9s} {'new s':>9s} {'max|da|':>9s} {'max|dw|/w':>9s}")
    for name, old, new in rules:
        new(8)  # import-time costs (scipy.special) out of the first row
        for n in SIZES:
            t_new, (a, w) = timed(new, n)
            row = {"rule": name, "n": n, "new_s": t_new, "old_s": None, "node_diff": None, "weight_rel_diff": None}
            if n <= old_max:
                t_old, (a0, w0) = timed(old, n)
                row.update(old_s=t_old, node_diff=float(np.max(np.abs(2 * (a - a0)))),
                           weight_rel_diff=float(np.max(np.abs(w - w0) / w0)))
            rows.append(row)
            fmt = lambda v, f: format(v, f) if v is not None else "skipped"
            print(f"{name:14s} {n:6d} {fmt(row['old_s'], '9.4f'):>9s} {t_new:9.4f} "
                  f"{fmt(row['node_diff'], '9.1e'):>9s} {fmt(row['weight_rel_diff'], '9.1e'):>9s}")
    print(f"(old skipped above n={old_max}: O(n^3), minutes or more at 20000)")

    f = lambda z: jnp.tanh(z @ jnp.array([1.0, -2.0, 0.5]))  # a tiny model: the table is the cost
    x = jnp.array([[0.3, -0.1, 0.7]])
    end_to_end = {}
    for rule in (jaxig.GaussLegendre(), jaxig.GaussLobatto()):
        gauss._gauss_legendre_table.cache_clear()
        gauss._gauss_lobatto_table.cache_clear()
        start = time.perf_counter()
        attr = jax.block_until_ready(jaxig.integrated_gradients(f, x, n_steps=20000, rule=rule))
        first = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(jaxig.integrated_gradients(f, x, n_steps=20000, rule=rule))
        again = time.perf_counter() - start
        end_to_end[type(rule).__name__] = {"compile_and_run_s": first, "cached_run_s": again}
        print(f"integrated_gradients n_steps=20000 {type(rule).__name__}: first call (tables + trace + "
              f"compile + run) {first:.3f} s, second call {again:.4f} s, attr {np.asarray(attr).round(5)}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gauss_tables.json").write_text(json.dumps({"tables": rows, "end_to_end": end_to_end}, indent=1))


if __name__ == "__main__":
    main()
