"""The path zoo: IG along different paths and baselines, scored by faithfulness metrics on two small CNNs.

Usage:  python experiments/path_zoo.py --out results/path_zoo [--quick | --smoke] [--seed 0]

1. Trains a small Flax (linen) CNN with Optax Adam on each of two image datasets:
   * ``planted``: ``jaxig.datasets.image`` (12 x 12 x 1, entries uniform in [-1, 1]); the target is the
     mean of a 3 x 3 patch in the top-left corner minus the mean of one in the bottom-right corner, so
     the truly relevant pixels are known (``coefs != 0``) and so is the IG of the generating function
     (``coefs * x`` at the zero baseline). A regression CNN; its output is explained.
   * ``digits``: scikit-learn's bundled 8 x 8 digits (``sklearn.datasets.load_digits``, 1797 images,
     scaled to [0, 1]); a 10-class CNN whose softmax probability of the true class is explained (as
     RISE's deletion and insertion curves use class probabilities).
2. Explains test images with each method of the zoo that this jaxig provides (a method not yet present
   is skipped with a note, so the script runs at every stage of the family):
   IG along the straight line from the black (all-zero) image; IG from a blurred copy of the image;
   Blur IG (``jaxig.blur_integrated_gradients``); Guided IG (``jaxig.guided_integrated_gradients``);
   IDGI (``jaxig.idgi``); SmoothGrad-IG (``jaxig.noise_tunnel`` of IG); expected gradients (training
   images as references); and random attributions as the floor every metric should beat.
3. Scores every method with ``jaxig.metrics``: completeness gap (``|info.delta|``, the method's own gap
   against its own start, as a fraction of mean ``|F(x) - F(0)|``), localisation on the planted data
   (attribution mass on the planted pixels; Spearman correlation with ``coefs * x``), deletion and
   insertion AUC over 2 x 2 patches (removed to black, most important first), infidelity under random
   pixel removal (Yeh et al. 2019: ``I`` = the removed pixels, so ``I . a`` is their attribution), and
   cost (gradient evaluations per example, seconds of a second, compiled call).

Writes results.csv (one row per dataset and method), summary.json (settings, model quality, skipped
methods, runtime) and panels_planted.png, panels_digits.png (attributions side by side) to --out.
Needs flax, optax, matplotlib and scikit-learn.
"""

from __future__ import annotations

import argparse
import csv
import functools
import inspect
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
from jaxig import metrics  # noqa: E402

PATCH = 2  # deletion / insertion unit: 2 x 2 pixels
COLUMNS = ["dataset", "method", "completeness_gap", "mass_on_planted", "spearman_vs_truth", "deletion_auc",
           "insertion_auc", "infidelity", "grad_evals", "seconds"]


class CNN(nn.Module):
    n_out: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        out = nn.Dense(self.n_out)(x)
        return out[:, 0] if self.n_out == 1 else out


# -- data and training ---------------------------------------------------------------------------------

def planted(key, n_train, n_test):
    """Returns (X_train, y_train, X_test, y_test, coefs) of the planted-patch images, y standardised."""
    X, y, coefs = jaxig.datasets.image(key, n_train + n_test, height=12, width=12, patch=3)
    y = y / jnp.std(y[:n_train])
    coefs = coefs / jnp.std(jnp.einsum("bhwc,hwc->b", X[:n_train], coefs))  # the truth of the scaled target
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:], coefs


def digits(seed, n_test):
    """Returns (X_train, y_train, X_test, y_test) of scikit-learn's digits, pixels in [0, 1]."""
    from sklearn.datasets import load_digits  # optional dependency of this experiment only

    data = load_digits()
    X = np.asarray(data.images, np.float32)[..., None] / 16.0
    y = np.asarray(data.target, np.int32)
    perm = np.random.default_rng(seed).permutation(len(X))
    te, tr = perm[:n_test], perm[n_test:]
    return jnp.asarray(X[tr]), jnp.asarray(y[tr]), jnp.asarray(X[te]), jnp.asarray(y[te])


def train(key, X, y, n_out, steps, batch=128, lr=3e-3):
    """Returns the trained parameters: Adam on minibatches (MSE, or cross-entropy for classes), one lax.scan."""
    model = CNN(n_out)
    k_init, k_batch = jax.random.split(key)
    params = jax.jit(model.init)(k_init, X[:1])  # one compilation, not one per layer's initialiser
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def loss(p, xb, yb):
        out = model.apply(p, xb)
        if n_out == 1:
            return jnp.mean((out - yb) ** 2)
        return optax.softmax_cross_entropy_with_integer_labels(out, yb).mean()

    @jax.jit
    def run(params, keys):
        def step(carry, k):
            p, s = carry
            idx = jax.random.randint(k, (batch,), 0, X.shape[0])
            value, g = jax.value_and_grad(loss)(p, X[idx], y[idx])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), value

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), keys)
        return p, losses

    params, losses = run(params, jax.random.split(k_batch, steps))
    return model, params, float(losses[-10:].mean())


