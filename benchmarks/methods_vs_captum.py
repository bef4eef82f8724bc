"""Times each jaxig attribution method against its Captum counterpart on the benchmark workloads.

For every (method, workload) pair below, on the same weights and inputs (``_workloads.py``):

- ``saliency`` / ``Saliency`` (absolute value), every workload;
- ``gradient_x_input`` / ``InputXGradient``, every workload;
- ``deeplift`` / ``DeepLift`` (it hooks the models' nn activation modules), MLPs and cnn32 (Captum has
  no DeepLift rule for ``nn.LSTM``: n/a);
- ``noise_tunnel(integrated_gradients)`` / ``NoiseTunnel(IntegratedGradients)``, smoothgrad, Gauss-Legendre,
  every workload;
- ``expected_gradients`` / ``GradientShap`` (a fixed reference batch), every workload;
- ``feature_ablation`` / ``FeatureAblation``: one group per feature (MLPs), 8x8 patches of all channels
  (cnn32, 16 groups), one group per time step (lstm_ts, 5 groups);
- ``occlusion`` / ``Occlusion``, cnn32 only: window 3x8x8, stride 4 (49 windows);
- ``shapley_value_sampling`` / ``ShapleyValueSampling``, MLPs only, one group per feature, 5 orderings;
- ``layer_conductance`` (``stieltjes=True``) / ``LayerConductance`` at the first hidden ReLU, MLPs only.

Each side runs in its own child process (one per (method, workload, framework)): it builds the
workload, calls the method once (jaxig: the first call, i.e. tracing and compilation, is reported), then
times ``repeats`` more calls. Each side is run twice, alternating torch, jax, torch, jax, and the run
with the lower median is kept, so a burst of load from other processes hits one run, not the
comparison. jaxig is called as a user calls it (no ``jit`` of the harness around it).

Random draws are injected, the same on both sides, so every method's results are compared: the
noise of ``NoiseTunnel`` (``torch.normal`` replaced, jaxig's ``noise=``), the reference rows, alphas
and noise of ``GradientShap`` (``np.random.choice``/``np.random.uniform``/``torch.normal`` replaced,
jaxig's ``draws=``), the orderings of ``ShapleyValueSampling`` (its ``permutation_generator``,
jaxig's ``permutations=``). Serving precomputed draws makes both sides skip drawing; that cost is tiny.
The reported difference is ``max|jaxig - Captum| / max|Captum|``.

Captum's perturbation methods get their faster ``perturbations_per_eval`` here (measured; see
``CAPTUM_FAST_PPE``): all perturbations in one forward pass for ``FeatureAblation`` and ``Occlusion``
(1.4-8x faster than its default 1 on mlp_linear96 and cnn32, equal on lstm_ts), its default 1 for
``ShapleyValueSampling`` (all at once was 1.4x slower on mlp_linear96). ``--captum-ppe 1`` or ``all``
overrides. jaxig uses its defaults.

Usage: ``python benchmarks/methods_vs_captum.py [--quick] [--methods a,b] [--workloads a,b] [--out DIR]``.
``--quick``: mlp_california and cnn32 only, 3 timed calls per run. Needs torch and captum.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as err:  # pragma: no cover - depends on the environment
    sys.exit(f"benchmarks/methods_vs_captum.py needs torch and captum ({err}); "
             "pip install 'jaxig[compare]'")

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # jaxig from the checkout unless installed
from _workloads import WORKLOADS, build  # noqa: E402

import jaxig  # noqa: E402

METHODS = ("saliency", "gradient_x_input", "deeplift", "noise_tunnel_ig", "expected_gradients",
           "feature_ablation", "occlusion", "shapley_value_sampling", "layer_conductance")
CAPTUM_NAME = {
    "saliency": "Saliency", "gradient_x_input": "InputXGradient", "deeplift": "DeepLift",
    "noise_tunnel_ig": "NoiseTunnel(IntegratedGradients)", "expected_gradients": "GradientShap",
    "feature_ablation": "FeatureAblation", "occlusion": "Occlusion",
    "shapley_value_sampling": "ShapleyValueSampling", "layer_conductance": "LayerConductance",
}
MLPS = ("mlp_california", "mlp_linear96")
# Where a pair does not exist, why.
NOT_APPLICABLE = {
    ("deeplift", "lstm_ts"): "Captum's DeepLift has no rule for nn.LSTM",
    **{("occlusion", w): "occlusion is timed on images (cnn32) only" for w in (*MLPS, "lstm_ts")},
    **{("shapley_value_sampling", w): "Shapley sampling is timed on the MLPs only"
       for w in ("lstm_ts", "cnn32")},
    **{("layer_conductance", w): "layer conductance is timed at the MLPs' first hidden layer only"
       for w in ("lstm_ts", "cnn32")},
}
GOALS = {"mlp_california": 10.0, "mlp_linear96": 10.0, "lstm_ts": 2.0, "cnn32": 1.5}  # Captum/jaxig

# Settings shared by both sides.
NT_SAMPLES, NT_STEPS, NT_STDEV = 4, 10, 0.1
EG_SAMPLES, EG_REFS = 8, 16
SVS_SAMPLES = 5
OCC_WINDOW, OCC_STRIDES = (3, 8, 8), (3, 4, 4)  # (32 - 8) / 4 + 1 = 7 positions per axis: 49 windows
DRAW_SEED = 1234
# Captum's faster perturbations_per_eval per method ("all": every perturbation in one forward pass).
CAPTUM_FAST_PPE = {"feature_ablation": "all", "occlusion": "all", "shapley_value_sampling": 1}


# --- what both sides share --------------------------------------------------------------------

def feature_mask(method, w):
    """Returns the group ids per example (jaxig's layout), or None for one group per scalar feature."""
    if w.name == "cnn32":  # 8x8 patches of all three channels: 16 groups
        rows = np.arange(32)[:, None] // 8
        cols = np.arange(32)[None, :] // 8
        return np.broadcast_to((rows * 4 + cols)[None], (3, 32, 32)).astype(np.int32)
    if w.name == "lstm_ts":  # one group per time step
        return np.arange(w.x.shape[1], dtype=np.int32)[:, None]
    return None


def shared_draws(method, w):
    """Returns the random numbers both sides use (NumPy, from a fixed seed), a dict."""
    rng = np.random.default_rng(DRAW_SEED)
    batch, shape = w.x.shape[0], w.x.shape[1:]
    if method == "noise_tunnel_ig":
        return {"eps": (NT_STDEV * rng.standard_normal((NT_SAMPLES, batch) + shape)).astype(np.float32)}
    if method == "expected_gradients":
        return {"refs": rng.standard_normal((EG_REFS,) + shape).astype(np.float32),
                "index": rng.integers(0, EG_REFS, (batch, EG_SAMPLES)),
                "alpha": rng.uniform(size=(batch, EG_SAMPLES)).astype(np.float32)}
    if method == "shapley_value_sampling":
        n_features = int(np.prod(shape))
        return {"perms": np.stack([rng.permutation(n_features) for _ in range(SVS_SAMPLES)])}
    return {}


def _mlp_layers(w):
    """The MLP's (W.T, b) pairs in JAX, copied from the torch model as ``_workloads`` does."""
    return [(jnp.asarray(m.weight.numpy().T), jnp.asarray(m.bias.numpy()))
            for m in w.torch_model if isinstance(m, nn.Linear)]


# --- the two sides ------------------------------------------------------------------------------

class _Patched:
    """Replaces attributes (module, name) -> value for the duration of a ``with`` block."""

    def __init__(self, *triples):
        self.triples, self.saved = triples, []

    def __enter__(self):
        self.saved = [(obj, name, getattr(obj, name)) for obj, name, _ in self.triples]
        for obj, name, value in self.triples:
            setattr(obj, name, value)

    def __exit__(self, *exc):
        for obj, name, value in self.saved:
            setattr(obj, name, value)


def captum_runner(method, w, draws, *, ppe="fast"):
    """Returns a no-argument function computing Captum's attributions as a NumPy array."""
    import captum.attr as ca

    model, t = w.torch_model, w.target
    x = torch.from_numpy(w.x)
    zeros = torch.zeros_like(x)

    def ppe_for(n):
        chosen = CAPTUM_FAST_PPE.get(method, "all") if ppe == "fast" else ppe
        return n if chosen == "all" else int(chosen)

    if method == "saliency":
        sal = ca.Saliency(model)
        return lambda: sal.attribute(x, target=t).numpy()
    if method == "gradient_x_input":
        ixg = ca.InputXGradient(model)
        return lambda: ixg.attribute(x, target=t).detach().numpy()
    if method == "deeplift":
        dl = ca.DeepLift(model)
        return lambda: dl.attribute(x, baselines=zeros, target=t).detach().numpy()
    if method == "noise_tunnel_ig":
        nt = ca.NoiseTunnel(ca.IntegratedGradients(model))
        eps = draws["eps"]
        # Captum adds noise to x.repeat_interleave(n): row b * n + s is (example b, sample s).
        laid_out = torch.from_numpy(np.ascontiguousarray(np.swapaxes(eps, 0, 1)).reshape(
            (w.x.shape[0] * NT_SAMPLES,) + w.x.shape[1:]))

        def fake_normal(mean, std, *args, **kwargs):
            assert tuple(std.shape) == tuple(laid_out.shape), (std.shape, laid_out.shape)
            return laid_out

        def run():
            with _Patched((torch, "normal", fake_normal)):
                out = nt.attribute(x, nt_type="smoothgrad", nt_samples=NT_SAMPLES, stdevs=NT_STDEV,
                                   target=t, n_steps=NT_STEPS, method="gausslegendre")
            return out.detach().numpy()

        return run
    if method == "expected_gradients":
        gs = ca.GradientShap(model)
        refs = torch.from_numpy(draws["refs"])
        index, alpha = draws["index"], draws["alpha"]

        def choice(n_refs, size):
            assert size == index.size and n_refs == EG_REFS
            return index.reshape(-1)

        def uniform(low, high, size):
            assert size == alpha.size
            return alpha.reshape(-1).astype(np.float64)

        def normal(mean, std, *args, **kwargs):  # stdevs=0: the noise is zero
            return torch.zeros(std.shape, dtype=x.dtype)

        def run():
            with _Patched((np.random, "choice", choice), (np.random, "uniform", uniform),
                          (torch, "normal", normal)):
                out = gs.attribute(x, refs, n_samples=EG_SAMPLES, stdevs=0.0, target=t)
            return out.detach().numpy()

        return run
    if method == "feature_ablation":
        fa = ca.FeatureAblation(model)
        mask = feature_mask(method, w)
        if mask is None:
            n_groups, kw = int(np.prod(w.x.shape[1:])), {}
        else:
            n_groups, kw = len(np.unique(mask)), {"feature_mask": torch.from_numpy(mask[None].astype(np.int64))}
        return lambda: fa.attribute(x, baselines=0.0, target=t, perturbations_per_eval=ppe_for(n_groups),
                                    **kw).numpy()
    if method == "occlusion":
        occ = ca.Occlusion(model)
        positions = zip(w.x.shape[1:], OCC_WINDOW, OCC_STRIDES, strict=True)
        n_windows = int(np.prod([(d - k) // s + 1 for d, k, s in positions]))
        return lambda: occ.attribute(x, sliding_window_shapes=OCC_WINDOW, strides=OCC_STRIDES, baselines=0.0,
                                     target=t, perturbations_per_eval=ppe_for(n_windows)).numpy()
    if method == "shapley_value_sampling":
        svs = ca.ShapleyValueSampling(model)
        perms = draws["perms"]
        svs.permutation_generator = lambda n_features, n_samples: iter(perms.tolist())
        return lambda: svs.attribute(x, baselines=0.0, target=t, n_samples=SVS_SAMPLES,
                                     perturbations_per_eval=ppe_for(perms.shape[1])).numpy()
    if method == "layer_conductance":
        lc = ca.LayerConductance(model, model[1])  # the first hidden layer's ReLU output
        return lambda: lc.attribute(x, baselines=zeros, target=t, n_steps=w.n_steps,
                                    method="gausslegendre").detach().numpy()
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def jaxig_runner(method, w, draws):
    """Returns a no-argument function computing jaxig's attributions as a NumPy array."""
    f, t = w.jax_fn, w.target
    x = jnp.asarray(w.x)

    def done(out):
        return np.asarray(jax.block_until_ready(out))

    if method == "saliency":
        return lambda: done(jaxig.saliency(f, x, target=t))
    if method == "gradient_x_input":
        return lambda: done(jaxig.gradient_x_input(f, x, target=t))
    if method == "deeplift":
        return lambda: done(jaxig.deeplift(f, x, target=t))
    if method == "noise_tunnel_ig":
        inner = functools.partial(jaxig.integrated_gradients, n_steps=NT_STEPS, rule=jaxig.GaussLegendre())
        tunnel = jaxig.noise_tunnel(inner, n_samples=NT_SAMPLES, stdev=NT_STDEV)
        eps = jnp.asarray(draws["eps"])
        return lambda: done(tunnel(f, x, target=t, noise=eps))
    if method == "expected_gradients":
        refs = jnp.asarray(draws["refs"])
        eg_draws = jaxig.ExpectedGradientsDraws(index=jnp.asarray(draws["index"], jnp.int32),
                                                alpha=jnp.asarray(draws["alpha"]))
        return lambda: done(jaxig.expected_gradients(f, x, refs, target=t, draws=eg_draws))
    if method == "feature_ablation":
        mask = feature_mask(method, w)
        return lambda: done(jaxig.feature_ablation(f, x, target=t, feature_mask=mask))
    if method == "occlusion":
        return lambda: done(jaxig.occlusion(f, x, target=t, window=OCC_WINDOW, strides=OCC_STRIDES))
    if method == "shapley_value_sampling":
        perms = draws["perms"]
        return lambda: done(jaxig.shapley_value_sampling(f, x, target=t, permutations=perms))
    if method == "layer_conductance":
        (w0, b0), *rest = _mlp_layers(w)

        def body(z):
            return jax.nn.relu(z @ w0 + b0)

        def head(h):
            for i, (wi, bi) in enumerate(rest):
                h = h @ wi + bi
                if i < len(rest) - 1:
                    h = jax.nn.relu(h)
            return h

        return lambda: done(jaxig.layer_conductance(body, head, x, target=t, n_steps=w.n_steps,
                                                    rule=jaxig.GaussLegendre(), stieltjes=True))
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


# --- measurement --------------------------------------------------------------------------------

def measure(spec):
    """Builds the workload, calls the method once (first call), then times ``repeats`` calls.

    ``spec``: method, workload, framework ("torch"/"jax"), repeats, and optionally rows (cut the
    batch to its first rows), threads, ppe, result (a .npy path for the attributions). Returns a dict
    of times and, under "result", the attributions of the first call.
    """
    torch.set_num_threads(int(spec.get("threads", 2)))
    w = build(spec["workload"])
    if spec.get("rows"):
        w.x = w.x[: spec["rows"]]
    draws = shared_draws(spec["method"], w)
    run = (captum_runner(spec["method"], w, draws, ppe=spec.get("ppe", "fast")) if spec["framework"] == "torch"
           else jaxig_runner(spec["method"], w, draws))
    t0 = time.perf_counter()
    result = run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(int(spec["repeats"])):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"first_call_s": first, "times_ms": [1e3 * s for s in times],
            "median_ms": 1e3 * statistics.median(times), "best_ms": 1e3 * min(times), "result": result}


def _child(spec):
    out = measure(spec)
    np.save(spec["result"], out.pop("result"))
    print(json.dumps(out))


def run_child(spec, timeout=1800):
    """Runs ``measure(spec)`` in a fresh Python process; returns its dict (result loaded) or raises."""
    proc = subprocess.run([sys.executable, __file__, "--_child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['framework']} {spec['method']} {spec['workload']} failed:\n"
                           f"{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["result"] = np.load(spec["result"])
    return out


def max_rel_diff(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_pair(method, workload, repeats, *, runs=2, ppe="fast", rows=None, in_process=False, tmpdir=None):
    """Times one (method, workload) pair on both sides; returns a row dict for the table."""
    row = {"method": method, "workload": workload, "captum": CAPTUM_NAME[method], "load_before": _load()}
    reason = NOT_APPLICABLE.get((method, workload))
    if reason:
        row["n/a"] = reason
        return row
    results = {"torch": [], "jax": []}
    for i in range(runs):
        for fw in ("torch", "jax"):  # alternating: torch, jax, torch, jax
            spec = {"method": method, "workload": workload, "framework": fw, "repeats": repeats, "ppe": ppe,
                    "rows": rows, "threads": 2,
                    "result": str(Path(tmpdir or tempfile.gettempdir()) / f"{method}-{workload}-{fw}-{i}.npy")}
            results[fw].append(measure(spec) if in_process else run_child(spec))
    best = {fw: min(rs, key=lambda r: r["median_ms"]) for fw, rs in results.items()}
    for fw, name in (("torch", "captum"), ("jax", "jaxig")):
        row[f"{name}_ms"] = best[fw]["median_ms"]
        row[f"{name}_best_ms"] = best[fw]["best_ms"]
        row[f"{name}_run_medians_ms"] = [r["median_ms"] for r in results[fw]]
        row[f"{name}_first_call_s"] = best[fw]["first_call_s"]
    row["jaxig_first_call_s_runs"] = [r["first_call_s"] for r in results["jax"]]
    row["ratio"] = row["captum_ms"] / row["jaxig_ms"]
    row["ratio_best"] = row["captum_best_ms"] / row["jaxig_best_ms"]
    row["rel_diff"] = max_rel_diff(best["jax"]["result"], best["torch"]["result"])
    row["goal"] = GOALS[workload]
    row["goal_met"] = row["ratio"] >= row["goal"]
    row["load_after"] = _load()
    return row


# --- reporting ----------------------------------------------------------------------------------

def markdown(rows, env):
    lines = [
        f"Machine: {env['machine']}; load before: {env['load_before']}; after: {env['load_after']}",
        f"Versions: jax {env['jax']}, jaxlib {env['jaxlib']}, torch {env['torch']}, captum {env['captum']}, "
        f"python {env['python']}; {env['date']}; timed calls per run {env['repeats']}, runs per side "
        f"{env['runs']}; Captum perturbations_per_eval {env['ppe']}",
        "",
        "Median (best) ms per call after the first call, each side in its own process, the better of "
        f"{env['runs']} alternating runs; ratio Captum/jaxig of medians (of bests); goal: MLPs >= 10x, "
        "lstm_ts >= 2x, cnn32 >= 1.5x (of medians); rel diff max|jaxig - Captum| / max|Captum| on the "
        "same weights and injected draws; load: 1-minute load average before the pair.",
        "",
        "| method | workload | Captum | Captum ms | jaxig ms | Captum/jaxig | goal | jaxig first call s | "
        "rel diff | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "n/a" in r:
            lines.append(f"| {r['method']} | {r['workload']} | {r['captum']} | n/a | n/a | n/a | | | | "
                         f"{r['n/a']} |")
            continue
        goal = f"{r['goal']:g}x {'met' if r['goal_met'] else '**missed**'}"
        lines.append(
            f"| {r['method']} | {r['workload']} | {r['captum']} | {r['captum_ms']:.1f} ({r['captum_best_ms']:.1f}) | "
            f"{r['jaxig_ms']:.1f} ({r['jaxig_best_ms']:.1f}) | {r['ratio']:.2f}x ({r['ratio_best']:.2f}x) | {goal} | "
            f"{r['jaxig_first_call_s']:.2f} | {r['rel_diff']:.1e} | {r['load_before'].split()[0]} |")
    return "\n".join(lines)


def environment():
    import platform

    import captum
    import jaxlib

    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads 2",
            "jax": jax.__version__, "jaxlib": jaxlib.__version__, "torch": torch.__version__,
            "captum": captum.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": _load()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="mlp_california and cnn32 only, 3 timed calls per run")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--workloads", default=None, help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per run (default 5, quick 3)")
    p.add_argument("--runs", type=int, default=2, help="runs per side, alternating (default 2)")
    p.add_argument("--captum-ppe", default="fast",
                   help="Captum's perturbations_per_eval: 'fast' (default: CAPTUM_FAST_PPE), 'all' or an int "
                        "(Captum's default is 1)")
    p.add_argument("--out", type=Path, default=None, help="write methods_vs_captum.json and .md here")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child is not None:
        return _child(json.loads(args._child))

    methods = [m for m in args.methods.split(",") if m]
    workloads = ([n for n in args.workloads.split(",") if n] if args.workloads
                 else ["mlp_california", "cnn32"] if args.quick else list(GOALS))
    # lstm_flax and the transformer (vs_captum.py's) have no per-method set-up here
    for bad, known, what in ((set(methods) - set(METHODS), METHODS, "methods"),
                             (set(workloads) - set(GOALS), list(GOALS), "workloads")):
        if bad:
            p.error(f"unknown {what} {sorted(bad)}; choose from {list(known)}")
    env = environment()
    env.update(repeats=args.repeats or (3 if args.quick else 5), runs=args.runs, ppe=args.captum_ppe)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            for method in methods:
                print(f"{method} on {workload} (load {_load()}) ...", flush=True)
                rows.append(bench_pair(method, workload, env["repeats"], runs=args.runs, ppe=args.captum_ppe,
                                       tmpdir=tmp))
                print(json.dumps(rows[-1]), flush=True)
    env["load_after"] = _load()
    table = markdown(rows, env)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "methods_vs_captum.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
        (args.out / "methods_vs_captum.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
