"""Runs every registered method on a batch sharded over 8 devices and prints a JSON report.

Run by tests/test_sharding.py in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8
(the device count is fixed when JAX starts, so it cannot be set inside the test process). One process
checks every case: JAX's startup and the compilations are the cost, not the arithmetic.

For each method of tests/helpers.METHODS and each placement of the batch
  auto       x = device_put(X, NamedSharding(Auto mesh, P("batch")))
  explicit   the same on an Explicit mesh (jax.make_mesh's default), inside jax.set_mesh
  shard_map  the method called per device inside jax.shard_map(in_specs=P("batch"))
the report holds the largest difference to the unsharded result (relative to its largest
|attribution|), the result's sharding, and whether it is split along the batch over all 8 devices;
or the error raised. Inside shard_map each device explains its own block, so a random method's
reference is the method applied block by block with the same key.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
_TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(_TESTS), _TESTS]  # this checkout's jaxig, and tests/helpers.py

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from helpers import METHODS  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxig  # noqa: E402

N_DEV = 8
KEY = jax.random.key(0)
rng = np.random.default_rng(0)
W1 = jnp.asarray(rng.normal(size=(5, 16)), jnp.float32)
B1 = jnp.asarray(rng.normal(size=16), jnp.float32)
W2 = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
X = jnp.asarray(rng.normal(size=(N_DEV, 5)), jnp.float32)  # one example per device


def f(x):
    """A leaky-ReLU MLP: a dense first layer (the affine split applies) and a kink exact IG follows."""
    h = x @ W1 + B1
    return jnp.maximum(h, 0.2 * h) @ W2


AUTO = jax.make_mesh((N_DEV,), ("batch",), axis_types=(AxisType.Auto,))
EXPLICIT = jax.make_mesh((N_DEV,), ("batch",), axis_types=(AxisType.Explicit,))


def rel_err(out, ref) -> float:
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))


def batch_split(out, k_axis: bool = False) -> bool:
    """Whether ``out`` is split along its batch axis over all devices (one example per device here)."""
    sharding = out.sharding
    if len(sharding.device_set) != N_DEV:
        return False
    axis = 1 if k_axis else 0
    shards = sharding.shard_shape(out.shape)
    return shards[axis] == out.shape[axis] // N_DEV and all(
        s == n for i, (s, n) in enumerate(zip(shards, out.shape)) if i != axis)


def record(report, name, run, ref, *, k_axis=False, expect_split=True):
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = run()
            out.block_until_ready()
        entry = {"ok": True, "err": rel_err(out, ref), "sharding": str(out.sharding),
                 "split": batch_split(out, k_axis) if expect_split else None,
                 "warnings": sorted({str(w.message)[:200] for w in caught if "affine" in str(w.message)})}
    except Exception as err:  # reported, judged by the test
        entry = {"ok": False, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:400]}",
                 "trace": traceback.format_exc()[-1500:]}
    entry["seconds"] = round(time.perf_counter() - start, 2)
    report[name] = entry


def main() -> None:
    report: dict = {"devices": jax.device_count(), "default_mesh_axis_types": str(
        jax.make_mesh((N_DEV,), ("batch",)).axis_types)}
    x_auto = jax.device_put(X, NamedSharding(AUTO, P("batch")))
    x_explicit = jax.device_put(X, NamedSharding(EXPLICIT, P("batch")))
    only = set(sys.argv[1:])
    for entry in METHODS:
        if not only or entry.name in only:
            check_method(report, entry, x_auto, x_explicit)
    if not only:
        extras(report, x_auto, x_explicit)
    print("JSON:" + json.dumps(report))


def check_method(report, entry, x_auto, x_explicit) -> None:
    kw = {"target": 1, "key": KEY} if entry.random else {"target": 1}
    method = entry.method
    ref = method(f, X, **kw)
    record(report, f"{entry.name}/auto", lambda: method(f, x_auto, **kw), ref)

    def explicit():
        with jax.set_mesh(EXPLICIT):
            return method(f, x_explicit, **kw)

    record(report, f"{entry.name}/explicit", explicit, ref)
    per_block = jnp.concatenate([method(f, X[i:i + 1], **kw) for i in range(N_DEV)]) if entry.random else ref
    mapped = jax.shard_map(lambda xb: method(f, xb, **kw), mesh=AUTO, in_specs=P("batch"), out_specs=P("batch"))
    record(report, f"{entry.name}/shard_map", lambda: mapped(x_auto), per_block)


def extras(report, x_auto, x_explicit) -> None:
    ig = jaxig.integrated_gradients
    # target="all": the leading K axis is unsharded, the batch axis stays split.
    for name, method in (("integrated_gradients", lambda z, **kw: ig(f, z, n_steps=8, **kw)),
                         ("exact_integrated_gradients", lambda z, **kw: jaxig.exact_integrated_gradients(f, z, **kw))):
        ref = method(X, target="all")
        record(report, f"{name}/auto/target=all", lambda m=method: m(x_auto, target="all"), ref, k_axis=True)
        record(report, f"{name}/explicit/target=all", lambda m=method: m(x_explicit, target="all"), ref, k_axis=True)
    # the affine split inside shard_map: on (default), off, and under check_vma=False
    ref = ig(f, X, target=1, n_steps=8)
    for label, kw, check in (("split_affine=False", {"split_affine": False}, True),
                             ("check_vma=False", {}, False)):
        mapped = jax.shard_map(lambda xb, kw=kw: ig(f, xb, target=1, n_steps=8, **kw), mesh=AUTO,
                               in_specs=P("batch"), out_specs=P("batch"), check_vma=check)
        record(report, f"integrated_gradients/shard_map/{label}", lambda m=mapped: m(x_auto), ref)
    # the affine split, read inside shard_map from the lifted model at the shard's (varying) type
    from jaxig._jaxpr.affine import split_affine_prefix
    from jaxig._problem import prepare
    from jaxig._sharding import struct_like

    found = []

    def look(xb):
        found.append(split_affine_prefix(prepare(f, xb, target=1).model, jax.tree.map(struct_like, xb)) is not None)
        return xb

    jax.shard_map(look, mesh=AUTO, in_specs=P("batch"), out_specs=P("batch"))(x_auto)
    report["affine_split_found_in_shard_map"] = found == [True]

    def plain(xb):  # split at plain shapes, run on the shard: the split casts the weights itself
        affine, rest = split_affine_prefix(f, jax.ShapeDtypeStruct(xb.shape, xb.dtype))
        return rest(affine(xb))

    record(report, "affine_split/shard_map/plain_structs",
           lambda: jax.shard_map(plain, mesh=AUTO, in_specs=P("batch"), out_specs=P("batch"))(x_auto), f(X))
    # a model never seen before, first called on an Explicit mesh: the mixing probe runs sharded
    def fresh(z):
        return jnp.sin(f(z)) + f(z)

    def on_explicit():
        with jax.set_mesh(EXPLICIT):
            return ig(fresh, x_explicit, target=1, n_steps=8)

    explicit_first = on_explicit()  # before any unsharded call could cache the probe
    record(report, "integrated_gradients/explicit/fresh_f", lambda: explicit_first, ig(fresh, X, target=1, n_steps=8))
    # under the caller's jit, on a sharded batch
    record(report, "integrated_gradients/auto/jit",
           lambda: jax.jit(lambda z: ig(f, z, target=1, n_steps=8))(x_auto), ref)
    # alphas over devices: one example, 1,024 alphas
    x1 = X[:1]
    for label, kw in (("gauss", {}), ("monte_carlo", {"rule": jaxig.MonteCarlo(), "key": KEY}),
                      ("chunked", {"alpha_batch_size": 16})):
        ref = ig(f, x1, target=1, n_steps=1024, **kw)
        record(report, f"alpha_sharding/auto/{label}",
               lambda kw=kw: ig(f, x1, target=1, n_steps=1024, alpha_sharding=True, **kw), ref, expect_split=False)
    ref = ig(f, x1, target=1, n_steps=1000)
    record(report, "alpha_sharding/explicit_2x4/gauss_1000",
           lambda: ig(f, x1, target=1, n_steps=1000, alpha_sharding=jax.make_mesh((2, 4), ("a", "b"))), ref,
           expect_split=False)



if __name__ == "__main__":
    main()
