"""Returns the benchmark workloads: a PyTorch model, the same model as a pure-JAX function, and inputs.

Each workload is built from a seed: PyTorch initialises the weights (its default init), and the
*same* weights are copied into a JAX function with the layouts converted:

- dense: torch ``Linear`` stores ``W`` as (out, in) and computes ``x @ W.T + b``;
- conv: torch is NCHW activations with OIHW kernels; the JAX function takes the same NCHW input and
  works in NHWC/HWIO internally (see ``CNN_LAYOUT``), so the flatten before the dense layers follows
  torch's (C, H, W) order;
- LSTM: torch packs the gates as (i, f, g, o) rows of ``weight_ih`` (4H, in) and ``weight_hh``
  (4H, H) and adds both biases ``b_ih + b_hh``; the JAX version projects all time steps of the
  input at once, then scans the recurrence.

Importing this module needs torch (the ``[compare]`` extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax
from torch import nn

__all__ = ["Workload", "WORKLOADS", "build"]

# "NHWC" converts the NCHW input once and runs the convolutions in XLA's preferred layout;
# "NCHW" runs them in torch's layout. Measured in benchmarks/README.md.
CNN_LAYOUT = "NHWC"


@dataclasses.dataclass
class Workload:
    """A model in both frameworks plus inputs; ``target`` is the explained output column."""

    name: str
    torch_model: nn.Module
    jax_fn: Callable
    x: np.ndarray  # float32 inputs, torch layout
    n_steps: int
    target: int
    fwd_flops_per_example: float | None = None  # multiply-adds x 2 of one forward pass (MLPs)


def _np(t: torch.Tensor) -> jnp.ndarray:
    return jnp.asarray(t.detach().cpu().numpy())


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _dense_params(linears):
    return [(_np(m.weight).T, _np(m.bias)) for m in linears]


def _mlp(name, sizes, x, n_steps, seed):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = _freeze(nn.Sequential(*layers))
    params = _dense_params([m for m in model if isinstance(m, nn.Linear)])

    def jax_fn(z):
        for i, (w, b) in enumerate(params):
            z = z @ w + b
            if i < len(params) - 1:
                z = jax.nn.relu(z)
        return z

    flops = 2.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return Workload(name, model, jax_fn, x, n_steps, 0, flops)


def mlp_california(seed: int = 0) -> Workload:
    """8 -> 100 -> 50 -> 10 -> 1 ReLU regression MLP (seed 002), 180 standardised rows, 50 steps."""
    x = np.random.default_rng(seed).standard_normal((180, 8)).astype(np.float32)
    return _mlp("mlp_california", [8, 100, 50, 10, 1], x, 50, seed)


def mlp_linear96(seed: int = 0) -> Workload:
    """96 -> 64 -> 32 -> 1 ReLU MLP on the pos/neg/noise features (seed 004), 1,000 rows, 100 steps."""
    x = np.random.default_rng(seed).uniform(-1, 1, (1000, 96)).astype(np.float32)
    return _mlp("mlp_linear96", [96, 64, 32, 1], x, 100, seed)


class _LSTMHead(nn.Module):
    def __init__(self, n_in, n_hidden):
        super().__init__()
        self.lstm = nn.LSTM(n_in, n_hidden, batch_first=True)
        self.head = nn.Linear(n_hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def lstm_ts(seed: int = 0, unroll: bool = True) -> Workload:
    """LSTM(6 -> 64) + linear head on the last state (seed 000), 4,096 x 5 steps x 6 features, 50 steps.

    ``unroll=True`` runs the 5 time steps as straight-line code; ``False`` uses ``lax.scan``, which
    XLA:CPU runs about 2.5x slower here (measured in benchmarks/README.md)."""
    torch.manual_seed(seed)
    model = _freeze(_LSTMHead(6, 64))
    lstm = model.lstm
    w_ih, w_hh = _np(lstm.weight_ih_l0).T, _np(lstm.weight_hh_l0).T  # (in, 4H), (H, 4H)
    bias = _np(lstm.bias_ih_l0) + _np(lstm.bias_hh_l0)
    w_out, b_out = _dense_params([model.head])[0]
    n_hidden = w_hh.shape[0]

    def step(carry, p):
        h, c = carry
        i, f, g, o = jnp.split(p + h @ w_hh, 4, axis=-1)  # torch's gate order
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), None

    def jax_fn(x):  # x: (B, T, F)
        projected = x @ w_ih + bias  # (B, T, 4H): the input projection of every step at once
        zeros = jnp.zeros((x.shape[0], n_hidden), x.dtype)
        carry = (zeros, zeros)
        if unroll:
            for t in range(x.shape[1]):
                carry, _ = step(carry, projected[:, t])
        else:
            carry, _ = lax.scan(step, carry, jnp.swapaxes(projected, 0, 1))
        return carry[0] @ w_out + b_out

    x = np.random.default_rng(seed).standard_normal((4096, 5, 6)).astype(np.float32)
    return Workload("lstm_ts" if unroll else "lstm_ts_scan", model, jax_fn, x, 50, 0)


def _cnn_torch():
    return nn.Sequential(
        nn.Conv2d(3, 8, 8), nn.Softplus(),
        nn.Conv2d(8, 4, 8, padding="same"), nn.Tanh(),
        nn.Conv2d(4, 2, 4), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 22 * 22, 64), nn.ReLU(),
        nn.Linear(64, 2),
    )


def _center_relu_inputs(model: nn.Sequential, x: torch.Tensor) -> None:
    """Shifts the bias before each ReLU so that about half of its inputs per channel are positive on ``x``.

    With PyTorch's default init the tanh layer's outputs are nearly constant per channel, so the
    3rd convolution's ReLU is dead on almost every image (0.006% of units alive for seed 0) and the
    attributions are all zero, which no timing or agreement check should be run on. Centring (a
    data-dependent init, as training would do) leaves about half of the units alive.
    """
    with torch.no_grad():
        h = x
        for layer, nxt in zip(model[:-1], model[1:]):
            h = layer(h)
            if isinstance(nxt, nn.ReLU) and isinstance(layer, (nn.Conv2d, nn.Linear)):
                per_channel = h.transpose(0, 1).reshape(h.shape[1], -1)
                # midway between the two middle values, so no unit sits exactly on the kink
                # (where torch's and XLA's rounding would pick different sides)
                ordered = per_channel.sort(dim=1).values
                n = ordered.shape[1]
                shift = (ordered[:, n // 2 - 1] + ordered[:, n // 2]) / 2
                layer.bias.sub_(shift)
                h = h - (shift.view(1, -1, 1, 1) if h.ndim == 4 else shift)


def cnn32(seed: int = 0, layout: str | None = None) -> Workload:
    """conv 8x8x8 softplus, conv 8x8x4 tanh (same), conv 4x4x2 relu, dense 64 relu, dense 2 (seed 001);
    64 images 3x32x32, target 1, 50 steps."""
    layout = layout or CNN_LAYOUT
    torch.manual_seed(seed)
    model = _freeze(_cnn_torch())
    x = np.random.default_rng(seed).standard_normal((64, 3, 32, 32)).astype(np.float32)
    _center_relu_inputs(model, torch.from_numpy(x))
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    (w4, b4), (w5, b5) = _dense_params([m for m in model if isinstance(m, nn.Linear)])
    acts = [jax.nn.softplus, jnp.tanh, jax.nn.relu]
    pads = ["VALID", "SAME", "VALID"]  # torch "same" with an even kernel pads (3, 4) like XLA's SAME
    if layout == "NHWC":
        kernels = [jnp.transpose(_np(m.weight), (2, 3, 1, 0)) for m in convs]  # OIHW -> HWIO
        dims, bias_shape = ("NHWC", "HWIO", "NHWC"), (1, 1, 1, -1)
    elif layout == "NCHW":
        kernels = [_np(m.weight) for m in convs]
        dims, bias_shape = ("NCHW", "OIHW", "NCHW"), (1, -1, 1, 1)
    else:
        raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
    biases = [_np(m.bias).reshape(bias_shape) for m in convs]

    def jax_fn(x):  # x: (B, 3, 32, 32), torch's NCHW
        z = jnp.transpose(x, (0, 2, 3, 1)) if layout == "NHWC" else x
        for k, b, act, pad in zip(kernels, biases, acts, pads):
            z = act(lax.conv_general_dilated(z, k, (1, 1), pad, dimension_numbers=dims) + b)
        if layout == "NHWC":
            z = jnp.transpose(z, (0, 3, 1, 2))  # flatten in torch's (C, H, W) order
        z = jax.nn.relu(z.reshape(z.shape[0], -1) @ w4 + b4)
        return z @ w5 + b5

    return Workload("cnn32", model, jax_fn, x, 50, 1)


WORKLOADS: dict[str, Callable[..., Workload]] = {
    "mlp_california": mlp_california,
    "mlp_linear96": mlp_linear96,
    "lstm_ts": lstm_ts,
    "cnn32": cnn32,
}


def build(name: str, seed: int = 0) -> Workload:
    """Returns the workload called ``name`` (one of ``WORKLOADS``)."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {sorted(WORKLOADS)}")
    return WORKLOADS[name](seed)
