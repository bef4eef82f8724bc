"""Layer attributions: ``f = head o body`` split functionally, attributions at ``h = body(x)``.

No hooks: the user writes the split as two functions (``body = lambda x: model.embed(x)``, ``head =
lambda h: model.rest(h)``), both of which may close over weights. Both are lifted into
:class:`~jaxig._model.Model` pytrees (their arrays become inputs of the compiled program), so results
follow the current weights and a new checkpoint compiles nothing.

- :func:`layer_activation`: ``h = body(x)`` (Captum's ``LayerActivation``).
- :func:`layer_integrated_gradients`: IG of ``head`` from ``body(x')`` to ``body(x)``, computed by
  :func:`jaxig.integrated_gradients` at the layer (Captum's ``LayerIntegratedGradients``).
- :func:`layer_conductance`: ``integral dF/dh . dh/da`` along the *input* line (Captum's
  ``LayerConductance``), by one JVP of ``body`` and one VJP of ``head`` per node.
- :func:`neuron_conductance`: input attributions through one hidden unit (Captum's
  ``NeuronConductance``), by one VJP of ``head`` and one VJP of ``body`` per node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._baselines import check_baseline, resolve_baseline
from .._gradients import gradient
from .._info import Info, completeness_gap
from .._model import Model, lift
from .._paths.base import AbstractPath
from .._paths.straight import StraightLine
from .._pytree import Module, static_field
from .._quadrature.accumulate import check_batch_size
from .._quadrature.autobatch import auto_alpha_batch_size
from .._quadrature.base import AbstractRule
from .._quadrature.gauss import GaussLegendre
from .._quadrature.random import AbstractRandomRule
from .._targets import TargetSpec, resolve_target_for, select
from .integrated import integrated_gradients

__all__ = ["layer_activation", "layer_integrated_gradients", "layer_conductance", "neuron_conductance"]


# -- the split problem ---------------------------------------------------------------------------


class _Split(Module):
    """``f = head o body`` lifted: the :class:`~jaxig._problem.Problem` of a layer method.

    ``prepare`` itself does not fit: it requires float ``x`` (token ids are integers) and checks
    that its function returns ``(B,)``/``(B, K)`` (``body`` returns an activation). This record uses
    the same parts (``lift``, the target and baseline checks) for the two halves.
    """

    body: Model
    head: Model
    x: Any
    baseline: Any
    index: Any
    target: TargetSpec = static_field()

    @property
    def dtype(self) -> Any:
        return jnp.result_type(*jax.tree.leaves(self.x))

    def full_baseline(self) -> Any:
        return resolve_baseline(self.baseline, self.x)

    def explained(self, point: Any) -> jax.Array:
        """Returns the explained output(s) of ``head(body(point))``: ``(B,)`` or ``(K, B)``."""
        return select(self.target, self.head(self.body(point)), self.index)


def _batched_inputs(x: Any) -> tuple[Any, int]:
    """Returns ``(x, B)`` for a pytree of arrays of any real dtype sharing a leading batch axis."""
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(x)
    if not leaves_with_path:
        raise ValueError(f"x has no array leaves (got {x!r}); pass an array or a pytree of arrays")
    leaves, batch, first = [], None, None
    for path, leaf in leaves_with_path:
        name = _validate.leaf_name(path)
        leaf = leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf)
        if leaf.ndim == 0:
            raise ValueError(f"{name} is a scalar; inputs need a leading batch axis. "
                             "For a single example pass x[None] (shape (1, ...)).")
        if batch is None:
            batch, first = leaf.shape[0], name
        elif leaf.shape[0] != batch:
            raise ValueError(f"{name} has batch size {leaf.shape[0]} but {first} has {batch}; every "
                             "leaf of x needs the same leading batch axis")
        leaves.append(leaf)
    assert batch is not None  # x has a leaf (checked above), and the first one set it
    return jax.tree_util.tree_unflatten(treedef, leaves), int(batch)


def _check_activation(h: Any, batch: int) -> None:
    """Raises unless ``body(x)`` is a pytree of float arrays with the leading batch axis."""
    leaves = jax.tree_util.tree_flatten_with_path(h)[0]
    if not leaves:
        raise ValueError("body(x) returned no arrays; it must return the layer's activation h (a float "
                         "array or a pytree of float arrays with a leading batch axis)")
    for path, leaf in leaves:
        name = "body(x)" + jax.tree_util.keystr(path)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{name} has dtype {leaf.dtype}; the layer activation must be float because it is "
                "differentiated. Split f after the layer that produces floats (e.g. after the "
                "embedding lookup, not before it)"
            )
        if leaf.ndim == 0 or leaf.shape[0] != batch:
            raise ValueError(
                f"{name} has shape {tuple(leaf.shape)}; every leaf of the activation needs the leading "
                f"batch axis of x ({batch}). Keep examples separate in body (no reductions over axis 0)"
            )


def _prepare_split(body, head, x, baseline, target, args, *, float_x: bool) -> _Split:
    for name, fn in (("body", body), ("head", head)):
        if not callable(fn):
            raise TypeError(f"{name} must be a callable, got {type(fn).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple of extra arguments (body(x, *args), head(h, *args)), got "
                        f"{type(args).__name__}; for one extra argument m pass args=(m,)")
    args = tuple(args)
    if float_x:
        for path, leaf in jax.tree_util.tree_flatten_with_path(x)[0]:
            dtype = jnp.result_type(leaf)
            if not jnp.issubdtype(dtype, jnp.floating):
                raise TypeError(
                    f"{_validate.leaf_name(path)} has dtype {dtype}; conductance integrates along the "
                    "straight line from the baseline to x, so x must be float. For token ids use "
                    "layer_integrated_gradients (its line runs in the layer's space)")
        x, batch = _validate.as_float_inputs(x)
    else:
        x, batch = _batched_inputs(x)
    baseline = 0.0 if baseline is None else baseline
    check_baseline(baseline, x)
    body_model = lift(body, x, args)
    h_struct = body_model.program.out_struct
    _check_activation(h_struct, batch)
    head_model = lift(head, h_struct, args)
    out = head_model.program.out_struct
    spec, index = resolve_target_for(target, out, batch, what="head(body(x))")
    return _Split(body=body_model, head=head_model, x=x, baseline=baseline, index=index, target=spec)


def _check_rule(rule: Any, n_steps: int, alpha_batch_size: Any) -> None:
    if not isinstance(rule, AbstractRule):
        raise TypeError(
            f"rule must be an instance of jaxig.AbstractRule such as jaxig.GaussLegendre(), got {rule!r}")
    rule.check_steps(n_steps)
    check_batch_size(alpha_batch_size)


def _line(alpha: jax.Array, x: Any, baseline: Any) -> Any:
    return jax.tree.map(lambda xi, bi: bi + alpha.astype(xi.dtype) * (xi - bi), x, baseline)


def _batch_size(static_size, split: _Split, n: int):
    if static_size is not None:
        return static_size
    return auto_alpha_batch_size(lambda p: split.head(split.body(p)), split.x, n)


# -- layer activation ----------------------------------------------------------------------------


def layer_activation(body: Callable[..., Any], x: Any, *, args: Any = ()) -> Any:
    """Returns the layer's activation ``h = body(x, *args)`` (a pytree, leading batch axis).

    Captum's ``LayerActivation``. ``body`` is lifted like every jaxig model (its arrays are inputs of
    the compiled program), so the result follows its current weights and new weights compile nothing.

    Args:
      body: maps a batch ``x`` to the activation, e.g. ``lambda x: model.apply(params, x,
        method=Model.embed)`` or ``lambda x: model.layer1(x)``.
      x: an array or pytree of arrays with a leading batch axis (any real dtype: token ids are fine).
      args: extra arguments, ``body(x, *args)``.

    Raises:
      TypeError: ``body`` is not callable or not traceable; ``args`` is not a tuple.
      ValueError: ``x`` has no batch axis.
    """
    if not callable(body):
        raise TypeError(f"body must be a callable, got {type(body).__name__}")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple of extra arguments of body, got {type(args).__name__}")
    x, _ = _batched_inputs(x)
    model = lift(body, x, tuple(args))
    return _apply_jit(model, x)


_apply_jit = jax.jit(lambda model, x: model(x))


# -- layer integrated gradients ------------------------------------------------------------------


@jax.jit
def _body_pair(split: _Split) -> tuple[Any, Any]:
    return split.body(split.x), split.body(split.full_baseline())


def layer_integrated_gradients(
    body: Callable[..., Any],
    head: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    n_steps: int = 50,
    rule: AbstractRule = GaussLegendre(),
    path: AbstractPath = StraightLine(),
    multiply_by_inputs: bool = True,
    alpha_batch_size: int | None = None,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns the Integrated Gradients of ``head`` at the layer ``h = body(x)``, shaped like ``h``.

    With ``h = body(x)``, ``h' = body(x')`` and ``F = head`` (the explained output),

        LIG_j(x) = (h_j - h'_j) * integral_0^1 dF(h' + a (h - h')) / dh_j  da
                 ~ (h_j - h'_j) * sum_k w_k dF(h' + a_k (h - h')) / dh_j

    i.e. :func:`jaxig.integrated_gradients` of ``head`` from ``h'`` to ``h``: the straight line runs in
    the *layer's* space. This is exactly Captum 0.9's ``LayerIntegratedGradients`` with
    ``attribute_to_layer_input=False`` (its forward hook replaces the layer's output by
    ``h' + a (h - h')``; the inputs are only used to compute ``h`` and ``h'``), same rule table with
    ``rule=GaussLegendre()`` (Captum's default ``method="gausslegendre"``). Completeness holds at the
    layer: ``sum_j LIG_j = F(x) - F(x')`` (``info.delta``). Sundararajan, Taly and Yan, ICML 2017;
    layer form as in Captum.

    The common use is a text model: ``x`` are integer token ids, ``body`` the embedding lookup and
    ``head`` the rest of the model; ``x`` may be integer, only ``h`` must be float. The baseline is in
    ``x``'s space (e.g. the id of a padding token); pass ``baseline=x_ref`` for a reference input.

    Args:
      body: ``x -> h``, ``body(x, *args)``; ``h`` a float array or pytree of float arrays with the
        leading batch axis. May close over weights (they are lifted, see :func:`jaxig.integrated_gradients`).
      head: ``h -> outputs`` of shape ``(B,)`` or ``(B, K)``, ``head(h, *args)``.
      x: an array or pytree of arrays (any real dtype) with a leading batch axis ``B``.
      baseline: ``None`` (zeros), a scalar, or a pytree like ``x`` (shapes ``x.shape``,
        ``(1,) + x.shape[1:]`` or ``x.shape[1:]``); cast to ``x``'s dtype.
      target, n_steps, rule, path, multiply_by_inputs, alpha_batch_size, key: as in
        :func:`jaxig.integrated_gradients`, applied to ``head`` between ``h'`` and ``h``.
      args: extra arguments passed to both ``body`` and ``head`` (masks, lengths; Captum's
        ``additional_forward_args``).
      return_info: return ``(attributions, info)``; ``info.delta`` is the completeness gap.

    Returns:
      Attributions shaped like ``h`` (a leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)``.

    Raises:
      TypeError: ``body``/``head`` not callable; ``body(x)`` not float; ``head`` returns non-float
        outputs; bad rule, path or target type.
      ValueError: ``x`` or ``body(x)`` without the batch axis; ``head`` output not ``(B,)``/``(B, K)``;
        baseline not matching ``x``; a target index out of range; bad ``n_steps``.
    """
    split = _prepare_split(body, head, x, baseline, target, args, float_x=False)
    h, h_base = _body_pair(split)
    return integrated_gradients(head, h, h_base, target=target, args=tuple(args), n_steps=n_steps, rule=rule,
                                path=path, multiply_by_inputs=multiply_by_inputs,
                                alpha_batch_size=alpha_batch_size, key=key, return_info=return_info)


