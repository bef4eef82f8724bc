"""The model as an argument: ``f`` traced once per call, its arrays lifted into inputs of the program.

Every method compiles a program that evaluates ``f`` many times. If that program were cached on ``f``
itself (its identity), whatever arrays ``f`` reads without taking them as arguments (weights in a
closure, attributes of a callable object, an NNX module's variables, an Equinox module's fields)
would be frozen into the first compilation: later calls would silently explain the *old* model. And a
new lambda per call would compile (and keep) a new program every time.

Instead, :func:`lift` traces ``f`` at the input's shapes (``jax.make_jaxpr``) and splits the trace into

- a :class:`Program`: the jaxpr's *structure*, hashed and compared by a fingerprint of its equations
  (primitives, parameters, wiring, shapes and literal values), never by the Python object ``f``; and
- the *values* it read: every array constant of the trace (``closed.consts``), passed to the compiled
  program as ordinary traced inputs.

A :class:`Model` pairs the two as a pytree (program static, arrays as leaves), so passing it to a
``jax.jit``-compiled function compiles once per *structure* and always computes with the current
values: a new checkpoint of the same architecture, a rebound closure variable or a new lambda of the
same body compiles nothing, and gradients with respect to the arrays flow through the leaves.

Tracing costs 1–2 ms for a small ReLU MLP, a third of a 50-step IG call on 180 rows. A trace is
therefore reused while a *snapshot* of what ``f`` can reach is unchanged: the walk follows closure
cells, the globals its code names, defaults, bound ``self``, ``functools.partial`` arguments,
containers, object attributes and slots (Equinox fields, NNX variables) and callable objects'
``__call__``, recording arrays by identity (JAX arrays are immutable; the cache keeps them alive so an
identity cannot be reused) and plain Python values by value. A trace is reused only when every array
it read was found by that walk and none is a (mutable) NumPy array; otherwise ``f`` is traced on every
call. Rebinding a variable, assigning ``model.w = new``, an optimiser updating an NNX module in place
or a new Equinox module all change the snapshot and so retrace.
"""

from __future__ import annotations

import contextlib
import functools
import types
import weakref
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.core import Tracer
from jax.extend import core as jex_core

from ._pytree import Module, static_field
from ._sharding import struct_like

__all__ = ["Model", "Program", "lift"]


