"""The Integrated Gradients entry function: composes inputs, baseline, target, path and rule."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as _checks
from .._gradients import gradient
from .._info import Info, completeness_gap, warn_incomplete
from .._jaxpr.affine import split_affine_prefix
from .._paths.base import AbstractPath
from .._paths.checks import check_path, path_errors
from .._paths.straight import StraightLine
from .._problem import Problem, prepare
from .._quadrature.accumulate import check_batch_size
from .._quadrature.autobatch import auto_alpha_batch_size
from .._quadrature.base import AbstractRule
from .._quadrature.gauss import GaussLegendre
from .._sharding import alpha_mesh, struct_like, to_host
from .._targets import select


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything that selects a compiled program besides the problem's structure; hashed."""

    n_steps: int
    multiply_by_inputs: bool
    alpha_batch_size: int | None
    with_delta: bool
    # jax treats the treedefs of field-less rules of different classes as equal, so the classes
    # must be part of the key or one rule's compiled program would serve another.
    rule_type: type
    path_type: type
    split_affine: bool = True
    alpha_mesh: Any = None  # a jax.sharding.Mesh (hashable) or None


def integrated_gradients(
    f: Callable[..., jax.Array],
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
    split_affine: bool = True,
    alpha_sharding: Any = None,
    key: Any = None,
    return_delta: bool = False,
    return_info: bool = False,
    check_finite: bool = False,
    completeness_rtol: float | None = 1e-2,
) -> Any:
    """Returns the Integrated Gradients of ``f`` at ``x``, a pytree shaped like ``x``.

    For the straight path, feature ``i`` of example ``b`` gets

        IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i  da
                ~ (x_i - x'_i) * sum_k w_k dF(x' + a_k (x - x')) / dx_i

    with ``F`` the explained output, ``x'`` the baseline and ``(a_k, w_k)`` the rule's nodes and
    weights. Along a general path ``gamma`` the summand is ``w_k * grad F(gamma(a_k)) * gamma'(a_k)``.
    Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.

    Args:
      f: maps a batch to outputs of shape ``(B,)`` or ``(B, K)``: a function, a callable object, an
        ``nnx.Module``, an ``eqx.Module``, ``jax.tree_util.Partial(apply, params)``... Examples must
        not interact (no batch statistics), since one gradient of the summed outputs gives every
        example's gradient. The arrays ``f`` reads (its weights) are inputs of the compiled program,
        which is cached on the traced *structure* of ``f``: the attributions always follow the
        current weights, and a new checkpoint or a new lambda of the same architecture compiles
        nothing (see ``jaxig._model``).
      x: a float array or a pytree of float arrays, each with the leading batch axis ``B``.
      baseline: ``None`` (zeros), a scalar, or a pytree like ``x`` whose leaves have shape
        ``x.shape``, ``(1,) + x.shape[1:]`` or ``x.shape[1:]``.
      args: extra arguments of ``f``, called as ``f(x, *args)`` (masks, lengths; Captum's
        ``additional_forward_args``). Their arrays are traced inputs: new values compile nothing.
      target: which output to explain. ``None`` when ``f`` returns ``(B,)`` or ``(B, 1)``; an int (or
        a one-element array) for every example; an int array ``(B,)`` (one output per example); a
        tuple ``(i, j)`` or an int array ``(B, 2)`` for outputs ``(B, K1, K2)``; a callable
        ``outputs -> (B,)`` (it sees the raw outputs); :func:`jaxig.weighted` ``(w)`` for
        ``sum_k w[b, k] f(x)[b, k]`` (multi-hot labels); or, adding a leading ``K`` axis to the
        result (and to ``delta``), ``"all"`` for every output or :func:`jaxig.outputs` ``(0, 2)``
        (also by label name) for the listed ones. See ``jaxig._targets``.
      n_steps: number of gradient evaluations (nodes of the rule).
      rule: the quadrature rule, an :class:`AbstractRule` (default Gauss–Legendre).
      path: the path from the baseline to ``x``, an :class:`AbstractPath` (default straight line).
      multiply_by_inputs: ``False`` returns the path-averaged gradient ``sum_k w_k grad F(gamma(a_k))``
        without the factor ``x - x'`` (innsight's ``times_input = FALSE``, Captum's
        ``multiply_by_inputs=False``).
      alpha_batch_size: evaluate at most this many alphas at once and accumulate, bounding memory
        independently of ``n_steps``; the result equals the unchunked one up to rounding order.
        ``None`` chooses: chunks whose intermediates stay near 64 MiB (faster on CPU for MLPs and
        LSTMs), or all alphas in one ``vmap`` for convolutional models (see ``benchmarks/README.md``).
        Pass ``alpha_batch_size=n_steps`` to force one ``vmap`` over all alphas.
      split_affine: move an affine first part of ``f`` out of the alpha loop (see below; straight
        path and fixed rules only). ``False`` evaluates ``f`` whole at every alpha: the same integral,
        for comparing timings or if the rewritten program misbehaves.
      alpha_sharding: spread the ``n_steps`` alphas over devices, for few examples and many steps
        (one image, 1,024 alphas): ``True`` for every device, or a ``jax.sharding.Mesh`` (alphas are
        split over all its axes). Each device sums its block of alphas (in chunks of
        ``alpha_batch_size``) and the partial sums are added across devices; the result equals the
        unsharded one up to rounding order and is replicated on the mesh. ``None`` (default): the
        alphas stay together, and a batch sharded over examples keeps its sharding.
      key: a PRNG key, needed by random rules (``MonteCarlo``, ``QuasiMonteCarlo``); fixed rules
        ignore it.
      return_delta: also return ``delta`` of shape ``(B,)``: the sum of each example's attributions
        minus ``F(x) - F(x')``, the completeness gap (zero for exact integration).
      return_info: return ``(attributions, info)``, ``info`` a :class:`jaxig.Info` with ``delta``
        (``None`` with ``multiply_by_inputs=False``) and ``n_evals``; takes precedence over
        ``return_delta``.
      completeness_rtol: warn (``RuntimeWarning``, once per call, naming the worst examples) when
        an example's completeness gap ``|delta|`` exceeds ``completeness_rtol * |F(x) - F(x')|``
        (floored at ``1e-3 (|F(x)| + |F(x')|)``), or is not finite: the integral is not converged
        (kinks of a ReLU network, too few steps), diverges (``log`` at a zero baseline), or ``f``
        has a jump or a zero-gradient cast on the path. It costs two forward passes; ``None``
        turns it off. Checked outside ``jit`` only (under ``jit``, read ``info.delta``).
      check_finite: raise ``ValueError`` if any attribution is NaN or Inf (outside ``jit`` only).
        By default NaN/Inf propagate: a non-finite gradient anywhere on the path makes the affected
        attributions non-finite, and an out-of-range target under tracing gives NaN attributions.

    Returns:
      The attributions (a pytree like ``x``, with a leading ``K`` axis for ``target="all"``), or
      ``(attributions, delta)`` with ``return_delta=True``, or ``(attributions, info)`` with
      ``return_info=True``. Dtypes follow ``x`` (float64 inputs with
      ``jax_enable_x64`` give float64 results).

    Raises:
      TypeError: ``f`` is not callable; integer or boolean inputs; a rule or path of the wrong type;
        ``f`` returns non-float outputs; a target of unsupported type.
      ValueError: baseline shape or structure not matching ``x``; ``n_steps`` below what the rule
        needs; outputs not of shape ``(B,)``/``(B, K)``; several outputs and no target; a target index
        negative or ``>= K``; a target array whose length is not ``B``; ``return_delta`` with
        ``multiply_by_inputs=False``.

    The computation is ``jax.jit``-compiled and cached on ``f``'s traced structure, the settings and
    the shapes and dtypes of the inputs; it also runs under the caller's ``jax.jit``, ``jax.vmap`` and ``jax.grad``
    (attributions are differentiable, e.g. with respect to parameters closed over by ``f``).
    Along the straight line, an affine first part ``A`` of ``f = g o A`` (dense or convolutional
    layers, normalisation by constants, reshapes...; read from ``f``'s jaxpr) is evaluated at ``x``
    and the baseline only, and its transpose is applied once to the summed gradients of ``g``: the
    same integral, exact up to rounding, without the first layer's cost at every alpha.

    A batch sharded over devices (``jax.device_put(x, NamedSharding(mesh, P("batch")))`` on an
    ``Auto`` or ``Explicit`` mesh, or ``x`` inside ``jax.shard_map``, on one host or many) is computed
    where it lies and the attributions keep its sharding; ``alpha_sharding`` spreads the alphas instead.
    """
    _checks.check_rule_and_path(rule, path)
    rule.check_steps(n_steps)
    check_batch_size(alpha_batch_size)
    if return_delta and not multiply_by_inputs:
        raise ValueError(
            "return_delta=True needs multiply_by_inputs=True: completeness holds for attributions, "
            "not for the path-averaged gradient"
        )
    if completeness_rtol is not None and not (isinstance(completeness_rtol, (int, float, np.floating))
                                              and np.isfinite(completeness_rtol) and completeness_rtol >= 0):
        raise ValueError(f"completeness_rtol must be a non-negative number or None, got {completeness_rtol!r}")
    with_delta = bool(return_delta or return_info or completeness_rtol is not None) and bool(multiply_by_inputs)
    problem = prepare(f, x, baseline, target=target, args=args)
    static = _Static(int(n_steps), bool(multiply_by_inputs), alpha_batch_size, with_delta, type(rule), type(path),
                     split_affine=bool(split_affine), alpha_mesh=alpha_mesh(alpha_sharding))
    attributions, delta, scale, path_error = _ig_jit(static, problem, rule, path, key)
    if _checks.is_concrete(path_error):
        check_path(path, path_error)
    if completeness_rtol is not None and delta is not None and _checks.is_concrete(delta):
        warn_incomplete(to_host(delta), to_host(scale), float(completeness_rtol), f, problem,
                        what=f"{n_steps}-step {type(rule).__name__}")
    if check_finite:
        _checks.check_finite(attributions)
    if return_info:
        return attributions, Info(delta=delta, n_evals=int(n_steps))
    return (attributions, delta) if return_delta else attributions


