"""Explain a multi-label classifier (24 labels): each positive label, and all of them at once.

Usage:  python experiments/multilabel.py --out results/multilabel [--quick] [--seed 0]

The question of DeepExplain issue #44 (a Keras multi-label classifier with 24 labels, explained with
occlusion): which output is explained, and what do positive and negative scores mean? Synthetic data with
known drivers makes the answer checkable:

1. Data (built here): D = 64 standard-normal features; label k (of K = 24) is driven by its own pair of
   features G_k = (2k, 2k+1), one raising it and one lowering it: y_k = 1[(x_2k - x_2k+1) / sqrt(2) +
   0.3 e > 0.5], e ~ N(0, 1). Features 48..63 drive nothing. About 30% of the labels of an example are on.
2. A Flax MLP 64 -> 128 -> 24 logits, trained with Optax Adam on sigmoid binary cross-entropy.
3. Each positive label of each test example is explained with ``jaxig.integrated_gradients`` and
   ``jaxig.feature_ablation`` (occlusion with a one-feature window), both with ``target="all"`` on the
   logits and the positive labels picked out afterwards, from a zero baseline (the feature means).
   Recovery per (example, positive label): the share of sum |attribution| on the label's pair, whether the
   pair are the two largest |attributions| (top-2 hit), and whether the driving feature's attribution has
   the sign of w * x (sign agreement).
4. The multi-hot target: one explanation of the sum of the logits of an example's positive labels, with
   ``target=jaxig.weighted(Y)`` (Y the (B, K) multi-hot labels; before ``weighted`` existed the same was
   spelled ``target=lambda logits: (logits * Y).sum(1)``, a callable returning (B,)). IG is linear in
   the explained output, so this equals the sum of the per-label IGs (checked), and its completeness gap
   is against sum_k in positives (logit_k(x) - logit_k(0)).

Writes labels.csv (per label: its features, number of positive test examples, recovery for IG and
feature ablation), metrics.csv (metric, value), example.csv (one test example: attribution per positive
label, multi-hot and feature, for both methods) and multilabel.png to --out.
"""

from __future__ import annotations

import argparse
import csv
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

K = 24  # labels, as in the issue
D = 64  # features: 2 per label, then 16 that drive nothing
THRESHOLD, NOISE = 0.5, 0.3


def make_data(key, n):
    """Returns (X (n, D), Y (n, K) multi-hot float, signs (D,)): label k is driven by features 2k (+), 2k+1 (-)."""
    kx, ke = jax.random.split(key)
    X = jax.random.normal(kx, (n, D), jnp.float32)
    signs = np.zeros(D, np.float32)
    signs[0:2 * K:2], signs[1:2 * K:2] = 1.0, -1.0
    z = (X[:, 0:2 * K:2] - X[:, 1:2 * K:2]) / np.sqrt(2.0) + NOISE * jax.random.normal(ke, (n, K))
    return X, (z > THRESHOLD).astype(jnp.float32), signs


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(K)(nn.relu(nn.Dense(128)(x)))  # logits (B, K)


def train(seed, X, Y, steps, batch=256, lr=3e-3):
    """Returns (model, params): Adam on sigmoid binary cross-entropy, one jitted lax.scan."""
    model = MLP()
    # an "rbg" key and NumPy minibatch indices: Flax's init splits its key once per parameter, and XLA
    # takes seconds to compile those threefry splits on CPU (the fit is the same with either PRNG)
    params = jax.jit(model.init)(jax.random.key(seed, impl="rbg"), X[:1])
    batches = np.random.default_rng(seed).integers(0, X.shape[0], (steps, batch))
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def loss(p, xb, yb):
        return optax.sigmoid_binary_cross_entropy(model.apply(p, xb), yb).mean()

    @jax.jit
    def run(params):
        def step(carry, idx):
            p, s = carry
            g = jax.grad(loss)(p, X[idx], Y[idx])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), batches)
        return p

    return model, run(params)


def recovery(attr_all, Y, signs, X):
    """Returns per-(example, positive label) arrays (label, share on pair, top-2 hit, sign agreement, clear).

    ``clear`` marks pairs whose two features are both far from the baseline (|x| > 0.5): a driver sitting
    near the baseline value deserves a small attribution, so a top-2 miss there is no error.

    ``attr_all`` is (K, B, D), the attributions of every label's logit.
    """
    b_idx, k_idx = np.nonzero(Y)
    a = np.abs(attr_all[k_idx, b_idx])  # (P, D): one row per (example, positive label)
    pair = np.stack([2 * k_idx, 2 * k_idx + 1], 1)
    share = np.take_along_axis(a, pair, 1).sum(1) / np.maximum(a.sum(1), 1e-30)
    top2 = np.sort(np.argsort(-a, axis=1)[:, :2], axis=1)
    hit = np.all(top2 == pair, axis=1).astype(float)
    driver = 2 * k_idx  # the raising feature: its attribution should have the sign of +x
    signed = attr_all[k_idx, b_idx, driver] * np.sign(X[b_idx, driver]) * signs[driver]
    clear = np.abs(X[b_idx, driver]) > 0.25  # ignore features sitting at the baseline
    both = np.all(np.abs(np.take_along_axis(X[b_idx], pair, 1)) > 0.5, axis=1)
    return k_idx, share, hit, np.where(clear, signed > 0, np.nan), both