class Program:
    """The structure of a traced model: a jaxpr whose constants are inputs. Hashed by fingerprint."""

    __slots__ = ("jaxpr", "in_tree", "out_tree", "out_struct", "key", "_hash")

    def __init__(self, jaxpr: Any, in_tree: Any, out_tree: Any):
        self.jaxpr = jaxpr
        self.in_tree = in_tree
        self.out_tree = out_tree
        #: the output's shapes and dtypes, as jax.eval_shape would return them
        self.out_struct = jax.tree.unflatten(
            out_tree, [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in jaxpr.outvars])
        self.key = (in_tree, out_tree, _fingerprint(jaxpr))
        self._hash = hash(self.key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and (self is other or self.key == other.key)

    def __call__(self, consts: Any, x: Any, args: Any) -> Any:
        flat = jax.tree.leaves((x, args))
        out = jex_core.jaxpr_as_fun(jex_core.ClosedJaxpr(self.jaxpr, list(consts)))(*flat)
        return jax.tree.unflatten(self.out_tree, out)

    def __repr__(self) -> str:
        return f"Program({len(self.jaxpr.eqns)} equations, hash={self._hash:#x})"


class Model(Module):
    """``f`` at fixed input shapes: ``model(x) == f(x, *args)``, its arrays as pytree leaves.

    Attributes:
      program: the structure (static; equal programs share compiled code).
      consts: the arrays ``f`` read when traced (weights), traced inputs of compiled programs.
      args: the extra arguments ``f`` takes after ``x`` (masks, lengths), as given.
    """

    program: Program = static_field()
    consts: tuple = ()
    args: tuple = ()

    def __call__(self, x: Any) -> Any:
        return self.program(self.consts, x, self.args)

    def __repr__(self) -> str:  # short: jax.make_jaxpr(model) formats the function it traces
        return f"Model({self.program!r}, {len(self.consts)} arrays, {len(self.args)} args)"


def lift(f: Callable[..., Any], x: Any, args: tuple = ()) -> Model:
    """Returns ``f`` traced at the shapes of ``x`` (and ``args``) as a :class:`Model`.

    Raises:
      TypeError: ``f`` cannot be traced (Python control flow on input values, conversion of a traced
        value to NumPy or a Python number); the message says what to write instead.
    """
    structs = jax.tree.map(_struct, (x, tuple(args)))
    shapes = (jax.tree.structure(structs), tuple(jax.tree.leaves(structs)))
    snap = _snapshot(f)
    per_f = _cache_for(f) if snap is not None else None
    hit = per_f.get(shapes) if per_f is not None else None
    if snap is not None and hit is not None and hit[0] == snap[0]:
        return Model(program=hit[1], consts=hit[2], args=tuple(args))
    program, consts = _trace(f, structs)
    if snap is not None and per_f is not None:
        found = {id(a) for a in snap[1]}
        if all(id(c) in found and not isinstance(c, np.ndarray) for c in consts):
            per_f[shapes] = (snap[0], program, consts, snap[1])  # snap[1] pins the arrays' identities
        else:
            per_f.pop(shapes, None)
    return Model(program=program, consts=consts, args=tuple(args))


def _trace(f: Callable[..., Any], structs: Any) -> tuple[Program, tuple]:
    # A fresh wrapper each time: jax.make_jaxpr caches traces on the function's identity, and a
    # cached trace of f would carry the arrays f read the first time.
    # Plain shapes are traced outside any mesh context (jax.set_mesh): such a trace carries no mesh
    # and binds to sharded or unsharded values alike, so one cached trace serves both; traced under
    # an Explicit mesh it would carry that mesh's types and fail to compile outside it. Shapes with a
    # type (inside shard_map) are traced where they live.
    plain = all(getattr(s, "sharding", None) is None for s in jax.tree.leaves(structs))
    context = jax.sharding.use_abstract_mesh(_NO_MESH) if plain else contextlib.nullcontext()
    try:
        with context:
            closed, out_shape = jax.make_jaxpr(lambda x_, a_: f(x_, *a_), return_shape=True)(*structs)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
            jax.errors.TracerIntegerConversionError, jax.errors.TracerBoolConversionError) as err:
        raise TypeError(
            f"f could not be traced with abstract inputs of shapes "
            f"{[tuple(s.shape) for s in jax.tree.leaves(structs)]} ({type(err).__name__}). jaxig "
            "differentiates f with JAX, so f must be a JAX function of its input: replace Python "
            "`if`/`while` on input values by jnp.where or jax.lax.cond, and NumPy or float() calls on "
            "inputs by jax.numpy. The first lines of JAX's message:\n"
            + "\n".join(str(err).splitlines()[:3])
        ) from err
    program = Program(_unroll_short_scans(closed.jaxpr), jax.tree.structure(structs),
                      jax.tree.structure(out_shape))
    return program, tuple(closed.consts)


#: a ``lax.scan`` is unrolled when its length is at most this and ``length * (body equations)`` at
#: most :data:`UNROLL_EQUATIONS`
UNROLL_LENGTH = 8
UNROLL_EQUATIONS = 512


