"""One figure on what attribution numbers mean: signs, units, baselines, logits vs probabilities, time sums.

Usage:  python experiments/what_numbers_mean.py --out results/numbers

Everything is computed with jaxig on two tiny models whose answers can be checked by hand:

* A 3-feature logistic model, logit z(x) = w . x + b with w = (2, -1, 0.5), b = -0.5, probability
  p(x) = sigmoid(z(x)), at x = (1.5, 0.5, 1).
  (a) IG of the logit from the zero baseline: w * x = (3, -0.5, 0.5); they sum to z(x) - z(0) = 3.
      Positive pushes the explained output up from its value at the baseline; units are logits.
  (b) IG of the probability: the same ranking and signs (for this single-index model IG_i is
      w_i x_i (p(x) - p(0)) / (z(x) - z(0))), in probability units, summing to p(x) - p(0) = 0.547.
  (c) The baseline is part of the question: from the baseline x' = (1, 0.5, 0) (say, the data mean) the
      logit IG is w * (x - x') = (1, 0, 0.5), summing to z(x) - z(x') = 1.5. Feature 1 equals its
      baseline value, so it gets 0 whatever its weight.
* A linear sequence model f(x) = sum_{t,f} c[t, f] x[t, f] (T = 6 steps, 2 features) at x = 1 everywhere,
  c = +1 at (t=1, A), -1 at (t=4, A), +0.5 at (t=2, B): IG [T, F] is c.
  (d) IG over time; (e) the per-feature sums of ``jaxig.feature_attributions``: signed, A = 0 and B = 0.5
      (A's two effects cancel, and the signed sums still add up to f(x) - f(0) = 0.5); absolute, A = 2 and
      B = 0.5 (A moved the output the most, in both directions; no longer sums to the output).

Writes numbers.png (the one figure, panels a-e and a legend of the rules) and numbers.csv (panel, item,
value: every number drawn) to --out; prints the same numbers.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxig  # noqa: E402

W = jnp.array([2.0, -1.0, 0.5])
B = -0.5
X = jnp.array([[1.5, 0.5, 1.0]])
X_MEAN = jnp.array([[1.0, 0.5, 0.0]])
NAMES = ["x0", "x1", "x2"]


def logit(x):
    return x @ W + B


def probability(x):
    return jax.nn.sigmoid(logit(x))


T, F = 6, 2
C = np.zeros((T, F), np.float32)
C[1, 0], C[4, 0], C[2, 1] = 1.0, -1.0, 0.5


def sequence_model(x):  # (B, T, F) -> (B,)
    return jnp.einsum("btf,tf->b", x, C)


def _bars_with_sum(ax, names, values, total, title, unit):
    """Draws one bar per feature and a 'sum' bar, with a dashed line at f(x) - f(x')."""
    values = np.asarray(values)
    colors = ["tab:red" if v > 0 else "tab:blue" for v in values]
    ax.bar(names, values, color=colors)
    ax.bar(["sum"], [values.sum()], color="0.5")
    ax.axhline(total, color="k", ls="--", lw=1, label=f"f(x) - f(x') = {total:.3f}")
    ax.axhline(0, color="k", lw=0.6)
    for i, v in enumerate(list(values) + [values.sum()]):
        v = 0.0 if abs(v) < 5e-4 else v  # no "-0.000" labels
        ax.annotate(f"{v:+.3f}", (i, v), ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    lo = min(0.0, float(values.min()))
    hi = max(float(values.max()), float(values.sum()), total)
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.3 * (hi - lo))
    ax.set(title=title, ylabel=f"attribution ({unit})")
    ax.legend(fontsize=8, loc="upper center")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for numbers.png and numbers.csv")
    ap.add_argument("--quick", action="store_true", help="accepted for symmetry; the run is always quick")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 32  # Gauss-Legendre: exact for the linear models, ~1e-7 for the sigmoid

    ig_logit = np.asarray(jaxig.integrated_gradients(logit, X, n_steps=n))[0]
    ig_prob = np.asarray(jaxig.integrated_gradients(probability, X, n_steps=n))[0]
    ig_mean = np.asarray(jaxig.integrated_gradients(logit, X, X_MEAN, n_steps=n))[0]
    d_logit = float(logit(X)[0] - logit(jnp.zeros_like(X))[0])
    d_prob = float(probability(X)[0] - probability(jnp.zeros_like(X))[0])
    d_mean = float(logit(X)[0] - logit(X_MEAN)[0])

    xs = jnp.ones((1, T, F))
    ig_seq = np.asarray(jaxig.integrated_gradients(sequence_model, xs, n_steps=n))  # (1, T, F)
    signed = np.asarray(jaxig.feature_attributions(ig_seq))[0]
    absolute = np.asarray(jaxig.feature_attributions(ig_seq, absolute=True))[0]
    d_seq = float(sequence_model(xs)[0] - sequence_model(jnp.zeros_like(xs))[0])

    rows = [("a_logit", f, v) for f, v in zip(NAMES, ig_logit, strict=True)] + [("a_logit", "f(x)-f(0)", d_logit)]
    rows += [("b_probability", f, v) for f, v in zip(NAMES, ig_prob, strict=True)]
    rows += [("b_probability", "f(x)-f(0)", d_prob)]
    rows += [("c_mean_baseline", f, v) for f, v in zip(NAMES, ig_mean, strict=True)]
    rows += [("c_mean_baseline", "f(x)-f(x')", d_mean)]
    rows += [("d_time", f"t{t}_{'AB'[j]}", ig_seq[0, t, j]) for t in range(T) for j in range(F)]
    rows += [("e_signed", "AB"[j], signed[j]) for j in range(F)] + [("e_signed", "f(x)-f(0)", d_seq)]
    rows += [("e_absolute", "AB"[j], absolute[j]) for j in range(F)]
    with open(out / "numbers.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["panel", "item", "value"])
        w.writerows(rows)

    fig, ax = plt.subplots(2, 3, figsize=(15, 8.5))
    _bars_with_sum(ax[0, 0], NAMES, ig_logit, d_logit,
                   "(a) IG of the logit, baseline 0\nw * x; sums to z(x) - z(0)", "logits")
    _bars_with_sum(ax[0, 1], NAMES, ig_prob, d_prob,
                   f"(b) IG of the probability, baseline 0\nsame signs, p units; p(x) = "
                   f"{float(probability(X)[0]):.3f}, p(0) = {float(probability(jnp.zeros_like(X))[0]):.3f}",
                   "probability")
    _bars_with_sum(ax[0, 2], NAMES, ig_mean, d_mean,
                   "(c) IG of the logit, baseline x' = (1, 0.5, 0)\nw * (x - x'): x1 = x'1 gets 0", "logits")
    jaxig.plot.timeseries_heatmap(ig_seq[0], feature_names=["A", "B"], ax=ax[1, 0])
    ax[1, 0].set_title("(d) IG of a sequence model over time [T, F]")
    jaxig.plot.timeseries_bars(ig_seq[0], feature_names=["A", "B"], kind="both", ax=ax[1, 1])
    for i in range(F):
        ax[1, 1].annotate(f"{signed[i]:.2f}", (i - 0.2, signed[i]), ha="center", va="bottom", fontsize=8)
        ax[1, 1].annotate(f"{absolute[i]:.2f}", (i + 0.2, absolute[i]), ha="center", va="bottom", fontsize=8)
    ax[1, 1].set_ylim(0, 1.35 * absolute.max())
    ax[1, 1].set_title(f"(e) feature_attributions over time: signed sums add to f(x) - f(0) = {d_seq:.2f}",
                       fontsize=10)
    ax[1, 2].axis("off")
    ax[1, 2].text(0, 1, "\n".join([
        "Reading the numbers",
        "",
        "sign: + pushes the explained output up",
        "      from its value at the baseline",
        "units: those of the explained output",
        "      (logits in a, c; probability in b)",
        "sum: f(x) - f(baseline) (completeness)",
        "baseline: part of the question; a feature",
        "      equal to its baseline gets 0",
        "logits: additive, not squashed; explain",
        "      probabilities to talk in probability",
        "over time: signed sums keep completeness",
        "      and cancel; absolute sums rank",
        "      involvement and do not add up",
    ]), va="top", family="monospace", fontsize=9.5)
    fig.tight_layout()
    fig.savefig(out / "numbers.png", dpi=100)
    plt.close(fig)

    print(f"logistic model z = w.x + b, w = {np.asarray(W).tolist()}, b = {B}, x = {np.asarray(X[0]).tolist()}")
    print(f"  {'explained':<28}{'x0':>9}{'x1':>9}{'x2':>9}{'sum':>9}{'f(x)-f(x_)':>12}")
    for name, a, d in (("logit, baseline 0", ig_logit, d_logit), ("probability, baseline 0", ig_prob, d_prob),
                       ("logit, baseline (1,.5,0)", ig_mean, d_mean)):
        print(f"  {name:<28}{a[0]:>+9.3f}{a[1]:>+9.3f}{a[2]:>+9.3f}{a.sum():>+9.3f}{d:>+12.3f}")
    print(f"sequence model (T={T}, F={F}), per-feature sums over time:")
    print(f"  {'feature':<10}{'signed':>9}{'absolute':>10}")
    for j in range(F):
        print(f"  {'AB'[j]:<10}{signed[j]:>+9.3f}{absolute[j]:>10.3f}")
    print(f"  signed sums add to {signed.sum():+.3f} = f(x) - f(0) = {d_seq:+.3f}; absolute sums add to "
          f"{absolute.sum():.3f}")
    print(f"wrote numbers.png, numbers.csv to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
