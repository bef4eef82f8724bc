"""Times jaxig against Captum and a hand-written PyTorch loop on the same models, weights and inputs.

For each workload (see ``_workloads.py``) it runs

- Captum ``IntegratedGradients(model).attribute(..., method="gausslegendre")``;
- the plain PyTorch loop a user writes by hand: per alpha one forward pass and one
  ``torch.autograd.grad`` of the whole batch, weighted by the Gauss-Legendre weights;
- ``jaxig.integrated_gradients(f, x, target=..., n_steps=..., rule=GaussLegendre())`` exactly as a
  user calls it (no ``jit`` of the harness around it),

checks that the three agree, and prints the median time of each after a first call. Each method runs
in its own child process (torch and XLA never share one: XLA's worker threads slowed torch up to 10x
when interleaved in one process), ``--runs`` rounds alternating between the methods, keeping each
method's round with the lower median. It also prints jaxig's first-call (compile) time, whether
a second call with new values of the same shapes recompiles, the max relative disagreement
``max|a - b| / max|b|`` between jaxig and Captum and of each against the plain loop run in float64
(same weights and inputs: where the two float32 results disagree it shows which one rounds off),
the peak memory of each (a fresh subprocess per measurement, VmHWM minus VmRSS after a warm-up call;
the peak is reset through ``/proc/self/clear_refs``), for the MLPs the fraction of the machine's
float32 matmul peak (measured in the same run with a large ``jnp.dot``), and for ``lstm_ts`` the
peak memory of ``alpha_batch_size`` chunking at 50 and 1,000 steps. Layer workloads (the transformer)
compare ``layer_integrated_gradients`` with Captum's ``LayerIntegratedGradients``.

``--trust`` adds the *time to a trustworthy answer*: every example within 0.1% of its largest
attribution against a reference (exact IG for piecewise-linear models, else 1,024-node
Gauss-Legendre), Captum at the first step count of ``TRUST_LADDER`` that gets there (found by search,
which a Captum user cannot do in advance; only that one call is timed) against jaxig choosing its
method (exact IG, or adaptive IG at rtol 1e-3).

Usage: ``python benchmarks/vs_captum.py [--quick] [--workloads a,b] [--trust] [--out DIR]``.
Needs the ``[compare]`` extra (torch CPU, captum).
"""

from __future__ import annotations

import argparse
import copy
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
    from captum.attr import IntegratedGradients, LayerIntegratedGradients
except ImportError as err:  # pragma: no cover - depends on the environment
    sys.exit(
        f"benchmarks/vs_captum.py needs torch and captum ({err}); install the compare extra: "
        "pip install 'jaxig[compare]' (or: pip install torch --index-url "
        "https://download.pytorch.org/whl/cpu && pip install captum)"
    )

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # jaxig from the checkout unless installed
from _workloads import WORKLOADS, build  # noqa: E402

import jaxig  # noqa: E402

TOLERANCE = {"cnn32": 2e-3}  # convolutions round differently in XLA and oneDNN
# (vs Captum, vs the plain loop), on medians; the rest: 2x Captum, 1.5x the loop
GOALS = {"mlp_california": (10.0, 1.5), "mlp_linear96": (10.0, 1.5)}
DEFAULT_TOLERANCE = 1e-4
METHODS = ("captum", "loop", "jaxig")
TRUST_RTOL = 1e-3  # "a trustworthy answer": every example within 0.1% of its largest attribution
TRUST_LADDER = (8, 16, 32, 64, 128, 256, 512, 1024)  # Captum's Gauss-Legendre step counts searched


# --- the three implementations ------------------------------------------------------------------

def gl_table(n):
    t, v = np.polynomial.legendre.leggauss(n)
    return (t + 1.0) / 2.0, v / 2.0


def _torch_inputs(w, dtype=None):
    """Returns (x, baseline) as torch tensors: long token ids for a layer workload, else floats."""
    if w.layer:
        return torch.from_numpy(w.x).long(), torch.from_numpy(w.baseline).long()
    x = torch.from_numpy(w.x if dtype is None else w.x.astype(dtype))
    return x, torch.zeros_like(x)