def _unroll_short_scans(jaxpr: Any) -> Any:
    """Returns ``jaxpr`` with very short ``lax.scan`` loops marked for full unrolling (nested ones too).

    Every method evaluates ``f`` (and its gradient) at many points at once, and XLA:CPU runs a short
    rolled loop over those batched operands slower than the same steps as straight-line code: IG of a
    Flax ``nn.RNN(nn.LSTMCell(64))`` over 5 time steps, 4,096 sequences, 50 steps, took 3.6 s rolled
    and 1.9 s unrolled (quiet machine; 6.5 s and 5.1 s under load). The gain ends quickly: at 10 time
    steps (1,024 sequences) unrolled was no faster (3.3 s vs 3.0 s) and compiled twice as long, at 30
    steps it was 5x slower and compiled for 70 s. Hence only loops of at most :data:`UNROLL_LENGTH`
    steps are unrolled. Unrolling changes the code XLA generates, not what is computed.
    """
    eqns, changed = [], False
    for eqn in jaxpr.eqns:
        new = eqn
        params = dict(eqn.params)
        for name, value in eqn.params.items():
            if isinstance(value, jex_core.ClosedJaxpr):
                inner = _unroll_short_scans(value.jaxpr)
                if inner is not value.jaxpr:
                    params[name] = jex_core.ClosedJaxpr(inner, value.consts)
            elif isinstance(value, jex_core.Jaxpr):
                inner = _unroll_short_scans(value)
                if inner is not value:
                    params[name] = inner
        if eqn.primitive.name == "scan":
            length, body = params["length"], params["jaxpr"]
            if (1 < length <= UNROLL_LENGTH and length * len(body.jaxpr.eqns) <= UNROLL_EQUATIONS
                    and params["unroll"] != length):
                params["unroll"] = length
        if any(params[k] is not v for k, v in eqn.params.items()):
            new, changed = eqn.replace(params=params), True
        eqns.append(new)
    return jaxpr.replace(eqns=eqns) if changed else jaxpr


_NO_MESH = jax.sharding.AbstractMesh((), ())

# f -> {input shapes: (snapshot, program, consts, arrays found)}; weak, so a dropped f frees its entry.
_TRACES: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()


def _cache_for(f: Any) -> dict | None:
    try:
        return _TRACES.setdefault(f, {})
    except TypeError:  # not weak-referenceable or unhashable: trace on every call
        return None


_MAX_WALK = 4096  # objects visited before giving up on the snapshot (then f is traced every call)
_PLAIN = (bool, int, float, complex, str, bytes, type(None))
_OPAQUE = (types.ModuleType, type, types.BuiltinFunctionType, types.BuiltinMethodType,
           types.MethodWrapperType, types.WrapperDescriptorType, types.CodeType)


class _TooBig(Exception):
    pass


def _snapshot(f: Any) -> tuple[tuple, list] | None:
    """Returns ``(key, arrays)``: what ``f`` can reach (arrays by identity, plain values by value).

    None when the walk is larger than ``_MAX_WALK`` objects or meets something it cannot read.
    """
    key: list = []
    arrays: list = []
    seen: dict[int, int] = {}

    def visit(o: Any) -> None:
        if isinstance(o, _PLAIN):
            key.append(o)
            return
        i = id(o)
        if i in seen:
            key.append(("ref", seen[i]))
            return
        seen[i] = len(seen)
        if len(seen) > _MAX_WALK:
            raise _TooBig
        if isinstance(o, (jax.Array, np.ndarray, np.generic)):
            key.append(("array", i))
            arrays.append(o)
        elif isinstance(o, _OPAQUE) or (callable(o) and _from_library(o)):
            key.append(("opaque", i))
        elif isinstance(o, types.FunctionType):
            code = o.__code__
            key.append(("function", code))
            for cell in o.__closure__ or ():
                try:
                    visit(cell.cell_contents)
                except ValueError:  # an empty cell
                    key.append("empty")
            for name in _global_names(code):
                if name in o.__globals__:
                    key.append(name)
                    visit(o.__globals__[name])
            visit(o.__defaults__)
            visit(o.__kwdefaults__)
        elif isinstance(o, types.MethodType):
            visit(o.__func__)
            visit(o.__self__)
        elif isinstance(o, functools.partial):
            key.append("partial")
            visit(o.func)
            visit(o.args)
            visit(o.keywords)
        elif isinstance(o, (list, tuple)):
            key.append((type(o), len(o)))
            for item in o:
                visit(item)
        elif isinstance(o, dict):
            key.append((type(o), len(o)))
            for k, v in o.items():
                visit(k)
                visit(v)
        elif isinstance(o, (set, frozenset)):
            if not all(isinstance(item, _PLAIN) for item in o):
                raise _TooBig  # no reliable order to compare
            key.append((type(o), frozenset(o)))
        else:
            cls = type(o)
            key.append(("object", cls))
            state = getattr(o, "__dict__", None)
            if state is not None:
                visit(state)
            for klass in cls.__mro__:
                slots = getattr(klass, "__slots__", ())
                for slot in slots if isinstance(slots, (tuple, list)) else ():
                    if slot not in ("__dict__", "__weakref__") and hasattr(o, slot):
                        key.append(slot)
                        visit(getattr(o, slot))
            call = cls.__dict__.get("__call__") or next(
                (k.__dict__["__call__"] for k in cls.__mro__ if "__call__" in k.__dict__), None)
            if isinstance(call, types.FunctionType):
                visit(call)

    try:
        visit(f)
    except (_TooBig, RecursionError):
        return None
    return tuple(key), arrays


