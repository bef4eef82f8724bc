"""The benchmark harness copies PyTorch weights into JAX correctly: both forwards agree.

Skipped when torch is not installed (it is an optional dependency, the ``[compare]`` extra).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _workloads  # noqa: E402


def _small(name):
    """The workload with its inputs cut to a few rows, to keep the test fast."""
    w = _workloads.build(name)
    w.x = w.x[:8]
    return w


@pytest.mark.parametrize("name", sorted(_workloads.WORKLOADS))
def test_torch_and_jax_forward_agree(name):
    w = _small(name)
    if w.layer:  # token ids through the embedding layer, then the rest
        want = w.torch_model(torch.from_numpy(w.x).long()).numpy()
        got = np.asarray(w.jax_fn(w.jax_body(w.x)))
    else:
        want = w.torch_model(torch.from_numpy(w.x)).numpy()
        got = np.asarray(w.jax_fn(w.x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("variant", ["cnn_nchw", "lstm_scan"])
def test_layout_and_loop_variants_agree(variant):
    w = _workloads.cnn32(layout="NCHW") if variant == "cnn_nchw" else _workloads.lstm_ts(unroll=False)
    w.x = w.x[:8]
    want = w.torch_model(torch.from_numpy(w.x)).numpy()
    np.testing.assert_allclose(np.asarray(w.jax_fn(w.x)), want, rtol=1e-5,
                               atol=1e-6 * np.abs(want).max())


def test_input_gradients_agree():
    """A wrong layout can still match at one point by chance; the input gradients must match too."""
    import jax

    w = _small("cnn32")
    x = torch.from_numpy(w.x).requires_grad_(True)
    (want,) = torch.autograd.grad(w.torch_model(x)[:, 1].sum(), x)
    got = jax.grad(lambda z: w.jax_fn(z)[:, 1].sum())(w.x)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4,
                               atol=1e-5 * float(want.abs().max()))


def test_float64_reference_is_the_integral_and_rows_above_finds_the_outlier():
    """The harness's float64 loop is the same IG: it matches jaxig in float32 to float32 rounding,
    and its model copy is float64 (the float32 model stays untouched)."""
    pytest.importorskip("captum")
    import jax.numpy as jnp
    import vs_captum

    import jaxig

    w = _small("mlp_california")
    ref = vs_captum.float64_reference(w)
    assert ref.dtype == np.float64
    assert next(w.torch_model.parameters()).dtype == torch.float32
    got = np.asarray(jaxig.integrated_gradients(w.jax_fn, jnp.asarray(w.x), target=w.target, n_steps=w.n_steps))
    assert vs_captum.max_rel_diff(got, ref) < 1e-5
    bumped = got.copy()
    bumped[5, 2] += 1e-2 * np.abs(ref).max()
    assert vs_captum.rows_above(bumped, ref, 1e-3) == [5]
    assert vs_captum.rows_above(got, ref, 1e-3) == []
