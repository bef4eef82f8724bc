"""Compare IG with the methods users compare it against, on a small regression MLP (Captum's tutorial).

Usage:  python experiments/compare_methods.py --out results/compare [--quick] [--seed 0]

The seed is Captum's California-housing tutorial, on scikit-learn's bundled diabetes data instead
(``sklearn.datasets.load_diabetes``: 442 patients, 10 features, no download):

1. Standardises the features (and the target) with the training split's mean and std (70/30 split),
   and trains a Flax linen ReLU MLP 10 -> 64 -> 32 -> 10 -> 1 with Optax AdamW (full batch, a few
   hundred steps: longer training overfits these 309 rows).
2. Explains the test set (zero baseline = the training mean) with integrated_gradients (and, since the
   MLP is piecewise linear, exact_integrated_gradients), noise_tunnel(integrated_gradients) (SmoothGrad
   IG), deeplift, expected_gradients (GradientSHAP, the training rows as references),
   expected_integrated_gradients (same references), feature_ablation,
   shapley_value_sampling, saliency (signed gradient), gradient_x_input and occlusion (window 1). Each is
   reduced to one number per feature as the tutorial does: the mean over test examples divided by the
   sum of the absolute values of those means. The first-layer weights (mean |W| over hidden units, per
   feature, normalised the same way) are plotted beside them. Figure: methods.png (one grouped bar chart,
   and below it the same with mean |attribution|, since signed means cancel across examples).
3. layer_conductance of the last hidden layer (10 units; the inputs of the last Dense layer), mean over
   the test set, normalised, beside the last layer's weights. Figure: conductance.png.
4. When torch and captum import, builds the same MLP in torch with the trained weights copied and runs
   Captum's deterministic methods (IntegratedGradients gausslegendre with the same steps, DeepLift,
   Saliency(abs=False), InputXGradient, FeatureAblation, LayerConductance gausslegendre, which is
   jaxig's ``stieltjes=True`` discretisation); prints the max relative difference per method
   (max |jaxig - Captum| / max |Captum| over all test examples and features).

Writes results.csv (long format: method, feature, value, source = jaxig | captum; value = the
normalised mean), summary.json (per method: completeness gap where it applies, i.e. sum(attr) minus
f(x) - f(0), or minus f(x) - mean f(references) for the expected-gradient methods; seconds of the first
call (with compilation) and of a second call; evaluations per example)
and the two figures to --out. Needs scikit-learn; torch and captum are optional.
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

HIDDEN = (64, 32, 10)


class MLP(nn.Module):
    hidden: tuple[int, ...] = HIDDEN

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(1)(x)[:, 0]


def load(seed):
    """Returns standardised (X_train, y_train, X_test, y_test, feature_names) of the diabetes data."""
    from sklearn.datasets import load_diabetes  # optional dependency of this experiment only

    data = load_diabetes(scaled=False)
    X, y = np.asarray(data.data, np.float64), np.asarray(data.target, np.float64)
    perm = np.random.default_rng(seed).permutation(len(X))
    n_train = int(round(0.7 * len(X)))
    tr, te = perm[:n_train], perm[n_train:]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    ym, ys = y[tr].mean(), y[tr].std()
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return (f32((X[tr] - mu) / sd), f32((y[tr] - ym) / ys), f32((X[te] - mu) / sd), f32((y[te] - ym) / ys),
            list(data.feature_names))


def train(key, X, y, steps, lr=3e-4, weight_decay=0.1):
    """Returns (model, params, losses): full-batch AdamW on mean squared error, one jitted lax.scan."""
    model = MLP()
    params = model.init(key, X[:1])
    opt = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=weight_decay)

    def loss(p):
        return jnp.mean((model.apply(p, X) - y) ** 2)

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            value, g = jax.value_and_grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), value

        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return p, losses

    params, losses = run(params)
    return model, params, np.asarray(losses)


def layers(params):
    """Returns [(W (in, out), b)] of the Dense layers in order."""
    p = params["params"]
    return [(p[f"Dense_{i}"]["kernel"], p[f"Dense_{i}"]["bias"]) for i in range(len(p))]


def split_model(params):
    """Returns (body, head): x -> last hidden activations, h -> output, on the given weights."""
    ws = layers(params)

    def body(x):
        for W, b in ws[:-1]:
            x = jax.nn.relu(x @ W + b)
        return x

    def head(h):
        W, b = ws[-1]
        return (h @ W + b)[:, 0]

    return body, head


def normalised_mean(a):
    """Returns the tutorial's per-feature summary: mean over examples, divided by the sum of |means|."""
    m = np.asarray(a, np.float64).mean(0)
    return m / np.abs(m).sum()