# -- the zoo -------------------------------------------------------------------------------------------

def blur(x, sigma):
    """Returns images (B, H, W, C) blurred by a Gaussian of width ``sigma`` pixels (edge-renormalised)."""
    def matrix(n):
        d = np.arange(n)[:, None] - np.arange(n)[None, :]
        k = np.exp(-0.5 * (d / sigma) ** 2)
        return jnp.asarray(k / k.sum(1, keepdims=True), x.dtype)

    return jnp.einsum("ij,bjkc,lk->bilc", matrix(x.shape[1]), x, matrix(x.shape[2]))


def call_with(fn, *args, **kwargs):
    """Calls ``fn`` with the keyword arguments its signature accepts (methods of the zoo differ in settings)."""
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def zoo(f, x, target, refs, key, n_steps, n_samples, sigma, noise):
    """Returns {name: (zero-argument call returning (attributions, info or None), note)}; absent methods
    get ``None`` and the reason."""
    k_sg, k_eg = jax.random.split(key)
    common = dict(target=target, n_steps=n_steps, return_info=True, completeness_rtol=None)
    ig = functools.partial(jaxig.integrated_gradients, completeness_rtol=None, n_steps=max(n_steps // n_samples, 4))
    sg_ig = jaxig.noise_tunnel(ig, n_samples=n_samples, stdev=noise)
    blurred = blur(x, sigma)
    methods = {
        "ig_black": lambda: jaxig.integrated_gradients(f, x, 0.0, **common),
        "ig_blurred_baseline": lambda: jaxig.integrated_gradients(f, x, blurred, **common),
    }
    # PAIR's methods count their gradient evaluations in `steps`, the IG family in `n_steps`: pass both,
    # call_with keeps what each accepts. Blur IG starts at the most blurred image (no baseline).
    anysteps = dict(common, steps=n_steps)
    optional = {  # name: (jaxig attribute, call)
        "blur_ig": ("blur_integrated_gradients", lambda fn: call_with(fn, f, x, max_sigma=sigma, **anysteps)),
        "guided_ig": ("guided_integrated_gradients", lambda fn: call_with(fn, f, x, 0.0, **anysteps)),
        "idgi": ("idgi", lambda fn: call_with(fn, f, x, 0.0, **anysteps)),
    }
    skipped = {}
    for name, (attr, call) in optional.items():
        fn = getattr(jaxig, attr, None)
        if fn is None:
            skipped[name] = f"jaxig.{attr} is not in this jaxig yet"
        else:
            methods[name] = functools.partial(call, fn)
    methods["smoothgrad_ig"] = lambda: sg_ig(f, x, target=target, key=k_sg, return_info=True)
    methods["expected_gradients"] = lambda: jaxig.expected_gradients(f, x, refs, target=target, key=k_eg,
                                                                     n_samples=n_steps, return_info=True)
    noise_attr = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    methods["random"] = lambda: (noise_attr, None)
    return methods, skipped


def drop_pixels(seed, x, n_perturb, p=0.25):
    """Returns infidelity perturbations ``(I, x_p)``, each ``(P,) + x.shape``: every pixel set to black with
    probability ``p``, ``I = 1`` where removed (so ``I . a`` is the removed pixels' attribution)."""
    drop = np.random.default_rng(seed).random((n_perturb,) + x.shape) < p
    return drop.astype(np.float32), np.where(drop, 0.0, np.asarray(x)).astype(np.float32)


def timed(call):
    """Returns (result, seconds of a second call: compiled, steady state)."""
    jax.block_until_ready(call())
    t = time.perf_counter()
    out = jax.block_until_ready(call())
    return out, time.perf_counter() - t


def explained(f, x, target):
    """Returns the explained output per example: f(x), or its column ``target`` (one per example)."""
    out = np.asarray(f(x), np.float64)
    return out if target is None else np.take_along_axis(out, np.asarray(target)[:, None], 1)[:, 0]


def evaluate(data, f, x, target, refs, coefs, key, settings):
    """Returns (rows, attributions by method, skipped methods) for one dataset (``coefs``: the planted truth)."""
    n_steps, n_samples, n_perturb, sigma, noise = settings
    methods, skipped = zoo(f, x, target, refs, key, n_steps, n_samples, sigma, noise)
    scale = float(np.mean(np.abs(explained(f, x, target) - explained(f, jnp.zeros_like(x), target))))
    eps, x_p = drop_pixels(1, x, n_perturb)  # drawn once: every method is scored on the same perturbations
    rows, attrs = [], {}
    for method, call in methods.items():
        try:
            (a, info), seconds = timed(call)
        except Exception as err:  # a method of another branch with other settings: say so, go on
            skipped[method] = f"failed: {type(err).__name__}: {err}"
            print(f"  [{data}] {method} skipped: {skipped[method]}")
            continue
        attrs[method] = np.asarray(a)
        delta = getattr(info, "delta", None)
        n_evals = getattr(info, "n_evals", None)
        row = {"dataset": data, "method": method,
               "completeness_gap": "" if delta is None else float(np.mean(np.abs(np.asarray(delta)))) / scale,
               "grad_evals": 0 if info is None else ("" if n_evals is None else float(np.mean(n_evals))),
               "seconds": 0.0 if info is None else seconds}
        if coefs is not None:
            row["mass_on_planted"] = float(np.mean(metrics.mass_fraction(a, coefs != 0)))
            row["spearman_vs_truth"] = float(np.mean(metrics.rank_correlation(a, coefs * x)))
        row["deletion_auc"] = float(np.mean(metrics.deletion_curve(f, x, a, target=target, patch=PATCH).auc))
        row["insertion_auc"] = float(np.mean(metrics.insertion_curve(f, x, a, target=target, patch=PATCH).auc))
        row["infidelity"] = float(np.mean(metrics.infidelity(f, x, a, target=target, perturbations=eps,
                                                             perturbed_inputs=x_p)))
        rows.append(row)
    for method, why in skipped.items():
        if not why.startswith("failed"):
            print(f"  [{data}] {method} skipped: {why}")
    return rows, attrs, skipped


# -- output --------------------------------------------------------------------------------------------

def panels(path, title, x, attrs, truth=None, n_show=3):
    """Writes one row per example: the input, the truth (planted data), then each method's attributions."""
    cols = [("input", None)] + ([("truth: coefs * x", truth)] if truth is not None else []) + list(attrs.items())
    n_show = min(n_show, x.shape[0])
    fig, axes = plt.subplots(n_show, len(cols), figsize=(1.6 * len(cols), 1.7 * n_show + 0.5), squeeze=False)
    for i in range(n_show):
        for j, (label, a) in enumerate(cols):
            ax = axes[i, j]
            if a is None:
                ax.imshow(np.asarray(x[i, ..., 0]), cmap="gray")
            else:
                m = np.asarray(a[i]).sum(-1)
                v = float(np.max(np.abs(m))) or 1.0
                ax.imshow(m, cmap="bwr", vmin=-v, vmax=v)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fmt(v, width):
    if v == "" or v is None:
        return f"{'-':>{width}}"
    return f"{v:>{width}.3g}"


def table(rows):
    head = ["method", "gap", "mass", "spearman", "del AUC", "ins AUC", "infid.", "grads", "s"]
    keys = ["completeness_gap", "mass_on_planted", "spearman_vs_truth", "deletion_auc", "insertion_auc",
            "infidelity", "grad_evals", "seconds"]
    lines = [f"{head[0]:<22}" + "".join(f"{h:>10}" for h in head[1:])]
    for r in rows:
        lines.append(f"{r['method']:<22}" + "".join(fmt(r.get(k, ""), 10) for k in keys))
    return "\n".join(lines)


def run_planted(key, n_train, train_steps, n_test, n_refs, settings, out):
    """Planted patches: a regression CNN, ground truth known. Returns (rows, skipped, quality)."""
    k_data, k_model, k_explain = jax.random.split(key, 3)
    Xtr, ytr, Xte, yte, coefs = planted(k_data, n_train, n_test)
    model, params, loss = train(k_model, Xtr, ytr, 1, train_steps)
    f = jax.tree_util.Partial(model.apply, params)
    r2 = 1.0 - float(jnp.mean((f(Xte) - yte) ** 2) / jnp.var(yte))
    print(f"planted patches 12x12: CNN regression, {train_steps} Adam steps, test R^2 {r2:.3f} ({n_test} images)")
    rows, attrs, skipped = evaluate("planted", f, Xte, None, Xtr[:n_refs], coefs, k_explain, settings + (3.0, 0.2))
    panels(out / "panels_planted.png", f"planted patches (test R^2 {r2:.2f}): attributions, red > 0 > blue", Xte,
           attrs, truth=np.asarray(coefs * Xte))
    return rows, skipped, {"train_mse": loss, "test_r2": r2}


def run_digits(seed, key, train_steps, n_test, n_refs, settings, out):
    """Digits: a 10-class CNN; the explained output is the probability of the true class."""
    k_model, k_explain = jax.random.split(key)
    Xtr, ytr, Xte, yte = digits(seed, n_test)
    model, params, loss = train(k_model, Xtr, ytr, 10, train_steps)
    logits = jax.tree_util.Partial(model.apply, params)
    acc = float(jnp.mean(jnp.argmax(logits(Xte), 1) == yte))
    print(f"digits 8x8: CNN classifier, {train_steps} Adam steps, test accuracy {acc:.3f} ({n_test} images)")
    prob = jax.tree_util.Partial(_softmax_of, logits)
    rows, attrs, skipped = evaluate("digits", prob, Xte, np.asarray(yte), Xtr[:n_refs], None, k_explain,
                                    settings + (2.0, 0.1))
    panels(out / "panels_digits.png", f"digits (test accuracy {acc:.2f}): attributions of p(true class)", Xte, attrs)
    return rows, skipped, {"train_cross_entropy": loss, "test_accuracy": acc}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for results.csv, summary.json and the panels")
    ap.add_argument("--quick", action="store_true", help="small run (about a minute on 2 CPU cores)")
    ap.add_argument("--smoke", action="store_true",
                    help="smallest run, for the test suite (implies --quick; planted data only unless --datasets)")
    ap.add_argument("--datasets", nargs="+", choices=("planted", "digits"), default=None,
                    help="which datasets (default: both; --smoke: planted)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = args.datasets or (["planted"] if args.smoke else ["planted", "digits"])
    if args.smoke:
        n_train, train_steps, n_test, n_steps, n_samples, n_perturb, n_refs = 512, 150, 4, 8, 2, 8, 16
    elif args.quick:
        n_train, train_steps, n_test, n_steps, n_samples, n_perturb, n_refs = 2048, 300, 16, 32, 4, 32, 64
    else:
        n_train, train_steps, n_test, n_steps, n_samples, n_perturb, n_refs = 4096, 1000, 64, 64, 8, 128, 256
    settings = (n_steps, n_samples, n_perturb)
    # rbg keys: XLA's own generator compiles in a fraction of the time of threefry's unrolled rounds on CPU
    k_planted, k_digits = jax.random.split(jax.random.key(args.seed, impl="rbg"))

    rows, skipped, quality = [], {}, {}
    if "planted" in datasets:
        r, skipped["planted"], quality["planted"] = run_planted(k_planted, n_train, train_steps, n_test,
                                                                n_refs, settings, out)
        rows += r
    if "digits" in datasets:
        r, skipped["digits"], quality["digits"] = run_digits(args.seed, k_digits, train_steps, n_test, n_refs,
                                                             settings, out)
        rows += r

    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in
                        ((c, row.get(c, "")) for c in COLUMNS)})
    runtime = time.perf_counter() - t0
    summary = {"quick": args.quick or args.smoke, "smoke": args.smoke, "seed": args.seed, "datasets": datasets,
               "n_train_planted": n_train, "train_steps": train_steps, "n_test": n_test, "n_steps": n_steps,
               "smoothgrad_samples": n_samples, "infidelity_perturbations": n_perturb, "n_references": n_refs,
               "patch": PATCH, "quality": quality, "skipped": skipped, "runtime_seconds": runtime,
               "jax": jax.__version__, "backend": jax.default_backend()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    for data in datasets:
        print(f"\n{data}: {n_test} test images, {n_steps} gradient steps; deletion/insertion over {PATCH}x{PATCH} "
              "patches set to black; infidelity: random pixels set to black")
        print(table([r for r in rows if r["dataset"] == data]))
    print("\ngap: mean |completeness gap| / mean |F(x) - F(0)|; mass: share of |attribution| on the planted "
          "pixels; spearman: rank correlation with coefs * x; del AUC: lower is better, ins AUC: higher; "
          "infid.: lower is better; grads: gradient evaluations per example; s: seconds of a compiled call")
    print(f"\nwrote results.csv, summary.json and the panels to {out} in {runtime:.1f} s")
    return summary


def _softmax_of(logits_fn, x):
    return jax.nn.softmax(logits_fn(x), axis=-1)


if __name__ == "__main__":
    main()
