"""jaxig.metrics against captum.metrics (infidelity, sensitivity_max) on the same weights and draws.

Needs torch + captum; skipped without them. Both sides see the same pre-drawn perturbations: Captum's
``perturb_func`` returns them (in its ``repeat_interleave`` order: example-major), jaxig receives them as
``perturbations`` / ``perturbed_inputs`` with a leading perturbation axis. Infidelity scores the same
attributions (Captum's IG); max-sensitivity recomputes each side's own explanation at the perturbed inputs.
"""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
from captum import attr as ca  # noqa: E402
from captum import metrics as cm  # noqa: E402
from torch import nn  # noqa: E402

import jaxig  # noqa: E402
from jaxig import metrics  # noqa: E402

TOL = 1e-4
B, D, P = 5, 6, 8


def _rel(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64).ravel(), np.asarray(theirs, np.float64).ravel()
    scale = np.max(np.abs(theirs))
    assert scale > 1e-6, "Captum's scores vanish: the comparison would be vacuous"
    return np.max(np.abs(ours - theirs)) / scale


def _torch_order(a):
    """(P, B, ...) -> (B * P, ...) with example b's perturbations contiguous (Captum's repeat_interleave)."""
    a = np.asarray(a)
    return torch.from_numpy(np.ascontiguousarray(np.swapaxes(a, 0, 1).reshape((-1,) + a.shape[2:])))


@pytest.fixture(scope="module")
def setup():
    """6 -> 12 -> 3 tanh MLP (torch, and the JAX function x @ W.T + b on its weights), inputs, IG attributions."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, 12), nn.Tanh(), nn.Linear(12, 3)).eval()
    (w1, b1), (w2, b2) = [(jnp.asarray(m.weight.detach().numpy()).T, jnp.asarray(m.bias.detach().numpy()))
                          for m in net if isinstance(m, nn.Linear)]

    def f(x):
        return jnp.tanh(x @ w1 + b1) @ w2 + b2

    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, D)).astype(np.float32)
    xt = torch.from_numpy(x)
    attr = ca.IntegratedGradients(net).attribute(xt, target=1, n_steps=32, method="gausslegendre").detach().numpy()
    return net, f, x, xt, attr, rng


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_gaussian_matches_captum(setup, normalize):
    net, f, x, xt, attr, rng = setup
    noise = (0.3 * rng.standard_normal((P, B, D))).astype(np.float32)

    def perturb(inputs):
        eps = _torch_order(noise)
        return eps, inputs - eps

    theirs = cm.infidelity(net, perturb, xt, torch.from_numpy(attr), target=1, n_perturb_samples=P,
                           normalize=normalize)
    ours = metrics.infidelity(f, x, attr, target=1, perturbations=noise, normalize=normalize)
    assert ours.shape == (B,)
    assert _rel(ours, theirs.numpy()) <= TOL


def test_infidelity_subset_removal_matches_captum(setup):
    """Captum's decorator: I = (x - x_p) / (x - baseline), x_p sets a random subset to the baseline."""
    net, f, x, xt, attr, rng = setup
    base = np.float32(0.25) * rng.standard_normal((1, D)).astype(np.float32)
    drop = rng.random((P, B, D)) < 0.3
    x_p = np.where(drop, base, x[None]).astype(np.float32)

    @cm.infidelity_perturb_func_decorator(True)
    def perturb(inputs, baselines):
        return _torch_order(x_p)

    theirs = cm.infidelity(net, perturb, xt, torch.from_numpy(attr), baselines=torch.from_numpy(base), target=1,
                           n_perturb_samples=P)
    eps = np.where(drop, 1.0, 0.0).astype(np.float32)  # (x - x_p) / (x - b): 1 where dropped, 0 elsewhere
    ours = metrics.infidelity(f, x, attr, base, target=1, perturbations=eps, perturbed_inputs=x_p)
    assert _rel(ours, theirs.numpy()) <= TOL


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_sensitivity_max_matches_captum(setup, method):
    net, f, x, xt, attr, rng = setup
    x_p = (x[None] + rng.uniform(-0.1, 0.1, (P, B, D))).astype(np.float32)

    def perturb(inputs):
        return _torch_order(x_p)

    if method == "saliency":
        theirs = cm.sensitivity_max(ca.Saliency(net).attribute, xt, perturb, n_perturb_samples=P, target=1,
                                    abs=False)
        explain = lambda z: jaxig.saliency(f, z, target=1, absolute=False)
    else:
        theirs = cm.sensitivity_max(ca.IntegratedGradients(net).attribute, xt, perturb, n_perturb_samples=P,
                                    target=1, n_steps=24, method="gausslegendre")
        explain = lambda z: jaxig.integrated_gradients(f, z, target=1, n_steps=24, completeness_rtol=None)
    ours = metrics.sensitivity_max(explain, x, perturbed_inputs=x_p)
    chunked = metrics.sensitivity_max(explain, x, perturbed_inputs=x_p, batch_size=3)  # 3 + 3 + 2 (padded)
    assert _rel(ours, theirs.numpy()) <= TOL
    np.testing.assert_allclose(chunked, ours, rtol=1e-6)
