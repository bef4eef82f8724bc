"""Evaluate a function from its jaxpr and return the quantities whose sign switches its linear piece.

A function built from affine maps and ``max``/``min``/``abs``/``clamp``/comparisons/``select``,
``reduce_max`` and max-pooling is piecewise linear. Along a straight line ``p(a) = b + a d`` every
intermediate value is piecewise affine in ``a``, and the linear piece changes only where one of the
*switch quantities* crosses zero:

    max(u, v), min(u, v), u < v, ...   ->  u - v
    abs(u), sign(u)                    ->  u
    clamp(lo, u, hi)                   ->  u - lo, u - hi
    reduce_max(u), argmax(u)           ->  u - max(u)   (broadcast; zero for the current maximum)
    reduce_window_max(u) (max-pool)    ->  u[window offset] - pooled, for every offset

:func:`eval_with_switches` evaluates the jaxpr equation by equation, tracks which values depend on
the input (affine), depend on it only through switch decisions (piecewise constant) or not at all,
and raises ``TypeError`` naming the first primitive that makes the function non-linear in the
input (``tanh``, ``exp``, a product of two input-dependent values, ...).

Reference: Sotoudeh and Thakur, "Computing Linear Restrictions of Neural Networks", NeurIPS 2019
(ExactLine).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jex_core

from .._sharding import match_varying
from .prim_tables import AFFINE_ANY, AFFINE_IF_CONST, BILINEAR

__all__ = ["eval_with_switches", "linear_piece"]

_CONST, _PWC, _AFF = 0, 1, 2  # constant, piecewise constant, piecewise affine in the input

# convert_element_type is handled on its own (a cast to an integer type is not affine).
_LINEAR = (AFFINE_ANY - {"convert_element_type"}) | {
    "real", "reduce_window_sum", "sharding_constraint", "optimization_barrier", "select_and_gather_add",
}
_BILINEAR = BILINEAR
# primitive -> operand positions that must not be affine in the input
_IF_NOT_AFFINE = {**AFFINE_IF_CONST, "scatter": lambda n: (1,)}
_COMPARE = frozenset({"lt", "le", "gt", "ge", "eq", "ne"})
_PAIR_SWITCH = frozenset({"max", "min"})
_CALLS = {  # call-like primitives whose body is evaluated in place: name -> param holding the body
    "jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr", "remat": "jaxpr", "remat2": "jaxpr", "checkpoint": "jaxpr",
}


def _is_float(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)  # False for PRNG key dtypes (numpy cannot read them)


def _not_pwl(name: str, why: str) -> TypeError:
    return TypeError(
        f"exact_integrated_gradients needs f to be piecewise linear in its input, but f applies "
        f"'{name}' to an input-dependent value ({why}). Exact IG supports affine layers, "
        "convolutions, relu/leaky_relu/abs/max/min/clip/hard_tanh, where/select and max-pooling; "
        "for other functions use jaxig.adaptive_integrated_gradients or jaxig.integrated_gradients"
    )


def _window_switches(u, pooled, params, sign):
    """Returns ``sign * (u[offset-th element of each window] - pooled)`` for every window offset."""
    if any(d != 1 for d in params["base_dilation"]) or any(d != 1 for d in params["window_dilation"]):
        raise _not_pwl("reduce_window with dilation", "dilated pooling is not supported")
    fill = jnp.array(-jnp.inf if sign > 0 else jnp.inf, u.dtype)
    padded = lax.pad(u, fill, [(lo, hi, 0) for lo, hi in params["padding"]])
    strides = params["window_strides"]
    out = []
    for off in itertools.product(*[range(w) for w in params["window_dimensions"]]):
        limit = [o + (n - 1) * s + 1 for o, n, s in zip(off, pooled.shape, strides)]
        out.append(sign * (lax.slice(padded, off, limit, strides) - pooled))
    return out


def _switches(name, params, vals, kinds, outs):
    """Returns the switch quantities of one equation whose operands include an affine value."""
    if name in _PAIR_SWITCH or name in _COMPARE:
        a, b = vals
        return [a - b] if _AFF in kinds else []
    if name in ("abs", "sign"):
        return [vals[0]]
    if name == "clamp":
        lo, u, hi = vals
        return [u - lo, u - hi]
    if name in ("reduce_max", "argmax", "reduce_min", "argmin"):
        u = vals[0]
        axes = params["axes"]
        ext = jnp.max(u, axis=axes, keepdims=True) if name in ("reduce_max", "argmax") else \
            jnp.min(u, axis=axes, keepdims=True)
        return [u - ext]
    if name in ("reduce_window_max", "reduce_window_min"):
        return _window_switches(vals[0], outs[0], params, 1 if name.endswith("max") else -1)
    raise AssertionError(name)


_SWITCH_AFF = frozenset({"max", "min", "abs", "clamp", "reduce_max", "reduce_min",
                         "reduce_window_max", "reduce_window_min"})
_SWITCH_PWC = frozenset(_COMPARE | {"sign", "argmax", "argmin"})


def _classify(name, params, kinds, eqn) -> int:
    """Returns the kind of the equation's outputs, or raises if it breaks piecewise linearity."""
    if all(k == _CONST for k in kinds):
        return _CONST
    if _AFF not in kinds:  # depends on the input only through switch decisions
        return _PWC
    if name in _LINEAR or name in _SWITCH_AFF:
        return _AFF
    if name in _SWITCH_PWC:
        return _PWC
    if name == "select_n":
        return _AFF if _AFF in kinds[1:] else _PWC
    if name == "convert_element_type":
        if not _is_float(eqn.outvars[0].aval):
            raise _not_pwl(name, "rounding a float to an integer is discontinuous")
        return _AFF
    if name in _BILINEAR:
        if kinds.count(_AFF) > 1:
            raise _not_pwl(name, "a product of two input-dependent values is not linear")
        return _AFF
    if name in _IF_NOT_AFFINE:
        if any(kinds[i] == _AFF for i in _IF_NOT_AFFINE[name](len(kinds))):
            raise _not_pwl(name, "its divisor or index depends on the input")
        return _AFF
    if name == "integer_pow" and params.get("y") == 1:
        return _AFF
    if name in ("while", "scan", "cond"):
        raise _not_pwl(name, "control flow on input-dependent values is not supported")
    raise _not_pwl(name, "it is not piecewise linear")