def timed(fn):
    """Returns (result, first-call seconds incl. compilation, second-call seconds)."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return out, first, time.perf_counter() - t


def captum_attributions(params, X, n_steps, last_hidden):
    """Returns {method: Captum's attributions (numpy)} on a torch copy of the MLP, or None without captum."""
    try:
        import torch
        from captum import attr as ca
    except ImportError:
        return None
    mods = []
    for i, (W, b) in enumerate(layers(params)):
        lin = torch.nn.Linear(*W.shape)
        with torch.no_grad():  # torch stores W as (out, in)
            lin.weight.copy_(torch.from_numpy(np.asarray(W).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(b).copy()))
        mods.append(lin)
        if i < len(HIDDEN):
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).eval()
    xt = torch.from_numpy(np.array(X))  # a writable copy
    out = {}
    t = time.perf_counter()
    out["integrated_gradients"] = ca.IntegratedGradients(net).attribute(xt, target=0, n_steps=n_steps,
                                                                         method="gausslegendre")
    out["deeplift"] = ca.DeepLift(net).attribute(xt, target=0)
    out["saliency"] = ca.Saliency(net).attribute(xt, target=0, abs=False)
    out["gradient_x_input"] = ca.InputXGradient(net).attribute(xt, target=0)
    out["feature_ablation"] = ca.FeatureAblation(net).attribute(xt, target=0)
    out["layer_conductance"] = ca.LayerConductance(net, net[2 * len(HIDDEN) - 1]).attribute(
        xt, target=0, n_steps=last_hidden, method="gausslegendre")
    seconds = time.perf_counter() - t
    return {k: v.detach().numpy() for k, v in out.items()}, seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for results.csv, summary.json and figures")
    ap.add_argument("--quick", action="store_true", help="small run (about a minute on 2 CPU cores)")
    ap.add_argument("--smoke", action="store_true", help="smallest run, for the test suite (implies --quick)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick or args.smoke
    if args.smoke:
        steps, n_test, nt_samples, eg_samples, sv_samples, n_refs, eig_steps = 150, 32, 4, 16, 4, 8, 8
    elif quick:
        steps, n_test, nt_samples, eg_samples, sv_samples, n_refs, eig_steps = 300, None, 8, 32, 10, 32, 16
    else:
        steps, n_test, nt_samples, eg_samples, sv_samples, n_refs, eig_steps = 500, None, 16, 128, 50, None, 32
    n_steps = 50  # IG and conductance: Captum's default, so the two agree step for step

    key = jax.random.key(args.seed)
    k_model, k_nt, k_eg, k_sv = jax.random.split(key, 4)
    Xtr, ytr, Xte, yte, names = load(args.seed)
    Xte, yte = (Xte, yte) if n_test is None else (Xte[:n_test], yte[:n_test])
    model, params, losses = train(k_model, Xtr, ytr, steps)
    f = jax.tree_util.Partial(model.apply, params)
    rmse = float(jnp.sqrt(jnp.mean((f(Xte) - yte) ** 2)))
    # the yardstick: ordinary least squares on the same split (small data; an MLP barely beats it)
    design = lambda X: np.c_[np.asarray(X, np.float64), np.ones(len(X))]
    coef = np.linalg.lstsq(design(Xtr), np.asarray(ytr, np.float64), rcond=None)[0]
    rmse_linear = float(np.sqrt(np.mean((design(Xte) @ coef - np.asarray(yte)) ** 2)))
    t_train = time.perf_counter() - t0
    D = Xte.shape[1]
    refs = Xtr if n_refs is None else Xtr[:n_refs]  # training rows (already shuffled by the split)

    f_x = np.asarray(f(Xte), np.float64)
    f_0 = float(f(jnp.zeros((1, D), jnp.float32))[0])
    f_refs = float(np.mean(np.asarray(f(refs))))  # E_b f(b) over the references used

    nt_ig = jaxig.noise_tunnel(functools.partial(jaxig.integrated_gradients, n_steps=n_steps // 2,
                                                 completeness_rtol=None),
                               n_samples=nt_samples)
    # name: (call returning (attr, info), completeness reference: f(0), mean f(refs) or none, evaluation unit)
    methods = {
        # completeness_rtol=None: the gap is measured and reported below instead of warned about
        "integrated_gradients": (lambda: jaxig.integrated_gradients(f, Xte, n_steps=n_steps, return_info=True,
                                                                    completeness_rtol=None), "zero", "gradients"),
        # the MLP is piecewise linear, so IG can also be computed exactly (one gradient per linear piece)
        "exact_integrated_gradients": (lambda: jaxig.exact_integrated_gradients(f, Xte, return_info=True), "zero",
                                       "gradients"),
        "smoothgrad_ig": (lambda: nt_ig(f, Xte, key=k_nt, return_info=True), "zero", "gradients"),
        "deeplift": (lambda: jaxig.deeplift(f, Xte, return_info=True), "zero", "modified backward passes"),
        "expected_gradients": (lambda: jaxig.expected_gradients(f, Xte, refs, key=k_eg, n_samples=eg_samples,
                                                                return_info=True), "refs", "gradients"),
        "expected_integrated_gradients": (lambda: jaxig.expected_integrated_gradients(
            f, Xte, refs, n_steps=eig_steps, return_info=True), "refs", "gradients"),
        "feature_ablation": (lambda: jaxig.feature_ablation(f, Xte, return_info=True), "zero", "forward passes"),
        "shapley_value_sampling": (lambda: jaxig.shapley_value_sampling(f, Xte, key=k_sv, n_samples=sv_samples,
                                                                        return_info=True), "zero", "forward passes"),
        "saliency": (lambda: jaxig.saliency(f, Xte, absolute=False, return_info=True), None, "gradients"),
        "gradient_x_input": (lambda: jaxig.gradient_x_input(f, Xte, return_info=True), "zero", "gradients"),
        "occlusion": (lambda: jaxig.occlusion(f, Xte, window=(1,), return_info=True), "zero", "forward passes"),
    }
    attrs, summary_methods = {}, {}
    scale = float(np.mean(np.abs(f_x - f_0)))
    for name, (call, ref_name, unit) in methods.items():
        ref = {"zero": f_0, "refs": f_refs, None: None}[ref_name]
        (a, info), first, second = timed(call)
        a = np.asarray(a, np.float64)
        attrs[name] = a
        n_evals = info.n_evals / len(Xte) if name == "exact_integrated_gradients" else info.n_evals  # a total
        entry = {"seconds_first_call": first, "seconds": second, "evaluations_per_example": n_evals,
                 "evaluation_unit": unit}
        if ref is None:
            entry["completeness"] = "does not apply (a gradient, not a decomposition of f(x) - f(x'))"
        else:
            gap = a.sum(1) - (f_x - ref)
            entry.update(completeness_max_abs_gap=float(np.max(np.abs(gap))),
                         completeness_mean_abs_gap=float(np.mean(np.abs(gap))),
                         completeness_max_rel_gap=float(np.max(np.abs(gap)) / np.mean(np.abs(f_x - ref))),
                         reference="f(0)" if ref_name == "zero" else "mean f over the references")
        summary_methods[name] = entry
    W1 = np.asarray(layers(params)[0][0], np.float64)  # (D, hidden)
    weights = np.abs(W1).mean(1)
    summary_methods["first_layer_weights"] = {"note": "mean |W1| over hidden units per feature; no attribution"}

    body, head = split_model(params)
    np.testing.assert_allclose(np.asarray(head(body(Xte))), f_x, rtol=1e-5, atol=1e-5)
    (cond, cinfo), first, second = timed(lambda: jaxig.layer_conductance(body, head, Xte, n_steps=n_steps,
                                                                          return_info=True))
    cond_st = np.asarray(jaxig.layer_conductance(body, head, Xte, n_steps=n_steps, stieltjes=True), np.float64)
    cond = np.asarray(cond, np.float64)
    gap = cond.sum(1) - (f_x - f_0)
    summary_methods["layer_conductance"] = {
        "seconds_first_call": first, "seconds": second, "evaluations_per_example": cinfo.n_evals,
        "evaluation_unit": "jvp + vjp pairs", "completeness_max_abs_gap": float(np.max(np.abs(gap))),
        "completeness_max_rel_gap": float(np.max(np.abs(gap)) / scale), "reference": "f(0)",
    }

    def long(method, labels, values, source):
        return [(method, n, v, source) for n, v in zip(labels, values, strict=True)]

    rows = []
    for name, a in attrs.items():
        rows += long(name, names, normalised_mean(a), "jaxig")
    rows += long("first_layer_weights", names, weights / np.abs(weights).sum(), "jaxig")
    neurons = [f"neuron_{j}" for j in range(cond.shape[1])]
    rows += long("layer_conductance", neurons, normalised_mean(cond), "jaxig")
    rows += long("layer_conductance_stieltjes", neurons, normalised_mean(cond_st), "jaxig")

    captum = captum_attributions(params, Xte, n_steps, n_steps)
    max_diff = {}
    if captum is not None:
        theirs, _ = captum
        ours = dict(attrs, layer_conductance=cond_st)  # Captum's LayerConductance is the Stieltjes sum
        for name, c in theirs.items():
            c = np.asarray(c, np.float64)
            max_diff[name] = float(np.max(np.abs(ours[name] - c)) / np.max(np.abs(c)))
            label = "layer_conductance_stieltjes" if name == "layer_conductance" else name
            rows += long(label, neurons if name == "layer_conductance" else names, normalised_mean(c), "captum")
        for name, d in max_diff.items():
            summary_methods[name]["captum_max_rel_diff"] = d

    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "feature", "value", "source"])
        w.writerows((m, n, f"{v:.8g}", s) for m, n, v, s in rows)

    # ---- figures
    shown = list(attrs) + ["first_layer_weights"]
    values = {m: normalised_mean(attrs[m]) for m in attrs}
    values["first_layer_weights"] = weights / np.abs(weights).sum()
    width = 0.8 / len(shown)
    cmap = plt.get_cmap("tab20")
    # signed means can cancel across examples (the tutorial's caveat), so the lower panel shows mean |attr|
    magnitudes = {m: normalised_mean(np.abs(attrs[m])) for m in attrs}
    magnitudes["first_layer_weights"] = values["first_layer_weights"]
    fig, axes = plt.subplots(2, 1, figsize=(17, 11), sharex=True)
    idx = np.arange(D)
    for ax, vals, label in ((axes[0], values, "mean attribution / sum |means|"),
                            (axes[1], magnitudes, "mean |attribution| / sum of those")):
        for i, m in enumerate(shown):
            ax.bar(idx + (i - (len(shown) - 1) / 2) * width, vals[m], width, label=m,
                   color="grey" if m == "first_layer_weights" else cmap(i))
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(label)
    axes[1].set_xticks(idx)
    axes[1].set_xticklabels(names)
    axes[0].set_title(f"diabetes MLP {HIDDEN}: feature importance by method (test set, {len(Xte)} examples, "
                      "zero baseline = training mean); top: signed, as Captum's tutorial; bottom: magnitudes")
    axes[0].legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "methods.png", dpi=110)
    plt.close(fig)

    w_last = np.asarray(layers(params)[-1][0][:, 0], np.float64)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    j = np.arange(cond.shape[1])
    ax.bar(j - 0.2, normalised_mean(cond), 0.4, label="layer conductance (mean over test set)", color="tab:red")
    ax.bar(j + 0.2, w_last / np.abs(w_last).sum(), 0.4, label="last-layer weight", color="tab:green")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(j)
    ax.set_xticklabels(neurons, rotation=30)
    ax.set(ylabel="normalised by sum of |.|", title="neurons of the last hidden layer: conductance and weights")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "conductance.png", dpi=110)
    plt.close(fig)

    runtime = time.perf_counter() - t0
    summary = {
        "quick": quick, "smoke": args.smoke, "seed": args.seed, "n_train": int(len(Xtr)), "n_test": int(len(Xte)),
        "train_steps": steps, "hidden": list(HIDDEN), "test_rmse_standardised": rmse,
        "test_rmse_linear_regression": rmse_linear,
        "final_train_loss": float(losses[-1]), "n_steps": n_steps, "n_references": int(len(refs)),
        "mean_abs_output_change": scale, "methods": summary_methods,
        "normalised_mean_abs": {m: dict(zip(names, map(float, v), strict=True)) for m, v in magnitudes.items()},
        "captum_max_rel_diff": max_diff or None,
        "captum_seconds": captum[1] if captum is not None else None, "train_seconds": t_train,
        "runtime_seconds": runtime, "jax": jax.__version__, "backend": jax.default_backend(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    print(f"diabetes MLP {HIDDEN}: {steps} AdamW steps, test RMSE {rmse:.3f} (standardised target; least "
          f"squares {rmse_linear:.3f}), "
          f"{len(Xte)} test examples, {len(refs)} references")
    print(f"\n{'method':<32}{'max|gap|/mean|df|':>19}{'evals/example':>15}  {'unit':<26}{'s (1st)':>9}{'s':>9}")
    for name, e in summary_methods.items():
        if "seconds" not in e:
            continue
        g = f"{e['completeness_max_rel_gap']:.3g}" if "completeness_max_rel_gap" in e else "n/a"
        print(f"{name:<32}{g:>19}{e['evaluations_per_example']:>15.4g}  {e['evaluation_unit']:<26}"
              f"{e['seconds_first_call']:>9.3f}{e['seconds']:>9.4f}")
    if max_diff:
        print(f"\nmax relative difference vs Captum ({captum[1]:.2f} s for Captum's six):")
        for name, d in max_diff.items():
            extra = " (jaxig stieltjes=True)" if name == "layer_conductance" else ""
            print(f"  {name:<24} {d:.2e}{extra}")
    else:
        print("\ntorch/captum not importable: Captum column skipped")
    print(f"\nwrote {out / 'results.csv'}, {out / 'summary.json'}, {out / 'methods.png'}, "
          f"{out / 'conductance.png'} in {runtime:.1f} s")
    return summary


if __name__ == "__main__":
    main()
