"""Explain a Flax LSTM on time series with planted cells: IG [B, T, F], per-feature sums, recovery.

Usage:  python experiments/lstm_timeseries.py --out results/lstm [--quick] [--seed 0]

The question of Captum issue "Using IntegratedGradients to explain LSTM model": the attributions of a
sequence model come out as [batch, time, features]; how to get one number per feature, and may one sum
absolute values? Here the answer can be checked, because the data has a known ground truth:

1. ``jaxig.datasets.time_series``: sequences X [B, T, F] uniform in [-1, 1] and y = sum(coefs * X) with
   coefs zero except at a few planted (t, f) cells (random positions and signs). The exact IG of the
   generating function, from a zero baseline, is coefs * x: every unplanted cell deserves 0.
2. An LSTM written the way Flax users write it, ``nn.RNN(nn.LSTMCell(hidden))`` followed by a Dense
   readout of the last hidden state, trained with Optax Adam on mean squared error (one jitted lax.scan).
3. ``jaxig.integrated_gradients`` on held-out sequences (zero baseline = the data mean): attributions
   [B, T, F]. Recovery of the planted cells, per example: the fraction of sum |attribution| that lies on
   planted cells, and the top-k hit rate (k = number of planted cells; the share of the k cells with the
   largest |attribution| that are planted); the R^2 of IG against coefs * x, the sign agreement on
   planted cells, and the completeness gap sum(IG) - (f(x) - f(0)).
4. ``jaxig.feature_attributions``: one number per feature, the signed sum over time (which keeps
   completeness: the features' values sum to f(x) - f(0)) and the absolute sum (how much the feature moved
   the output at all). A feature with planted cells of both signs shows why the two differ.

Writes cells.csv (per (t, f) cell: coef, planted, mean IG, mean |IG|, mean |truth|), features.csv (per
feature: dataset means of the signed and absolute sums over time, for IG and the truth, and the
correlation of the per-example signed sums with the truth's), metrics.csv (metric, value) and the figures
heatmap.png (feature x time heatmaps: planted coefs, mean |IG|, one example's IG and its truth) and
features.png (per-feature bars, signed and absolute) to --out.
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
from jaxig import datasets  # noqa: E402


class LSTMRegressor(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x):  # x: (B, T, F)
        h = nn.RNN(nn.LSTMCell(features=self.hidden))(x)  # (B, T, hidden)
        return nn.Dense(1)(h[:, -1])[:, 0]


def train(seed, X, y, *, hidden, steps, batch, lr):
    """Returns (model, params, losses): minibatch Adam on mean squared error, one jitted lax.scan."""
    model = LSTMRegressor(hidden)
    # an "rbg" key and NumPy minibatch indices: Flax's init splits its key once per parameter, and XLA
    # takes seconds to compile those threefry splits on CPU (the fit is the same with either PRNG)
    params = jax.jit(model.init)(jax.random.key(seed, impl="rbg"), X[:1])
    batches = np.random.default_rng(seed).integers(0, X.shape[0], (steps, batch))
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    def loss(p, xb, yb):
        return jnp.mean((model.apply(p, xb) - yb) ** 2)

    @jax.jit
    def run(params):
        def step(carry, idx):
            p, s = carry
            value, g = jax.value_and_grad(loss)(p, X[idx], y[idx])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), value

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), batches)
        return p, losses

    params, losses = run(params)
    return model, params, np.asarray(losses)


def recovery(attr, planted):
    """Returns per-example (fraction of sum |attr| on planted cells, top-k hit rate), k = planted cells."""
    a = np.abs(attr).reshape(len(attr), -1)
    mask = planted.reshape(-1)
    k = int(mask.sum())
    mass = a[:, mask].sum(1) / np.maximum(a.sum(1), 1e-30)
    top = np.argsort(-a, axis=1)[:, :k]
    hits = mask[top].mean(1)
    return mass, hits


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the CSV files and figures")
    ap.add_argument("--quick", action="store_true", help="small run (under a minute on 2 CPU cores)")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiniest run, for the tests
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        T, F, P, n_train, steps, hidden, n_test, n_steps, lr = 8, 3, 3, 2048, 300, 16, 32, 16, 3e-2
    elif args.quick:
        T, F, P, n_train, steps, hidden, n_test, n_steps, lr = 16, 4, 6, 8192, 1500, 32, 128, 32, 1e-2
    else:
        T, F, P, n_train, steps, hidden, n_test, n_steps, lr = 16, 4, 6, 16384, 4000, 32, 512, 64, 1e-2
    batch = 128

    kd = jax.random.key(args.seed)
    gen = jax.jit(datasets.time_series, static_argnums=(1, 2, 3, 4))  # one compile, not one per op
    X, y, coefs = gen(kd, n_train + n_test, T, F, P)
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    model, params, losses = train(args.seed, Xtr, ytr, hidden=hidden, steps=steps, batch=batch, lr=lr)
    f = jax.tree_util.Partial(model.apply, params)
    pred = np.asarray(f(Xte))
    yte_np = np.asarray(yte)
    test_r2 = float(1 - np.mean((pred - yte_np) ** 2) / np.var(yte_np))
    t_train = time.perf_counter() - t0

    # ---- IG: [B, T, F], zero baseline (the data mean)
    t1 = time.perf_counter()
    attr, info = jaxig.integrated_gradients(f, Xte, n_steps=n_steps, return_info=True, completeness_rtol=None)
    attr = np.asarray(jax.block_until_ready(attr), np.float64)
    t_ig = time.perf_counter() - t1
    coefs = np.asarray(coefs, np.float64)
    planted = coefs != 0
    truth = coefs[None] * np.asarray(Xte, np.float64)  # exact IG of the generating function
    f_0 = float(f(jnp.zeros((1, T, F), jnp.float32))[0])
    gap = np.abs(np.asarray(info.delta))
    rel_gap = float(gap.max() / np.mean(np.abs(pred - f_0)))

    mass, hits = recovery(attr, planted)
    t_mass, t_hits = recovery(truth, planted)
    r2 = float(1 - np.sum((attr - truth) ** 2) / np.sum((truth - truth.mean()) ** 2))
    big = planted[None] & (np.abs(truth) > 0.1)  # planted cells whose true attribution is clearly signed
    sign_agree = float(np.mean(np.sign(attr[big]) == np.sign(truth[big])))

    # ---- one number per feature: signed and absolute sums over time
    signed = np.asarray(jaxig.feature_attributions(attr), np.float64)  # (B, F)
    absolute = np.asarray(jaxig.feature_attributions(attr, absolute=True), np.float64)
    t_signed = truth.sum(1)
    t_abs = np.abs(truth).sum(1)
    # completeness carries over to the signed per-feature sums, not to the absolute ones
    per_feature_gap = float(np.max(np.abs(signed.sum(1) - (pred - f_0))) / np.mean(np.abs(pred - f_0)))
    corr = [float(np.corrcoef(signed[:, j], t_signed[:, j])[0, 1]) if planted[:, j].any() else float("nan")
            for j in range(F)]
    names = [f"x{j}" for j in range(F)]

    metrics = {
        "test_r2": test_r2, "final_train_loss": float(losses[-50:].mean()), "n_test": n_test, "n_steps": n_steps,
        "n_planted": int(planted.sum()), "planted_mass_ig": float(mass.mean()),
        "planted_mass_truth": float(t_mass.mean()), "topk_hit_rate_ig": float(hits.mean()),
        "topk_hit_rate_truth": float(t_hits.mean()), "r2_ig_vs_truth": r2, "sign_agreement_planted": sign_agree,
        "completeness_max_rel_gap": rel_gap, "per_feature_signed_max_rel_gap": per_feature_gap,
        "ig_seconds": t_ig, "train_seconds": t_train,
    }
    _write_csv(out / "metrics.csv", ["metric", "value"], list(metrics.items()))
    _write_csv(out / "cells.csv", ["t", "feature", "coef", "planted", "mean_ig", "mean_abs_ig", "mean_abs_truth"],
               [(t, names[j], coefs[t, j], int(planted[t, j]), attr[:, t, j].mean(), np.abs(attr[:, t, j]).mean(),
                 np.abs(truth[:, t, j]).mean()) for t in range(T) for j in range(F)])
    _write_csv(out / "features.csv",
               ["feature", "n_planted", "planted_coefs", "signed_mean", "abs_mean", "truth_signed_mean",
                "truth_abs_mean", "corr_signed_vs_truth"],
               [(names[j], int(planted[:, j].sum()), " ".join(f"{c:+.2f}" for c in coefs[planted[:, j], j]),
                 signed[:, j].mean(), absolute[:, j].mean(), t_signed[:, j].mean(), t_abs[:, j].mean(), corr[j])
                for j in range(F)])

    # ---- figures
    ex = int(np.argmax(np.abs(pred - f_0)))  # the example the model moves most from f(0)
    fig, ax = plt.subplots(4, 1, figsize=(11, 9.5))
    jaxig.plot.timeseries_heatmap(coefs, feature_names=names, ax=ax[0])
    ax[0].set_title("planted coefs (ground truth)")
    jaxig.plot.timeseries_heatmap(attr, feature_names=names, absolute=True, ax=ax[1])
    ax[1].set_title(f"mean |IG| over {n_test} test sequences")
    jaxig.plot.timeseries_heatmap(attr[ex], feature_names=names, ax=ax[2])
    ax[2].set_title(f"IG of test example {ex}")
    jaxig.plot.timeseries_heatmap(truth[ex], feature_names=names, ax=ax[3])
    ax[3].set_title(f"truth coefs * x of example {ex}")
    fig.suptitle(f"LSTM on planted time series: IG [B, T, F]; top-{int(planted.sum())} hit rate "
                 f"{hits.mean():.2f}, share of |IG| on planted cells {mass.mean():.2f}")
    fig.tight_layout()
    fig.savefig(out / "heatmap.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = ((f"example {ex}: signed sum over time", {"IG": signed[ex], "truth": t_signed[ex]}),
              ("dataset: mean of sum_t |attr| (involvement)", {"IG": absolute, "truth": t_abs}),
              ("dataset: mean of signed sum_t attr (cancels)", {"IG": signed, "truth": t_signed}))
    for a, (title, series) in zip(ax, panels, strict=True):
        jaxig.plot.feature_bars(series, feature_names=names, normalize=False, ax=a)
        a.set_title(title)
    fig.tight_layout()
    fig.savefig(out / "features.png", dpi=100)
    plt.close(fig)

    runtime = time.perf_counter() - t0
    print(f"LSTM (nn.RNN(nn.LSTMCell({hidden}))) on time_series T={T} F={F}, {int(planted.sum())} planted cells: "
          f"test R2 {test_r2:.4f} ({steps} Adam steps, {t_train:.1f} s)")
    print(f"IG, zero baseline, n_steps={n_steps}, {n_test} test sequences ({t_ig:.2f} s incl. compile)")
    print(f"  {'planted-cell recovery':<36}{'IG':>8}{'truth':>8}")
    print(f"  {'share of sum|attr| on planted cells':<36}{mass.mean():>8.3f}{t_mass.mean():>8.3f}")
    print(f"  {f'top-{int(planted.sum())} hit rate':<36}{hits.mean():>8.3f}{t_hits.mean():>8.3f}")
    print(f"  {'R2 of IG vs coefs * x':<36}{r2:>8.3f}")
    print(f"  {'sign agreement on planted cells':<36}{sign_agree:>8.3f}")
    print(f"  {'completeness gap (max, relative)':<36}{rel_gap:>8.1e}")
    print("  per feature (sum over time; dataset mean; corr = per-example signed IG vs truth)")
    print(f"  {'feature':<8}{'planted coefs':<22}{'signed':>8}{'abs':>8}{'truth s':>9}{'truth a':>9}{'corr':>7}")
    for j in range(F):
        pc = " ".join(f"{c:+.2f}" for c in coefs[planted[:, j], j]) or "-"
        print(f"  {names[j]:<8}{pc:<22}{signed[:, j].mean():>8.3f}{absolute[:, j].mean():>8.3f}"
              f"{t_signed[:, j].mean():>9.3f}{t_abs[:, j].mean():>9.3f}{corr[j]:>7.3f}")
    print(f"wrote heatmap.png, features.png, cells.csv, features.csv, metrics.csv to {out} in {runtime:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