def _eval(jaxpr, consts, args, arg_kinds, switches):
    env: dict[Any, tuple[Any, int]] = {}

    def read(v):
        if isinstance(v, jex_core.Literal):
            return v.val, _CONST
        return env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = (c, _CONST)
    for v, a, k in zip(jaxpr.invars, args, arg_kinds):
        env[v] = (a, k)
    for eqn in jaxpr.eqns:
        vals, kinds = zip(*(read(v) for v in eqn.invars)) if eqn.invars else ((), ())
        vals, kinds = list(vals), list(kinds)
        name = eqn.primitive.name
        if name in _CALLS:
            body = eqn.params[_CALLS[name]]
            sub_consts = ()
            if isinstance(body, jex_core.ClosedJaxpr):
                body, sub_consts = body.jaxpr, body.consts
            outs = _eval(body, sub_consts, vals, kinds, switches)
        else:
            kind = _classify(name, eqn.params, kinds, eqn)
            if not list(jex_core.jaxprs_in_params(eqn.params)):  # inside shard_map: weights meet inputs
                vals = match_varying(vals)
            outs = eqn.primitive.bind(*vals, **eqn.primitive.get_bind_params(eqn.params))
            outs = list(outs) if eqn.primitive.multiple_results else [outs]
            if kind != _CONST and _AFF in kinds and (name in _SWITCH_AFF or name in _SWITCH_PWC):
                switches.extend(_switches(name, eqn.params, vals, kinds, outs))
            outs = [(o, kind) for o in outs]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def eval_with_switches(closed: jex_core.ClosedJaxpr, *args) -> tuple[list, list]:
    """Returns ``(outputs, switches)``: the jaxpr's outputs and its switch quantities at ``args``.

    Every argument is treated as input-dependent. The linear piece of the function is constant on
    any set where no switch quantity changes sign.

    Raises:
      TypeError: an equation is not piecewise linear in the input (naming the primitive).
    """
    switches: list = []
    outs = _eval(closed.jaxpr, closed.consts, list(args), [_AFF] * len(args), switches)
    return [o for o, _ in outs], switches


def linear_piece(closed: jex_core.ClosedJaxpr, b, d, a, lo, hi, *, switches_of: Any = None):
    """Returns ``(left, right)``: the linear piece of ``a -> f(b + a d)`` that contains ``a``, within ``[lo, hi]``.

    ``closed`` is f's jaxpr for one example (leading axis 1), ``b`` and ``d`` pytrees of one example's
    baseline and direction, ``a``, ``lo``, ``hi`` scalars. Every switch quantity ``z`` (what a
    ``max``/``select``/``abs`` compares with zero) is affine in ``a`` on the piece, ``z(t) = z(a) +
    (t - a) z'(a)`` (``z'`` from one forward-mode pass), so the piece ends at the nearest zero
    crossing on either side (ExactLine's construction). ``left = right = a`` when ``a`` sits on a
    kink (a crossing within ``4 eps`` of it): its gradient is one-sided there, so no piece is claimed.
    ``switches_of(closed, *leaves)`` lists the switch quantities (default: those of
    :func:`eval_with_switches`; adaptive IG passes the kinks of a piecewise-smooth jaxpr).
    """
    find = switches_of or (lambda c, *leaves: eval_with_switches(c, *leaves)[1])

    def switches(t):
        p = jax.tree.map(lambda bb, dd: (bb + t.astype(bb.dtype) * dd)[None], b, d)
        sw = find(closed, *jax.tree.leaves(p))
        return jnp.concatenate([jnp.ravel(v).astype(t.dtype) for v in sw] + [jnp.zeros(1, t.dtype)])

    z, dz = jax.jvp(switches, (a,), (jnp.ones_like(a),))
    ok = (dz != 0) & jnp.isfinite(z) & jnp.isfinite(dz)
    t = a - z / jnp.where(ok, dz, 1)
    on_kink = jnp.any(ok & (jnp.abs(t - a) <= 4 * jnp.finfo(a.dtype).eps * jnp.maximum(1, jnp.abs(a))))
    right = jnp.clip(jnp.min(jnp.where(ok & (t > a), t, hi)), a, hi)
    left = jnp.clip(jnp.max(jnp.where(ok & (t < a), t, lo)), lo, a)
    return jnp.where(on_kink, a, left), jnp.where(on_kink, a, right)


def is_piecewise_linear(fn: Any, structs: Any) -> bool:
    """Returns whether ``fn`` is piecewise linear in its input at these shapes (its jaxpr, no FLOPs)."""
    try:
        closed = jax.make_jaxpr(fn)(structs)
        jax.eval_shape(lambda *a: eval_with_switches(closed, *a)[0], *jax.tree.leaves(structs))
    except TypeError:
        return False
    return True


def not_piecewise_linear_reason(fn: Any, structs: Any) -> str | None:
    """Returns the TypeError message naming the first non-piecewise-linear primitive, or None."""
    try:
        closed = jax.make_jaxpr(fn)(structs)
        jax.eval_shape(lambda *a: eval_with_switches(closed, *a)[0], *jax.tree.leaves(structs))
    except TypeError as err:
        return str(err).split("\n")[0]
    return None
