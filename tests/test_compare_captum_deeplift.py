"""DeepLift and DeepLiftSHAP against Captum 0.9 on the same weights (float32, rel. diff <= 1e-4)."""

import warnings

import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from torch import nn

import jaxig

TOL = 1e-4


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _np(t):
    return t.detach().numpy().astype(np.float32)


def _mlp(acts, sizes=(6, 16, 12, 4), seed=0):
    """A torch MLP with activation *modules* (Captum hooks modules) and the same function in JAX."""
    torch.manual_seed(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(acts):
            layers.append(acts[i][0]())
    model = nn.Sequential(*layers).eval()
    params = [(_np(m.weight).T, _np(m.bias)) for m in model if isinstance(m, nn.Linear)]

    def jax_fn(x):
        for i, (w, b) in enumerate(params):
            x = x @ w + b
            if i < len(acts):
                x = acts[i][1](x)
        return x

    return model, jax_fn


def _captum(cls, model, x, baselines, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = cls(model).attribute(torch.from_numpy(x), baselines=torch.from_numpy(baselines),
                                   target=target)
    return out.detach().numpy()


@pytest.mark.parametrize("acts", [
    [(nn.ReLU, jax.nn.relu), (nn.ReLU, jax.nn.relu)],
    [(nn.Tanh, jnp.tanh), (nn.Sigmoid, jax.nn.sigmoid)],
    [(nn.Softplus, jax.nn.softplus), (nn.ELU, jax.nn.elu)],
], ids=["relu", "tanh-sigmoid", "softplus-elu"])
def test_deeplift_mlp_matches_captum(acts):
    model, jax_fn = _mlp(acts)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    base = (0.3 * rng.standard_normal((8, 6))).astype(np.float32)
    target = np.arange(8) % 4
    ref = _captum(captum_attr.DeepLift, model, x, base, torch.from_numpy(target))
    ours = jaxig.deeplift(jax_fn, x, base, target=jnp.asarray(target))
    assert _rel(ours, ref) <= TOL


def _cnn(seed=0):
    """Conv2d+ReLU+Conv2d+MaxPool2d+Linear+ReLU+Linear, NCHW as torch (see benchmarks/_workloads.py).

    No activation module sits next to the MaxPool2d: Captum 0.9 mishandles two adjacent hooked
    modules (ReLU->MaxPool2d or MaxPool2d->ReLU). Its attributions then lose summation-to-delta on
    some examples (captum issue #1104); with a linear layer between them Captum agrees with jaxig to
    ~1e-7. jaxig keeps summation-to-delta in every order (test_deeplift.py).
    """
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(54, 8), nn.ReLU(), nn.Linear(8, 3),
    ).eval()
    (k1, k2) = [_np(m.weight) for m in model if isinstance(m, nn.Conv2d)]
    (c1, c2) = [_np(m.bias).reshape(1, -1, 1, 1) for m in model if isinstance(m, nn.Conv2d)]
    (w1, b1), (w2, b2) = [(_np(m.weight).T, _np(m.bias)) for m in model if isinstance(m, nn.Linear)]
    dims = ("NCHW", "OIHW", "NCHW")  # torch's layout, no transposes needed

    def jax_fn(x):  # x: (B, 2, 8, 8)
        z = jax.nn.relu(lax.conv_general_dilated(x, k1, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims) + c1)
        z = lax.conv_general_dilated(z, k2, (1, 1), "VALID", dimension_numbers=dims) + c2
        z = lax.reduce_window(z, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        z = jax.nn.relu(z.reshape(z.shape[0], -1) @ w1 + b1)
        return z @ w2 + b2

    return model, jax_fn


def test_deeplift_cnn_with_maxpool_matches_captum():
    model, jax_fn = _cnn()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 2, 8, 8)).astype(np.float32)
    base = (0.5 * rng.standard_normal((6, 2, 8, 8))).astype(np.float32)
    ref = _captum(captum_attr.DeepLift, model, x, base, 1)
    ours, info = jaxig.deeplift(jax_fn, x, base, target=1, return_info=True)
    assert _rel(ours, ref) <= TOL
    # Captum's max-pool rule keeps summation-to-delta.
    out = np.asarray(jax_fn(x))[:, 1] - np.asarray(jax_fn(base))[:, 1]
    assert np.max(np.abs(np.asarray(info.delta))) <= 1e-4 * np.max(np.abs(out))


@pytest.mark.parametrize("acts", [
    [(nn.ReLU, jax.nn.relu), (nn.ReLU, jax.nn.relu)],
    [(nn.Tanh, jnp.tanh), (nn.Sigmoid, jax.nn.sigmoid)],
], ids=["relu", "tanh-sigmoid"])
def test_deeplift_shap_matches_captum(acts):
    model, jax_fn = _mlp(acts, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    baselines = rng.standard_normal((4, 6)).astype(np.float32)
    ref = _captum(captum_attr.DeepLiftShap, model, x, baselines, 2)
    ours = jaxig.deeplift_shap(jax_fn, x, baselines, target=2)
    assert _rel(ours, ref) <= TOL


def test_deeplift_shap_cnn_matches_captum():
    model, jax_fn = _cnn(seed=5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    baselines = rng.standard_normal((3, 2, 8, 8)).astype(np.float32)
    ref = _captum(captum_attr.DeepLiftShap, model, x, baselines, 0)
    ours = jaxig.deeplift_shap(jax_fn, x, baselines, target=0)
    assert _rel(ours, ref) <= TOL
