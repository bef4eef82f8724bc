"""Cross-check against Captum: GradientShap on the same draws, and averaged IntegratedGradients.

Captum draws its reference rows with ``np.random.choice``, its alphas with ``np.random.uniform`` and
its input noise with ``torch.normal``. These tests replace the three functions (pytest monkeypatch)
by ones that check the requested sizes and return draws we chose, run Captum's unmodified
``GradientShap.attribute`` on them, and pass the same numbers to ``jaxig.expected_gradients(...,
draws=...)``. What is compared is therefore the estimator (where the noise goes, the point
``a x~ + (1 - a) b``, the factor ``x~ - b``, the averaging and the row order), not the random
number generators.
"""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import jaxig

N_IN, N_HIDDEN, N_OUT = 6, 16, 3


def _models(seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HIDDEN), torch.nn.ReLU(),
                              torch.nn.Linear(N_HIDDEN, N_HIDDEN), torch.nn.ReLU(),
                              torch.nn.Linear(N_HIDDEN, N_OUT))
    ws = [(jnp.asarray(m.weight.detach().numpy()), jnp.asarray(m.bias.detach().numpy()))
          for m in net if isinstance(m, torch.nn.Linear)]

    def jax_fn(x):  # torch Linear stores W as (out, in)
        for i, (w, b) in enumerate(ws):
            x = x @ w.T + b
            if i < len(ws) - 1:
                x = jnp.maximum(x, 0)
        return x

    return net, jax_fn


class _Injected:
    """Stand-ins for Captum's three random calls that return prescribed draws (sizes checked)."""

    def __init__(self, index, alpha, noise):
        self.index, self.alpha, self.noise = index, alpha, list(noise)
        self.calls = []

    def choice(self, n_refs, size):
        self.calls.append("choice")
        assert size == self.index.size and n_refs > self.index.max()
        return self.index.reshape(-1).copy()

    def uniform(self, low, high, size):
        self.calls.append("uniform")
        assert (low, high, size) == (0.0, 1.0, self.alpha.size)
        return self.alpha.reshape(-1).astype(np.float64)

    def normal(self, mean, std):
        self.calls.append("normal")
        noise = self.noise.pop(0)
        assert tuple(std.shape) == noise.shape
        return torch.from_numpy(noise)


def _draws(rng, batch, n, n_refs, shapes, stdev):
    index = rng.integers(0, n_refs, (batch, n))
    alpha = rng.uniform(size=(batch, n)).astype(np.float32)
    noise = [(stdev * rng.standard_normal((batch * n,) + s)).astype(np.float32) for s in shapes]
    return index, alpha, noise


def _patch(monkeypatch, injected):
    monkeypatch.setattr(np.random, "choice", injected.choice)
    monkeypatch.setattr(np.random, "uniform", injected.uniform)
    monkeypatch.setattr(torch, "normal", injected.normal)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("stdev", [0.0, 0.3])
def test_gradient_shap_equals_captum_on_the_same_draws(monkeypatch, stdev):
    net, jax_fn = _models()
    rng = np.random.default_rng(1)
    batch, n, n_refs = 8, 7, 5
    x = rng.standard_normal((batch, N_IN)).astype(np.float32)
    refs = rng.standard_normal((n_refs, N_IN)).astype(np.float32)
    target = rng.integers(0, N_OUT, batch)
    index, alpha, noise = _draws(rng, batch, n, n_refs, [(N_IN,)], stdev)
    injected = _Injected(index, alpha, noise)
    with monkeypatch.context() as m:
        _patch(m, injected)
        expected, captum_delta = captum_attr.GradientShap(net).attribute(
            torch.from_numpy(x), torch.from_numpy(refs), n_samples=n, stdevs=stdev,
            target=torch.from_numpy(target), return_convergence_delta=True)
    assert injected.calls == ["choice", "normal", "uniform"]  # every random call of Captum was ours
    expected = expected.detach().numpy()

    draws = jaxig.ExpectedGradientsDraws(index=jnp.asarray(index, jnp.int32), alpha=jnp.asarray(alpha),
                                         noise=jnp.asarray(noise[0].reshape(batch, n, N_IN)) if stdev else None)
    attr, info = jaxig.expected_gradients(jax_fn, jnp.asarray(x), jnp.asarray(refs), target=jnp.asarray(target),
                                          draws=draws, return_info=True)
    assert np.max(np.abs(expected)) > 1e-2
    rel = _rel(attr, expected)
    assert rel <= 1e-4, f"max relative difference {rel:.2e}"
    # Captum's delta is per draw (row b * n + s); ours is their mean per example
    np.testing.assert_allclose(info.delta, captum_delta.detach().numpy().reshape(batch, n).mean(1), atol=1e-4)


