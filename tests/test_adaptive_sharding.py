"""Adaptive IG on a batch-sharded input: Auto and Explicit meshes give the unsharded results.

One subprocess with 8 host devices (``--xla_force_host_platform_device_count=8``) runs every case
and prints JSON: the largest difference from the unsharded call and the result's sharding.
"""

import json
import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import jaxig

    ks = jax.random.split(jax.random.PRNGKey(0), 3)
    w1 = jax.random.normal(ks[0], (6, 16)) / 2
    w2 = jax.random.normal(ks[1], (16, 3)) / 4
    x = jax.random.normal(ks[2], (8, 6))
    models = {
        "piecewise": (lambda z: jax.nn.relu(z @ w1 + 0.3) @ w2[:, 0], {}),
        "kronrod": (lambda z: jnp.tanh(z @ w1 + 0.3) @ w2[:, 0], {}),
        "piecewise_all": (lambda z: jax.nn.relu(z @ w1 + 0.3) @ w2, {"target": "all"}),
    }
    cases = [("Auto", "piecewise", False), ("Auto", "kronrod", False), ("Explicit", "piecewise", False),
             ("Explicit", "kronrod", False), ("Explicit", "piecewise_all", False), ("Explicit", "kronrod", True)]
    refs = {}
    out = {}
    for axis_type, name, context in cases:
        mesh = jax.make_mesh((8,), ("batch",), axis_types=(getattr(AxisType, axis_type),))
        xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
        f, kw = models[name]
        if name not in refs:
            # unsharded first: the reference (its call also runs prepare's one-time probe of f)
            refs[name] = jaxig.adaptive_integrated_gradients(f, x, rtol=1e-4, return_info=True, **kw)
        ref, ref_info = refs[name]
        if context:
            with jax.set_mesh(mesh):
                attr, info = jaxig.adaptive_integrated_gradients(f, xs, rtol=1e-4, return_info=True, **kw)
        else:
            attr, info = jaxig.adaptive_integrated_gradients(f, xs, rtol=1e-4, return_info=True, **kw)
        batch_axis = 1 if kw else 0
        spec = attr.sharding.spec
        out[f"{axis_type}/{name}/{'set_mesh' if context else 'input'}"] = {
            "diff": float(np.abs(np.asarray(attr) - np.asarray(ref)).max() / np.abs(np.asarray(ref)).max()),
            "same_evals": bool(np.array_equal(np.asarray(info.n_evals), np.asarray(ref_info.n_evals))),
            "converged": bool(np.asarray(info.converged).all()),
            "batch_split": len(spec) > batch_axis and spec[batch_axis] == "batch",
            "devices": len(attr.sharding.device_set),
        }
    print(json.dumps(out))
    """
)


def test_auto_and_explicit_meshes_match_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 6
    for case, r in results.items():
        assert r["diff"] <= 1e-6, (case, r)
        assert r["same_evals"] and r["converged"], (case, r)
        assert r["batch_split"] and r["devices"] == 8, (case, r)
