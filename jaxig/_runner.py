"""Whole datasets: attributions in example batches (one compiled program), and a long-format table.

:func:`attribute_dataset` runs any method of the protocol over a dataset too large for one call;
:func:`to_dataframe` turns attributions into a long pandas table for grouping and plotting.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ._info import Info
from ._targets import Outputs

__all__ = ["attribute_dataset", "to_dataframe"]


def attribute_dataset(
    method: Callable[..., Any],
    f: Callable[..., Any],
    xs: Any,
    *,
    batch_size: int = 256,
    baseline: Any = None,
    target: Any = None,
    args: Any = (),
    key: Any = None,
    progress: bool | None = None,
    devices: Any = None,
    return_info: bool = False,
    **method_kwargs: Any,
) -> Any:
    """Returns ``method``'s attributions for every example of ``xs``: NumPy arrays ``(N, ...)``.

    The dataset is cut into consecutive batches of ``batch_size`` examples and each batch is
    explained by one call ``method(f, x_batch, baseline_batch, target=..., args=..., key=...,
    **method_kwargs)``; each batch's result is copied into preallocated host (NumPy) arrays before
    the next-but-one batch starts, so device memory holds about two batches whatever ``N`` is.
    Every call sees the same shapes, so the method compiles one program and reuses it: the last,
    shorter batch is padded to ``batch_size`` with copies of its first example and the padded rows
    are dropped from the result (examples never interact in a method, so they do not change the
    real rows). The result therefore equals ``method(f, xs, ...)`` on the whole dataset, up to
    rounding, for every deterministic method.

    Several devices: ``devices=None`` uses every local device (``jax.local_devices()``). With more
    than one, ``batch_size`` is rounded up to a multiple of their number and each batch is sharded
    along the example axis over a 1-D mesh (``jax.sharding.NamedSharding``, axis ``"examples"``):
    the method's compiled program runs data-parallel and the results equal the one-device run.
    Model weights are replicated by JAX; keep them uncommitted (created without
    ``jax.device_put(..., device)``) or on the same devices.

    Randomness: with ``key``, batch ``i`` (counting from 0) gets ``jax.random.fold_in(key, i)``, so a
    run is reproducible from ``key`` and ``batch_size`` (another ``batch_size`` groups examples into
    other batches and gives other, equally distributed draws). Deterministic methods ignore the key.

    Warnings a method raises per batch (e.g. the completeness check of ``integrated_gradients``) are
    collected and re-raised once per message kind at the end, with the number of batches that warned;
    example numbers inside them count from the start of their batch.

    Args:
      method: any attribution method of the protocol (``jaxig.integrated_gradients``,
        ``jaxig.saliency``, ``jaxig.occlusion``, ``jaxig.exact_integrated_gradients``,
        ``jaxig.expected_gradients``, a ``jaxig.noise_tunnel(...)`` or a ``functools.partial`` of one).
      f: the model, as for the method.
      xs: the dataset: an array or a pytree of arrays with the leading example axis ``N``. It is read
        on the host (``np.asarray``), one batch at a time is sent to the device(s).
      batch_size: examples per call (a positive int). Larger batches amortise dispatch, smaller ones
        bound memory; the method's own chunking (``alpha_batch_size``...) still applies inside a batch.
      baseline: passed as the method's third argument (not passed at all when ``None``). A pytree
        like ``xs`` whose leaves have the full shape ``(N, ...)`` is one baseline per example and is
        sliced like ``xs``; anything else (a scalar, leaves of shape ``x.shape[1:]`` or
        ``(1,) + x.shape[1:]``) is shared by every batch. A reference *distribution*
        (``expected_gradients``' or ``deeplift_shap``'s ``baselines``) is not per example: pass it by
        keyword, ``baselines=refs``, with the method's other settings.
      target: ``None``, an int, a callable or ``"all"`` (shared by every batch; ``"all"`` gives
        ``(K, N, ...)`` results), or an int array of length ``N`` (one output per example), sliced
        per batch.
      args: per-example extra arguments of ``f`` (``f(x, *args)``: masks, sequence lengths), a tuple
        whose array leaves all have the leading axis ``N``; they are sliced like ``xs``. Shared
        arrays (weights, constants) belong in ``f`` (a closure or ``jax.tree_util.Partial``).
      key: a PRNG key for random methods, folded with the batch number (see above).
      progress: ``None`` shows a tqdm bar when tqdm is installed and stderr is a terminal (or in a
        Jupyter kernel); ``True``
        always reports on stderr (a plain text line when tqdm is missing); ``False`` is silent.
      devices: the devices to spread batches over (a sequence of ``jax.Device``), or ``None`` for all
        local devices.
      return_info: return ``(attributions, info)`` where ``info`` is one :class:`jaxig.Info` for the
        dataset: per-example fields (``delta``, ``error``, ``converged``, ``n_intervals``,
        ``n_segments``, ``breakpoints``) concatenated over batches without the padded rows; per-call
        fields (``n_evals`` of fixed rules, ``n_rounds``) kept when every batch agrees, otherwise a
        NumPy array with one entry per batch (they then count padded rows too).
      **method_kwargs: the method's settings (``n_steps=``, ``rule=``, ``baselines=``...), passed
        unchanged to every call.

    Returns:
      The attributions as NumPy arrays shaped like ``xs`` (a leading ``K`` axis for
      ``target="all"``), or ``(attributions, info)`` with ``return_info=True``.

    Raises:
      TypeError: ``method`` is not callable; ``batch_size`` is not an int; ``return_delta`` passed
        (use ``return_info=True``); ``args`` is not a tuple or list.
      ValueError: an empty dataset or leaves of different lengths; ``batch_size < 1``; a target
        array or an ``args`` leaf whose leading axis is not ``N``; an empty ``devices``.
    """
    if not callable(method):
        raise TypeError(f"method must be an attribution method such as jaxig.integrated_gradients, got {method!r}")
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size={batch_size!r} must be an int, e.g. batch_size=256")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1, e.g. batch_size=256")
    if "return_delta" in method_kwargs:
        raise TypeError("attribute_dataset does not take return_delta; pass return_info=True and read info.delta")
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple of per-example extra arguments of f, got {type(args).__name__}; "
                        "for one extra argument m pass args=(m,)")
    xs = jax.tree.map(np.asarray, xs)
    n = _dataset_length(xs)
    per_example_baseline = baseline is not None and _is_per_example(baseline, xs)
    if per_example_baseline:
        baseline = jax.tree.map(np.asarray, baseline)
    index = _per_example_target(target, n)
    args = tuple(jax.tree.map(lambda a: _per_example_arg(a, n), tuple(args)))
    all_k = (isinstance(target, str) and target == "all") or isinstance(target, Outputs)  # a leading K axis

    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; pass None (all local devices) or a list of jax devices")
    # A dataset smaller than one batch is one call at its own size (nothing to pad).
    batch_size = min(int(batch_size), n)
    sharding = None
    if len(devices) > 1:
        batch_size = math.ceil(batch_size / len(devices)) * len(devices)
        mesh = jax.sharding.Mesh(np.asarray(devices), ("examples",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("examples"))
    elif devices[0] != jax.devices()[0]:
        sharding = jax.sharding.SingleDeviceSharding(devices[0])

    def put(tree):
        if sharding is None:
            return tree
        return jax.tree.map(lambda a: jax.device_put(a, sharding) if np.ndim(a) else a, tree)

    def take(tree, start, stop):
        # Pad with copies of the batch's first example: same shapes, same program, real values.
        rows = np.r_[start:stop, np.full(batch_size - (stop - start), start)]
        return jax.tree.map(lambda a: (a[rows] if stop - start < batch_size else a[start:stop]) if np.ndim(a) else a,
                            tree)

    starts = list(range(0, n, batch_size))
    named = getattr(method, "func", method)  # a functools.partial shows the method it wraps
    bar = _progress_bar(progress, n, getattr(named, "__name__", type(method).__name__))
    out: list | None = None
    infos: list = []
    caught: dict = {}
    treedef = None
    pending = None

    def collect(pending):
        nonlocal out, treedef
        start, stop, result = pending
        attr, info = result if return_info else (result, None)
        leaves, td = jax.tree.flatten(attr)
        if out is None:
            treedef = td
            out = [np.empty(_with_batch(leaf.shape, n, all_k), leaf.dtype) for leaf in leaves]
        for dest, leaf in zip(out, leaves):
            part = np.asarray(leaf)
            if all_k:
                dest[:, start:stop] = part[:, : stop - start]
            else:
                dest[start:stop] = part[: stop - start]
        if info is not None:
            infos.append((stop - start, jax.tree.map(np.asarray, info)))
        bar.update(stop - start)

    try:
        for number, start in enumerate(starts):
            stop = min(start + batch_size, n)
            x_b = put(take(xs, start, stop))
            b_b = put(take(baseline, start, stop)) if per_example_baseline else baseline
            kwargs = dict(method_kwargs)
            if index is not None:
                kwargs["target"] = take(index, start, stop)
            elif target is not None:
                kwargs["target"] = target
            if args:
                kwargs["args"] = put(take(args, start, stop))
            if key is not None:
                kwargs["key"] = jax.random.fold_in(key, number)
            if return_info:
                kwargs["return_info"] = True
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                # No baseline given: none passed, so a method whose third argument is a reference
                # distribution (expected_gradients) can take it by keyword.
                result = method(f, x_b, b_b, **kwargs) if baseline is not None else method(f, x_b, **kwargs)
            for w in seen:
                entry = caught.setdefault((w.category, _kind(str(w.message))), [str(w.message), set()])
                entry[1].add(number)
            # Copy the previous batch to the host only now: this batch is already dispatched.
            if pending is not None:
                collect(pending)
            pending = (start, stop, result)
        if pending is not None:
            collect(pending)
    finally:
        bar.close()
    for (category, _), (message, batches) in caught.items():
        warnings.warn(f"{message} [attribute_dataset: {len(batches)} of {len(starts)} batches of {batch_size} "
                      f"warned like this, first batch {min(batches)} (examples {min(batches) * batch_size}+)]",
                      category, stacklevel=2)
    assert out is not None and treedef is not None
    attributions = jax.tree.unflatten(treedef, out)
    return (attributions, _concat_infos(infos, all_k)) if return_info else attributions


def _dataset_length(xs: Any) -> int:
    leaves = jax.tree.leaves(xs)
    if not leaves:
        raise ValueError(f"xs {xs!r} has no arrays; pass an array or pytree of arrays with a leading example axis")
    if any(np.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError("xs has a 0-d leaf; every leaf needs the leading example axis N")
    lengths = sorted({int(np.shape(leaf)[0]) for leaf in leaves})
    if len(lengths) > 1:
        raise ValueError(f"the leaves of xs have different numbers of examples {lengths}; "
                         "every leaf needs the same leading axis N")
    if lengths[0] == 0:
        raise ValueError("xs has no examples (N = 0); pass at least one example")
    return lengths[0]


def _is_per_example(baseline: Any, xs: Any) -> bool:
    """A baseline is per example when it has x's structure and every leaf has x's full shape."""
    try:
        pairs = jax.tree.map(lambda b, x: np.shape(b) == x.shape, baseline, xs)
    except (ValueError, TypeError):
        return False
    return all(jax.tree.leaves(pairs))


def _per_example_target(target: Any, n: int) -> np.ndarray | None:
    """Returns the int targets as a NumPy array ``(N,)`` when one is given per example, else None."""
    shared = isinstance(target, (str, int, np.integer)) or (callable(target) and not hasattr(target, "dtype"))
    if target is None or shared:
        return None
    index = np.asarray(target)
    if index.ndim == 0:
        return None
    if index.shape != (n,):
        raise ValueError(f"target of shape {index.shape} must give one output per example, shape ({n},), "
                         "or be one int, a callable or 'all' shared by every example")
    return index


def _per_example_arg(a: Any, n: int) -> Any:
    if np.ndim(a) == 0:
        return a
    a = np.asarray(a)
    if a.shape[0] != n:
        raise ValueError(f"an args leaf of shape {a.shape} does not have the leading example axis N={n}; args are "
                         "per-example arrays sliced like xs; close over shared arrays in f instead")
    return a


def _with_batch(shape: tuple, n: int, all_k: bool) -> tuple:
    return (shape[0], n) + tuple(shape[2:]) if all_k else (n,) + tuple(shape[1:])


def _kind(message: str) -> str:
    # Messages of one kind differ in the numbers they quote; the words before the first digit group them.
    return "".join(c for c in message[:120] if not c.isdigit())


def _concat_infos(infos: list, all_k: bool) -> Info:
    padded = None
    fields = {}
    for field in dataclasses.fields(Info):
        values = [getattr(info, field.name) for _, info in infos]
        counts = [count for count, _ in infos]
        if all(v is None for v in values):
            fields[field.name] = None
            continue
        if padded is None:
            padded = _padded_batch(infos, all_k)
        if isinstance(values[0], tuple) and len(values[0]) == padded:  # one entry per example
            fields[field.name] = tuple(e for v, c in zip(values, counts) for e in v[:c])
            continue
        fields[field.name] = jax.tree.map(
            lambda *leaves, counts=counts, padded=padded: _concat_leaf(list(leaves), counts, padded, all_k), *values)
    return Info(**fields)


def _padded_batch(infos: list, all_k: bool) -> int | None:
    delta = infos[0][1].delta
    if delta is not None:
        return int(np.shape(delta)[1 if all_k else 0])
    return max(count for count, _ in infos)


def _concat_leaf(leaves: list, counts: list, padded: int | None, all_k: bool) -> Any:
    arrays = [np.asarray(leaf) for leaf in leaves]
    first = arrays[0]
    axis = 1 if all_k and first.ndim >= 2 else 0
    if first.ndim and first.shape[axis] == padded and all(a.shape == first.shape for a in arrays):
        return np.concatenate([np.take(a, np.arange(c), axis=axis) for a, c in zip(arrays, counts)], axis=axis)
    if all(a.shape == first.shape and np.array_equal(a, first) for a in arrays):
        return first.item() if first.ndim == 0 else first
    return np.stack(arrays)


class _TextBar:
    """A plain progress line on stderr, for ``progress=True`` without tqdm."""

    def __init__(self, total: int, desc: str):
        self.total, self.done, self.desc = total, 0, desc

    def update(self, k: int) -> None:
        self.done += k
        sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total} examples")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(progress: bool | None, total: int, desc: str) -> Any:
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress={progress!r} must be None (automatic), True or False")
    if progress is not None and not progress:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, desc) if progress else _NoBar()
    # A Jupyter kernel's stderr is no terminal, but its users watch it like one.
    watched = (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()) or "ipykernel" in sys.modules
    if progress is None and not watched:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="example", file=sys.stderr)


# -- a long-format table -------------------------------------------------------------------------------


def to_dataframe(
    attributions: Any,
    *,
    feature_names: Any = None,
    time_names: Any = None,
    output_names: Any = None,
    output_axis: bool = False,
    method: Any = None,
) -> Any:
    """Returns a long-format pandas DataFrame, one row per attribution value.

    Columns ``example, feature[, time], output, method, value``: ``example`` counts examples from
    0, ``feature`` and ``time`` hold the names given (or the index), ``output`` the explained
    output's name for ``target="all"`` results (``None`` otherwise), ``method`` the method's name
    (``None`` when not given). Group and plot it with pandas or seaborn, e.g.
    ``df.groupby(["method", "feature"]).value.apply(lambda v: v.abs().mean())``.

    Layouts, as in :func:`jaxig.feature_attributions`: ``(N, F)`` tabular and ``(N, T, F)`` time
    series; with ``output_axis=True`` (or ``output_names`` given) axis 0 holds the ``K`` explained
    outputs of a ``target="all"`` result: ``(K, N, F)`` or ``(K, N, T, F)``. An array cannot say
    which layout it has (``(K, N, F)`` reads as ``(N, T, F)``), so a 3-axis array needs
    ``time_names`` or ``output_axis``/``output_names`` to be read at all; other layouts (images,
    ``(N, T, F)`` without saying so) are refused: reduce them first with
    :func:`jaxig.feature_attributions`.

    Args:
      attributions: an array as above, or a dict ``{method name: array}`` of such arrays (the
        frames are stacked and the ``method`` column holds the keys). A dict is always read as
        methods: the attributions of a pytree input (one leaf per input) are converted leaf by
        leaf, e.g. ``pd.concat({name: to_dataframe(a) for name, a in attr.items()}, names=["input"])``.
      feature_names: ``F`` names (default ``0..F-1``).
      time_names: ``T`` names of the time steps (marks the array as a time series).
      output_names: ``K`` names of the outputs (marks axis 0 as the output axis).
      output_axis: axis 0 holds the ``K`` outputs of a ``target="all"`` result.
      method: the value of the ``method`` column (a string), for one array.

    Raises:
      ImportError: pandas is not installed (``pip install pandas``).
      TypeError: attributions is the ``(attributions, info)`` pair, or not an array.
      ValueError: a layout it would misread (see above), or names whose number does not match.
    """
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError("jaxig.to_dataframe needs pandas: pip install pandas") from err
    if isinstance(attributions, dict):
        if method is not None:
            raise ValueError("method= names one array; with a dict of arrays the keys are the method names")
        frames = [to_dataframe(a, feature_names=feature_names, time_names=time_names, output_names=output_names,
                               output_axis=output_axis, method=str(name)) for name, a in attributions.items()]
        if not frames:
            raise ValueError("attributions is an empty dict; pass {method name: array}")
        return pd.concat(frames, ignore_index=True)
    if isinstance(attributions, tuple) and any(isinstance(a, Info) for a in attributions):
        raise TypeError("to_dataframe got the (attributions, info) pair of return_info=True; unpack it first")
    if not hasattr(attributions, "shape"):
        raise TypeError(f"attributions must be an array (N, F), (N, T, F) or with a leading output axis, "
                        f"got {type(attributions).__name__}; for a pytree, convert each leaf")
    values = np.asarray(attributions)
    has_k = bool(output_axis) or output_names is not None
    rest = values.shape[1:] if has_k else values.shape  # (N, F) or (N, T, F)
    layout = "(K, N, ..., F)" if has_k else "(N, ..., F)"
    if len(rest) not in (2, 3):
        raise ValueError(f"attributions of shape {values.shape} read as {layout} need 2 or 3 axes after the output "
                         "axis: (N, F) or (N, T, F); reduce other layouts first with jaxig.feature_attributions")
    if len(rest) == 3 and time_names is None and not has_k:
        raise ValueError(f"attributions of shape {values.shape} could be a time series (N, T, F) or a "
                         "target='all' result (K, N, F); pass time_names=... for the first or "
                         "output_axis=True (or output_names=...) for the second")
    if len(rest) == 2 and time_names is not None:
        raise ValueError(f"time_names given but attributions of shape {values.shape} have no time axis "
                         f"(read as {'(K, N, F)' if has_k else '(N, F)'})")
    n_out = values.shape[0] if has_k else 1
    f_ = rest[-1]
    t = rest[1] if len(rest) == 3 else None
    features = _names(feature_names, f_, "feature_names", "F", values.shape)
    outputs = _names(output_names, n_out, "output_names", "K", values.shape) if has_k else [None]
    grids = np.meshgrid(*(np.arange(s) for s in values.shape), indexing="ij")
    flat = [g.ravel() for g in grids]
    columns: dict = {}
    k_idx = flat.pop(0) if has_k else np.zeros(values.size, int)
    columns["example"] = flat[0]
    columns["feature"] = np.asarray(features, dtype=object)[flat[-1]]
    if t is not None:
        columns["time"] = np.asarray(_names(time_names, t, "time_names", "T", values.shape), dtype=object)[flat[1]]
    columns["output"] = np.asarray(outputs, dtype=object)[k_idx]
    columns["method"] = np.full(values.size, method, dtype=object)
    columns["value"] = values.ravel()
    return pd.DataFrame(columns)


def _names(names: Any, size: int, what: str, letter: str, shape: tuple) -> list:
    if names is None:
        return list(range(size))
    names = list(names)
    if len(names) != size:
        raise ValueError(f"{len(names)} {what} for {letter} = {size} (attributions of shape {shape}); "
                         f"pass {size} names")
    return names