def test_gradient_shap_with_two_input_tensors_equals_captum(monkeypatch):
    # Captum draws a separate reference row per input tensor; injecting the same rows for both
    # makes its draws ours (one reference example serves every leaf).
    torch.manual_seed(3)
    lin_a, lin_b = torch.nn.Linear(4, 8), torch.nn.Linear(2, 8)
    head = torch.nn.Linear(8, 1)

    def torch_fn(a, b):
        return head(torch.tanh(lin_a(a) + lin_b(b)))[:, 0]

    p = {k: jnp.asarray(v.detach().numpy()) for k, v in
         {"wa": lin_a.weight, "ba": lin_a.bias, "wb": lin_b.weight, "bb": lin_b.bias, "wh": head.weight,
          "bh": head.bias}.items()}

    def jax_fn(inputs):
        a, b = inputs
        return (jnp.tanh(a @ p["wa"].T + p["ba"] + b @ p["wb"].T + p["bb"]) @ p["wh"].T + p["bh"])[:, 0]

    rng = np.random.default_rng(4)
    batch, n, n_refs = 5, 6, 4
    xa, xb = (rng.standard_normal((batch, d)).astype(np.float32) for d in (4, 2))
    ra, rb = (rng.standard_normal((n_refs, d)).astype(np.float32) for d in (4, 2))
    index, alpha, noise = _draws(rng, batch, n, n_refs, [(4,), (2,)], 0.2)
    injected = _Injected(index, alpha, noise)
    injected.choice = lambda n_refs_, size: index.reshape(-1).copy()  # same rows for both tensors
    with monkeypatch.context() as m:
        _patch(m, injected)
        exp_a, exp_b = captum_attr.GradientShap(torch_fn).attribute(
            (torch.from_numpy(xa), torch.from_numpy(xb)), (torch.from_numpy(ra), torch.from_numpy(rb)),
            n_samples=n, stdevs=(0.2, 0.2))
    draws = jaxig.ExpectedGradientsDraws(
        index=jnp.asarray(index, jnp.int32), alpha=jnp.asarray(alpha),
        noise=(jnp.asarray(noise[0].reshape(batch, n, 4)), jnp.asarray(noise[1].reshape(batch, n, 2))))
    att_a, att_b = jaxig.expected_gradients(jax_fn, (jnp.asarray(xa), jnp.asarray(xb)),
                                            (jnp.asarray(ra), jnp.asarray(rb)), draws=draws)
    expected = np.concatenate([exp_a.detach().numpy(), exp_b.detach().numpy()], 1)
    rel = _rel(jnp.concatenate([att_a, att_b], 1), expected)
    assert rel <= 1e-4, f"max relative difference {rel:.2e}"


def test_expected_integrated_gradients_equals_averaged_captum_integrated_gradients():
    net, jax_fn = _models(seed=2)
    rng = np.random.default_rng(5)
    batch, n_refs, n_steps = 8, 6, 16
    x = rng.standard_normal((batch, N_IN)).astype(np.float32)
    refs = rng.standard_normal((n_refs, N_IN)).astype(np.float32)
    ig = captum_attr.IntegratedGradients(net)
    runs = [ig.attribute(torch.from_numpy(x), torch.from_numpy(np.broadcast_to(r, x.shape).copy()), target=1,
                         n_steps=n_steps, method="gausslegendre", return_convergence_delta=True) for r in refs]
    expected = np.mean([a.detach().numpy() for a, _ in runs], 0)
    expected_delta = np.mean([d.detach().numpy() for _, d in runs], 0)
    attr, info = jaxig.expected_integrated_gradients(jax_fn, jnp.asarray(x), jnp.asarray(refs), target=1,
                                                     n_steps=n_steps, rule=jaxig.GaussLegendre(), return_info=True,
                                                     baseline_batch_size=4)
    assert np.max(np.abs(expected)) > 1e-2
    rel = _rel(attr, expected)
    assert rel <= 1e-4, f"max relative difference {rel:.2e}"
    # the mean of Captum's per-baseline deltas is sum(attr) - (F(x) - mean_r F(b_r))
    np.testing.assert_allclose(info.delta, expected_delta, atol=1e-4)
