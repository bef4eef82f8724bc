"""Checks of the axioms Integrated Gradients is built on, for any attribution method.

Each check takes a **method**: any callable ``method(f, x, baseline) -> attributions`` (x's structure),
e.g. ``functools.partial(jaxig.integrated_gradients, n_steps=64)``. When ``target`` is given it is passed
on by keyword, ``method(f, x, baseline, target=target)``, and it means what it means for
``jaxig.integrated_gradients`` (None, int, int array (B,), callable ``outputs -> (B,)`` or ``"all"``).
Inputs are arrays or pytrees of float arrays with a leading batch axis B; features are the entries of one
example, numbered leaf by leaf (pytree leaf order) in row-major order within each leaf.

Every check returns an `AxiomResult`: ``.passed`` (also ``bool(result)``), the measured quantity per
example (``.measured``, shape (B,), or (K, B) for ``target="all"``), the ``.tolerance`` it was held to,
and a report naming what failed where; ``check_...(...).raise_if_failed()`` is a one-line pytest assert.

The checks run eagerly (they return Python booleans and strings), so they cannot be jit-compiled
themselves; the method and f they call may be jitted. Called with traced inputs (x, baseline, target or key
under ``jax.jit``, ``jax.vmap`` or ``jax.grad``) they raise TypeError at entry saying so. Also refused at entry,
with the fix in the message: an empty batch, lists of numbers or string leaves as x or baseline, settings of
the wrong type (tolerances must be real numbers >= 0, counts and indices ints, not bools or floats, ``key`` a
PRNG key), and an f that returns a scalar for x made only of (B,) leaves (one example without its batch axis:
pass x[None]).

Auxiliary batches (e.g. one input per feature in `check_sensitivity`) are built by repeating the batch; a
callable target must therefore work on any
batch size, and an int-array target is repeated with the batch (row r belongs to example r % B).

Reference: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017, sections 2-3.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from .._baselines import resolve_baseline
from .._targets import resolve_target
from ..datasets import _check_key as check_key
from ._probe import detect_dummies, dummy_mask, sample_points
from ._utils import (
    AxiomResult,
    call_method,
    flatten,
    flatten_attr,
    is_all,
    method_flat,
    select,
    squeeze,
    tile_target,
    unflatten,
    where,
)

__all__ = [
    "AxiomResult",
    "check_completeness",
    "check_dummy",
    "check_implementation_invariance",
    "check_linearity",
    "check_sensitivity",
    "check_symmetry",
]

def _prepare(x, baseline, target, method, fs, key=None):
    """Validates the entry arguments and returns (flat_x, flat_b, baseline tree, spec)."""
    if not callable(method):
        raise TypeError(
            f"method={method!r} is not callable; pass a method(f, x, baseline[, target=]) -> attributions, "
            "e.g. functools.partial(jaxig.integrated_gradients, n_steps=64)"
        )
    for name, f in fs:
        if not callable(f):
            raise TypeError(f"{name}={f!r} is not callable; pass the model as a function batch -> outputs")
    traced = [
        what for what, tree in (("x", x), ("baseline", baseline), ("target", target), ("key", key))
        if not callable(tree) and any(isinstance(leaf, Tracer) for leaf in jax.tree.leaves(tree))
    ]
    if traced:
        raise TypeError(
            f"{' and '.join(traced)} {'is a traced value' if len(traced) == 1 else 'are traced values'}: the "
            "axiom checks run eagerly (they return Python booleans and reports), so they cannot run under "
            "jax.jit, jax.vmap or jax.grad. Call the check outside the transformation on concrete arrays; "
            "the method and f it calls may themselves be jitted, e.g. method=jax.jit(method, static_argnums=...)"
        )
    if isinstance(x, (list, tuple)) and x and all(
        isinstance(leaf, (int, float, np.number)) for leaf in jax.tree.leaves(x)
    ):
        raise TypeError(
            "x is a (nested) list of numbers, which JAX reads as a pytree of scalars; pass an array: "
            "x=jnp.asarray(x, jnp.float32) (shape (B, ...))"
        )
    if key is not None:
        check_key(key)
    for path, leaf in jax.tree_util.tree_flatten_with_path(baseline)[0]:
        if isinstance(leaf, (str, bytes)):
            raise TypeError(
                f"baseline{jax.tree_util.keystr(path)} is the string {leaf!r}; a baseline holds numbers: None "
                "(zeros), a scalar, or arrays shaped like x (one example's shape, (1, ...) or x's shape)"
            )
    flat_x, spec = flatten(x)
    b_tree = resolve_baseline(baseline, x)
    flat_b, _ = flatten(b_tree, "baseline")
    resolve_target(target, spec.batch)  # the same errors integrated_gradients would raise
    if all(shape == () for shape in spec.shapes):
        _hint_missing_batch_axis(x, spec, fs)
    return flat_x, flat_b, b_tree, spec


def _hint_missing_batch_axis(x, spec, fs):
    """Raises when x is all (B,) leaves and f maps it to a scalar: x was likely one example without a batch axis."""
    for name, f in fs:
        try:
            out = jax.eval_shape(f, x)
        except Exception:  # noqa: BLE001, S112 -- f may not be traceable (NumPy inside); the method then speaks
            continue
        if getattr(out, "shape", None) == ():
            shape = (spec.batch,)
            raise ValueError(
                f"{name}(x) returns a scalar for x of shape {shape}, which the checks read as a batch of "
                f"{spec.batch} examples with one feature each. If x is one example of {spec.batch} features, "
                f"add a batch axis: x[None] (shape (1, {spec.batch})), and make {name} map (B, {spec.batch}) "
                "to (B,) or (B, K), e.g. reduce with axis=-1"
            )


def _check_real(name, value, minimum=0.0):
    """Returns value as a float; raises unless it is a real number >= minimum (not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}={value!r} must be a real number; pass e.g. {name}=1e-3")
    v = float(value)
    if not np.isfinite(v) or v < minimum:
        raise ValueError(f"{name}={value!r}; pass a finite number >= {minimum:g}")
    return v