def _loop(model, w, n, x, b):
    """The plain loop: per alpha one forward and one autograd.grad of the whole batch (at the layer)."""
    alphas, weights = gl_table(n)
    if w.layer:  # the straight line runs in the layer's space
        layer = getattr(model, w.layer)
        x, b, forward = layer(x), layer(b), model.rest
    else:
        forward = model
    total = torch.zeros_like(x)
    for a, wk in zip(alphas.tolist(), weights.tolist()):
        point = (b + a * (x - b)).requires_grad_(True)
        (grad,) = torch.autograd.grad(forward(point)[:, w.target].sum(), point)
        total += wk * grad
    return ((x - b) * total).numpy()


def make_runner(method, w, *, n_steps=None, alpha_batch_size=None):
    """Returns a function computing the attributions of workload ``w`` with ``method``.

    ``method``: "captum", "loop", "jaxig" (``n_steps``-node Gauss-Legendre on all three), or
    "jaxig_trust": jaxig's own choice for a 0.1% answer (exact IG for a piecewise-linear model,
    ``adaptive_integrated_gradients(rtol=TRUST_RTOL)`` otherwise). The jaxig runners take optional
    new input values (same shapes).
    """
    n = n_steps or w.n_steps
    if method == "captum":
        x, b = _torch_inputs(w)
        if w.layer:
            lig = LayerIntegratedGradients(w.torch_model, getattr(w.torch_model, w.layer))
            return lambda: lig.attribute(x, baselines=b, target=w.target, n_steps=n,
                                         method="gausslegendre").numpy()
        ig = IntegratedGradients(w.torch_model)
        return lambda: ig.attribute(x, baselines=b, target=w.target, n_steps=n,
                                    method="gausslegendre").numpy()
    if method == "loop":
        x, b = _torch_inputs(w)
        return lambda: _loop(w.torch_model, w, n, x, b)
    if method in ("jaxig", "jaxig_trust"):
        x0 = jnp.asarray(w.x)

        def run(values=x0):
            if w.layer and method == "jaxig":
                out = jaxig.layer_integrated_gradients(
                    w.jax_body, w.jax_fn, values, jnp.asarray(w.baseline), target=w.target, n_steps=n,
                    rule=jaxig.GaussLegendre(), alpha_batch_size=alpha_batch_size)
            elif method == "jaxig":
                out = jaxig.integrated_gradients(w.jax_fn, values, target=w.target, n_steps=n,
                                                 rule=jaxig.GaussLegendre(),
                                                 alpha_batch_size=alpha_batch_size)
            elif w.piecewise_linear:
                out = jaxig.exact_integrated_gradients(w.jax_fn, values, target=w.target)
            else:
                h, h0 = values, None
                if w.layer:  # adaptive IG at the layer: what layer IG integrates
                    h, h0 = w.jax_body(values), w.jax_body(jnp.asarray(w.baseline))
                out = jaxig.adaptive_integrated_gradients(w.jax_fn, h, h0, target=w.target, rtol=TRUST_RTOL)
            return np.asarray(jax.block_until_ready(out))

        return run
    raise ValueError(f"unknown method {method!r}; choose from {METHODS + ('jaxig_trust',)}")


def float64_reference(w, n_steps=None):
    """Returns the plain loop's attributions in float64 (model and inputs cast up).

    The weights and inputs are the float32 ones, so this is the same integral evaluated with
    float64 rounding: it tells which float32 implementation is off where two disagree.
    """
    model = copy.deepcopy(w.torch_model).double()
    x, b = _torch_inputs(w, np.float64)
    return _loop(model, w, n_steps or w.n_steps, x, b)


def rows_above(a, b, tol):
    """Returns the indices of examples where ``max|a - b|`` exceeds ``tol * max|b|`` (whole-batch scale)."""
    per_row = np.abs(a - b).reshape(a.shape[0], -1).max(1) / np.max(np.abs(b))
    return [int(i) for i in np.flatnonzero(per_row > tol)]


def trust_error(a, ref):
    """Returns the worst example's ``max_i |a_i - ref_i| / max_i |ref_i|`` (adaptive IG's criterion)."""
    err = np.abs(a - ref).reshape(a.shape[0], -1).max(1)
    scale = np.abs(ref).reshape(a.shape[0], -1).max(1)
    return float(np.max(err / np.maximum(scale, np.finfo(np.float32).tiny)))