def _affine_split(f, x):
    """Returns ``(A, g)`` with ``f = g o A`` and ``A`` affine (``_jaxpr.affine.split_affine_prefix``), or None."""
    structs = jax.tree.map(struct_like, x)
    try:
        return split_affine_prefix(f, structs)
    except Exception as err:  # the split only saves time: a program it cannot read runs unsplit
        # ...but say so, or a bug in the split would only ever show as lost speed.
        warnings.warn(f"jaxig: the affine-prefix speed-up was skipped for this f ({type(err).__name__}: "
                      f"{err}); attributions are computed without it", RuntimeWarning, stacklevel=2)
        return None


def _ig_impl(static: _Static, problem: Problem, rule: AbstractRule, path: AbstractPath, key):
    model, spec, index, x = problem.model, problem.target, problem.index, problem.x
    baseline = problem.full_baseline()
    dtype = problem.dtype

    def gradient_of(fn):
        return lambda point: gradient(fn, spec, index, point)

    # Along a straight line gamma' = x - x' is constant, so it multiplies once, after the sum.
    per_alpha_tangent = static.multiply_by_inputs and not path.is_straight
    split = _affine_split(model, x) if static.split_affine and path.is_straight and rule.linear else None
    if split is not None:
        # f = g o A with A affine: A(gamma(a)) = A(x') + a (A(x) - A(x')), so A runs twice, g's
        # gradient is integrated on the hidden line, and A's transpose maps the sum back once.
        affine, rest = split
        hidden_x, hidden_b = affine(x), affine(baseline)
        gradient_at = gradient_of(rest)
        one_alpha = lambda alpha: gradient_at(StraightLine()(alpha, hidden_x, hidden_b))
        sized_fn, sized_arg = rest, hidden_x
    elif per_alpha_tangent:
        gradient_at = gradient_of(model)

        def one_alpha(alpha):
            point, tangent = path.value_and_derivative(alpha, x, baseline)
            return jax.tree.map(jnp.multiply, gradient_at(point), tangent)

        sized_fn, sized_arg = model, x
    else:
        gradient_at = gradient_of(model)
        one_alpha = lambda alpha: gradient_at(path(alpha, x, baseline))
        sized_fn, sized_arg = model, x

    batch_size = static.alpha_batch_size
    if batch_size is None:  # sized for the alphas one device evaluates
        per_device = -(-static.n_steps // (1 if static.alpha_mesh is None else static.alpha_mesh.size))
        batch_size = auto_alpha_batch_size(sized_fn, sized_arg, per_device)
    total = rule.integrate(jax.vmap(one_alpha), static.n_steps, dtype=dtype, alpha_batch_size=batch_size,
                           key=key, alpha_mesh=static.alpha_mesh)
    if split is not None:
        _, pullback = jax.vjp(affine, x)
        to_inputs = lambda t: pullback(t)[0]
        total = jax.vmap(to_inputs)(total) if spec.multi else to_inputs(total)
    if static.multiply_by_inputs and path.is_straight:
        total = jax.tree.map(lambda g, xi, bi: g * (xi - bi), total, x, baseline)
    total = jax.tree.map(lambda t, xi: t.astype(xi.dtype), total, x)

    start, end = path(jnp.zeros((), dtype), x, baseline), path(jnp.ones((), dtype), x, baseline)
    delta = scale = None
    if static.with_delta:
        f_end, f_start = select(spec, model(end), index), select(spec, model(start), index)
        delta = completeness_gap(total, f_end, f_start, spec.multi)
        scale = jnp.maximum(jnp.abs(f_end - f_start), 1e-3 * (jnp.abs(f_end) + jnp.abs(f_start)))
    return total, delta, scale, path_errors(path, x, baseline, start, end)


_ig_jit = jax.jit(_ig_impl, static_argnums=0)


def path_gradients(
    f: Callable[..., jax.Array],
    x: Any,
    baseline: Any = None,
    *,
    alphas: Any,
    target: Any = None,
    args: Any = (),
    path: AbstractPath = StraightLine(),
) -> Any:
    """Returns the IG integrand at the given alphas: a pytree like ``x`` with a leading ``(n,)`` axis.

    ``g(a) = dF/dx(gamma(a)) * gamma'(a)`` (``* (x - x')`` on the straight line), so that for any
    quadrature table ``sum_k w_k g(a_k)`` is that rule's Integrated Gradients. For studies of
    quadrature schemes (evaluate once, try many weights); ``target="all"`` puts ``K`` after the
    alpha axis. Arguments as in :func:`integrated_gradients`; ``alphas`` is a 1-D array in [0, 1].

    Raises:
      ValueError: ``alphas`` is not one-dimensional (and the errors of :func:`integrated_gradients`).
    """
    if not isinstance(path, AbstractPath):
        raise TypeError(f"path must be an instance of jaxig.AbstractPath such as jaxig.StraightLine(), got {path!r}")
    alphas = jnp.asarray(alphas)
    if alphas.ndim != 1:
        raise ValueError(f"alphas must be a 1-D array of points in [0, 1], got shape {alphas.shape}")
    problem = prepare(f, x, baseline, target=target, args=args)
    return _path_gradients_jit(problem, path, alphas.astype(problem.dtype))


@jax.jit
def _path_gradients_jit(problem: Problem, path: AbstractPath, alphas):
    x, baseline = problem.x, problem.full_baseline()

    def one(alpha):
        point, tangent = path.value_and_derivative(alpha, x, baseline)
        grads = gradient(problem.model, problem.target, problem.index, point)
        return jax.tree.map(lambda g, t: (g * t).astype(t.dtype), grads, tangent)

    return jax.vmap(one)(alphas)