# ---- plotting: jaxig.plot has no label x feature matrix, so this one is drawn here


def _attribution_matrix(ax, values, row_names, title):
    """Draws rows of signed attributions (one row per explained output) over the features."""
    lim = max(float(np.abs(values).max()), 1e-12)
    im = ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(row_names)), row_names, fontsize=7)
    ax.set(xlabel="feature", title=title)
    plt.colorbar(im, ax=ax, fraction=0.03)


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
        n_train, steps, n_test, n_steps = 4096, 400, 32, 16
    elif args.quick:
        n_train, steps, n_test, n_steps = 16384, 1500, 128, 32
    else:
        n_train, steps, n_test, n_steps = 65536, 4000, 512, 64

    kd, kt = jax.random.split(jax.random.key(args.seed))
    X, Y, signs = make_data(kd, n_train)
    Xte, Yte, _ = make_data(kt, n_test)
    model, params = train(args.seed, X, Y, steps)
    f = jax.tree_util.Partial(model.apply, params)  # (B, D) -> logits (B, K)
    logits = np.asarray(f(Xte))
    Yn = np.asarray(Yte)
    acc = float(np.mean((logits > 0) == (Yn > 0)))
    tp = np.sum((logits > 0) & (Yn > 0))
    f1 = float(2 * tp / (np.sum(logits > 0) + np.sum(Yn > 0)))
    t_train = time.perf_counter() - t0
    Xn = np.asarray(Xte, np.float64)

    # ---- every label at once: target="all" -> (K, B, D); the positive labels are picked afterwards
    t1 = time.perf_counter()
    ig_all, ig_info = jaxig.integrated_gradients(f, Xte, target="all", n_steps=n_steps, return_info=True,
                                                 completeness_rtol=None)
    ig_all = np.asarray(ig_all, np.float64)
    t_ig = time.perf_counter() - t1
    t1 = time.perf_counter()
    ab_all = np.asarray(jaxig.feature_ablation(f, Xte, target="all"), np.float64)
    t_ab = time.perf_counter() - t1
    logits_0 = np.asarray(f(jnp.zeros((1, D), jnp.float32)))[0]
    scale = float(np.mean(np.abs(logits - logits_0)))
    ig_gap = float(np.max(np.abs(np.asarray(ig_info.delta))) / scale)

    rec = {"IG": recovery(ig_all, Yn, signs, Xn), "ablation": recovery(ab_all, Yn, signs, Xn)}

    # ---- the multi-hot target: the sum of the logits of each example's positive labels
    multi_hot = jaxig.weighted(Yn)  # sum_k Y[b, k] logits[b, k]: DeepExplain's ys

    t1 = time.perf_counter()
    ig_mh, mh_info = jaxig.integrated_gradients(f, Xte, target=multi_hot, n_steps=n_steps, return_info=True,
                                                completeness_rtol=None)
    ig_mh = np.asarray(ig_mh, np.float64)
    t_mh = time.perf_counter() - t1
    ab_mh = np.asarray(jaxig.feature_ablation(f, Xte, target=multi_hot), np.float64)
    # IG and ablation are linear in the explained output: multi-hot = the sum over positive labels
    ig_sum = np.einsum("kbd,bk->bd", ig_all, Yn)
    ab_sum = np.einsum("kbd,bk->bd", ab_all, Yn)
    lin_ig = float(np.max(np.abs(ig_mh - ig_sum)) / np.max(np.abs(ig_mh)))
    lin_ab = float(np.max(np.abs(ab_mh - ab_sum)) / np.max(np.abs(ab_mh)))
    mh_target = (logits * Yn).sum(1) - (logits_0[None] * Yn).sum(1)
    mh_gap = float(np.max(np.abs(ig_mh.sum(1) - mh_target)) / np.mean(np.abs(mh_target)))
    drivers = np.zeros((n_test, D), bool)  # features of the positive labels
    for k in range(K):
        drivers[:, 2 * k] |= Yn[:, k] > 0
        drivers[:, 2 * k + 1] |= Yn[:, k] > 0
    mh_share = {}
    for name, a in (("IG", ig_mh), ("ablation", ab_mh)):
        aa = np.abs(a)
        mh_share[name] = float(np.mean((aa * drivers).sum(1) / np.maximum(aa.sum(1), 1e-30)))

    metrics = {
        "test_label_accuracy": acc, "test_micro_f1": f1, "mean_positive_labels": float(Yn.sum(1).mean()),
        "n_test": n_test, "n_steps": n_steps, "ig_completeness_max_rel_gap": ig_gap,
        "multihot_completeness_max_rel_gap": mh_gap, "multihot_vs_sum_of_labels_ig": lin_ig,
        "multihot_vs_sum_of_labels_ablation": lin_ab,
        "ig_seconds_all_labels": t_ig, "ablation_seconds_all_labels": t_ab, "ig_seconds_multihot": t_mh,
    }
    for name, (_, share, hit, sign, both) in rec.items():
        metrics[f"{name}_pair_share"] = float(share.mean())
        metrics[f"{name}_top2_hit_rate"] = float(hit.mean())
        metrics[f"{name}_top2_hit_rate_clear"] = float(hit[both].mean())
        metrics[f"{name}_sign_agreement"] = float(np.nanmean(sign))
        metrics[f"{name}_multihot_driver_share"] = mh_share[name]
    _write_csv(out / "metrics.csv", ["metric", "value"], list(metrics.items()))

    label_rows = []
    for k in range(K):
        row = [k, f"x{2 * k}(+) x{2 * k + 1}(-)", int(Yn[:, k].sum())]
        for name in ("IG", "ablation"):
            k_idx, share, hit, _, _ = rec[name]
            m = k_idx == k
            row += [share[m].mean() if m.any() else float("nan"), hit[m].mean() if m.any() else float("nan")]
        label_rows.append(row)
    _write_csv(out / "labels.csv", ["label", "features", "n_positive", "ig_pair_share", "ig_top2_hit",
                                     "ablation_pair_share", "ablation_top2_hit"], label_rows)

    ex = int(np.argmax(Yn.sum(1)))  # the test example with the most positive labels
    pos = np.nonzero(Yn[ex])[0]
    ex_rows = []
    for name, a_all, a_mh in (("IG", ig_all, ig_mh), ("ablation", ab_all, ab_mh)):
        for k in pos:
            ex_rows += [(name, f"label_{k}", d, a_all[k, ex, d]) for d in range(D)]
        ex_rows += [(name, "multi_hot", d, a_mh[ex, d]) for d in range(D)]
    _write_csv(out / "example.csv", ["method", "explained", "feature", "attribution"], ex_rows)

    # ---- figure: the example's attributions per positive label and multi-hot, for both methods
    rows = [f"label {k}" for k in pos] + ["multi-hot"]
    fig, ax = plt.subplots(2, 2, figsize=(15, 0.3 * len(rows) * 2 + 4.5),
                           gridspec_kw={"width_ratios": [3, 1.2]})
    for i, (name, a_all, a_mh) in enumerate((("IG", ig_all, ig_mh), ("feature ablation", ab_all, ab_mh))):
        mat = np.vstack([a_all[pos, ex], a_mh[ex][None]])
        _attribution_matrix(ax[i, 0], mat, rows, f"{name}, test example {ex}: each positive label's logit, "
                                                 "and their sum (multi-hot)")
        for j, k in enumerate(pos):  # outline the label's own pair of features
            ax[i, 0].add_patch(plt.Rectangle((2 * k - 0.5, j - 0.5), 2, 1, fill=False, ec="k", lw=1.2))
    for i, stat, label in ((0, 1, "share of |attr| on the label's pair"), (1, 2, "top-2 hit rate")):
        vals = {name: [rec[name][stat][rec[name][0] == k].mean() if (rec[name][0] == k).any() else np.nan
                       for k in range(K)] for name in rec}
        jaxig.plot.feature_bars({"IG": np.asarray(vals["IG"]), "feature ablation": np.asarray(vals["ablation"])},
                                feature_names=[str(k) for k in range(K)], normalize=False, ax=ax[i, 1])
        ax[i, 1].set(xlabel="label", ylabel=label, ylim=(0, 1.05), title=f"per label, {n_test} test examples")
    fig.tight_layout()
    fig.savefig(out / "multilabel.png", dpi=100)
    plt.close(fig)

    runtime = time.perf_counter() - t0
    print(f"MLP on {K}-label synthetic data (label k driven by x{{2k}} up, x{{2k+1}} down): label accuracy "
          f"{acc:.3f}, micro-F1 {f1:.3f}, {Yn.sum(1).mean():.1f} positive labels per example "
          f"({steps} Adam steps, {t_train:.1f} s)")
    print(f"each positive label of {n_test} test examples ({int(Yn.sum())} pairs), target='all' on the logits, "
          f"zero baseline")
    print(f"  {'method':<12}{'pair share':>11}{'top-2 hit':>11}{'(|x|>.5)':>10}{'sign ok':>9}{'multi-hot share':>17}"
          f"{'seconds':>9}")
    for name, secs in (("IG", t_ig), ("ablation", t_ab)):
        print(f"  {name:<12}{metrics[f'{name}_pair_share']:>11.3f}{metrics[f'{name}_top2_hit_rate']:>11.3f}"
              f"{metrics[f'{name}_top2_hit_rate_clear']:>10.3f}"
              f"{metrics[f'{name}_sign_agreement']:>9.3f}{mh_share[name]:>17.3f}{secs:>9.2f}")
    print(f"  multi-hot target (jaxig.weighted(Y): sum of positive labels' logits): IG completeness gap {mh_gap:.1e}; "
          f"differs from the sum of per-label attributions by {lin_ig:.1e} (IG), {lin_ab:.1e} (ablation)")
    print(f"  IG completeness gap over all labels (max, relative): {ig_gap:.1e}")
    print(f"wrote multilabel.png, labels.csv, metrics.csv, example.csv to {out} in {runtime:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