def _check_int(name, value, minimum):
    """Returns value as an int; raises unless it is an integer (not a bool, not a float) >= minimum."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} is a bool; pass an int >= {minimum}")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}={value!r} is not an integer; pass an int >= {minimum}") from None
    if n < minimum:
        raise ValueError(f"{name}={n}; pass an int >= {minimum}")
    return n


def _outputs(f, tree, target, n) -> np.ndarray:
    return np.asarray(select(f(tree), target, n), dtype=np.float64)


def _attr(method, f, x, baseline, target, spec) -> np.ndarray:
    return flatten_attr(call_method(method, f, x, baseline, target), spec, target, spec.batch)


def _result(axiom, measured, tol, quantity, criterion, failures, notes, target, larger_is_better=False):
    ok = measured >= tol if larger_is_better else measured <= tol
    return AxiomResult(
        axiom=axiom,
        passed=bool(np.all(ok)),
        measured=squeeze(measured, target),
        tolerance=squeeze(np.broadcast_to(tol, measured.shape).copy(), target),
        quantity=quantity,
        criterion=criterion,
        failures=tuple(failures),
        notes=tuple(notes),
    )


def _names(spec, idx, limit=8) -> str:
    names = [spec.name(int(d)) for d in idx[:limit]]
    more = f", ... ({len(idx)} in all)" if len(idx) > limit else ""
    return ", ".join(names) + more


# ------------------------------------------------------------------------------------ completeness


def check_completeness(
    method: Callable, f: Callable, x: Any, baseline: Any = None, *, target: Any = None,
    rtol: float = 1e-2, atol: float = 1e-5,
) -> AxiomResult:
    """Returns whether attributions add up to the change in output: sum_i attr_i = f(x) - f(x').

    measured = |sum_i attr_i - (f(x) - f(x'))| per example, compared with atol + rtol * |f(x) - f(x')|.
    For IG the gap is quadrature error (plus float rounding), so it shrinks with n_steps; the default
    rtol of 1% flags real violations (e.g. attributions scaled by 0.9). On ReLU networks the gap decays
    only about as 1/n_steps (the integrand has kinks), and for examples with f(x) ~ f(x') a relative
    tolerance is unattainable, so pass an ``atol`` on the scale of the outputs' typical change there.
    The sum runs over all features of all pytree leaves.

    Args:
      method: ``method(f, x, baseline[, target=]) -> attributions``.
      f: batch -> (B,) or (B, K) outputs. x, baseline, target: as for ``jaxig.integrated_gradients``.
      rtol, atol: tolerance on the gap, relative to |f(x) - f(x')| and absolute.

    Raises:
      ValueError/TypeError: malformed inputs, targets or attributions.
    """
    rtol, atol = _check_real("rtol", rtol), _check_real("atol", atol)
    flat_x, _, b_tree, spec = _prepare(x, baseline, target, method, (("f", f),))
    attr = _attr(method, f, x, baseline, target, spec)
    diff = _outputs(f, x, target, spec.batch) - _outputs(f, b_tree, target, spec.batch)
    total = attr.sum(axis=-1)
    measured = np.abs(total - diff)
    tol = atol + rtol * np.abs(diff)
    failures = [
        f"{where(k, e, target)}: sum(attr) = {total[k, e]:.6g}, f(x) - f(x') = {diff[k, e]:.6g}, "
        f"gap {measured[k, e]:.3g} > tolerance {tol[k, e]:.3g}"
        for k, e in zip(*np.nonzero(measured > tol))
    ]
    return _result(
        "completeness", measured, tol, "|sum(attr) - (f(x) - f(x'))| per example",
        f"measured <= atol + rtol * |f(x) - f(x')| (rtol={rtol:g}, atol={atol:g})", failures, [], target,
    )


# ------------------------------------------------------------------------------------- sensitivity


def check_sensitivity(
    method: Callable, f: Callable, x: Any, baseline: Any = None, *, target: Any = None,
    features: Sequence[int] | None = None, min_fraction: float = 1e-3, atol: float = 1e-6,
    batch_size: int | None = None,
) -> AxiomResult:
    """Returns whether a feature that alone changes the output gets a non-zero attribution (sensitivity a).

    For every example and tested feature d, the input x^(d) equals the baseline except x^(d)_d = x_d.
    If the output changes, |f(x^(d)) - f(x')| > atol, then the method's attribution of feature d at
    x^(d) must be non-zero, which is operationalised as |attr_d(x^(d))| >= min_fraction * |f(x^(d)) - f(x')|.
    measured = the smallest such ratio per example (inf when no feature changes the output).
    A plain gradient fails on f(x) = 1 - relu(1 - x) at x = 2, x' = 0 (gradient 0, output change 1).

    Args:
      features: flat feature indices to test (default all D). The method is called on len(features) * B
        inputs; use this or batch_size (max inputs per method call) for large inputs such as images.
      min_fraction: smallest fraction of the output change that counts as "non-zero".
      atol: output changes at most this large do not count as changes.

    Raises:
      ValueError/TypeError: malformed inputs, targets, features or attributions.
    """
    min_fraction, atol = _check_real("min_fraction", min_fraction), _check_real("atol", atol)
    if batch_size is not None:
        batch_size = _check_int("batch_size", batch_size, 1)
    flat_x, flat_b, b_tree, spec = _prepare(x, baseline, target, method, (("f", f),))
    B, D = flat_x.shape
    feats = np.arange(D) if features is None else np.asarray(features).reshape(-1)
    if feats.size == 0 or not np.issubdtype(feats.dtype, np.integer) or feats.min() < 0 or feats.max() >= D:
        raise ValueError(f"features={features!r}; pass flat feature indices in [0, {D})")
    nd = feats.size
    rows = np.arange(nd * B)
    cols = np.repeat(feats, B)
    base = np.tile(flat_b, (nd, 1))
    mod = base.copy()
    mod[rows, cols] = flat_x[np.tile(np.arange(B), nd), cols]
    t_big = tile_target(target, nd)
    delta = _outputs(f, unflatten(mod, spec), t_big, nd * B) - np.tile(
        _outputs(f, b_tree, target, B), (1, nd)
    )
    attr = method_flat(method, f, mod, base, spec, t_big, batch_size)[:, rows, cols]
    changed = np.abs(delta) > atol
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(changed, np.abs(attr) / np.abs(delta), np.inf)
    K = frac.shape[0]
    measured = frac.reshape(K, nd, B).min(axis=1)
    failures = []
    for k, r in zip(*np.nonzero(frac < min_fraction)):
        e, d = r % B, int(feats[r // B])
        failures.append(
            f"{where(k, e, target)}, feature {spec.name(d)}: input equal to the baseline except this "
            f"feature changes the output by {delta[k, r]:.4g} but gets attribution {attr[k, r]:.4g} "
            f"({frac[k, r]:.3g} of the change < {min_fraction:g})"
        )
    notes = [f"{int(changed.sum())} of {changed.size} single-feature inputs changed the output"]
    return _result(
        "sensitivity", measured, np.float64(min_fraction),
        "min over features d that alone change the output of |attr_d(x^(d))| / |f(x^(d)) - f(x')|",
        f"measured >= min_fraction={min_fraction:g} (output changes <= atol={atol:g} ignored)",
        failures, notes, target, larger_is_better=True,
    )


# ------------------------------------------------------------------------------------------ dummy


def check_dummy(
    method: Callable, f: Callable, x: Any, baseline: Any = None, *, target: Any = None,
    dummies: Any = None, key: jax.Array | None = None, n_points: int = 32,
    dependence_rtol: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-6,
) -> AxiomResult:
    """Returns whether features the output does not depend on get zero attribution (sensitivity b).

    measured = max over dummy features d of |attr_d| per example, compared with
    atol + rtol * |f(x) - f(x')|.

    Which features are dummies: pass ``dummies`` (flat feature indices, or a pytree of bool masks shaped
    like one example) when you know. Otherwise they are detected, per explained output, by probing f at
    n_points points per example: half evenly spaced on the straight path from x' to x, half random points
    in a Gaussian tube around it (see ``key``). A feature is declared a dummy iff at every probe point
    (1) its exact gradient is negligible, |df/dx_d| * s <= tau, and (2) replacing its value by its value at
    another probe point of the same example changes the output by at most tau; s is the example's RMS
    |x - x'| and tau = dependence_rtol * max(|f| at the probes, |f(x) - f(x')|).

    Limits, stated plainly: sampling cannot prove independence. A feature that truly is a dummy is always
    detected (one-sided), but a feature whose influence is confined to regions no probe visits (e.g.
    relu(x_d - 10) when |x_d| < 1) is also declared a dummy, and the check then demands a zero attribution
    there; for path methods along the probed straight path that demand is met, for other methods it may
    not be. With no dummies found the check passes vacuously, and says so in its notes.

    Args:
      dummies: known dummy features (skips detection).
      key: PRNG key for the random probes (default ``jax.random.key(0)``).
      n_points: probe points per example for detection.
      dependence_rtol: relative size of output change below which a feature counts as without influence.
      rtol, atol: tolerance on dummy attributions.

    Raises:
      ValueError/TypeError: malformed inputs, targets, dummies or attributions.
    """
    dependence_rtol = _check_real("dependence_rtol", dependence_rtol)
    rtol, atol = _check_real("rtol", rtol), _check_real("atol", atol)
    n_points = _check_int("n_points", n_points, 2)
    flat_x, flat_b, b_tree, spec = _prepare(x, baseline, target, method, (("f", f),), key)
    attr = _attr(method, f, x, baseline, target, spec)
    diff = _outputs(f, x, target, spec.batch) - _outputs(f, b_tree, target, spec.batch)
    K = attr.shape[0]
    if dummies is not None:
        mask = dummy_mask(dummies, spec, K)
        how = "given by the caller"
    else:
        scale = np.max(np.abs(diff), axis=1)
        mask = detect_dummies(f, flat_x, flat_b, spec, target, key, n_points, dependence_rtol, scale)
        how = f"detected: no influence at {n_points} probe points per example on and around the path"
    tol = atol + rtol * np.abs(diff)
    masked = np.where(mask[:, None, :], np.abs(attr), 0.0)
    measured = masked.max(axis=2)
    failures = [
        f"{where(k, e, target)}, feature {spec.name(d)}: dummy feature gets attribution "
        f"{attr[k, e, d]:.4g} (|.| > tolerance {tol[k, e]:.3g})"
        for k, e, d in zip(*np.nonzero(masked > tol[:, :, None]))
    ]
    notes = []
    for k in range(K):
        idx = np.nonzero(mask[k])[0]
        pre = f"target {k}: " if is_all(target) else ""
        if idx.size:
            notes.append(f"{pre}{idx.size} of {spec.n_features} features are dummies ({how}): {_names(spec, idx)}")
        else:
            notes.append(f"{pre}no dummy features ({how}); the check is vacuous")
    return _result(
        "dummy", measured, tol, "max over dummy features of |attr_d| per example",
        f"measured <= atol + rtol * |f(x) - f(x')| (rtol={rtol:g}, atol={atol:g})", failures, notes, target,
    )


# ------------------------------------------------------------------------ implementation invariance


def check_implementation_invariance(
    method: Callable, f1: Callable, f2: Callable, x: Any, baseline: Any = None, *, target: Any = None,
    rtol: float = 1e-4, atol: float = 1e-6, equivalence_rtol: float = 1e-5, equivalence_atol: float = 1e-6,
    n_points: int = 17, key: jax.Array | None = None,
) -> AxiomResult:
    """Returns whether two functionally equivalent networks get the same attributions.

    First f1 and f2 must agree, |f1 - f2| <= equivalence_atol + equivalence_rtol * |f1| for every output,
    at x, the baseline, n_points evenly spaced points on the straight path between them, and n_points
    random points around that path (``key``); otherwise ValueError names the disagreement, since the
    axiom says nothing about networks that compute different functions. Then
    measured = max_d |attr_d(f1) - attr_d(f2)| per example, compared with atol + rtol * max_d |attr_d(f1)|.

    Raises:
      ValueError: f1 and f2 are not equivalent on the probed points; malformed inputs.
    """
    rtol, atol = _check_real("rtol", rtol), _check_real("atol", atol)
    equivalence_rtol = _check_real("equivalence_rtol", equivalence_rtol)
    equivalence_atol = _check_real("equivalence_atol", equivalence_atol)
    n_points = _check_int("n_points", n_points, 1)
    flat_x, flat_b, _, spec = _prepare(x, baseline, target, method, (("f1", f1), ("f2", f2)), key)
    B, D = flat_x.shape
    pts, labels = sample_points(flat_x, flat_b, key, max(n_points, 2), n_points)
    n = pts.shape[0]
    tree = unflatten(pts.reshape(n * B, D), spec)
    o1, o2 = np.asarray(f1(tree), np.float64), np.asarray(f2(tree), np.float64)
    if o1.shape != o2.shape:
        raise ValueError(f"f1 returns outputs of shape {o1.shape} but f2 {o2.shape}; they are not equivalent")
    o1, o2 = o1.reshape(n, B, -1), o2.reshape(n, B, -1)
    gap = np.abs(o1 - o2) - (equivalence_atol + equivalence_rtol * np.abs(o1))
    if np.any(gap > 0):
        s, e, c = np.unravel_index(np.argmax(gap), gap.shape)
        raise ValueError(
            f"f1 and f2 are not functionally equivalent on the inputs: at example {e}, {labels[s]}, "
            f"output[{c}]: f1 = {o1[s, e, c]:.6g}, f2 = {o2[s, e, c]:.6g} ({int((gap > 0).sum())} disagreeing "
            f"outputs; tolerance {equivalence_atol:g} + {equivalence_rtol:g}*|f1|). Implementation "
            "invariance only concerns networks that compute the same function"
        )
    a1 = _attr(method, f1, x, baseline, target, spec)
    a2 = _attr(method, f2, x, baseline, target, spec)
    err = np.abs(a1 - a2)
    measured = err.max(axis=2)
    tol = atol + rtol * np.abs(a1).max(axis=2)
    failures = []
    for k, e in zip(*np.nonzero(measured > tol)):
        d = int(np.argmax(err[k, e]))
        failures.append(
            f"{where(k, e, target)}: feature {spec.name(d)} gets {a1[k, e, d]:.6g} with f1 but "
            f"{a2[k, e, d]:.6g} with f2 (|diff| {err[k, e, d]:.3g} > tolerance {tol[k, e]:.3g})"
        )
    notes = [f"f1 == f2 verified at {n} points per example (path and around it)"]
    return _result(
        "implementation invariance", measured, tol, "max_d |attr_d(f1) - attr_d(f2)| per example",
        f"measured <= atol + rtol * max_d |attr_d(f1)| (rtol={rtol:g}, atol={atol:g})", failures, notes, target,
    )


# ---------------------------------------------------------------------------------------- linearity


def check_linearity(
    method: Callable, f1: Callable, f2: Callable, x: Any, baseline: Any = None, *,
    coefficients: tuple[float, float] = (2.0, -1.0), target: Any = None, rtol: float = 1e-4, atol: float = 1e-6,
) -> AxiomResult:
    """Returns whether attributions are linear in the function: attr(a f1 + b f2) = a attr(f1) + b attr(f2).

    measured = max_d |attr_d(a f1 + b f2) - a attr_d(f1) - b attr_d(f2)| per example, compared with
    atol + rtol * max_d (|a attr_d(f1)| + |b attr_d(f2)|). The same target is used for all three; the axiom
    holds for column targets (and linear callables), not for a nonlinear callable of the outputs.

    Raises:
      ValueError: f1 and f2 output shapes differ; malformed inputs.
    """
    if not isinstance(coefficients, (tuple, list)) or len(coefficients) != 2:
        raise TypeError(f"coefficients={coefficients!r}; pass a pair of numbers (a, b) for a*f1 + b*f2")
    a, b = (_check_real(f"coefficients[{i}]", c, -np.inf) for i, c in enumerate(coefficients))
    rtol, atol = _check_real("rtol", rtol), _check_real("atol", atol)
    _, _, _, spec = _prepare(x, baseline, target, method, (("f1", f1), ("f2", f2)))
    s1, s2 = jnp.shape(f1(x)), jnp.shape(f2(x))
    if s1 != s2:
        raise ValueError(f"f1 returns outputs of shape {s1} but f2 {s2}; a*f1 + b*f2 needs equal shapes")

    def f(z):
        return a * f1(z) + b * f2(z)

    A = _attr(method, f, x, baseline, target, spec)
    A1 = _attr(method, f1, x, baseline, target, spec)
    A2 = _attr(method, f2, x, baseline, target, spec)
    err = np.abs(A - (a * A1 + b * A2))
    measured = err.max(axis=2)
    tol = atol + rtol * (np.abs(a * A1) + np.abs(b * A2)).max(axis=2)
    failures = []
    for k, e in zip(*np.nonzero(measured > tol)):
        d = int(np.argmax(err[k, e]))
        failures.append(
            f"{where(k, e, target)}: feature {spec.name(d)}: attr({a:g}*f1 + {b:g}*f2) = {A[k, e, d]:.6g} but "
            f"{a:g}*attr(f1) + {b:g}*attr(f2) = {a * A1[k, e, d] + b * A2[k, e, d]:.6g} "
            f"(|diff| {err[k, e, d]:.3g} > tolerance {tol[k, e]:.3g})"
        )
    return _result(
        "linearity", measured, tol, f"max_d |attr_d({a:g} f1 + {b:g} f2) - ({a:g} attr_d(f1) + {b:g} attr_d(f2))|",
        f"measured <= atol + rtol * max_d(|a attr(f1)| + |b attr(f2)|) (rtol={rtol:g}, atol={atol:g})",
        failures, [], target,
    )


# ----------------------------------------------------------------------------------------- symmetry


def _feature_index(i, spec, name) -> int:
    D = spec.n_features
    if isinstance(i, tuple):
        if len(spec.shapes) != 1:
            raise ValueError(f"{name}={i!r}: tuple indices need a single-array x; pass a flat index in [0, {D})")
        try:
            idx = tuple(_check_int(f"{name}[{k}]", v, 0) for k, v in enumerate(i))
            return int(np.ravel_multi_index(idx, spec.shapes[0]))
        except ValueError as e:
            raise ValueError(
                f"{name}={i!r} is not an index into one example of shape {spec.shapes[0]} ({e})"
            ) from None
    if isinstance(i, (bool, np.bool_)):
        raise TypeError(f"{name}={i!r} is a bool; pass a flat feature index in [0, {D})")
    try:
        i = operator.index(i)
    except TypeError:
        raise TypeError(f"{name}={i!r} is not an integer; pass a flat feature index in [0, {D})") from None
    if not 0 <= i < D:
        raise ValueError(f"{name}={i}; pass a flat feature index in [0, {D})")
    return i


def check_symmetry(
    method: Callable, f: Callable, x: Any, baseline: Any = None, *, i: int | tuple, j: int | tuple,
    target: Any = None, rtol: float = 1e-4, atol: float = 1e-6, n_points: int = 32,
    key: jax.Array | None = None, symmetry_rtol: float = 1e-5, symmetry_atol: float = 1e-6,
) -> AxiomResult:
    """Returns whether two symmetric features with equal values and equal baselines get equal attributions.

    Preconditions, verified first: x_i = x_j and x'_i = x'_j for every example, and f is symmetric in
    features i and j, i.e. f(swap_ij(p)) = f(p) within symmetry_atol + symmetry_rtol * |f(p)| at n_points
    random points per example around the straight path (``key``), where p_i != p_j. Then
    measured = |attr_i - attr_j| per example, compared with atol + rtol * max(|attr_i|, |attr_j|).

    Args:
      i, j: flat feature indices, or index tuples into one example when x is a single array.

    Raises:
      ValueError: a precondition does not hold (the message says which and where); malformed inputs.
    """
    rtol, atol = _check_real("rtol", rtol), _check_real("atol", atol)
    symmetry_rtol = _check_real("symmetry_rtol", symmetry_rtol)
    symmetry_atol = _check_real("symmetry_atol", symmetry_atol)
    n_points = _check_int("n_points", n_points, 1)
    flat_x, flat_b, _, spec = _prepare(x, baseline, target, method, (("f", f),), key)
    B, D = flat_x.shape
    i, j = _feature_index(i, spec, "i"), _feature_index(j, spec, "j")
    if i == j:
        raise ValueError(f"i and j both name feature {spec.name(i)}; pass two different features")
    names = f"{spec.name(i)} and {spec.name(j)}"
    for arr, what in ((flat_x, "x"), (flat_b, "baseline")):
        bad = np.nonzero(arr[:, i] != arr[:, j])[0]
        if bad.size:
            raise ValueError(
                f"{what} differs between features {names} at examples {bad[:8].tolist()}; symmetry only "
                f"applies to equal values, e.g. set {what}[:, j] = {what}[:, i]"
            )
    pts, labels = sample_points(flat_x, flat_b, key, 2, max(n_points, 1))
    n = pts.shape[0]
    P = pts.reshape(n * B, D)
    Ps = P.copy()
    Ps[:, [i, j]] = P[:, [j, i]]
    o = np.asarray(f(unflatten(P, spec)), np.float64).reshape(n, B, -1)
    os_ = np.asarray(f(unflatten(Ps, spec)), np.float64).reshape(n, B, -1)
    gap = np.abs(o - os_) - (symmetry_atol + symmetry_rtol * np.abs(o))
    if np.any(gap > 0):
        s, e, c = np.unravel_index(np.argmax(gap), gap.shape)
        raise ValueError(
            f"f is not symmetric in features {names}: at example {e}, {labels[s]}, output[{c}] is "
            f"{o[s, e, c]:.6g} but {os_[s, e, c]:.6g} after swapping them"
        )
    attr = _attr(method, f, x, baseline, target, spec)
    ai, aj = attr[:, :, i], attr[:, :, j]
    measured = np.abs(ai - aj)
    tol = atol + rtol * np.maximum(np.abs(ai), np.abs(aj))
    failures = [
        f"{where(k, e, target)}: {spec.name(i)} gets {ai[k, e]:.6g} but {spec.name(j)} gets {aj[k, e]:.6g} "
        f"(|diff| {measured[k, e]:.3g} > tolerance {tol[k, e]:.3g})"
        for k, e in zip(*np.nonzero(measured > tol))
    ]
    notes = [f"f symmetric in {names} verified at {n} points per example"]
    return _result(
        "symmetry", measured, tol, f"|attr_i - attr_j| for i, j = {names}",
        f"measured <= atol + rtol * max(|attr_i|, |attr_j|) (rtol={rtol:g}, atol={atol:g})", failures, notes, target,
    )