# -- layer conductance ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ConductanceStatic:
    n_steps: int
    stieltjes: bool
    alpha_batch_size: int | None
    with_delta: bool
    rule_type: type  # field-less rules of different classes have equal treedefs


def layer_conductance(
    body: Callable[..., Any],
    head: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    n_steps: int = 50,
    rule: AbstractRule = GaussLegendre(),
    stieltjes: bool = False,
    alpha_batch_size: int | None = None,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns the conductance of every unit of the layer ``h = body(x)``, shaped like ``h``.

    Along the input line ``gamma(a) = x' + a (x - x')``, unit ``j`` of ``h`` conducts

        Cond_j = integral_0^1 dF/dh_j(body(gamma(a))) * d body_j(gamma(a))/da  da
               ~ sum_k w_k [vjp of head at h(a_k)]_j * [jvp of body at gamma(a_k) along x - x']_j

    (``F = head o body``, the explained output). By the chain rule the units' conductances sum to
    ``F(x) - F(x')`` (completeness; ``info.delta`` is the quadrature's gap). Dhamdhere, Sundararajan
    and Yan, "How Important Is a Neuron?", ICLR 2019 (arXiv 2018).

    With ``stieltjes=True`` the integral is Captum's ``LayerConductance`` discretisation instead: the
    ``n_steps + 1`` nodes ``a_0 < ... < a_n`` of ``rule`` (weights unused) partition the path and

        Cond_j ~ sum_{k<n} dF/dh_j(body(gamma(a_k))) * (body_j(gamma(a_{k+1})) - body_j(gamma(a_k)))

    (a left Riemann–Stieltjes sum in ``h``). ``rule=GaussLegendre(), stieltjes=True`` reproduces
    Captum's default ``method="gausslegendre"``; since its nodes miss both ends, its completeness gap
    does not vanish as quickly as the default's.

    Args:
      body: ``x -> h`` (``body(x, *args)``), differentiable in ``x``; ``h`` float with the batch axis.
      head: ``h -> outputs`` ``(B,)`` or ``(B, K)`` (``head(h, *args)``).
      x: a float array or pytree of float arrays with a leading batch axis (the line runs in ``x``'s
        space; for token ids use :func:`layer_integrated_gradients`).
      baseline, target: as in :func:`jaxig.integrated_gradients`.
      args: extra arguments passed to both ``body`` and ``head``.
      n_steps: gradient evaluations (``n_steps + 1`` with ``stieltjes=True``).
      rule: a fixed-table :class:`jaxig.AbstractRule` (random rules need ``key``; with
        ``stieltjes=True`` only fixed tables).
      stieltjes: use Captum's discretisation (above).
      alpha_batch_size: evaluate at most this many nodes at once (``None`` chooses).
      key: PRNG key for random rules.
      return_info: return ``(attributions, info)`` with ``info.delta`` (completeness gap, ``(B,)`` or
        ``(K, B)``) and ``info.n_evals``.

    Returns:
      Conductances shaped like ``h`` (a leading ``K`` axis for ``target="all"``), or
      ``(attributions, info)``.

    Raises:
      TypeError: integer ``x``; ``body``/``head`` not callable; ``body(x)`` not float; bad rule.
      ValueError: as :func:`layer_integrated_gradients`; a random rule with ``stieltjes=True``.
    """
    _check_rule(rule, n_steps, alpha_batch_size)
    if stieltjes and isinstance(rule, AbstractRandomRule):
        raise ValueError(f"stieltjes=True partitions the path at a fixed table of nodes; {rule!r} is random. "
                         "Pass a fixed rule such as jaxig.GaussLegendre() or jaxig.Trapezoid()")
    split = _prepare_split(body, head, x, baseline, target, args, float_x=True)
    static = _ConductanceStatic(int(n_steps), bool(stieltjes), alpha_batch_size, bool(return_info), type(rule))
    attributions, delta = _conductance_jit(static, split, rule, key)
    if return_info:
        return attributions, Info(delta=delta, n_evals=int(n_steps) + int(bool(stieltjes)))
    return attributions


def _conductance_impl(static: _ConductanceStatic, split: _Split, rule: AbstractRule, key):
    x, spec, index = split.x, split.target, split.index
    baseline = split.full_baseline()
    direction = jax.tree.map(jnp.subtract, x, baseline)
    all_k = spec.multi
    batch_size = _batch_size(static.alpha_batch_size, split, static.n_steps)

    if static.stieltjes:
        def one_node(alpha):
            h = split.body(_line(alpha, x, baseline))
            return h, gradient(split.head, spec, index, h)

        alphas = np.sort(np.asarray(rule.nodes_and_weights(static.n_steps + 1)[0], np.float64))
        alphas = jnp.asarray(alphas, split.dtype)
        hs, gs = jax.lax.map(one_node, alphas, batch_size=batch_size)
        expand = (lambda d: d[:, None]) if all_k else (lambda d: d)
        total = jax.tree.map(lambda h, g: jnp.sum(g[:-1] * expand(h[1:] - h[:-1]), axis=0), hs, gs)
    else:
        def one_alpha(alpha):
            h, dh = jax.jvp(split.body, (_line(alpha, x, baseline),), (direction,))
            g = gradient(split.head, spec, index, h)
            return jax.tree.map(jnp.multiply, g, dh)  # a leading K of g broadcasts over dh

        total = rule.integrate(jax.vmap(one_alpha), static.n_steps, dtype=split.dtype,
                               alpha_batch_size=batch_size, key=key)

    delta = None
    if static.with_delta:
        delta = completeness_gap(total, split.explained(x), split.explained(baseline), all_k)
    return total, delta


_conductance_jit = jax.jit(_conductance_impl, static_argnums=0)


# -- neuron conductance --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _NeuronStatic:
    n_steps: int
    multiply_by_inputs: bool
    alpha_batch_size: int | None
    rule_type: type


class _Selector(Module):
    """The neuron as a cotangent weight on ``h``: a one-hot mask, or a lifted callable ``h -> (B,)``."""

    mask: Any = None
    fn: Any = None  # a Model

    def weights(self, h: Any) -> Any:
        """Returns ``d selected / dh`` per example, a pytree like ``h``."""
        if self.fn is None:
            return self.mask
        out, pullback = jax.vjp(self.fn, h)
        return pullback(jnp.ones_like(out))[0]


def _make_selector(neuron_selector: Any, h_struct: Any, batch: int) -> _Selector:
    if callable(neuron_selector):
        model = lift(neuron_selector, h_struct)
        out = model.program.out_struct
        if not hasattr(out, "shape") or tuple(out.shape) != (batch,) or not jnp.issubdtype(out.dtype, jnp.floating):
            raise ValueError(
                f"neuron_selector must map the activation to one float per example (shape ({batch},)), "
                f"got {getattr(out, 'shape', type(out).__name__)}; e.g. lambda h: h[:, 3]")
        return _Selector(fn=model)
    leaves = jax.tree.leaves(h_struct)
    if len(leaves) != 1 or not isinstance(h_struct, jax.ShapeDtypeStruct):
        raise TypeError("body(x) returns a pytree; pass neuron_selector as a callable h -> (B,) "
                        "(e.g. lambda h: h['hidden'][:, 3]) to say which unit")
    per_example = tuple(h_struct.shape[1:])
    index = (neuron_selector,) if isinstance(neuron_selector, (int, np.integer)) else neuron_selector
    if (not isinstance(index, tuple) or len(index) != len(per_example)
            or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in index)):
        raise ValueError(
            f"neuron_selector {neuron_selector!r} must be a tuple of {len(per_example)} int(s) indexing one "
            f"unit of the per-example activation shape {per_example}, or a callable h -> ({batch},)")
    if not all(0 <= i < n for i, n in zip(index, per_example)):
        raise ValueError(
            f"neuron_selector {tuple(int(i) for i in index)} is out of range for the per-example "
            f"activation shape {per_example}; pass indices in [0, n) on each axis")
    mask = np.zeros(per_example, dtype=h_struct.dtype)
    mask[tuple(int(i) for i in index)] = 1
    return _Selector(mask=jnp.asarray(mask))


def neuron_conductance(
    body: Callable[..., Any],
    head: Callable[..., jax.Array],
    x: Any,
    neuron_selector: Any,
    baseline: Any = None,
    *,
    target: Any = None,
    args: Any = (),
    n_steps: int = 50,
    rule: AbstractRule = GaussLegendre(),
    multiply_by_inputs: bool = True,
    alpha_batch_size: int | None = None,
    key: Any = None,
    return_info: bool = False,
) -> Any:
    """Returns each input feature's conductance through one hidden unit, shaped like ``x``.

    For unit ``n`` of ``h = body(x)`` and ``gamma(a) = x' + a (x - x')``,

        NC_i = (x_i - x'_i) * integral_0^1 dF/dh_n(body(gamma(a))) * d h_n / d x_i (gamma(a))  da
             ~ (x_i - x'_i) * sum_k w_k [vjp of body at gamma(a_k) with cotangent dF/dh_n e_n]_i

    Summed over ``i`` it is unit ``n``'s layer conductance (:func:`layer_conductance`). Captum's
    ``NeuronConductance`` (same formula; its default rule is ``riemann_trapezoid``, ours
    Gauss–Legendre; pass ``method="gausslegendre"`` there to compare). Dhamdhere, Sundararajan and
    Yan, "How Important Is a Neuron?", ICLR 2019.

    Args:
      body, head, x, baseline, target, args: as in :func:`layer_conductance` (``x`` float).
      neuron_selector: the unit: an int tuple indexing ``h``'s per-example shape (``h.shape[1:]``;
        a plain int for 1-D activations), or a callable ``h -> (B,)``. A callable ``s`` weights the
        cotangent by ``ds/dh``: for ``lambda h: h[:, 3]`` this is unit 3; for a sum over a group of
        units it is the group's conductance (the sum of its units'). Index selectors are data of the
        compiled program: another unit compiles nothing.
      n_steps, rule, alpha_batch_size, key: as in :func:`jaxig.integrated_gradients`.
      multiply_by_inputs: ``False`` omits the factor ``x - x'`` (Captum's ``multiply_by_inputs``).
      return_info: return ``(attributions, info)``; ``info.n_evals`` only (no completeness to
        ``F(x) - F(x')`` holds for one unit).

    Raises:
      TypeError: as :func:`layer_conductance`; an index selector for a pytree activation.
      ValueError: as :func:`layer_conductance`; a selector index of the wrong length or out of range;
        a callable selector not returning ``(B,)``.
    """
    _check_rule(rule, n_steps, alpha_batch_size)
    split = _prepare_split(body, head, x, baseline, target, args, float_x=True)
    batch = jax.tree.leaves(split.x)[0].shape[0]
    selector = _make_selector(neuron_selector, split.body.program.out_struct, batch)
    static = _NeuronStatic(int(n_steps), bool(multiply_by_inputs), alpha_batch_size, type(rule))
    attributions = _neuron_jit(static, split, selector, rule, key)
    if return_info:
        return attributions, Info(n_evals=int(n_steps))
    return attributions


def _neuron_impl(static: _NeuronStatic, split: _Split, selector: _Selector, rule: AbstractRule, key):
    x, spec, index = split.x, split.target, split.index
    baseline = split.full_baseline()

    def one_alpha(alpha):
        h, pullback = jax.vjp(split.body, _line(alpha, x, baseline))
        g = gradient(split.head, spec, index, h)
        ct = jax.tree.map(jnp.multiply, g, selector.weights(h))
        return jax.vmap(pullback)(ct)[0] if spec.multi else pullback(ct)[0]

    batch_size = _batch_size(static.alpha_batch_size, split, static.n_steps)
    total = rule.integrate(jax.vmap(one_alpha), static.n_steps, dtype=split.dtype,
                           alpha_batch_size=batch_size, key=key)
    if static.multiply_by_inputs:
        total = jax.tree.map(lambda t, xi, bi: t * (xi - bi), total, x, baseline)
    return jax.tree.map(lambda t, xi: t.astype(xi.dtype), total, x)


_neuron_jit = jax.jit(_neuron_impl, static_argnums=0)
