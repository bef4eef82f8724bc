"""attribute_dataset: batches equal one call, one compiled program, progress, keys, several devices."""

import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from tests.helpers import count_compiles

ROOT = Path(__file__).resolve().parents[1]
N, F, K = 10, 5, 3
W = jax.random.normal(jax.random.key(0), (F, K))
XS = np.asarray(jax.random.normal(jax.random.key(1), (N, F)))
TARGETS = np.arange(N) % K


def model(x):
    return jnp.tanh(x @ W)


def relu_model(x):
    return jax.nn.relu(x @ W)


BASELINE = np.asarray(jax.random.normal(jax.random.key(2), (N, F)))  # one baseline per example
IG = dict(baseline=BASELINE, n_steps=16, return_info=True)


@pytest.fixture(scope="module")
def whole():
    """One call on the whole dataset, every output: the reference for the batched runs."""
    return jaxig.integrated_gradients(model, XS, BASELINE, target="all", n_steps=16, return_info=True)


def test_batches_equal_one_call_on_the_whole_dataset(whole):
    attr, info = jaxig.attribute_dataset(jaxig.integrated_gradients, model, XS, batch_size=4, target=TARGETS, **IG)
    assert isinstance(attr, np.ndarray) and attr.shape == (N, F)
    rows = np.arange(N)
    np.testing.assert_allclose(attr, whole[0][TARGETS, rows], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, whole[1].delta[TARGETS, rows], atol=1e-5)
    assert info.delta.shape == (N,) and info.n_evals == 16


def test_target_all_keeps_the_output_axis_first(whole):
    attr, info = jaxig.attribute_dataset(jaxig.integrated_gradients, model, XS, batch_size=3, target="all", **IG)
    assert attr.shape == (K, N, F) and info.delta.shape == (K, N)
    np.testing.assert_allclose(attr, whole[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.delta, whole[1].delta, atol=1e-5)


def test_one_compiled_program_for_full_and_ragged_batches():
    shapes = []

    def spy(f, x, *a, **kw):
        shapes.append(x.shape)
        return jaxig.integrated_gradients(f, x, *a, **kw)

    # the program of one full batch (already built if the tests above ran)
    jaxig.integrated_gradients(model, XS[:4], BASELINE[:4], target=TARGETS[:4], n_steps=16, return_info=True)
    with count_compiles() as seen:
        jaxig.attribute_dataset(spy, model, XS, batch_size=4, target=TARGETS, **IG)
    assert shapes == [(4, F)] * 3  # batches of 4, 4 and 2 padded to 4
    assert len(seen) == 0  # all three reuse that program
    with count_compiles() as ragged:
        jaxig.integrated_gradients(model, XS[:2], BASELINE[:2], target=TARGETS[:2], n_steps=16, return_info=True)
    assert len(ragged) >= 1  # what an unpadded last batch would have cost


def test_pytree_inputs_and_per_example_args():
    xs = {"a": XS[:, :2], "b": XS[:, 2:]}
    mask = (np.arange(N * F).reshape(N, F) % 3 != 0).astype(np.float32)

    def f(x, m):
        return jnp.tanh(jnp.concatenate([x["a"], x["b"]], -1) * m @ W)

    whole = jaxig.saliency(f, xs, target=1, args=(mask,))
    attr = jaxig.attribute_dataset(jaxig.saliency, f, xs, batch_size=4, target=1, args=(mask,))
    assert set(attr) == {"a", "b"} and attr["a"].shape == (N, 2)
    for name in attr:
        np.testing.assert_allclose(attr[name], whole[name], rtol=1e-4)
    assert np.all(np.concatenate([attr["a"], attr["b"]], -1)[mask == 0] == 0)


def test_exact_ig_and_occlusion_run_through_the_runner():
    # relu(x @ w_k) from a zero baseline is linear along the path: IG = x * w_k where x @ w_k > 0, else 0
    w_t = np.asarray(W)[:, TARGETS].T
    expected = np.where((np.sum(XS * w_t, 1) > 0)[:, None], XS * w_t, 0.0)
    attr, info = jaxig.attribute_dataset(jaxig.exact_integrated_gradients, relu_model, XS, batch_size=4,
                                         target=TARGETS, return_info=True)
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)
    assert len(info.breakpoints) == N  # one entry per example, the padded rows dropped
    assert all(np.array_equal(b, [0.0, 1.0]) for b in info.breakpoints)
    np.testing.assert_array_equal(info.n_segments, np.ones(N))
    # occluding one feature of a linear model removes exactly x_i w_i
    occ = jaxig.attribute_dataset(jaxig.occlusion, lambda x: x @ W, XS, batch_size=4, target=TARGETS, window=(1,))
    np.testing.assert_allclose(occ, XS * w_t, rtol=1e-5, atol=1e-6)


