"""A small Flax CNN on scikit-learn's 8x8 digits: attribution maps of several methods, side by side.

Usage:  python experiments/digits_cnn.py --out results/digits [--quick] [--seed 0]

1. ``sklearn.datasets.load_digits`` (1797 images of 8x8 pixels, values 0..16, bundled: no download),
   scaled to [0, 1], split 70/30. A Flax CNN (conv 3x3 x8, conv 3x3 x16, 2x2 average pool, dense 32,
   dense 10 logits) trained with Optax Adam on softmax cross-entropy.
2. Test images are explained for the predicted class's logit (``target=`` the predicted labels) with
   ``jaxig.integrated_gradients`` (black baseline: the background of these images), SmoothGrad-IG
   (``jaxig.noise_tunnel`` around IG), ``jaxig.saliency`` (|gradient|), ``jaxig.occlusion`` (2x2 windows,
   stride 1) and ``jaxig.expected_gradients`` (training images as references).
3. No ground truth here, so each map is scored by what it claims: zero the k pixels it ranks highest (by
   signed attribution; by |gradient| for saliency) and measure the drop of the explained logit, against
   zeroing k random pixels (a deletion test; larger is better). Also: each method's completeness gap where
   it applies (IG: f(x) - f(0); expected gradients: f(x) - mean f(references)), its seconds, and the mean
   correlation of its maps with IG's.

Writes methods.csv (per method: logit drop, completeness gap, correlation with IG, seconds), maps.csv
(the maps of the shown examples, long format) and overlays.png (``jaxig.plot.image_grid``: a row of images, then one row
per method, its map over each image) to --out. Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import csv
import functools
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


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):  # (B, 8, 8, 1)
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def load(seed):
    """Returns (X_train, y_train, X_test, y_test): images (N, 8, 8, 1) in [0, 1], int labels."""
    from sklearn.datasets import load_digits  # optional dependency of this experiment only

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[..., None]
    perm = np.random.default_rng(seed).permutation(len(X))
    n_train = int(round(0.7 * len(X)))
    tr, te = perm[:n_train], perm[n_train:]
    return jnp.asarray(X[tr]), jnp.asarray(d.target[tr]), jnp.asarray(X[te]), jnp.asarray(d.target[te])


def train(seed, X, y, steps, batch=64, lr=3e-3):
    """Returns (model, params): minibatch Adam on softmax cross-entropy, one jitted lax.scan."""
    model = CNN()
    # an "rbg" key and NumPy minibatch indices: Flax's init splits its key once per parameter, and XLA
    # takes seconds to compile those threefry splits on CPU (the fit is the same with either PRNG)
    params = jax.jit(model.init)(jax.random.key(seed, impl="rbg"), X[:1])
    batches = np.random.default_rng(seed).integers(0, X.shape[0], (steps, batch))
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def loss(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, xb), yb).mean()

    @jax.jit
    def run(params):
        def step(carry, idx):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p, X[idx], y[idx]), s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), batches)
        return p

    return model, run(params)


def deletion_drop(f, X, target, scores, k):
    """Returns the per-example drop of the target logit when the k highest-scored pixels are set to 0."""
    B = X.shape[0]
    flat = np.asarray(scores).reshape(B, -1)
    top = np.argsort(-flat, axis=1)[:, :k]
    keep = np.ones_like(flat)
    np.put_along_axis(keep, top, 0.0, axis=1)
    Xd = X * jnp.asarray(keep.reshape(X.shape), X.dtype)
    pick = lambda out: np.take_along_axis(np.asarray(out), np.asarray(target)[:, None], 1)[:, 0]
    return pick(f(X)) - pick(f(Xd))


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the CSV files and the figure")
    ap.add_argument("--quick", action="store_true", help="small run (under a minute on 2 CPU cores)")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiniest run, for the tests
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        steps, n_test, n_steps, nt_samples, eg_samples, n_show = 150, 32, 16, 4, 16, 3
    elif args.quick:
        steps, n_test, n_steps, nt_samples, eg_samples, n_show = 300, 128, 32, 8, 64, 5
    else:
        steps, n_test, n_steps, nt_samples, eg_samples, n_show = 500, None, 64, 32, 256, 6
    k_delete = 8  # of 64 pixels

    knt, keg, krand = jax.random.split(jax.random.key(args.seed), 3)
    Xtr, ytr, Xte, yte = load(args.seed)
    if n_test is not None:
        Xte, yte = Xte[:n_test], yte[:n_test]
    model, params = train(args.seed, Xtr, ytr, steps)
    f = jax.tree_util.Partial(model.apply, params)
    logits = np.asarray(f(Xte))
    pred = logits.argmax(1)
    acc = float(np.mean(pred == np.asarray(yte)))
    t_train = time.perf_counter() - t0
    target = jnp.asarray(pred, jnp.int32)  # explain what the model predicts

    nt_ig = jaxig.noise_tunnel(functools.partial(jaxig.integrated_gradients, n_steps=n_steps // 2,
                                                 completeness_rtol=None), n_samples=nt_samples)
    methods = {  # name: (call, completeness reference or None)
        "integrated_gradients": (lambda: jaxig.integrated_gradients(
            f, Xte, target=target, n_steps=n_steps, completeness_rtol=None), "zero"),
        "smoothgrad_ig": (lambda: nt_ig(f, Xte, target=target, key=knt), None),
        "saliency": (lambda: jaxig.saliency(f, Xte, target=target), None),
        "occlusion_2x2": (lambda: jaxig.occlusion(f, Xte, target=target, window=(2, 2, 1)), None),
        "expected_gradients": (lambda: jaxig.expected_gradients(
            f, Xte, Xtr, target=target, key=keg, n_samples=eg_samples), "refs"),
    }
    pick = lambda out: np.take_along_axis(np.asarray(out), pred[:, None], 1)[:, 0]
    f_x = pick(logits)
    f_0 = pick(f(jnp.zeros_like(Xte)))
    f_refs = np.asarray(f(Xtr)).mean(0)[pred]  # E_b f(b) over all the reference (training) images
    maps, rows = {}, []
    rand = np.asarray(jax.random.uniform(krand, Xte.shape))
    drop_random = float(deletion_drop(f, Xte, pred, rand, k_delete).mean())
    for name, (call, ref) in methods.items():
        t1 = time.perf_counter()
        a = np.asarray(jax.block_until_ready(call()), np.float64)
        secs = time.perf_counter() - t1
        maps[name] = a
        drop = float(deletion_drop(f, Xte, pred, a, k_delete).mean())
        if ref is None:
            gap = float("nan")
        else:
            # expected gradients' reference is E_b f(b); its gap is mostly the Monte Carlo error of n_samples
            base = f_0 if ref == "zero" else f_refs
            gap = float(np.max(np.abs(a.reshape(len(a), -1).sum(1) - (f_x - base))) / np.mean(np.abs(f_x - base)))
        rows.append([name, drop, gap, secs])
    ig = maps["integrated_gradients"].reshape(len(Xte), -1)
    for row in rows:
        m = maps[row[0]].reshape(len(Xte), -1)
        cs = [np.corrcoef(ig[i], m[i])[0, 1] for i in range(len(m)) if m[i].std() > 0 and ig[i].std() > 0]
        row.insert(3, float(np.mean(cs)))
    _write_csv(out / "methods.csv", ["method", "logit_drop_top8", "completeness_max_rel_gap", "corr_with_ig",
                                      "seconds"], rows + [["random_pixels", drop_random, float("nan"),
                                                           float("nan"), float("nan")]])

    show = list(range(n_show))
    _write_csv(out / "maps.csv", ["example", "label", "predicted", "method", "row", "col", "attribution"],
               [(i, int(yte[i]), int(pred[i]), name, r, c, maps[name][i, r, c, 0])
                for i in show for name in maps for r in range(8) for c in range(8)])

    titles = {"integrated_gradients": "IG", "smoothgrad_ig": "SmoothGrad-IG", "saliency": "saliency |grad|",
              "occlusion_2x2": "occlusion 2x2", "expected_gradients": "expected gradients"}
    fig, axes = plt.subplots(1 + len(maps), n_show, figsize=(2.4 * max(n_show, 4), 2.2 * (1 + len(maps))),
                             squeeze=False)
    # alpha=1: on 8x8 digits a blended overlay is hard to read, so the maps are opaque and the digit's
    # outline is drawn over them instead
    jaxig.plot.image_grid(np.asarray(Xte[:n_show]), {titles[k]: v[:n_show] for k, v in maps.items()}, alpha=1.0,
                          axes=axes)
    axes[0, 0].set_title("", loc="left")  # the grid's "input" label; each image gets its own title below
    for j in show:
        axes[0, j].set_title(f"label {int(yte[j])}, predicted {pred[j]}", fontsize=9)
        for r in range(1, 1 + len(maps)):
            axes[r, j].contour(np.asarray(Xte[j, :, :, 0]), levels=[0.4], colors="k", linewidths=0.8)
    fig.suptitle("digits CNN: attributions of the predicted class's logit\n(red raises it, blue lowers it; "
                 "black: the digit's outline)")
    fig.tight_layout()
    fig.savefig(out / "overlays.png", dpi=100)
    plt.close(fig)

    runtime = time.perf_counter() - t0
    print(f"CNN on sklearn digits (8x8): test accuracy {acc:.3f} on {len(Xte)} images ({steps} Adam steps, "
          f"{t_train:.1f} s)")
    print(f"explaining the predicted class's logit; deletion test: zero the {k_delete} top-ranked pixels")
    print(f"  {'method':<22}{'logit drop':>11}{'complete gap':>14}{'corr w/ IG':>12}{'seconds':>9}")
    for name, drop, gap, corr, secs in rows:
        gap_s = "n/a" if np.isnan(gap) else f"{gap:.1e}"
        print(f"  {name:<22}{drop:>11.3f}{gap_s:>14}{corr:>12.3f}{secs:>9.2f}")
    print(f"  {'random pixels':<22}{drop_random:>11.3f}")
    print("  gap: max |sum(attr) - (f(x) - f(x'))| / mean |f(x) - f(x')|, f(x') = f(0) for IG and the mean over")
    print(f"  the training images for expected gradients (whose gap is the Monte Carlo error of {eg_samples} samples)")
    print(f"wrote overlays.png, methods.csv, maps.csv to {out} in {runtime:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
