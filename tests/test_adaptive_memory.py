"""Adaptive IG's memory: bounded by max_intervals, not max_evals; target="all" one output at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig
from jaxig._methods import adaptive


def _net(act, n_out=1, n_in=6, seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    w1 = jax.random.normal(ks[0], (n_in, 16)) / np.sqrt(n_in)
    w2 = jax.random.normal(ks[1], (16, n_out)) / 4
    out = lambda z: act(z @ w1 + 0.3) @ w2  # noqa: E731
    return (lambda z: out(z)[:, 0]) if n_out == 1 else out, jax.random.normal(ks[2], (3, n_in))


def _temp_bytes(f, x, **kw):
    run = jax.jit(lambda z: jaxig.adaptive_integrated_gradients(f, z, warn=False, **kw))
    mem = run.lower(x).compile().memory_analysis()
    assert mem is not None
    return mem.temp_size_in_bytes


@pytest.mark.parametrize("method", [jaxig.Kronrod(), jaxig.Piecewise()])
def test_compiled_temp_memory_does_not_grow_with_max_evals(method):
    f, x = _net(jnp.tanh if isinstance(method, jaxig.Kronrod) else jax.nn.relu, n_in=64)
    small, large = (_temp_bytes(f, x, method=method, max_evals=n, max_intervals=32) for n in (1_000, 100_000))
    assert small == large
    # 32 slots of 64 features and 3 examples (at most two float32 buffers), some copies and the loop's
    # temporaries: far below one slot per evaluation (100,000 slots would be 77 MB)
    assert large < 2 * 2**20


def test_piecewise_retires_resolved_gaps_and_exceeds_max_intervals_evaluations():
    with jax.enable_x64(True):
        ks = jax.random.split(jax.random.PRNGKey(1), 3)
        w1, w2 = jax.random.normal(ks[0], (8, 48)) / np.sqrt(8), jax.random.normal(ks[1], (48,)) / 7
        f = lambda z: jax.nn.relu(z @ w1 + 0.5) @ w2  # noqa: E731
        x = 3 * jax.random.normal(ks[2], (4, 8))
        exact = jaxig.exact_integrated_gradients(f, x)
        big, info_big = jaxig.adaptive_integrated_gradients(f, x, rtol=0.0, return_info=True)
        small, info = jaxig.adaptive_integrated_gradients(f, x, rtol=0.0, max_intervals=12, return_info=True)
    assert bool(info.converged.all()) and bool(info_big.converged.all())
    # more evaluations than slots (measured: 22, 12, 18, 21): gaps were resolved and their points
    # freed on the way (with 8 slots, 3 of the 4 examples stop unconverged)
    assert np.max(np.asarray(info.n_evals)) > 12
    np.testing.assert_array_equal(info.n_evals, info_big.n_evals)  # the same decisions
    np.testing.assert_allclose(small, big, rtol=0, atol=1e-13)
    np.testing.assert_allclose(small, exact, rtol=0, atol=1e-12 * np.abs(exact).max())


def test_full_buffers_stop_unconverged_and_say_raise_max_intervals():
    f, x = _net(jax.nn.sigmoid)
    with pytest.warns(RuntimeWarning, match=r"max_intervals=3 \(3 stopped because all 3 intervals were in use: "
                      r"raise max_intervals"):
        _, info = jaxig.adaptive_integrated_gradients(f, x, rtol=1e-12, method=jaxig.Kronrod(nested=False),
                                                      max_intervals=3, return_info=True)
    assert not bool(info.converged.any()) and np.all(np.asarray(info.n_intervals) == 3)
    with pytest.raises(ValueError, match="max_intervals=2 is below the 3 points"):
        jaxig.adaptive_integrated_gradients(f, x, method=jaxig.Piecewise(n_init=2), max_intervals=2)
    with pytest.raises(ValueError, match="max_intervals must be a positive int"):
        jaxig.adaptive_integrated_gradients(f, x, max_intervals=0)


def test_target_all_is_each_output_on_its_own_in_groups(monkeypatch):
    f, x = _net(jnp.tanh, n_out=3)
    attr, info = jaxig.adaptive_integrated_gradients(f, x, target="all", rtol=1e-4, return_info=True)
    one = [jaxig.adaptive_integrated_gradients(f, x, target=k, rtol=1e-4, return_info=True) for k in range(3)]
    np.testing.assert_allclose(attr, np.stack([a for a, _ in one]), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(info.n_evals, sum(np.asarray(i.n_evals) for _, i in one))
    # one output per group (a lax.map over the outputs) gives the same (a new batch size: a new trace)
    monkeypatch.setattr(adaptive, "_GROUP_BYTES", 1)
    x2 = jnp.concatenate([x, x[:1]])
    grouped = jaxig.adaptive_integrated_gradients(f, x2, target="all", rtol=1e-4)
    np.testing.assert_allclose(grouped[:, :3], attr, rtol=0, atol=1e-6)