# --- measurements -------------------------------------------------------------------------------

class CompileCounter:
    """Counts XLA backend compilations (jax.monitoring events) while it is active."""

    def __init__(self):
        self.count, self.seconds, self.active = 0, 0.0, False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            self.count += 1
            self.seconds += duration

    def __enter__(self):
        self.count, self.seconds, self.active = 0, 0.0, True
        return self

    def __exit__(self, *exc):
        self.active = False


def matmul_peak_gflops(n=2048, repeats=7):
    """Returns XLA's float32 matmul rate in GFLOP/s on an n x n product (best of repeats)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, a).block_until_ready()
    times = []
    for _ in range(repeats):  # interleaved, so load changes hit all methods alike
        t0 = time.perf_counter()
        dot(a, a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / min(times) / 1e9


def max_rel_diff(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _malloc_returns_memory():
    """Makes glibc give freed blocks back to the OS, so a second call's peak is seen in RSS.

    Without this the buffers of the warm-up call stay mapped and are reused, and the timed call
    adds little on top of RSS. Large blocks are then mmapped (fixed threshold 64 KiB) and unmapped
    on free; malloc_trim returns what is left in the heap.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return lambda: None
    libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: also turns off glibc's dynamic threshold
    return lambda: libc.malloc_trim(0)


def memory_child(spec):
    """In a fresh process: warm up once, free, reset the RSS peak, run once; prints the MiB above RSS."""
    import gc

    trim = _malloc_returns_memory()
    torch.set_num_threads(int(spec["threads"]))
    w = build(spec["workload"])
    run = make_runner(spec["method"], w, n_steps=spec["n_steps"],
                      alpha_batch_size=spec["alpha_batch_size"])
    run()  # compiles (jaxig) and warms allocators
    gc.collect()
    trim()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    run()
    print(json.dumps({"peak_mib": (_status_kib("VmHWM") - before) / 1024,
                      "hwm_mib": _status_kib("VmHWM") / 1024}))


