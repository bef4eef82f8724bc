"""Split a function into an affine first part and the rest, read from its jaxpr.

Along a straight path gamma(alpha) = b + alpha (x - b) the output of an affine map A is
affine in alpha as well:

    A(gamma(alpha)) = A(b) + alpha (A(x) - A(b)).

So if f = g o A, Integrated Gradients can evaluate A at x and b only, integrate the
gradient of g along the *hidden* straight line, and pull the weighted sum of hidden
gradients back through A's linear part once:

    integral_0^1 grad f(gamma(alpha)) dalpha = J_A^T integral_0^1 grad g(h(alpha)) dalpha,
    h(alpha) = A(b) + alpha (A(x) - A(b)).

For a network whose first layer is a dense or convolutional layer this removes that
layer's forward and backward pass from the n_steps loop (the input-gradient of a
convolution is the expensive part of a CNN's backward pass on CPU).

`split_affine_prefix` finds the largest affine part: every equation of f's jaxpr whose
output is affine in the input (dense and conv layers with constant weights, adding or
multiplying by constants, reshape, transpose, pad, slice, concatenate, sums, ...). The
cut between A and g is the set of affine values that a non-affine equation (or the
output) reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from .._sharding import match_varying
from .prim_tables import AFFINE_ANY, AFFINE_IF_CONST, BILINEAR

__all__ = ["split_affine_prefix"]

_BILINEAR = BILINEAR
_AFFINE_ANY = AFFINE_ANY
# select_n is affine in its cases when the predicate (position 0) is constant.
_AFFINE_IF_CONST = {**AFFINE_IF_CONST, "select_n": lambda n: (0,)}
# Call primitives whose body is inlined so that affine layers inside a nested `jit` are found.
_INLINE = frozenset({"jit", "pjit", "closed_call", "core_call"})
# An affine part without one of these saves too little to be worth the split.
_WORTH_SPLITTING = frozenset({"dot_general", "conv_general_dilated"})

_CONST, _AFFINE, _OTHER = 0, 1, 2


def _is_float(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)  # False for PRNG key dtypes (numpy cannot read them)


class _Node:
    """One equation of the flattened program: ids in, ids out, and how to bind it."""

    __slots__ = ("primitive", "params", "ins", "outs", "kind", "nested")

    def __init__(self, primitive, params, ins, outs, kind):
        self.primitive, self.params, self.ins, self.outs, self.kind = (
            primitive, params, ins, outs, kind)
        # a call (pjit...) whose body fixes its input types: its operands are passed as they are
        self.nested = bool(list(jex_core.jaxprs_in_params(params)))


class _Flat:
    """The equations of a closed jaxpr with nested calls inlined, each labelled
    constant (does not depend on the input), affine in the input, or other."""

    def __init__(self):
        self.nodes: list[_Node] = []
        self.kind: dict[int, int] = {}
        self.float: dict[int, bool] = {}
        self.consts: dict[int, Any] = {}
        self._next = 0

    def new_id(self, aval, kind) -> int:
        i = self._next
        self._next += 1
        self.kind[i] = kind
        self.float[i] = _is_float(aval)
        return i

    def walk(self, closed, in_ids):
        """Appends `closed`'s equations; returns the ids (or Literals) of its outputs."""
        jaxpr = closed.jaxpr
        env: dict[Any, Any] = {}

        def read(v):
            return v if isinstance(v, jex_core.Literal) else env[v]

        for v, c in zip(jaxpr.constvars, closed.consts):
            i = self.new_id(v.aval, _CONST)
            self.consts[i] = c
            env[v] = i
        for v, i in zip(jaxpr.invars, in_ids):
            env[v] = i
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            kinds = [self.kind_of(a) for a in ins]
            name = eqn.primitive.name
            if name in _INLINE and _AFFINE in kinds and "jaxpr" in eqn.params:
                sub = eqn.params["jaxpr"]
                if not isinstance(sub, jex_core.ClosedJaxpr):
                    sub = jex_core.ClosedJaxpr(sub, ())
                outs = self.walk(sub, ins)
                for v, o in zip(eqn.outvars, outs):
                    if isinstance(o, jex_core.Literal):
                        # A call that returns a literal: materialise it as a constant.
                        i = self.new_id(v.aval, _CONST)
                        self.consts[i] = o.val
                        o = i
                    env[v] = o
                continue
            kind = self._classify(name, kinds, eqn)
            outs = [self.new_id(v.aval, kind) for v in eqn.outvars]
            for v, o in zip(eqn.outvars, outs):
                env[v] = o
            self.nodes.append(_Node(eqn.primitive, eqn.primitive.get_bind_params(eqn.params),
                                    ins, outs, kind))
        return [read(v) for v in jaxpr.outvars]

    def kind_of(self, a) -> int:
        return _CONST if isinstance(a, jex_core.Literal) else self.kind[a]

    def _classify(self, name, kinds, eqn) -> int:
        if all(k == _CONST for k in kinds):
            return _CONST
        if _OTHER in kinds or not all(_is_float(v.aval) for v in eqn.outvars):
            return _OTHER
        n_affine = kinds.count(_AFFINE)
        if name in _AFFINE_ANY:
            if name == "convert_element_type" and not _is_float(eqn.invars[0].aval):
                return _OTHER
            return _AFFINE
        if name in _BILINEAR:
            return _AFFINE if n_affine == 1 else _OTHER
        if name in _AFFINE_IF_CONST:
            must_be_const = _AFFINE_IF_CONST[name](len(kinds))
            return _OTHER if any(kinds[i] != _CONST for i in must_be_const) else _AFFINE
        return _OTHER