# Functions of these packages hold no user state; their globals are the library's own.
_LIBRARIES = ("jax", "jaxlib", "numpy", "scipy", "flax", "equinox", "optax", "functools", "builtins",
              "typing", "abc", "jaxig")


def _from_library(o: Any) -> bool:
    if not isinstance(o, (types.FunctionType, types.MethodType, functools.partial)):
        return False
    func = o.func if isinstance(o, functools.partial) else getattr(o, "__func__", o)
    module = getattr(func, "__module__", None) or ""
    return module.split(".")[0] in _LIBRARIES and not isinstance(o, (types.MethodType, functools.partial))


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """Returns the global names a code object (and the code nested in it) may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(_global_names(const))
    return tuple(sorted(names))


def _struct(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    leaf = leaf if hasattr(leaf, "dtype") and hasattr(leaf, "shape") else np.asarray(leaf)
    return struct_like(leaf)


# -- fingerprints: equal fingerprints mean the same computation up to the values of the inputs ----------

_SIMPLE = (int, float, complex, str, bool, bytes, type(None), np.dtype, np.generic)


def _fingerprint(jaxpr: Any) -> tuple:
    """Returns a hashable summary of a jaxpr's structure: equations, parameters, wiring, avals."""
    ids: dict = {}

    def name(v: Any) -> Any:
        if isinstance(v, jex_core.Literal):
            return ("lit", _value_key(v.val), str(v.aval))
        if v not in ids:
            ids[v] = len(ids)
        return ids[v]

    head = tuple((name(v), str(v.aval)) for v in (*jaxpr.constvars, *jaxpr.invars))
    eqns = []
    for eqn in jaxpr.eqns:
        ins = tuple(name(v) for v in eqn.invars)
        outs = tuple((name(v), str(v.aval)) for v in eqn.outvars)
        params = tuple(sorted((k, _param_key(p)) for k, p in eqn.params.items()))
        eqns.append((eqn.primitive.name, ins, outs, params))
    return head, tuple(eqns), tuple(name(v) for v in jaxpr.outvars)


def _param_key(p: Any) -> Any:
    if isinstance(p, jex_core.ClosedJaxpr):
        return ("closed", _fingerprint(p.jaxpr), tuple(_value_key(c) for c in p.consts))
    if isinstance(p, jex_core.Jaxpr):
        return ("jaxpr", _fingerprint(p))
    if isinstance(p, (tuple, list)):
        return (type(p).__name__, tuple(_param_key(q) for q in p))
    if isinstance(p, _SIMPLE):
        return p
    if hasattr(p, "shape") and hasattr(p, "dtype"):
        return _value_key(p)
    code = getattr(p, "__code__", None) or getattr(getattr(p, "f", None), "__code__", None)
    if code is not None:  # a function (custom derivative rules): its code, not the object of this trace
        return ("fn", code)
    try:
        hash(p)
    except TypeError:
        return ("obj", type(p).__qualname__)
    return p


def _value_key(value: Any) -> Any:
    """Returns small constants by value and large ones by identity (new arrays compile anew: safe)."""
    if isinstance(value, _SIMPLE):
        return value
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and int(np.prod(shape)) <= 64 and not isinstance(value, Tracer):
        try:
            return (tuple(shape), str(dtype), np.asarray(value).tobytes())
        except Exception:  # key types and other opaque arrays
            pass
    return ("id", id(value))
