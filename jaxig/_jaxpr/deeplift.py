"""Evaluate a jaxpr on an input and a reference together, and propagate DeepLift's linear map of differences.

DeepLift (rescale rule) explains ``F(x) - F(x')`` by a linear map ``L`` of the input difference: every
value ``v`` of the program gets a *difference form* ``d_v``, linear in a tangent ``t``, with
``d_v(x - x') = v(x) - v(x')``. The multipliers are ``L^T`` applied to the output's cotangent
(``jax.vjp`` of :func:`rescale_linearize` in ``t``). Each primitive propagates ``d`` by a rule that keeps
that identity exact:

    linear ops (dot_general with a constant operand, conv, add, reshape, ...)   d_y = A d_z  (their jvp)
    elementwise y = g(z) (tanh, logistic, exp, max(z, c), a relu/softplus call) d_y = s d_z,
        s = (g(z) - g(z')) / (z - z'), or g'(z) where |z - z'| < eps       (the rescale rule)
    products of two input-dependent values (mul, dot_general, conv)        d_y = B(d_a, b~) + B(a~, d_b),
        a~ = (a + a') / 2  (exact for any bilinear B)
    a / b with b input-dependent                     d_y = (1/b)~ d_a + a~ d_(1/b), d_(1/b) = -d_b / (b b')
    max(a, b), min(a, b) of two input-dependent values: (a + b) / 2 +- |a - b| / 2, rescale on |.|
    where(u > v, p, q) with u or v input-dependent     d_y = select(d_p, d_q) + J / (s - s') d_s,
        s = u - v, J = the jump of the reference between the branches (leaky_relu, elu, hard_tanh)
    max pooling (reduce_window_max): Captum's rule, below.

A call (``jit``, ``custom_jvp``, ``custom_vjp``) that is elementwise in one input-dependent array
(``jax.nn.relu``, ``softplus``, ``elu``, ``silu``...) is rescaled as one function ``g``, like a
Captum activation module, so its own derivative (a custom JVP) is the fallback where ``z ~ z'``.

Max pooling follows Captum 0.9 (``deep_lift.maxpool``): each window's ``y - y'`` is routed to the
position of the maximum in ``x`` if ``y >= y'`` and of the maximum in ``x'`` otherwise (first maximum
on ties, as torch), and divided by that position's ``u - u'``; where ``|u - u'| < eps`` the ordinary
gradient at ``x`` is used. Overlapping windows add their shares (torch's unpooling overwrites).

Non-elementwise nonlinearities (``reduce_max``, ``argmax``, ``sort``, softmax's max, control flow on
input-dependent values) raise ``TypeError`` naming the primitive.

Reference: Shrikumar, Greenside and Kundaje, "Learning Important Features Through Propagating
Activation Differences", ICML 2017.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jex_core

from .prim_tables import AFFINE_IF_CONST, BILINEAR
from .pwl import _CALLS, _COMPARE, _LINEAR

__all__ = ["rescale_linearize", "SUPPORTED"]

#: Elementwise functions of one input-dependent operand (the others constant): the rescale rule.
_UNARY = frozenset({
    "tanh", "logistic", "exp", "exp2", "log", "log1p", "expm1", "sin", "cos", "tan", "asin", "acos",
    "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "sqrt", "rsqrt", "cbrt", "erf", "erfc",
    "erf_inv", "lgamma", "digamma", "integer_pow", "square", "abs", "sign", "floor", "ceil", "round",
    "max", "min", "pow", "div", "atan2", "rem", "clamp", "mul", "add", "sub", "neg", "select_n",
    "convert_element_type", "copy", "copy_p", "nextafter",
})
# What an elementwise call body may hold besides _UNARY (broadcasts of constants, predicates).
_ELEMENTWISE = _UNARY | _COMPARE | frozenset({"broadcast_in_dim", "not", "and", "or", "is_finite",
                                             "reduce_precision"})
_LINEAR_HERE = _LINEAR | {"split"}
_POOL = frozenset({"reduce_window_max", "reduce_window_min"})

#: Names of the primitives the rescale interpreter handles on input-dependent values (for messages).
SUPPORTED = ("affine and linear ops (dot_general, conv, add, reshape, pad, slicing, sums, "
             "avg-pooling), elementwise nonlinearities (relu/max/min/clip, tanh, logistic, exp, log, "
             "softplus, elu, leaky_relu, silu, ...), products and quotients of input-dependent values, "
             "where/select on comparisons, and max-pooling (reduce_window_max)")


class _V(NamedTuple):
    """One value of the program at the input (``v``) and the reference (``r``).

    ``d`` is its difference form (None for values that do not depend on the input); a boolean from a
    comparison of input-dependent values carries ``sw = (s, s', d_s)``, the compared difference
    ``u - v`` at both points and its difference form, which carries the jump of a ``select``.
    """

    v: Any
    r: Any
    d: Any = None
    sw: Any = None

    @property
    def dep(self) -> bool:
        return self.d is not None or self.sw is not None


def _unsupported(name: str, why: str) -> TypeError:
    return TypeError(
        f"deeplift cannot propagate multipliers through '{name}' applied to an input-dependent value "
        f"({why}). DeepLift's rescale rule supports {SUPPORTED}. Explain the logits before a softmax, "
        "or use jaxig.integrated_gradients for this f"
    )


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _bind(eqn, vals):
    out = eqn.primitive.bind(*vals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _safe(den, tiny):
    return jnp.where(tiny, jnp.ones_like(den), den)


def _rescale(g, z: _V, eps):
    """The rescale rule for an elementwise ``y = g(z)``: returns ``_V`` of ``g`` with ``d = s d_z``."""
    y, r = g(z.v), g(z.r)
    dz = z.v - z.r
    tiny = ~(jnp.abs(dz) >= eps)
    secant = (y - r) / _safe(dz, tiny)
    # Where z and z' are close, the secant is mostly rounding: y and r carry ~ulp errors, divided by
    # dz. The derivative at the midpoint estimates the same slope (to g'''(z) dz^2 / 24 for a smooth
    # g) without that noise, so it is used wherever it agrees with the secant to within the secant's
    # own rounding error. At a kink (ReLU, |.|) the two differ by far more and the secant, exact
    # there, is kept. Measured on the benchmark CNN's softplus/tanh layers: float32 attributions
    # 1.4e-5 from float64 (relative to the largest) instead of 9.6e-4, where Captum's also are.
    # Below ``eps``: the derivative at x, as Captum.
    rounding = jnp.finfo(dz.dtype).eps * (jnp.abs(y) + jnp.abs(r) + jnp.abs(secant) * (jnp.abs(z.v) + jnp.abs(z.r)))
    # The derivative of an elementwise function is its VJP with unit cotangents (custom rules apply).
    _, pull = jax.vjp(g, jnp.where(tiny, z.v, (z.v + z.r) / 2))
    deriv = pull(jnp.ones_like(y))[0]
    agree = jnp.abs(deriv - secant) * jnp.abs(dz) <= 4 * rounding
    s = jnp.where(tiny | agree, deriv, secant)
    return _V(y, r, s * z.d)


def _elementwise_body(jaxpr, shape) -> bool:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in _CALLS:
            body = eqn.params[_CALLS[name]]
            if not _elementwise_body(getattr(body, "jaxpr", body), shape):
                return False
        elif name not in _ELEMENTWISE:
            return False
        if any(tuple(v.aval.shape) not in (tuple(shape), ()) for v in eqn.outvars):
            return False
    return True


def _as_block(eqn, ins) -> int | None:
    """Returns the position of the one input-dependent operand of an elementwise call, else None."""
    pos = [i for i, a in enumerate(ins) if a.dep]
    if len(pos) != 1 or ins[pos[0]].d is None or len(eqn.outvars) != 1:
        return None
    shape = jnp.shape(ins[pos[0]].v)
    if tuple(eqn.outvars[0].aval.shape) != tuple(shape) or not _is_float(ins[pos[0]].v):
        return None
    body = eqn.params[_CALLS[eqn.primitive.name]]
    return pos[0] if _elementwise_body(getattr(body, "jaxpr", body), shape) else None


def _with(vals, i, u):
    vals = list(vals)
    vals[i] = u
    return vals


def _zeros_if_none(d, like):
    return jnp.zeros(jnp.shape(like), jnp.result_type(like)) if d is None else d


def _linear(eqn, ins):
    """A linear (affine) op in its input-dependent operands: ``d`` is its JVP, exact for affine maps."""
    pos = [i for i, a in enumerate(ins) if a.dep]
    xs, rs = [a.v for a in ins], [a.r for a in ins]
    fn = lambda *us: _bind(eqn, _fill(xs, pos, us))
    vs, ds = jax.jvp(fn, tuple(xs[i] for i in pos), tuple(ins[i].d for i in pos))
    return [_V(v, r, d) for v, r, d in zip(vs, _bind(eqn, rs), ds)]


def _fill(vals, pos, us):
    vals = list(vals)
    for i, u in zip(pos, us):
        vals[i] = u
    return vals


def _bilinear(eqn, ins):
    """Both operands input-dependent: B(a, b) - B(a', b') = B(a - a', b~) + B(a~, b - b'), exactly."""
    (a, b) = ins
    mid = [(a.v + a.r) / 2, (b.v + b.r) / 2]
    fn = lambda u, w: _bind(eqn, [u, w])[0]
    _, d = jax.jvp(fn, tuple(mid), (a.d, b.d))
    return [_V(_bind(eqn, [a.v, b.v])[0], _bind(eqn, [a.r, b.r])[0], d)]


def _divide(eqn, ins):
    """``a / b`` with ``b`` input-dependent: a * (1/b) with the exact secant of 1/b."""
    a, b = ins
    q, qr = 1 / b.v, 1 / b.r
    dq = -b.d / (b.v * b.r)
    d = ((a.v + a.r) / 2) * dq
    if a.d is not None:
        d = d + ((q + qr) / 2) * a.d
    return [_V(_bind(eqn, [a.v, b.v])[0], _bind(eqn, [a.r, b.r])[0], d)]


def _max_min(eqn, ins, eps):
    """max/min of two input-dependent values: (a + b) / 2 +- |a - b| / 2, the rescale rule on |.|."""
    a, b = ins
    sign = 1 if eqn.primitive.name == "max" else -1
    gap = _rescale(jnp.abs, _V(a.v - b.v, a.r - b.r, a.d - b.d), eps)
    d = (a.d + b.d) / 2 + sign * gap.d / 2
    return [_V(_bind(eqn, [a.v, b.v])[0], _bind(eqn, [a.r, b.r])[0], d)]


def _compare(eqn, ins):
    if any(a.sw is not None for a in ins) or not all(_is_float(a.v) for a in ins):
        raise _unsupported(eqn.primitive.name, "comparing predicates or integers")
    u, w = ins
    sw = (u.v - w.v, u.r - w.r, _zeros_if_none(u.d, u.v) - _zeros_if_none(w.d, w.v))
    return [_V(_bind(eqn, [u.v, w.v])[0], _bind(eqn, [u.r, w.r])[0], None, sw)]


def _jump(jump, sw, shape, eps):
    """``J / (s - s') d_s``: the part of a difference that a switch of a predicate causes."""
    s, sr, ds = (jnp.broadcast_to(t, shape) for t in sw)
    delta = s - sr
    tiny = ~(jnp.abs(delta) >= eps)
    return jnp.where(tiny, 0, jump / _safe(delta, tiny)).astype(jump.dtype) * ds


def _select(eqn, ins, eps):
    p, cases = ins[0], ins[1:]
    y = _bind(eqn, [p.v] + [c.v for c in cases])[0]
    r = _bind(eqn, [p.r] + [c.r for c in cases])[0]
    d = _bind(eqn, [p.v] + [_zeros_if_none(c.d, c.v) for c in cases])[0]
    if p.sw is not None:
        r_at_x = _bind(eqn, [p.v] + [c.r for c in cases])[0]  # the reference under x's predicate
        d = d + _jump(r_at_x - r, p.sw, jnp.shape(y), eps)
    elif p.d is not None:
        raise _unsupported("select_n", "its predicate is an input-dependent number")
    return [_V(y, r, d)]


def _convert(eqn, ins, eps):
    (z,) = ins
    out_dtype = eqn.params["new_dtype"]
    if z.sw is not None and jnp.issubdtype(out_dtype, jnp.inexact):
        y, r = _bind(eqn, [z.v])[0], _bind(eqn, [z.r])[0]
        return [_V(y, r, _jump(y - r, z.sw, jnp.shape(y), eps))]
    if z.sw is not None and out_dtype == jnp.bool_:
        return [z]
    if z.d is not None and jnp.issubdtype(out_dtype, jnp.inexact):
        return _linear(eqn, ins)
    raise _unsupported("convert_element_type", f"converting to {out_dtype} is not differentiable")


def _window_stack(u, params, out_shape, fill):
    """Returns ``(n_offsets,) + out_shape``: the ``k``-th element of every pooling window."""
    if any(d != 1 for d in params["base_dilation"]) or any(d != 1 for d in params["window_dilation"]):
        raise _unsupported("reduce_window", "dilated pooling is not supported")
    padded = lax.pad(u, jnp.array(fill, u.dtype), [(lo, hi, 0) for lo, hi in params["padding"]])
    strides = params["window_strides"]
    out = []
    for off in itertools.product(*[range(w) for w in params["window_dimensions"]]):
        limit = [o + (n - 1) * s + 1 for o, n, s in zip(off, out_shape, strides)]
        out.append(lax.slice(padded, off, limit, strides))
    return jnp.stack(out)


def _maxpool(eqn, ins, eps):
    """Captum's max-pooling rule (see the module docstring); min-pooling as max-pooling of ``-u``."""
    (u,) = ins
    sign = 1 if eqn.primitive.name == "reduce_window_max" else -1
    shape = tuple(eqn.outvars[0].aval.shape)
    y, yr = _bind(eqn, [u.v])[0], _bind(eqn, [u.r])[0]
    w = _window_stack(sign * u.v, eqn.params, shape, -jnp.inf)
    wr = _window_stack(sign * u.r, eqn.params, shape, -jnp.inf)
    wd = _window_stack(sign * u.d, eqn.params, shape, 0)
    at_x, at_r = jnp.argmax(w, axis=0), jnp.argmax(wr, axis=0)
    dy = sign * (y - yr)
    winner = jnp.where(dy >= 0, at_x, at_r)
    du = w - wr  # NaN at padding (-inf - -inf): never tiny and never a winner
    tiny = jnp.abs(du) < eps
    offsets = jnp.arange(w.shape[0]).reshape((-1,) + (1,) * len(shape))
    share = jnp.where(offsets == winner, dy / _safe(du, tiny | ~jnp.isfinite(du)), 0)
    coef = jnp.where(tiny, (offsets == at_x).astype(du.dtype), share)
    return [_V(y, yr, sign * jnp.sum(coef * wd, axis=0))]


def _classify_error(eqn, ins):
    name = eqn.primitive.name
    if name in ("while", "scan", "cond"):
        return _unsupported(name, "control flow on input-dependent values is not supported")
    if name in ("reduce_max", "reduce_min", "argmax", "argmin"):
        return _unsupported(name, "a maximum over an axis (as in softmax) is not elementwise")
    return _unsupported(name, "it is not linear and not an elementwise nonlinearity")


def _eqn(eqn, ins, eps):
    name = eqn.primitive.name
    pos = [i for i, a in enumerate(ins) if a.dep]
    float_out = all(jnp.issubdtype(v.aval.dtype, jnp.inexact) for v in eqn.outvars)
    if name in _COMPARE:
        return _compare(eqn, ins)
    if name == "not" and len(pos) == 1 and ins[0].sw is not None:
        return [ins[0]._replace(v=_bind(eqn, [ins[0].v])[0], r=_bind(eqn, [ins[0].r])[0])]
    if name == "select_n":
        return _select(eqn, ins, eps)
    if name == "convert_element_type":
        return _convert(eqn, ins, eps)
    if any(ins[i].sw is not None for i in pos) or not float_out:
        raise _classify_error(eqn, ins)
    if name in _LINEAR_HERE:
        return _linear(eqn, ins)
    if name in BILINEAR:
        return _linear(eqn, ins) if len(pos) == 1 else _bilinear(eqn, ins)
    if name in AFFINE_IF_CONST and not any(ins[i].dep for i in AFFINE_IF_CONST[name](len(ins))):
        return _linear(eqn, ins)
    if name == "div":
        return _divide(eqn, ins)
    if name in ("max", "min") and len(pos) == 2:
        return _max_min(eqn, ins, eps)
    if name in _UNARY and len(pos) == 1 and (name != "clamp" or pos == [1]):
        i = pos[0]
        out_shape = tuple(eqn.outvars[0].aval.shape)
        z = ins[i]
        if jnp.shape(z.v) != out_shape:  # a scalar against an array constant
            z = _V(*(jnp.broadcast_to(t, out_shape) for t in (z.v, z.r, z.d)))
        vals = [a.v for a in ins]
        return [_rescale(lambda u: _bind(eqn, _with(vals, i, u))[0], z, eps)]
    if name in _POOL:
        return _maxpool(eqn, ins, eps)
    raise _classify_error(eqn, ins)


def _eval(jaxpr, consts, args, eps):
    env: dict[Any, _V] = {}

    def read(v):
        if isinstance(v, jex_core.Literal):
            return _V(v.val, v.val)
        return env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = _V(c, c)
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if not any(a.dep for a in ins):
            outs = [_V(o, o) for o in _bind(eqn, [a.v for a in ins])]
        elif name in _CALLS:
            i = _as_block(eqn, ins)
            if i is not None:  # an activation function: one rescale for the whole call
                vals = [a.v for a in ins]
                outs = [_rescale(lambda u, eqn=eqn, vals=vals, i=i: _bind(eqn, _with(vals, i, u))[0], ins[i], eps)]
            else:
                body = eqn.params[_CALLS[name]]
                sub_consts = ()
                if isinstance(body, jex_core.ClosedJaxpr):
                    body, sub_consts = body.jaxpr, body.consts
                outs = _eval(body, sub_consts, ins, eps)
        else:
            outs = _eqn(eqn, ins, eps)
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
    return [read(v) for v in jaxpr.outvars]


def rescale_linearize(jaxpr, consts, inputs, refs, tangents, eps: float):
    """Returns ``(outs, ref_outs, d_outs)``: the jaxpr at ``inputs`` and ``refs`` and the difference forms.

    ``tangents[i]`` is the tangent of input ``i`` (None for inputs that do not depend on the explained
    input, which then must equal ``refs[i]``); each ``d_outs[j]`` is linear in the tangents and equals
    ``outs[j] - ref_outs[j]`` when the tangents are ``inputs - refs`` (DeepLift's summation-to-delta),
    up to rounding and the ``eps`` fallbacks. Outputs that do not depend on the input get zeros.

    Raises:
      TypeError: a primitive other than those listed in :data:`SUPPORTED` acts on an input-dependent
        value (naming the primitive).
    """
    args = [_V(v, r, t) for v, r, t in zip(inputs, refs, tangents)]
    outs = _eval(jaxpr, consts, args, eps)
    return ([o.v for o in outs], [o.r for o in outs],
            [_zeros_if_none(o.d, o.v) if o.sw is None else jnp.zeros_like(o.v, float) for o in outs])