def test_progress(capsys, monkeypatch):
    jaxig.attribute_dataset(jaxig.saliency, model, XS, batch_size=4, target=0, progress=False)
    assert capsys.readouterr().err == ""
    jaxig.attribute_dataset(jaxig.saliency, model, XS, batch_size=4, target=0)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    if _has("tqdm"):
        jaxig.attribute_dataset(jaxig.saliency, model, XS, batch_size=4, target=0, progress=True)
        err = capsys.readouterr().err
        assert "10/10" in err and "saliency" in err
        monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # as in Jupyter
        jaxig.attribute_dataset(jaxig.saliency, model, XS, batch_size=4, target=0)
        assert "10/10" in capsys.readouterr().err
        monkeypatch.delitem(sys.modules, "ipykernel")
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    jaxig.attribute_dataset(jaxig.saliency, model, XS, batch_size=4, target=0, progress=True)
    assert "saliency: 10/10 examples" in capsys.readouterr().err


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_random_method_key_per_batch_is_reproducible():
    refs = XS[:3]
    run = lambda key: jaxig.attribute_dataset(jaxig.expected_gradients, model, XS, batch_size=4, target=TARGETS,
                                              baselines=refs, key=key, n_samples=4)
    a, b, c = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # batch i draws from fold_in(key, i)
    batch1 = jaxig.expected_gradients(model, XS[4:8], refs, target=TARGETS[4:8], n_samples=4,
                                      key=jax.random.fold_in(jax.random.key(0), 1))
    np.testing.assert_allclose(a[4:8], batch1, rtol=1e-6)
    with pytest.raises(ValueError, match="key"):
        jaxig.attribute_dataset(jaxig.expected_gradients, model, XS, batch_size=4, target=0, baselines=refs)


def test_batch_warnings_are_reported_once_with_their_count():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        jaxig.attribute_dataset(jaxig.integrated_gradients, relu_model, XS * 3, batch_size=4, target=TARGETS,
                                n_steps=2, rule=jaxig.RiemannLeft())
    ours = [w for w in seen if "attribute_dataset" in str(w.message)]
    assert len(ours) == 1 and "of 3 batches of 4" in str(ours[0].message)


def test_errors():
    ig = jaxig.integrated_gradients
    with pytest.raises(ValueError, match=r"shape \(4,\) must give one output per example, shape \(10,\)"):
        jaxig.attribute_dataset(ig, model, XS, target=np.zeros(4, int))
    with pytest.raises(ValueError, match="batch_size=0"):
        jaxig.attribute_dataset(ig, model, XS, batch_size=0)
    with pytest.raises(ValueError, match="leading example axis N=10"):
        jaxig.attribute_dataset(ig, model, XS, args=(np.ones((3, F)),))
    with pytest.raises(TypeError, match="return_info"):
        jaxig.attribute_dataset(ig, model, XS, return_delta=True)
    with pytest.raises(ValueError, match="different numbers of examples"):
        jaxig.attribute_dataset(ig, model, {"a": XS, "b": XS[:3]})


def test_several_devices_shard_each_batch_and_agree_with_one():
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np, jaxig
        assert len(jax.local_devices()) == 4
        w = jax.random.normal(jax.random.key(0), (5, 3))
        f = lambda x: jnp.tanh(x @ w)
        xs = np.asarray(jax.random.normal(jax.random.key(1), (11, 5)))
        t = np.arange(11) % 3
        seen = []
        def spy(f, x, *a, **kw):
            seen.append((x.shape[0], len(x.sharding.device_set)))
            return jaxig.integrated_gradients(f, x, *a, **kw)
        many, info = jaxig.attribute_dataset(spy, f, xs, batch_size=6, target=t, n_steps=8, return_info=True)
        one = jaxig.attribute_dataset(jaxig.integrated_gradients, f, xs, batch_size=6, target=t, n_steps=8,
                                      devices=jax.local_devices()[:1])
        assert seen == [(8, 4), (8, 4)], seen  # 6 rounded up to 8; the last batch (3) padded to 8
        assert info.delta.shape == (11,)
        np.testing.assert_allclose(many, one, rtol=1e-6, atol=1e-7)
        print("ok")
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