def _bind(node: _Node, vals):
    if not node.nested:  # inside shard_map, a weight meeting a per-device value is cast to vary too
        vals = match_varying(vals)
    out = node.primitive.bind(*vals, **node.params)
    return list(out) if node.primitive.multiple_results else [out]


def _needed(nodes, wanted: set) -> list[_Node]:
    """The nodes (in order) that the ids in `wanted` depend on."""
    wanted = set(wanted)
    keep = []
    for node in reversed(nodes):
        if any(o in wanted for o in node.outs):
            keep.append(node)
            wanted.update(a for a in node.ins if not isinstance(a, jex_core.Literal))
    return keep[::-1]


def _run(nodes, env: dict, consts: dict):
    def read(a):
        if isinstance(a, jex_core.Literal):
            return a.val
        return env[a] if a in env else consts[a]

    for node in nodes:
        for o, v in zip(node.outs, _bind(node, [read(a) for a in node.ins])):
            env[o] = v
    return read


def split_affine_prefix(f: Callable, x) -> tuple[Callable, Callable] | None:
    """Returns `(A, g)` with f(z) = g(A(z)) for inputs z shaped like x and A affine, or None.

    A maps a pytree shaped like x to a tuple of arrays (the hidden values at the cut); g
    maps such a tuple to f's output. A holds every equation of f's jaxpr that is affine
    in the input (dense and conv layers with constant weights, adding or multiplying by
    constants, reshape, transpose, broadcast, pad, slice, concatenate, sums, nested
    `jit`s are looked into); g holds the rest. Exact to rounding: g(A(z)) performs the
    same primitives as f(z). Along a straight line A(b + alpha (x - b)) =
    A(b) + alpha (A(x) - A(b)), so Integrated Gradients can integrate g's gradient on the
    hidden line and apply A's transpose (`jax.vjp(A, x)`) once to the weighted sum.

    Returns None when f's first operations are not affine, or when the affine part holds
    no `dot_general` or convolution (nothing worth saving).

    Args:
      f: function of one pytree argument, traceable by `jax.make_jaxpr`.
      x: pytree of arrays (or ShapeDtypeStructs) giving the shapes A and g are built for.
    """
    closed, out_shape = jax.make_jaxpr(f, return_shape=True)(x)
    in_tree = jax.tree_util.tree_structure(x)
    out_tree = jax.tree_util.tree_structure(out_shape)
    if not all(_is_float(v.aval) for v in closed.jaxpr.invars):
        return None
    flat = _Flat()
    in_ids = [flat.new_id(v.aval, _AFFINE) for v in closed.jaxpr.invars]
    out_ids = flat.walk(closed, in_ids)

    linear_nodes = [n for n in flat.nodes if n.kind != _OTHER]
    if not any(n.primitive.name in _WORTH_SPLITTING and n.kind == _AFFINE
               for n in linear_nodes):
        return None
    # The cut: affine values read by a non-affine equation or returned as outputs.
    cut: list[int] = []
    for a in [a for n in flat.nodes if n.kind == _OTHER for a in n.ins] + list(out_ids):
        if not isinstance(a, jex_core.Literal) and flat.kind[a] == _AFFINE and a not in cut:
            cut.append(a)
    if all(a in in_ids for a in cut):
        return None
    a_nodes = _needed(linear_nodes, set(cut))
    if not any(n.primitive.name in _WORTH_SPLITTING and n.kind == _AFFINE for n in a_nodes):
        return None
    produced_by_a = {o for n in a_nodes if n.kind == _AFFINE for o in n.outs}
    rest = [n for n in flat.nodes if not any(o in produced_by_a for o in n.outs)]
    g_nodes = _needed(rest, {a for a in out_ids if not isinstance(a, jex_core.Literal)})
    consts = flat.consts

    def affine_part(z):
        leaves, tree = jax.tree_util.tree_flatten(z)
        if tree != in_tree:
            raise ValueError(f"A was built for inputs with structure {in_tree}; got {tree}")
        read = _run(a_nodes, dict(zip(in_ids, leaves)), consts)
        return tuple(read(a) for a in cut)

    def rest_part(hidden):
        hidden = tuple(hidden)
        if len(hidden) != len(cut):
            raise ValueError(f"g takes {len(cut)} hidden arrays; got {len(hidden)}")
        read = _run(g_nodes, dict(zip(cut, hidden)), consts)
        return jax.tree_util.tree_unflatten(out_tree, [read(a) for a in out_ids])

    return affine_part, rest_part
