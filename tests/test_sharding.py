"""Every method on a batch sharded over 8 devices: Auto and Explicit meshes and inside shard_map.

The device count is fixed when JAX starts, so the checks run in one subprocess with 8 forced CPU
devices (tests/_sharding_probe.py), which prints a JSON report; the tests here read it. Results must
equal the unsharded ones (float32 rounding) and stay split along the batch over all 8 devices.
Alphas spread over devices (``alpha_sharding``) are checked there too.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import METHODS

import jaxig

HERE = os.path.dirname(os.path.abspath(__file__))
RTOL = 1e-5  # max |difference| / max |attribution|: float32 rounding, summation order
PLACEMENTS = ("auto", "explicit", "shard_map")
# 8 forced CPU devices; LLVM's cheap optimisation level: the probe's ~100 programs compile in 30 s of CPU
# instead of 50 (the same arithmetic: the comparisons are at float32 rounding either way)
FLAGS = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
         "--xla_llvm_disable_expensive_passes=true")


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, XLA_FLAGS=FLAGS, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_sharding_probe.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON:")), None)
    assert proc.returncode == 0 and line is not None, proc.stderr[-3000:]
    return json.loads(line[len("JSON:"):])


def _check(case, rtol=RTOL, split=True):
    assert case["ok"], case.get("error", "") + "\n" + case.get("trace", "")
    assert case["err"] <= rtol, case
    if split:
        assert case["split"], f"result not split along the batch over 8 devices: {case['sharding']}"


def test_the_probe_saw_8_devices_and_explicit_is_make_mesh_default(report):
    assert report["devices"] == 8
    assert report["default_mesh_axis_types"] == "(Explicit,)"


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("entry", METHODS, ids=[e.name for e in METHODS])
def test_method_on_a_sharded_batch(report, entry, placement):
    case = report[f"{entry.name}/{placement}"]
    if not entry.jit and placement == "shard_map":
        # exact IG's breakpoint search is a host loop: it cannot run inside a trace, and says so.
        # (On a sharded batch it spreads each round over the batch's devices itself: auto/explicit.)
        assert not case["ok"] and case["error"].startswith("TypeError") and "host loop" in case["error"]
        return
    _check(case)


@pytest.mark.parametrize("name", ["integrated_gradients", "exact_integrated_gradients"])
@pytest.mark.parametrize("placement", ["auto", "explicit"])
def test_target_all_keeps_the_batch_split_behind_the_output_axis(report, name, placement):
    _check(report[f"{name}/{placement}/target=all"])


def test_the_affine_split_runs_inside_shard_map(report):
    # the split is read from a jaxpr traced at the shard's varying type, so it is found and correct
    assert report["affine_split_found_in_shard_map"] is True
    assert report["integrated_gradients/shard_map"]["warnings"] == []
    for label in ("split_affine=False", "check_vma=False"):
        _check(report[f"integrated_gradients/shard_map/{label}"])
    # split at plain shapes (no varying type), g(A(x)) on a shard still equals f(x)
    _check(report["affine_split/shard_map/plain_structs"])


def test_a_new_model_first_seen_on_an_explicit_mesh(report):
    """prepare's one-time check that examples don't mix runs on the sharded batch itself."""
    _check(report["integrated_gradients/explicit/fresh_f"])


def test_under_the_callers_jit(report):
    _check(report["integrated_gradients/auto/jit"])


@pytest.mark.parametrize("label", ["auto/gauss", "auto/monte_carlo", "auto/chunked", "explicit_2x4/gauss_1000"])
def test_alpha_sharding_gives_the_unsharded_integral(report, label):
    # 1,024 alphas of one example over 8 devices; the partial sums are added in another order, and
    # the integrand's terms are larger than their sum, hence a looser bound than RTOL.
    case = report[f"alpha_sharding/{label}"]
    _check(case, rtol=1e-4, split=False)
    assert "alphas" in case["sharding"] or "'a'" in case["sharding"]  # on the alpha mesh, replicated


def test_alpha_sharding_on_one_device_and_bad_values():
    f = lambda x: jnp.tanh(x @ jnp.arange(6.0).reshape(3, 2) / 6)
    x = jnp.array([[0.5, -1.0, 2.0]])
    ref = jaxig.integrated_gradients(f, x, target=0, n_steps=32)
    np.testing.assert_allclose(jaxig.integrated_gradients(f, x, target=0, n_steps=32, alpha_sharding=True),
                               ref, rtol=1e-5, atol=1e-7)
    mesh = jax.make_mesh((1,), ("alphas",))
    np.testing.assert_allclose(jaxig.integrated_gradients(f, x, target=0, n_steps=32, alpha_sharding=mesh),
                               ref, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="alpha_sharding must be None, True"):
        jaxig.integrated_gradients(f, x, target=0, alpha_sharding="devices")


def test_split_affine_off_skips_the_split_and_gives_the_same_integral(monkeypatch):
    from jaxig._methods import integrated

    calls = []
    split = integrated._affine_split
    monkeypatch.setattr(integrated, "_affine_split", lambda *a: calls.append(1) or split(*a))
    f = lambda x: jnp.tanh(x @ jnp.arange(6.0).reshape(3, 2) / 6 + 0.25)
    x = jnp.array([[0.5, -1.0, 2.0], [1.0, 0.0, -1.0]])
    on = jaxig.integrated_gradients(f, x, target=1, n_steps=16)
    assert calls, "the split was not tried with split_affine=True"
    calls.clear()
    off = jaxig.integrated_gradients(f, x, target=1, n_steps=16, split_affine=False)
    assert not calls
    np.testing.assert_allclose(off, on, rtol=1e-5, atol=1e-7)
