"""Cross-check the layer methods against Captum 0.9 on the same weights (float32, rel. diff <= 1e-4).

Captum's definitions, read from its source: ``LayerIntegratedGradients`` runs IG in the layer's
space (a forward hook replaces the layer output by ``h' + a (h - h')``); ``LayerConductance`` is a
left Riemann–Stieltjes sum over the ``n_steps + 1`` nodes of its method (our ``stieltjes=True``);
``NeuronConductance`` is ``(x - x') sum_k w_k dF/dh_n dh_n/dx`` with the method's weights.
"""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import jaxig  # noqa: E402

TOL = 1e-4


def _rel(ours, expected):
    expected = np.asarray(expected)
    assert np.max(np.abs(expected)) > 1e-4, "Captum's attributions vanish; the case is degenerate"
    return float(np.max(np.abs(np.asarray(ours) - expected)) / np.max(np.abs(expected)))


def _np(t):
    return t.detach().numpy()


@pytest.fixture(scope="module")
def mlp():
    """A ReLU MLP 6 -> 8 -> 8 -> 3 in torch, and its layers as JAX functions on the same weights."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 3)).eval()
    (w1, b1), (w2, b2), (w3, b3) = [(jnp.asarray(_np(m.weight)), jnp.asarray(_np(m.bias)))
                                    for m in net if isinstance(m, torch.nn.Linear)]
    body = lambda x: jnp.maximum(x @ w1.T + b1, 0.0)  # output of net[1]
    mid = lambda h: jnp.maximum(h @ w2.T + b2, 0.0)  # output of net[3]
    out = lambda h: h @ w3.T + b3
    x = np.random.default_rng(1).normal(size=(16, 6)).astype(np.float32)
    baseline = np.random.default_rng(2).normal(size=(1, 6)).astype(np.float32) * 0.3
    return dict(net=net, body=body, head=lambda h: out(mid(h)), body2=lambda x: mid(body(x)), head2=out,
                x=x, baseline=baseline)


def test_layer_ig_equals_captum_at_first_hidden_layer(mlp):
    lig = captum_attr.LayerIntegratedGradients(mlp["net"], mlp["net"][1])
    expected, expected_delta = lig.attribute(torch.from_numpy(mlp["x"]), baselines=torch.from_numpy(mlp["baseline"]),
                                             target=2, n_steps=20, return_convergence_delta=True)
    attr, info = jaxig.layer_integrated_gradients(mlp["body"], mlp["head"], jnp.asarray(mlp["x"]), mlp["baseline"],
                                                  target=2, n_steps=20, rule=jaxig.GaussLegendre(), return_info=True)
    assert attr.shape == (16, 8)
    assert _rel(attr, _np(expected)) <= TOL
    np.testing.assert_allclose(np.asarray(info.delta), _np(expected_delta), atol=1e-4)


class _Text(torch.nn.Module):
    """Embedding -> masked mean over tokens -> linear: the shape of a text classifier."""

    def __init__(self, vocab=20, dim=6, classes=3):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.out = torch.nn.Linear(dim, classes)

    def forward(self, ids, mask):
        e = self.emb(ids) * mask[..., None]
        return self.out(e.sum(1) / mask.sum(1, keepdim=True))


def test_layer_ig_equals_captum_at_the_embedding_of_a_text_model():
    torch.manual_seed(0)
    net = _Text().eval()
    table = jnp.asarray(_np(net.emb.weight))
    w, b = jnp.asarray(_np(net.out.weight)), jnp.asarray(_np(net.out.bias))
    body = lambda ids, mask: table[ids]
    head = lambda e, mask: ((e * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)) @ w.T + b
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, size=(5, 7))
    mask = (np.arange(7)[None, :] < np.array([7, 5, 3, 6, 7])[:, None]).astype(np.float32)
    target = np.array([0, 1, 2, 1, 0])

    lig = captum_attr.LayerIntegratedGradients(net, net.emb)
    expected = lig.attribute(torch.from_numpy(ids), baselines=torch.zeros(5, 7, dtype=torch.long),
                             additional_forward_args=(torch.from_numpy(mask),), target=torch.from_numpy(target),
                             n_steps=16)
    attr, info = jaxig.layer_integrated_gradients(body, head, jnp.asarray(ids), 0, target=jnp.asarray(target),
                                                  args=(jnp.asarray(mask),), n_steps=16, return_info=True)
    assert attr.shape == (5, 7, 6)
    assert _rel(attr, _np(expected)) <= TOL
    # completeness at the layer: the attributions sum to F(ids) - F(pad ids) (linear head: exact)
    assert np.max(np.abs(np.asarray(info.delta))) < 1e-5


@pytest.mark.parametrize("method,rule", [("gausslegendre", jaxig.GaussLegendre()),
                                         ("riemann_trapezoid", jaxig.Trapezoid())])
def test_layer_conductance_equals_captum_at_a_hidden_layer(mlp, method, rule):
    cond = captum_attr.LayerConductance(mlp["net"], mlp["net"][3])
    expected = cond.attribute(torch.from_numpy(mlp["x"]), baselines=torch.from_numpy(mlp["baseline"]), target=1,
                              n_steps=24, method=method)
    attr = jaxig.layer_conductance(mlp["body2"], mlp["head2"], jnp.asarray(mlp["x"]), mlp["baseline"], target=1,
                                   n_steps=24, rule=rule, stieltjes=True)
    assert _rel(attr, _np(expected)) <= TOL


def test_layer_conductance_default_converges_to_captums_with_many_steps(mlp):
    """Our default (jvp of body, GL weights) and Captum's differences approximate the same integral."""
    cond = captum_attr.LayerConductance(mlp["net"], mlp["net"][3])
    expected = cond.attribute(torch.from_numpy(mlp["x"]), baselines=torch.from_numpy(mlp["baseline"]), target=1,
                              n_steps=2000, method="riemann_trapezoid")
    attr = jaxig.layer_conductance(mlp["body2"], mlp["head2"], jnp.asarray(mlp["x"]), mlp["baseline"], target=1,
                                   n_steps=256)
    assert _rel(attr, _np(expected)) <= 5e-3


@pytest.mark.parametrize("neuron", [(3,), (6,)])
def test_neuron_conductance_equals_captum(mlp, neuron):
    nc = captum_attr.NeuronConductance(mlp["net"], mlp["net"][1])
    expected = nc.attribute(torch.from_numpy(mlp["x"]), neuron_selector=neuron,
                            baselines=torch.from_numpy(mlp["baseline"]), target=0, n_steps=20, method="gausslegendre")
    attr = jaxig.neuron_conductance(mlp["body"], mlp["head"], jnp.asarray(mlp["x"]), neuron, mlp["baseline"],
                                    target=0, n_steps=20)
    assert attr.shape == (16, 6)
    assert _rel(attr, _np(expected)) <= TOL
    by_callable = jaxig.neuron_conductance(mlp["body"], mlp["head"], jnp.asarray(mlp["x"]),
                                           lambda h: h[:, neuron[0]], mlp["baseline"], target=0, n_steps=20)
    assert _rel(by_callable, _np(expected)) <= TOL


def test_layer_activation_equals_captum(mlp):
    expected = captum_attr.LayerActivation(mlp["net"], mlp["net"][3]).attribute(torch.from_numpy(mlp["x"]))
    assert _rel(jaxig.layer_activation(mlp["body2"], jnp.asarray(mlp["x"])), _np(expected)) <= 1e-5
