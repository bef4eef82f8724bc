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
import functools
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
    """A model in both frameworks plus inputs; ``target`` is the explained output column.

    A *layer* workload (``layer`` set) is attributed at an intermediate layer, not at its inputs:
    ``x`` holds integer token ids, ``torch_model.<layer>`` is the module Captum's
    ``LayerIntegratedGradients`` hooks, ``torch_model.rest(h)`` runs the model from that layer's
    output, and ``jax_body`` / ``jax_fn`` are the JAX halves (``jax_fn(jax_body(ids))`` is the model).
    """

    name: str
    torch_model: nn.Module
    jax_fn: Callable
    x: np.ndarray  # float32 inputs (torch layout), or integer token ids for a layer workload
    n_steps: int
    target: int
    fwd_flops_per_example: float | None = None  # multiply-adds x 2 of one forward pass (MLPs)
    layer: str | None = None  # the attributed submodule of a layer workload
    jax_body: Callable | None = None  # ids -> layer output, for a layer workload
    baseline: np.ndarray | None = None  # baseline token ids, for a layer workload
    piecewise_linear: bool = False  # exact IG applies


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
    return Workload(name, model, jax_fn, x, n_steps, 0, flops, piecewise_linear=True)


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


def lstm_flax(seed: int = 0) -> Workload:
    """``lstm_ts``'s model and inputs written as Flax users write it: ``nn.RNN(nn.LSTMCell(64))``.

    Flax's cell projects each step's input inside the recurrence (``lax.scan``), with one dense layer
    per gate: ``ii, if, ig, io`` (input, no bias) and ``hi, hf, hg, ho`` (hidden, with the bias,
    here torch's ``b_ih + b_hh``)."""
    import flax.linen as fnn

    base = lstm_ts(seed)
    lstm, head = base.torch_model.lstm, base.torch_model.head
    n_hidden = lstm.hidden_size
    w_ih, w_hh = _np(lstm.weight_ih_l0), _np(lstm.weight_hh_l0)  # (4H, in), (4H, H)
    bias = _np(lstm.bias_ih_l0) + _np(lstm.bias_hh_l0)
    cell = {}
    for k, gate in enumerate("ifgo"):  # torch's row blocks are the gates i, f, g, o
        rows = slice(k * n_hidden, (k + 1) * n_hidden)
        cell["i" + gate] = {"kernel": w_ih[rows].T}
        cell["h" + gate] = {"kernel": w_hh[rows].T, "bias": bias[rows]}
    w_out, b_out = _dense_params([head])[0]

    class LSTMRegressor(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            h = fnn.RNN(fnn.LSTMCell(n_hidden, name="cell"))(x)
            return fnn.Dense(1, name="head")(h[:, -1])

    module = LSTMRegressor()
    params = {"params": {"cell": cell, "head": {"kernel": w_out, "bias": b_out}}}
    jax_fn = functools.partial(module.apply, params)
    return Workload("lstm_flax", base.torch_model, jax_fn, base.x, base.n_steps, 0)


class _Encoder(nn.Module):
    """Token embedding -> learned positions -> post-norm transformer encoder -> mean pool -> linear."""

    def __init__(self, vocab, length, d_model, heads, d_ff, layers, classes):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.randn(length, d_model) * 0.1)
        layer = nn.TransformerEncoderLayer(d_model, heads, d_ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def rest(self, h):
        return self.head(self.encoder(h + self.pos).mean(dim=1))

    def forward(self, ids):
        return self.rest(self.embed(ids))


def transformer(seed: int = 0) -> Workload:
    """A 2-layer, 4-head, d=64 encoder classifier over 32 tokens (vocabulary 1,000), 64 sequences,
    attributed at its token embeddings (Captum ``LayerIntegratedGradients(model, model.embed)``),
    baseline the padding token 0, target 1, 50 steps. The JAX side is Flax linen
    (``nn.Embed``, ``nn.MultiHeadDotProductAttention``, ``nn.LayerNorm``, ``nn.Dense``)."""
    import flax.linen as fnn

    vocab, length, d, heads, d_ff, n_layers, classes = 1000, 32, 64, 4, 128, 2, 2
    torch.manual_seed(seed)
    model = _freeze(_Encoder(vocab, length, d, heads, d_ff, n_layers, classes))
    hd = d // heads

    def attention(mha):
        w, b = _np(mha.in_proj_weight), _np(mha.in_proj_bias)
        out = {}
        for k, name in enumerate(("query", "key", "value")):
            rows = slice(k * d, (k + 1) * d)
            out[name] = {"kernel": w[rows].T.reshape(d, heads, hd), "bias": b[rows].reshape(heads, hd)}
        out["out"] = {"kernel": _np(mha.out_proj.weight).T.reshape(heads, hd, d),
                      "bias": _np(mha.out_proj.bias)}
        return out

    def dense(m):
        return {"kernel": _np(m.weight).T, "bias": _np(m.bias)}

    def norm(m):
        return {"scale": _np(m.weight), "bias": _np(m.bias)}

    params = {"embed": {"embedding": _np(model.embed.weight)}, "pos": _np(model.pos),
              "head": dense(model.head)}
    for i, lay in enumerate(model.encoder.layers):
        params[f"layer{i}"] = {"attn": attention(lay.self_attn), "ff1": dense(lay.linear1),
                               "ff2": dense(lay.linear2), "norm1": norm(lay.norm1),
                               "norm2": norm(lay.norm2)}

    class EncoderLayer(fnn.Module):
        @fnn.compact
        def __call__(self, h):
            h = fnn.LayerNorm(1e-5, name="norm1")(h + fnn.MultiHeadDotProductAttention(heads, name="attn")(h))
            ff = fnn.Dense(d, name="ff2")(jax.nn.relu(fnn.Dense(d_ff, name="ff1")(h)))
            return fnn.LayerNorm(1e-5, name="norm2")(h + ff)

    class Classifier(fnn.Module):
        def setup(self):
            self.embed = fnn.Embed(vocab, d)
            self.pos = self.param("pos", fnn.initializers.zeros, (length, d))
            self.layers = [EncoderLayer(name=f"layer{i}") for i in range(n_layers)]
            self.head = fnn.Dense(classes)

        def tokens(self, ids):
            return self.embed(ids)

        def rest(self, h):
            h = h + self.pos
            for lay in self.layers:
                h = lay(h)
            return self.head(h.mean(axis=1))

        def __call__(self, ids):
            return self.rest(self.tokens(ids))

    module, variables = Classifier(), {"params": params}
    body = functools.partial(module.apply, variables, method=Classifier.tokens)
    rest = functools.partial(module.apply, variables, method=Classifier.rest)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (64, length)).astype(np.int32)
    return Workload("transformer", model, rest, ids, 50, 1, layer="embed", jax_body=body,
                    baseline=np.zeros_like(ids))


WORKLOADS: dict[str, Callable[..., Workload]] = {
    "mlp_california": mlp_california,
    "mlp_linear96": mlp_linear96,
    "lstm_ts": lstm_ts,
    "lstm_flax": lstm_flax,
    "cnn32": cnn32,
    "transformer": transformer,
}


def build(name: str, seed: int = 0) -> Workload:
    """Returns the workload called ``name`` (one of ``WORKLOADS``)."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {sorted(WORKLOADS)}")
    return WORKLOADS[name](seed)
