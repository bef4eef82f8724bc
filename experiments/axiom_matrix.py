"""Every jaxig method through the six axiom checks: a method x axiom matrix of pass/fail and the measured quantity.

Usage:  python experiments/axiom_matrix.py --out results/axiom_matrix [--quick] [--seed 0]

Each method is adapted to the protocol ``method(f, x, baseline, target=...)`` of ``jaxig.axioms`` (random
methods get a fixed key, so the same draws serve every function a check compares). Each axiom is checked
on the function that makes it meaningful, i.e. one on which a method can actually fail it; the features
and the coefficients come from ``jaxig.datasets.pos_neg_noise`` (3 positive, 3 negative, 2 noise features
with coefficient 0, x uniform in [-1, 1]), and the baseline is zero throughout:

- completeness / quadratic: ``datasets.quadratic(A, coefs)``, x^T A x + coefs . x with a random A. Smooth
  (IG's integrand is linear on the path, so quadrature adds no error and any gap is the method's own),
  nonlinear (gradient x input is complete only for linear f) and non-additive (ablation and occlusion are
  complete only for additive f).
- completeness / trained MLP: a ReLU MLP (Flax linen, Optax) trained on pos_neg_noise as
  experiments/axioms.py does: a real network, with kinks. Tolerance as there: rtol 1% plus an atol of
  0.1% of the mean |f(x) - f(0)| (a relative tolerance is unattainable where f(x) ~ f(0)).
- sensitivity: ``datasets.additive(coefs, g)`` with the paper's saturating g(z) = 1 - relu(1 - z), at x in
  [1.5, 3] (past the kink): a feature alone changes the output, but the gradient there is 0.
- dummy: ``datasets.single_index(coefs, tanh)``: the two noise features (coefficient 0) are true dummies,
  passed to the check as known (no probing needed).
- implementation invariance: the paper's pair of equivalent ReLU networks (Sundararajan et al. 2017,
  Fig. 7): f(x) = relu(relu(x1) - 1 - relu(x2)) and g(x) = relu(relu(x1 - 1) - relu(x2)), at x1 in
  [0, 4], x2 in [-1, 2]. Rules that read the network's structure (DeepLift's rescale rule) can differ.
- linearity: f1 = the quadratic above, f2 = the single-index tanh, attr(2 f1 - f2) vs 2 attr(f1) - attr(f2).
- symmetry: ``datasets.single_index(w, tanh)`` with w_0 = w_1 (pos_neg_noise's coefs, w_1 set to w_0),
  at inputs with x_0 = x_1: a non-additive symmetric f, where sampled permutations or per-entry noise
  can break the tie.

What the choices imply, stated plainly: on a true dummy every method here gives exactly 0 (gradients and
perturbations of a feature f ignores vanish), so that column can only catch methods that mix features;
linearity holds for every method here because random methods reuse their key (common random numbers) and
DeepLift's rules are linear in the final linear combination; with fresh draws per call the sampled
methods would differ by their Monte Carlo error instead.

Usage beyond --quick: ``--methods a,b`` runs a subset; ``--smoke`` (the test suite) runs the seven methods
whose programs compile fastest on 4 examples per function.

Writes matrix.md and matrix.csv (method, axiom -> passed, worst measured value, its tolerance, failing
examples, the first reported failure), matrix.png (a heatmap of log10(measured / tolerance), so > 0 is a
failure) and summary.json to --out; prints the matrix and each failure's counterexample. ``n/a`` marks a
method that refuses the function (exact IG needs a piecewise-linear f).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxig  # noqa: E402
from jaxig import axioms, datasets  # noqa: E402

AXIOMS = ["completeness", "completeness (trained MLP)", "sensitivity", "dummy", "implementation invariance",
          "linearity", "symmetry"]


# the methods whose programs compile fastest (the others wrap sampling loops or an adaptive search)
SMOKE_METHODS = ["integrated_gradients", "exact_integrated_gradients", "deeplift", "feature_ablation",
                 "shapley_value_sampling", "saliency", "gradient_x_input"]


def _one_ref(fn):
    """Adapts a method taking reference rows: the baseline becomes the one reference row."""

    def method(f, x, baseline=None, **kw):
        b = jnp.zeros(x.shape[1:], x.dtype) if baseline is None else jnp.asarray(baseline, x.dtype)
        if b.ndim == x.ndim:  # one baseline per example (check_sensitivity): all rows must be the same
            if not np.all(np.asarray(b) == np.asarray(b[:1])):
                raise ValueError("a one-reference method needs the same baseline for every example")
            b = b[0]
        return fn(f, x, jnp.broadcast_to(b, x.shape[1:])[None], **kw)

    return method


def registry(key, n_steps):
    """Returns {name: method(f, x, baseline=None, **kw)}: every jaxig method, random ones with a fixed key."""
    k = list(jax.random.split(key, 5))
    ig = functools.partial(jaxig.integrated_gradients, n_steps=n_steps, completeness_rtol=None)
    sg = jaxig.noise_tunnel(functools.partial(jaxig.saliency, absolute=False), n_samples=8)
    sg_ig = jaxig.noise_tunnel(functools.partial(jaxig.integrated_gradients, n_steps=16, completeness_rtol=None),
                               n_samples=8)
    return {
        "integrated_gradients": lambda f, x, b=None, **kw: ig(f, x, b, **kw),
        "exact_integrated_gradients": lambda f, x, b=None, **kw: jaxig.exact_integrated_gradients(f, x, b, **kw),
        "adaptive_integrated_gradients": lambda f, x, b=None, **kw: jaxig.adaptive_integrated_gradients(
            f, x, b, rtol=1e-5, warn=False, **kw),
        "expected_integrated_gradients": _one_ref(lambda f, x, r, **kw: jaxig.expected_integrated_gradients(
            f, x, r, n_steps=n_steps, **kw)),
        "expected_gradients": _one_ref(lambda f, x, r, **kw: jaxig.expected_gradients(
            f, x, r, n_samples=16, key=k[0], **kw)),
        "smoothgrad_ig": lambda f, x, b=None, **kw: sg_ig(f, x, b, key=k[1], **kw),
        "deeplift": lambda f, x, b=None, **kw: jaxig.deeplift(f, x, b, **kw),
        "deeplift_shap": _one_ref(lambda f, x, r, **kw: jaxig.deeplift_shap(f, x, r, **kw)),
        "feature_ablation": lambda f, x, b=None, **kw: jaxig.feature_ablation(f, x, b, **kw),
        "occlusion": lambda f, x, b=None, **kw: jaxig.occlusion(f, x, b, window=(1,), **kw),
        "shapley_value_sampling": lambda f, x, b=None, **kw: jaxig.shapley_value_sampling(
            f, x, b, n_samples=8, key=k[2], **kw),
        "saliency": lambda f, x, b=None, **kw: jaxig.saliency(f, x, b, absolute=False, **kw),
        "gradient_x_input": lambda f, x, b=None, **kw: jaxig.gradient_x_input(f, x, b, **kw),
        "smoothgrad": lambda f, x, b=None, **kw: sg(f, x, b, key=k[3], **kw),
    }


class MLP(nn.Module):
    hidden: tuple[int, ...] = (32, 32)

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(1)(x)[:, 0]


def train(key, X, y, steps, batch=256, lr=1e-2):
    """Returns f(x) of an MLP trained by Adam on mean squared error (one jit-compiled lax.scan)."""
    model = MLP()
    kp, kb = jax.random.split(key)
    params = model.init(kp, X[:1])
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def loss(p, xb, yb):
        return jnp.mean((model.apply(p, xb) - yb) ** 2)

    @jax.jit
    def run(params):
        def step(carry, k):
            p, s = carry
            idx = jax.random.randint(k, (batch,), 0, X.shape[0])
            u, s = opt.update(jax.grad(loss)(p, X[idx], y[idx]), s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (params, opt.init(params)), jax.random.split(kb, steps))[0][0]

    return jax.tree_util.Partial(model.apply, run(params))


def cases(key, n, train_steps):
    """Returns {axiom: (description, check(method) -> AxiomResult)}: one meaningful function per axiom."""
    kx, ka, ks, kt, kd, kt2 = jax.random.split(key, 6)
    X, _, coefs = datasets.pos_neg_noise(kx, n, n_pos=3, n_neg=3, n_noise=2)
    D = X.shape[1]
    A = jax.random.normal(ka, (D, D), jnp.float32) / np.sqrt(D)
    quad = datasets.quadratic(A, coefs).f
    tanh_index = datasets.single_index(coefs, jnp.tanh).f
    clip = datasets.additive(coefs, lambda z: 1.0 - jax.nn.relu(1.0 - z)).f
    Xs = jax.random.uniform(ks, X.shape, jnp.float32, 1.5, 3.0)
    dummies = np.nonzero(np.asarray(coefs) == 0)[0].tolist()
    # the paper's equivalent networks (Fig. 7); DeepLift distributes their output differently
    f_net = lambda x: jax.nn.relu(jax.nn.relu(x[:, 0]) - 1.0 - jax.nn.relu(x[:, 1]))
    g_net = lambda x: jax.nn.relu(jax.nn.relu(x[:, 0] - 1.0) - jax.nn.relu(x[:, 1]))
    Xi = jnp.stack([jax.random.uniform(kd, (n,), jnp.float32, 0.0, 4.0),
                    jax.random.uniform(jax.random.fold_in(kd, 1), (n,), jnp.float32, -1.0, 2.0)], axis=1)
    w_sym = coefs.at[1].set(coefs[0])
    sym = datasets.single_index(w_sym, jnp.tanh).f
    Xsym = X.at[:, 1].set(X[:, 0])
    # the trained ReLU MLP
    Xtr, ytr, _ = datasets.pos_neg_noise(kt, 16384, n_pos=3, n_neg=3, n_noise=2)
    mlp = train(kt2, Xtr, ytr, train_steps)
    dfx = np.abs(np.asarray(mlp(X) - mlp(jnp.zeros_like(X))))
    atol_mlp = float(1e-3 * dfx.mean())
    return {
        "completeness": ("quadratic x^T A x + coefs . x (smooth, interacting)",
                         lambda m: axioms.check_completeness(m, quad, X)),
        "completeness (trained MLP)": (f"ReLU MLP (32, 32) trained on pos_neg_noise; atol {atol_mlp:.2g}",
                                       lambda m: axioms.check_completeness(m, mlp, X, atol=atol_mlp)),
        "sensitivity": ("sum coefs_i (1 - relu(1 - x_i)) at x in [1.5, 3]",
                        lambda m: axioms.check_sensitivity(m, clip, Xs)),
        "dummy": ("tanh(coefs . x), noise features known dummies",
                  lambda m: axioms.check_dummy(m, tanh_index, X, dummies=dummies)),
        "implementation invariance": ("relu(relu(x1) - 1 - relu(x2)) vs relu(relu(x1 - 1) - relu(x2))",
                                      lambda m: axioms.check_implementation_invariance(m, f_net, g_net, Xi)),
        "linearity": ("2 * quadratic - tanh(coefs . x)",
                      lambda m: axioms.check_linearity(m, quad, tanh_index, X)),
        "symmetry": ("tanh(w . x), w_0 = w_1, x_0 = x_1",
                     lambda m: axioms.check_symmetry(m, sym, Xsym, i=0, j=1)),
    }


def run_cell(check, method):
    """Returns one matrix cell: passed, worst measured value, its tolerance, margin, failures (or n/a)."""
    try:
        res = check(method)
    except TypeError as e:  # e.g. exact IG on a function that is not piecewise linear
        return {"status": "n/a", "reason": str(e).split(". ")[0]}
    except ValueError as e:  # a method refusing the inputs: shown as an error cell, not hidden
        return {"status": "error", "reason": str(e)}
    larger = res.criterion.startswith("measured >=")
    m, t = np.ravel(res.measured).astype(float), np.ravel(res.tolerance).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(m), t / m if larger else m / t, 0.0)  # > 1: fails
    w = int(np.argmax(ratio))
    return {
        "status": "pass" if res.passed else "FAIL", "passed": res.passed, "worst_measured": float(m[w]),
        "tolerance": float(t[w]), "margin": float(ratio[w]),
        "n_failed": int(np.sum(m < t if larger else m > t)), "n_examples": int(m.size),
        "quantity": res.quantity, "criterion": res.criterion,
        "first_failures": list(res.failures[:2]), "notes": list(res.notes[:1]),
    }


def cell_text(c):
    if c["status"] in ("n/a", "error"):
        return c["status"]
    return f"{c['status']} {c['worst_measured']:.2g}" + (f" ({c['n_failed']}/{c['n_examples']})" if c["n_failed"]
                                                        else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for matrix.md/.csv/.png and summary.json")
    ap.add_argument("--quick", action="store_true", help="small run (1-2 minutes on 2 CPU cores)")
    ap.add_argument("--smoke", action="store_true", help="smallest run, for the test suite (implies --quick)")
    ap.add_argument("--methods", default=None,
                    help="comma-separated subset of the methods (default: all; --smoke: the seven fastest)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick or args.smoke
    n, train_steps, n_steps = (4, 300, 64) if args.smoke else (16, 2000, 64) if quick else (64, 5000, 128)

    key = jax.random.key(args.seed)
    k_cases, k_methods = jax.random.split(key)
    the_cases = cases(k_cases, n, train_steps)
    methods = registry(k_methods, n_steps)
    chosen = args.methods.split(",") if args.methods else SMOKE_METHODS if args.smoke else list(methods)
    unknown = sorted(set(chosen) - set(methods))
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {', '.join(methods)}")
    methods = {m: methods[m] for m in chosen}
    t_setup = time.perf_counter() - t0
    matrix = {}
    for name, method in methods.items():
        matrix[name] = {}
        for axiom, (_, check) in the_cases.items():
            t = time.perf_counter()
            matrix[name][axiom] = run_cell(check, method)
            matrix[name][axiom]["seconds"] = time.perf_counter() - t

    # ---- tables
    with open(out / "matrix.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "axiom", "function", "status", "worst_measured", "tolerance", "n_failed",
                    "n_examples", "quantity", "first_failure"])
        for name, row in matrix.items():
            for axiom, c in row.items():
                w.writerow([name, axiom, the_cases[axiom][0], c["status"], c.get("worst_measured", ""),
                            c.get("tolerance", ""), c.get("n_failed", ""), c.get("n_examples", ""),
                            c.get("quantity", c.get("reason", "")), (c.get("first_failures") or [""])[0]])
    md = [f"Axiom checks, {n} examples per function, zero baseline (cell: result, worst measured value, "
          "failing examples). Functions:", ""]
    md += [f"- **{a}**: {d}" for a, (d, _) in the_cases.items()]
    md += ["", "| method | " + " | ".join(AXIOMS) + " |", "|---" * (len(AXIOMS) + 1) + "|"]
    md += [f"| {name} | " + " | ".join(cell_text(row[a]) for a in AXIOMS) + " |" for name, row in matrix.items()]
    md += ["", "Measured quantity per axiom (worst example):", ""]
    for a in AXIOMS:
        c = next((row[a] for row in matrix.values() if "quantity" in row[a]), None)
        if c is not None:
            md.append(f"- {a}: {c['quantity']}; pass iff {c['criterion']}")
    md += ["", "Counterexamples (first reported failure of each failing cell):", ""]
    for name, row in matrix.items():
        for a, c in row.items():
            if c["status"] == "FAIL":
                md.append(f"- {name} / {a}: {c['first_failures'][0]}")
    (out / "matrix.md").write_text("\n".join(md) + "\n")

    # ---- heatmap: log10(measured / tolerance), > 0 fails
    names = list(matrix)
    grid = np.full((len(names), len(AXIOMS)), np.nan)
    for i, name in enumerate(names):
        for j, a in enumerate(AXIOMS):
            c = matrix[name][a]
            if "margin" in c:
                grid[i, j] = np.clip(np.log10(max(c["margin"], 1e-12)), -8, 8)
    fig, ax = plt.subplots(figsize=(14, 0.5 * len(names) + 2.2))
    cmap = plt.get_cmap("RdYlGn_r").copy()
    cmap.set_bad("#d0d0d0")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-8, vmax=8, aspect="auto")
    for i, name in enumerate(names):
        for j, a in enumerate(AXIOMS):
            c = matrix[name][a]
            txt = f"{c['status']}\n{c['worst_measured']:.2g}" if "margin" in c else c["status"]
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    fontweight="bold" if c["status"] == "FAIL" else "normal")
    ax.set_xticks(range(len(AXIOMS)))
    ax.set_xticklabels(AXIOMS, rotation=15)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    fig.colorbar(im, ax=ax, label="log10(measured / tolerance)  (> 0: fails; sensitivity: tolerance / measured)")
    ax.set_title(f"jaxig methods x axiom checks ({n} examples per function; text: result, worst measured value)")
    fig.tight_layout()
    fig.savefig(out / "matrix.png", dpi=110)
    plt.close(fig)

    runtime = time.perf_counter() - t0
    summary = {
        "quick": quick, "smoke": args.smoke, "seed": args.seed, "n_examples": n, "mlp_train_steps": train_steps,
        "ig_n_steps": n_steps, "functions": {a: d for a, (d, _) in the_cases.items()}, "matrix": matrix,
        "setup_seconds": t_setup, "runtime_seconds": runtime, "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(md))
    print(f"\nwrote {out / 'matrix.md'}, {out / 'matrix.csv'}, {out / 'matrix.png'}, {out / 'summary.json'} "
          f"in {runtime:.1f} s")
    return summary


if __name__ == "__main__":
    main()
