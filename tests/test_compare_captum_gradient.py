"""saliency, gradient_x_input and noise_tunnel against Captum on the same weights and the same noise.

Models: a small ReLU MLP and a small CNN (Conv2d + ReLU + MaxPool2d + Linear), built in torch and
copied into JAX (torch Linear stores W as (out, in): JAX computes x @ W.T + b; the convolution runs
in torch's NCHW/OIHW layout, so the flatten order is torch's).

What the NoiseTunnel comparison compares: Captum draws its noise inside ``NoiseTunnel.attribute``
with ``torch.normal(0, stdevs)``. For the duration of that call we replace ``torch.normal`` by a
function returning *our* perturbations (laid out as Captum lays them: ``repeat_interleave``, so row
``b * n_samples + s`` is sample ``s`` of example ``b``). Everything else, adding the noise, the inner
attribution method and the smoothgrad / smoothgrad_sq / vargrad reduction, is Captum's own code. The
test checks that the replacement was called exactly once with the shape we filled.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
from torch import nn  # noqa: E402

import jaxig  # noqa: E402

TOL = 1e-4  # max |ours - Captum| / max |Captum|
N_SAMPLES = 4
N_STEPS = 8


def _np(t):
    return jnp.asarray(t.detach().numpy())


def _mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    (w1, b1), (w2, b2), (w3, b3) = [(_np(m.weight), _np(m.bias)) for m in model if isinstance(m, nn.Linear)]

    def f(x):
        h = jax.nn.relu(x @ w1.T + b1)
        h = jax.nn.relu(h @ w2.T + b2)
        return h @ w3.T + b3

    x = torch.randn(8, 6)
    return model, f, x


def _cnn():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3)).eval()
    conv, lin = model[0], model[4]
    k, kb, w, b = _np(conv.weight), _np(conv.bias), _np(lin.weight), _np(lin.bias)

    def f(x):  # NCHW throughout, as torch
        h = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + kb[None, :, None, None])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        return h.reshape(h.shape[0], -1) @ w.T + b

    x = torch.randn(4, 2, 8, 8)
    return model, f, x


MODELS = {"mlp": _mlp, "cnn": _cnn}


def _rel(ours, theirs):
    theirs = theirs.detach().numpy()
    assert np.max(np.abs(theirs)) > 1e-4, "Captum's attributions vanish: the comparison would be empty"
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


@functools.cache
def _built(name):
    return MODELS[name]()


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return _built(request.param)


def test_models_agree(model):
    torch_model, f, x = model
    np.testing.assert_allclose(f(jnp.asarray(x.numpy())), torch_model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("absolute", [True, False])
def test_saliency(model, absolute):
    torch_model, f, x = model
    theirs = captum_attr.Saliency(torch_model).attribute(x, target=1, abs=absolute)
    ours = jaxig.saliency(f, jnp.asarray(x.numpy()), target=1, absolute=absolute)
    assert _rel(ours, theirs) <= TOL


def test_input_x_gradient(model):
    torch_model, f, x = model
    theirs = captum_attr.InputXGradient(torch_model).attribute(x, target=2)
    ours = jaxig.gradient_x_input(f, jnp.asarray(x.numpy()), target=2)
    assert _rel(ours, theirs) <= TOL


def _noise(x, seed):
    """Our perturbations, (n_samples,) + x.shape, standard deviation 0.3 (NumPy: no XLA draw to compile)."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(0.3 * rng.standard_normal((N_SAMPLES,) + tuple(x.shape)), dtype=jnp.float32)


def _captum_with_our_noise(monkeypatch, nt, x, eps, **kwargs):
    """Runs Captum's NoiseTunnel with torch.normal replaced by our perturbations ``eps`` (n, B, ...)."""
    n = eps.shape[0]
    # Captum: input.repeat_interleave(n, dim=0) + noise, so row b * n + s is (example b, sample s).
    laid_out = torch.from_numpy(np.ascontiguousarray(np.swapaxes(np.asarray(eps), 0, 1)).reshape(
        (x.shape[0] * n,) + tuple(x.shape[1:])))
    calls = []

    def fake_normal(mean, std, *args, **kw):
        assert tuple(std.shape) == tuple(laid_out.shape)
        calls.append(tuple(std.shape))
        return laid_out.clone()

    with monkeypatch.context() as patch:
        patch.setattr(torch, "normal", fake_normal)
        out = nt.attribute(x, nt_samples=n, stdevs=0.3, **kwargs)
    assert len(calls) == 1, "Captum drew its noise more than once: the injection missed a draw"
    return out


REDUCES = ("smoothgrad", "smoothgrad_sq", "vargrad")
# The reductions are model-independent code on both sides: all three on the MLP, and on the CNN
# (whose convolution/max-pool gradients saliency and input x gradient already compare) the one
# that uses both moments, each CNN case compiling its own programs.
TUNNEL_CASES = [("mlp", r) for r in REDUCES] + [("cnn", "vargrad")]


@pytest.mark.parametrize("name,reduce", TUNNEL_CASES, ids=[f"{m}-{r}" for m, r in TUNNEL_CASES])
def test_noise_tunnel_of_integrated_gradients(name, reduce, monkeypatch):
    torch_model, f, x = _built(name)
    xj = jnp.asarray(x.numpy())
    tunnel = jaxig.noise_tunnel(
        functools.partial(jaxig.integrated_gradients, n_steps=N_STEPS, rule=jaxig.GaussLegendre()),
        n_samples=N_SAMPLES, stdev=0.3, reduce=reduce)
    eps = _noise(x, 3)
    nt = captum_attr.NoiseTunnel(captum_attr.IntegratedGradients(torch_model))
    theirs = _captum_with_our_noise(monkeypatch, nt, x, eps, nt_type=reduce, target=0, n_steps=N_STEPS,
                                    method="gausslegendre")
    ours = tunnel(f, xj, target=0, noise=eps)
    assert _rel(ours, theirs) <= TOL


@pytest.mark.parametrize("name,reduce", TUNNEL_CASES, ids=[f"{m}-{r}" for m, r in TUNNEL_CASES])
def test_noise_tunnel_of_saliency(name, reduce, monkeypatch):
    torch_model, f, x = _built(name)
    xj = jnp.asarray(x.numpy())
    tunnel = jaxig.noise_tunnel(jaxig.saliency, n_samples=N_SAMPLES, stdev=0.3, reduce=reduce,
                                sample_batch_size=3)  # chunked: a scan of one chunk plus a remainder
    eps = _noise(x, 4)
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(torch_model))
    theirs = _captum_with_our_noise(monkeypatch, nt, x, eps, nt_type=reduce, target=1)
    ours = tunnel(f, xj, target=1, noise=eps)
    assert _rel(ours, theirs) <= TOL


def test_the_injected_noise_matters(model, monkeypatch):
    """Guards the comparison itself: with other noise Captum's result moves by far more than TOL."""
    torch_model, f, x = model
    xj = jnp.asarray(x.numpy())
    tunnel = jaxig.noise_tunnel(jaxig.saliency, n_samples=N_SAMPLES, stdev=0.3)
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(torch_model))
    theirs = _captum_with_our_noise(monkeypatch, nt, x, _noise(x, 5), target=1)
    ours = tunnel(f, xj, target=1, noise=_noise(x, 6))
    assert _rel(ours, theirs) > 100 * TOL