def peak_memory(workload, method, *, n_steps=None, alpha_batch_size=None, threads=2):
    """Returns the extra peak RSS (MiB) of one call, measured in a subprocess, or None on failure."""
    spec = {"workload": workload, "method": method, "n_steps": n_steps,
            "alpha_batch_size": alpha_batch_size, "threads": threads}
    proc = subprocess.run([sys.executable, __file__, "--_memory", json.dumps(spec)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        print(f"  memory measurement {spec} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]


def _new_values(w):
    """Other inputs of the same shapes and dtype: a second call with them must not recompile."""
    if w.layer:
        return jnp.asarray(w.x[::-1])
    return jnp.asarray(w.x) + 0.25


def time_child(spec):
    """In a fresh process: first call, (jaxig) a recompile check, then ``repeats`` timed calls.

    Saves the first call's attributions to ``spec["result"]`` and prints a JSON line of times.
    """
    torch.set_num_threads(int(spec["threads"]))
    w = build(spec["workload"])
    run = make_runner(spec["method"], w, n_steps=spec.get("n_steps"))
    out = {}
    counter = CompileCounter() if spec["method"].startswith("jaxig") else None
    t0 = time.perf_counter()
    if counter is not None:
        with counter:
            result = run()
        out["compiles_first_call"], out["xla_compile_s"] = counter.count, counter.seconds
    else:
        result = run()
    out["first_call_s"] = time.perf_counter() - t0
    if counter is not None:
        other = _new_values(w)  # outside the count: jnp arithmetic compiles its own small programs
        with counter:
            run(other)
        out["recompiles_new_values"] = counter.count
    times = []
    for _ in range(int(spec["repeats"])):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    out.update(median_ms=1e3 * statistics.median(times), best_ms=1e3 * min(times),
               times_ms=[1e3 * t for t in times])
    np.save(spec["result"], result)
    print(json.dumps(out))


def ladder_child(spec):
    """In a fresh process: Captum at each step count of the ladder until the error reaches the goal.

    Prints a JSON line ``{"errors": {n: error}, "reached": n or None}`` (error: :func:`trust_error`
    against the reference saved at ``spec["reference"]``).
    """
    torch.set_num_threads(int(spec["threads"]))
    w = build(spec["workload"])
    ref = np.load(spec["reference"])
    errors, reached = {}, None
    for n in TRUST_LADDER:
        errors[n] = trust_error(make_runner("captum", w, n_steps=n)(), ref)
        if errors[n] <= TRUST_RTOL:
            reached = n
            break
    print(json.dumps({"errors": errors, "reached": reached}))


def _child(flag, spec, timeout=3600):
    proc = subprocess.run([sys.executable, __file__, flag, json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {flag} {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timed_runs(name, methods, repeats, tmpdir, *, runs=2, n_steps=None):
    """Times each method in its own process, ``runs`` rounds alternating between methods; keeps each
    method's round with the lower median. Returns ({method: timing dict}, {method: attributions})."""
    rounds = {m: [] for m in methods}
    for i in range(runs):
        for m in methods:  # alternating: torch, torch, jax, torch, torch, jax
            spec = {"workload": name, "method": m, "repeats": repeats, "threads": 2, "n_steps": n_steps,
                    "result": str(Path(tmpdir) / f"{name}-{m}-{n_steps}-{i}.npy")}
            out = _child("--_time", spec)
            out["result"] = np.load(spec["result"])
            rounds[m].append(out)
    best = {m: min(rs, key=lambda r: r["median_ms"]) for m, rs in rounds.items()}
    for m in methods:
        best[m]["round_medians_ms"] = [r["median_ms"] for r in rounds[m]]
    return best, {m: best[m].pop("result") for m in methods}


def bench_workload(name, repeats, peak_gflops, memory, tmpdir):
    w = build(name)
    row = {"workload": name, "n_steps": w.n_steps, "batch": int(w.x.shape[0])}
    best, results = timed_runs(name, METHODS, repeats, tmpdir)
    for m in METHODS:
        row[f"{m}_ms"] = best[m]["median_ms"]
        row[f"{m}_best_ms"] = best[m]["best_ms"]
        row[f"{m}_round_medians_ms"] = best[m]["round_medians_ms"]
    row["jaxig_first_call_s"] = best["jaxig"]["first_call_s"]
    row["jaxig_xla_compile_s"] = best["jaxig"]["xla_compile_s"]
    row["jaxig_recompiles_new_values"] = best["jaxig"]["recompiles_new_values"]
    # Minima are less sensitive to other processes on a shared machine than medians.
    row["captum_over_jaxig_best"] = row["captum_best_ms"] / row["jaxig_best_ms"]
    row["loop_over_jaxig_best"] = row["loop_best_ms"] / row["jaxig_best_ms"]
    row["captum_over_jaxig"] = row["captum_ms"] / row["jaxig_ms"]
    row["loop_over_jaxig"] = row["loop_ms"] / row["jaxig_ms"]
    row["loop_over_captum"] = row["loop_ms"] / row["captum_ms"]
    goal_captum, goal_loop = GOALS.get(name, (2.0, 1.5))
    row["goal_captum"], row["goal_loop"] = goal_captum, goal_loop
    row["goals_met"] = row["captum_over_jaxig"] >= goal_captum and row["loop_over_jaxig"] >= goal_loop

    row["rel_diff_jaxig_captum"] = max_rel_diff(results["jaxig"], results["captum"])
    row["rel_diff_loop_captum"] = max_rel_diff(results["loop"], results["captum"])
    row["tolerance"] = TOLERANCE.get(name, DEFAULT_TOLERANCE)
    row["agrees"] = row["rel_diff_jaxig_captum"] <= row["tolerance"]
    # Where jaxig and Captum disagree, a float64 evaluation of the same integral says who rounds off.
    ref = float64_reference(w)
    row["rel_diff_jaxig_f64"] = max_rel_diff(results["jaxig"], ref)
    row["rel_diff_captum_f64"] = max_rel_diff(results["captum"], ref)
    row["examples_jaxig_vs_captum_above_tol"] = rows_above(results["jaxig"], results["captum"], row["tolerance"])
    row["examples_jaxig_vs_f64_above_tol"] = rows_above(results["jaxig"], ref, row["tolerance"])
    row["examples_captum_vs_f64_above_tol"] = rows_above(results["captum"], ref, row["tolerance"])

    if w.fwd_flops_per_example:
        # Nominal FLOPs of plain IG (forward + input-gradient ~ 2x forward, per example and step);
        # the affine split skips the first layer inside the loop, so the rate can exceed what
        # the executed FLOPs alone would give.
        flops = 2.0 * w.fwd_flops_per_example * w.x.shape[0] * w.n_steps
        row["jaxig_gflops"] = flops / (row["jaxig_best_ms"] / 1e3) / 1e9
        row["fraction_of_peak"] = row["jaxig_gflops"] / peak_gflops

    if memory:
        for m in METHODS:
            row[f"{m}_peak_mib"] = peak_memory(name, m)
    return row


def reference_attributions(w):
    """Returns (reference, how, its own error bound) for the time-to-trust comparison.

    Piecewise-linear models: exact IG (float32; exact up to rounding). Others: 1,024-node
    Gauss-Legendre, with the 512-node result's distance to it as a bound on its error."""
    if w.piecewise_linear:
        return make_runner("jaxig_trust", w)(), "exact IG", 0.0
    fine = make_runner("jaxig", w, n_steps=1024, alpha_batch_size=16)()
    coarse = make_runner("jaxig", w, n_steps=512, alpha_batch_size=16)()
    return fine, "Gauss-Legendre 1024", trust_error(coarse, fine)


def bench_trust(name, repeats, tmpdir):
    """Time to a trustworthy answer: Captum at the first ladder step count within 0.1% of the reference
    (found by search; only that one call is timed) against jaxig's own choice (one call)."""
    w = build(name)
    row = {"workload": name}
    ref, row["reference"], row["reference_self_error"] = reference_attributions(w)
    ref_path = str(Path(tmpdir) / f"{name}-reference.npy")
    np.save(ref_path, ref)
    ladder = _child("--_ladder", {"workload": name, "reference": ref_path, "threads": 2})
    row["captum_errors"] = ladder["errors"]
    row["captum_steps"] = ladder["reached"]
    row["jaxig_how"] = "exact IG" if w.piecewise_linear else f"adaptive IG (rtol {TRUST_RTOL:g})"
    methods = ("captum", "jaxig_trust") if ladder["reached"] else ("jaxig_trust",)
    best, results = timed_runs(name, methods, repeats, tmpdir, n_steps=ladder["reached"])
    row["jaxig_ms"], row["jaxig_best_ms"] = best["jaxig_trust"]["median_ms"], best["jaxig_trust"]["best_ms"]
    row["jaxig_first_call_s"] = best["jaxig_trust"]["first_call_s"]
    row["jaxig_error"] = trust_error(results["jaxig_trust"], ref)
    if ladder["reached"]:
        row["captum_ms"], row["captum_best_ms"] = best["captum"]["median_ms"], best["captum"]["best_ms"]
        row["captum_error"] = trust_error(results["captum"], ref)
        row["ratio"] = row["captum_ms"] / row["jaxig_ms"]
        row["goal_met"] = row["ratio"] >= 3.0 and row["jaxig_error"] <= TRUST_RTOL
    return row


def memory_flatness(repeats_unused=None, chunk=10):
    """lstm_ts: peak memory and result of alpha_batch_size chunking at 50 and 1,000 steps."""
    w = build("lstm_ts")
    out = {"workload": "lstm_ts", "alpha_batch_size": chunk}
    out["peak_mib_50_default"] = peak_memory("lstm_ts", "jaxig", n_steps=50)
    out["peak_mib_50_chunked"] = peak_memory("lstm_ts", "jaxig", n_steps=50, alpha_batch_size=chunk)
    out["peak_mib_1000_chunked"] = peak_memory("lstm_ts", "jaxig", n_steps=1000,
                                               alpha_batch_size=chunk)
    base = out["peak_mib_50_chunked"]
    if base and out["peak_mib_1000_chunked"]:
        out["ratio_1000_chunked_over_50"] = out["peak_mib_1000_chunked"] / base
    full50 = make_runner("jaxig", w, n_steps=50)()
    chunk50 = make_runner("jaxig", w, n_steps=50, alpha_batch_size=chunk)()
    chunk1000 = make_runner("jaxig", w, n_steps=1000, alpha_batch_size=chunk)()
    out["rel_diff_chunked_vs_default_50"] = max_rel_diff(chunk50, full50)
    out["rel_diff_1000_vs_50"] = max_rel_diff(chunk1000, full50)
    return out


# --- reporting ----------------------------------------------------------------------------------

def _fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def markdown(rows, flat, env):
    lines = [
        f"Machine: {env['machine']}; load before: {env['load_before']}; after: {env['load_after']}",
        f"Versions: jax {env['jax']}, jaxlib {env['jaxlib']}, torch {env['torch']}, "
        f"captum {env['captum']}, python {env['python']}; {env['date']}; float32 matmul peak "
        f"{env['peak_gflops']:.0f} GFLOP/s; repeats {env['repeats']}",
        "",
        "Times: median (best) of the timed calls, each method in its own process, the better of "
        f"{env['runs']} rounds alternating between methods; ratios: of medians (of bests). GFLOP/s: "
        "nominal plain-IG FLOPs (2x forward per example and step) over jaxig's best time. Goals: "
        "MLPs >= 10x Captum, others >= 2x; every workload >= 1.5x the loop (of medians).",
        "",
        "| workload | steps | Captum ms | loop ms | jaxig ms | Captum/jaxig | loop/jaxig | "
        "first call s (XLA compile s) | recompiles | rel diff J-C (J-f64, C-f64) | peak MiB C / L / J | "
        "GFLOP/s (% peak) | goals |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = " / ".join(_fmt(r.get(f"{m}_peak_mib"), ".0f") for m in METHODS)
        flops = (f"{r['jaxig_gflops']:.1f} ({100 * r['fraction_of_peak']:.0f}%)"
                 if "jaxig_gflops" in r else "")
        lines.append(
            f"| {r['workload']} | {r['n_steps']} | {r['captum_ms']:.1f} ({r['captum_best_ms']:.1f}) | "
            f"{r['loop_ms']:.1f} ({r['loop_best_ms']:.1f}) | {r['jaxig_ms']:.1f} ({r['jaxig_best_ms']:.1f}) | "
            f"{r['captum_over_jaxig']:.2f}x ({r['captum_over_jaxig_best']:.2f}x) | "
            f"{r['loop_over_jaxig']:.2f}x ({r['loop_over_jaxig_best']:.2f}x) | "
            f"{r['jaxig_first_call_s']:.2f} ({r['jaxig_xla_compile_s']:.2f}) | "
            f"{r['jaxig_recompiles_new_values']} | "
            f"{r['rel_diff_jaxig_captum']:.1e} ({r['rel_diff_jaxig_f64']:.1e}, {r['rel_diff_captum_f64']:.1e}) | "
            f"{mem} | {flops} | {'met' if r['goals_met'] else '**missed**'} |")
    lines += ["", "rel diff: max|a - b| / max|b| over the batch; f64: the plain loop in float64 on the same "
              "weights and inputs."]
    for r in rows:
        if not r["agrees"]:
            lines.append(
                f"{r['workload']}: examples where jaxig and Captum differ by more than {r['tolerance']:g}: "
                f"{r['examples_jaxig_vs_captum_above_tol']}; jaxig vs float64: "
                f"{r['examples_jaxig_vs_f64_above_tol']}; Captum vs float64: {r['examples_captum_vs_f64_above_tol']}")
    if flat:
        lines += [
            "",
            f"lstm_ts peak memory with alpha_batch_size={flat['alpha_batch_size']}: "
            f"50 steps with the default (automatic) alpha_batch_size {_fmt(flat['peak_mib_50_default'], '.0f')} MiB, "
            f"50 chunked {_fmt(flat['peak_mib_50_chunked'], '.0f')} MiB, "
            f"1000 chunked {_fmt(flat['peak_mib_1000_chunked'], '.0f')} MiB "
            f"(1000/50 chunked: {_fmt(flat.get('ratio_1000_chunked_over_50'), '.2f')}); result: chunked vs "
            f"default at 50 steps {flat['rel_diff_chunked_vs_default_50']:.1e}, 1000 vs 50 steps "
            f"{flat['rel_diff_1000_vs_50']:.1e}",
        ]
    return "\n".join(lines)


def trust_markdown(rows):
    lines = [
        "",
        f"Time to a trustworthy answer (every example within {TRUST_RTOL:g} of its largest attribution, "
        "against the reference): Captum at the first Gauss-Legendre step count of "
        f"{list(TRUST_LADDER)} that gets there (found by search; only that call is timed) vs jaxig's "
        "own choice. Median (best) ms, each side in its own process, better of the rounds; goal >= 3x.",
        "",
        "| workload | reference (its error) | Captum steps (error) | Captum ms | jaxig method (error) | "
        "jaxig ms | first call s | Captum/jaxig | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("captum_steps"):
            captum = (f"{r['captum_steps']} ({r['captum_error']:.1e}) | {r['captum_ms']:.1f} "
                      f"({r['captum_best_ms']:.1f})")
            ratio = f"{r['ratio']:.2f}x"
            goal = "met" if r["goal_met"] else "**missed**"
        else:
            worst = min(r["captum_errors"].values())
            captum, ratio, goal = f"not within {TRUST_LADDER[-1]} (best {worst:.1e}) | n/a", "n/a", "n/a"
        lines.append(
            f"| {r['workload']} | {r['reference']} ({r['reference_self_error']:.1e}) | {captum} | "
            f"{r['jaxig_how']} ({r['jaxig_error']:.1e}) | {r['jaxig_ms']:.1f} ({r['jaxig_best_ms']:.1f}) | "
            f"{r['jaxig_first_call_s']:.2f} | {ratio} | {goal} |")
    return "\n".join(lines)


def environment():
    import platform

    import captum
    import jaxlib

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads "
                   f"{torch.get_num_threads()}",
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "torch": torch.__version__,
        "captum": captum.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"), "jaxig_from": str(Path(jaxig.__file__).parent),
        "load_before": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 repeats, no memory subprocesses")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per method (default 7)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--out", type=Path, default=None, help="write vs_captum.json and .md here")
    p.add_argument("--runs", type=int, default=2, help="rounds per method, alternating (default 2)")
    p.add_argument("--trust", action="store_true", help="also time the time to a trustworthy answer")
    p.add_argument("--_memory", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_time", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_ladder", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._memory is not None:
        return memory_child(json.loads(args._memory))
    if args._time is not None:
        return time_child(json.loads(args._time))
    if args._ladder is not None:
        return ladder_child(json.loads(args._ladder))

    names = [n for n in args.workloads.split(",") if n]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {sorted(WORKLOADS)}")
    repeats = args.repeats or (3 if args.quick else 7)
    memory = not (args.quick or args.no_memory)
    torch.set_num_threads(min(2, os.cpu_count() or 2))

    env = environment()
    env["repeats"], env["runs"] = repeats, args.runs
    env["peak_gflops"] = matmul_peak_gflops()
    print(f"float32 matmul peak: {env['peak_gflops']:.1f} GFLOP/s", flush=True)
    rows, trust = [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in names:
            print(f"running {name} ...", flush=True)
            rows.append(bench_workload(name, repeats, env["peak_gflops"], memory, tmpdir))
            print(json.dumps(rows[-1], indent=None), flush=True)
        if args.trust:
            for name in names:
                print(f"time to trust: {name} ...", flush=True)
                trust.append(bench_trust(name, repeats, tmpdir))
                print(json.dumps(trust[-1], indent=None), flush=True)
    flat = memory_flatness() if memory and "lstm_ts" in names else None
    env["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    table = markdown(rows, flat, env) + ("\n" + trust_markdown(trust) if trust else "")
    print(table)
    failed = [r["workload"] for r in rows if not r["agrees"]]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vs_captum.json").write_text(
            json.dumps({"env": env, "rows": rows, "trust": trust, "memory_flatness": flat}, indent=2))
        (args.out / "vs_captum.md").write_text(table + "\n")
    if failed:
        print(f"DISAGREEMENT above tolerance: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
