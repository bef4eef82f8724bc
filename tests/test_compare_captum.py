"""Cross-check against Captum (an independent implementation): same weights, same inputs, same table.

Needs the ``[compare]`` extra (torch CPU + captum); skipped without it. The models and the weight
copy (torch layouts -> JAX) are the benchmark workloads of ``benchmarks/_workloads.py``, run here on
a few examples with few steps.
"""

import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jaxig  # noqa: E402
from benchmarks import _workloads  # noqa: E402

CASES = [  # (workload, examples, n_steps, max relative difference)
    ("mlp_california", 32, 20, 1e-4),
    ("mlp_linear96", 32, 20, 1e-4),
    ("lstm_ts", 16, 12, 1e-4),
    ("cnn32", 4, 8, 2e-3),  # convolutions round differently in oneDNN and XLA
]


@pytest.mark.parametrize("name,n_examples,n_steps,tol", CASES, ids=[c[0] for c in CASES])
def test_gauss_legendre_equals_captum(name, n_examples, n_steps, tol):
    torch.manual_seed(0)
    w = _workloads.build(name)
    x = w.x[:n_examples]
    ig = captum_attr.IntegratedGradients(w.torch_model)
    expected, expected_delta = ig.attribute(torch.from_numpy(x), target=w.target, n_steps=n_steps,
                                            method="gausslegendre", return_convergence_delta=True)
    expected = expected.numpy()
    assert np.max(np.abs(expected)) > 1e-4, f"{name}: Captum's attributions vanish; the workload is degenerate"
    target = None if name.startswith(("mlp", "lstm")) else w.target
    attr, delta = jaxig.integrated_gradients(w.jax_fn, jnp.asarray(x), target=target, n_steps=n_steps,
                                             rule=jaxig.GaussLegendre(), return_delta=True)
    rel = np.max(np.abs(np.asarray(attr) - expected)) / np.max(np.abs(expected))
    assert rel <= tol, f"{name}: max relative difference {rel:.2e} > {tol}"
    # Captum's delta is sum(attr) - (F(x) - F(x')) like ours
    scale = max(1.0, float(np.max(np.abs(expected_delta.numpy()))))
    np.testing.assert_allclose(np.asarray(delta), expected_delta.numpy(), atol=50 * tol * scale)


def test_captum_trapezoid_weights_do_not_sum_to_one_but_ours_do():
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters("riemann_trapezoid")
    n = 10
    assert sum(step_sizes(n)) == pytest.approx((n - 1) / n)
    assert jaxig.Trapezoid().nodes_and_weights(n)[1].sum() == pytest.approx(1.0, abs=1e-15)
