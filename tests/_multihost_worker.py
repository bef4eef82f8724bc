"""One process of a multi-host run: ``python _multihost_worker.py PROCESS_ID N_PROCESSES PORT OUT.json``.

tests/test_multihost.py starts two of these on localhost, each with 4 CPU devices, joined by
``jax.distributed.initialize`` into one 8-device mesh (CPU collectives over gloo). Each process
builds the global batch from the rows it owns (``jax.make_array_from_process_local_data``), calls
the methods exactly as on one host, gathers the results (``process_allgather``) and process 0
writes them, with the process layout, to OUT.json. The test compares them with a one-process run
of :func:`problem` (same model, same inputs).
"""

from __future__ import annotations

import json
import os
import sys
import traceback

N_LOCAL = 4  # CPU devices per process


def problem():
    """Returns ``(f, X)``: a leaky-ReLU MLP with a dense first layer and 8 examples (fixed seed)."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.normal(size=(5, 16)), jnp.float32)
    b1 = jnp.asarray(rng.normal(size=16), jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)

    def f(x):
        h = x @ w1 + b1
        return jnp.maximum(h, 0.2 * h) @ w2

    return f, np.asarray(rng.normal(size=(8, 5)), np.float32)


def cases(jaxig, jax):
    """Returns ``{name: method(f, x)}``: the calls compared between one process and two."""
    return {
        "integrated_gradients": lambda f, x: jaxig.integrated_gradients(f, x, target=1, n_steps=16,
                                                                          completeness_rtol=None),
        "exact_integrated_gradients": lambda f, x: jaxig.exact_integrated_gradients(f, x, target=1),
        "deeplift": lambda f, x: jaxig.deeplift(f, x, target=1),
        "saliency": lambda f, x: jaxig.saliency(f, x, target=1),
    }


def main(process_id: int, n_processes: int, port: int, out_path: str) -> None:
    os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={N_LOCAL} "  # + cheap compiles
                               "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout
    import jax
    from jax.experimental import multihost_utils

    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the default in jax 0.10
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n_processes,
                                   process_id=process_id, initialization_timeout=60)
        multihost_utils.sync_global_devices("jaxig: CPU collectives work")  # a first cross-process psum
    except Exception as err:  # no distributed runtime or no CPU collectives here: the test skips
        if process_id == 0:
            with open(out_path, "w") as fh:
                json.dump({"skip": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}, fh)
        return
    import numpy as np
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import jaxig

    f, X = problem()
    report: dict = {"process_count": jax.process_count(), "device_count": jax.device_count(),
                    "local_device_count": jax.local_device_count(), "results": {}, "errors": {}}
    rows = X.shape[0] // n_processes
    mine = X[process_id * rows:(process_id + 1) * rows]  # this process's examples only
    for kind in (AxisType.Auto, AxisType.Explicit):
        mesh = jax.make_mesh((jax.device_count(),), ("batch",), axis_types=(kind,))
        x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("batch")), mine)
        for name, method in cases(jaxig, jax).items():
            key = f"{name}/{kind.name.lower()}"
            try:
                out = method(f, x)
                report["results"][key] = {
                    "value": np.asarray(multihost_utils.process_allgather(out, tiled=True)).tolist(),
                    "spec": str(out.sharding.spec), "n_devices": len(out.sharding.device_set)}
            except Exception as err:  # reported, judged by the test
                report["errors"][key] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}\n" + \
                    traceback.format_exc()[-1200:]
    # one example, its alphas spread over all 8 devices of both processes
    mesh = jax.make_mesh((jax.device_count(),), ("alphas",), axis_types=(AxisType.Auto,))
    x1 = jax.make_array_from_process_local_data(NamedSharding(mesh, P()), X[:1])
    try:
        out = jaxig.integrated_gradients(f, x1, target=1, n_steps=256, alpha_sharding=True)
        report["results"]["alpha_sharding"] = {
            "value": np.asarray(multihost_utils.process_allgather(out, tiled=True)).tolist(),
            "spec": str(out.sharding.spec), "n_devices": len(out.sharding.device_set)}
    except Exception as err:
        report["errors"]["alpha_sharding"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    if process_id == 0:
        with open(out_path, "w") as fh:
            json.dump(report, fh)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
