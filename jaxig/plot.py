"""Plots of attributions: feature bars, time-series heatmaps, image overlays, dataset summaries, convergence.

matplotlib is imported inside each function, so ``import jaxig`` never imports it
(``pip install matplotlib``, or the ``plot`` extra). Every function draws on the Axes given as
``ax=`` (a new figure otherwise), returns the Axes (``image_grid``: the Figure) and never calls
``plt.show()``. Inputs are arrays (NumPy or JAX) of attributions as the methods return them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "convergence",
    "feature_bars",
    "feature_boxplot",
    "global_ranking",
    "image_grid",
    "image_overlay",
    "timeseries_bars",
    "timeseries_heatmap",
]

_DIVERGING = "RdBu_r"  # red for positive, blue for negative, white at 0
_SEQUENTIAL = {"positive": "Reds", "negative": "Blues", "absolute": "viridis"}


def feature_bars(
    attributions: Any,
    *,
    feature_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    normalize: bool = True,
    absolute: bool = False,
    ax: Any = None,
) -> Any:
    """Returns the Axes with grouped bars: one group per feature, one bar per method.

    Each method's attributions are reduced to one number per feature: an example ``(F,)`` as is,
    a dataset ``(N, F)`` by its mean over examples (of ``|attr|`` with ``absolute=True``, so that
    signs of different examples do not cancel). With ``normalize=True`` each method's vector is
    divided by its L1 norm, ``v / sum_i |v_i|`` (the Captum California-housing tutorial's
    comparison), so methods of different scales share one axis.

    Args:
      attributions: ``(F,)`` or ``(N, F)`` for one method; a dict ``{method name: array}``; or, with
        ``labels``, a stacked array ``(M, F)`` or ``(M, N, F)`` of ``M`` methods.
      feature_names: ``F`` tick labels (default ``0..F-1``).
      labels: the ``M`` method names of a stacked array (the legend).
      normalize: divide each method by its L1 norm.
      absolute: plot absolute attributions.
      ax: the matplotlib Axes to draw on.

    Raises:
      ValueError: arrays of other shapes (reduce ``(N, T, F)`` with :func:`jaxig.feature_attributions`
        first), methods with different ``F``, or names whose number does not match.
    """
    methods = _methods(attributions, labels)
    vectors = {}
    for name, a in methods.items():
        a = np.abs(a) if absolute else a
        if a.ndim == 2:
            a = a.mean(axis=0)
        elif a.ndim != 1:
            raise ValueError(f"attributions {name!r} of shape {a.shape} must be (F,) or (N, F); reduce other "
                             "layouts first, e.g. jaxig.feature_attributions(attr) for (N, T, F)")
        if normalize:
            norm = np.abs(a).sum()
            a = a / norm if norm > 0 else a
        vectors[name] = a
    widths = {v.shape[0] for v in vectors.values()}
    if len(widths) != 1:
        raise ValueError(f"the methods have different numbers of features {sorted(widths)}")
    n_features = widths.pop()
    names = _names(feature_names, n_features, "feature_names", "features")
    ax = _axes(ax)
    positions = np.arange(n_features)
    width = 0.8 / len(vectors)
    for m, (name, v) in enumerate(vectors.items()):
        ax.bar(positions - 0.4 + (m + 0.5) * width, v, width, label=str(name))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(positions, [str(n) for n in names], rotation=45 if n_features > 8 else 0, ha="right"
                  if n_features > 8 else "center")
    ax.set_ylabel(("|attribution|" if absolute else "attribution") + (" / L1 norm" if normalize else ""))
    if len(vectors) > 1 or isinstance(attributions, Mapping) or labels is not None:
        ax.legend()
    return ax


def timeseries_heatmap(
    attributions: Any,
    *,
    feature_names: Sequence[str] | None = None,
    time_labels: Sequence[Any] | None = None,
    absolute: bool = False,
    clip_percentile: float | None = None,
    cmap: str | None = None,
    colorbar: bool = True,
    ax: Any = None,
) -> Any:
    """Returns the Axes with a features x time heatmap of a time series' attributions.

    Rows are features, columns time steps. Signed attributions use a diverging colormap with
    symmetric limits ``[-m, m]`` around 0 (white is no contribution), ``m = max |attr|`` or, with
    ``clip_percentile=p``, the ``p``-th percentile of ``|attr|`` (larger values saturate).
    ``absolute=True`` plots ``|attr|`` on a sequential colormap with limits ``[0, m]``. A dataset
    ``(N, T, F)`` is averaged over examples (of ``|attr|`` with ``absolute=True``).

    Args:
      attributions: ``(T, F)`` for one example or ``(N, T, F)`` for a dataset.
      feature_names: ``F`` row labels; time_labels: ``T`` column labels (thinned to about 20 shown).
      absolute: plot absolute values.
      clip_percentile: a percentile in ``(0, 100]`` for the colour limit, or None for the maximum.
      cmap: a matplotlib colormap name (default ``"RdBu_r"`` signed, ``"viridis"`` absolute).
      colorbar: draw a colour bar.
      ax: the matplotlib Axes to draw on.

    Raises:
      ValueError: other shapes, a bad percentile, or names whose number does not match.
    """
    a = _array(attributions, "attributions")
    if a.ndim == 3:
        a = (np.abs(a) if absolute else a).mean(axis=0)
    elif a.ndim != 2:
        raise ValueError(f"attributions of shape {a.shape} must be (T, F) or (N, T, F)")
    a = np.abs(a) if absolute else a
    n_time, n_features = a.shape
    features = _names(feature_names, n_features, "feature_names", "features (last axis)")
    times = _names(time_labels, n_time, "time_labels", "time steps (axis -2)")
    limit = _limit(np.abs(a), clip_percentile)
    ax = _axes(ax)
    image = ax.imshow(a.T, aspect="auto", interpolation="nearest",
                      cmap=cmap or (_SEQUENTIAL["absolute"] if absolute else _DIVERGING),
                      vmin=0.0 if absolute else -limit, vmax=limit)
    ax.set_yticks(np.arange(n_features), [str(n) for n in features])
    step = max(1, int(np.ceil(n_time / 20)))
    ax.set_xticks(np.arange(0, n_time, step), [str(t) for t in times[::step]])
    ax.set_xlabel("time")
    ax.set_ylabel("feature")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="|attribution|" if absolute else "attribution")
    return ax


def timeseries_bars(
    attributions: Any,
    *,
    feature_names: Sequence[str] | None = None,
    kind: str = "both",
    ax: Any = None,
) -> Any:
    """Returns the Axes with one bar per feature: its attribution summed over time.

    The LSTM user's "one number per feature" (:func:`jaxig.feature_attributions`): ``"signed"``
    is ``sum_t attr[t, f]`` (contributions at different times cancel; the bars sum to
    ``F(x) - F(x')``), ``"absolute"`` is ``sum_t |attr[t, f]|`` (how much the feature moved the
    output at all), ``"both"`` draws the two side by side. A dataset ``(N, T, F)`` is averaged
    over examples after the sum over time.

    Args:
      attributions: ``(T, F)`` or ``(N, T, F)``.
      feature_names: ``F`` tick labels.
      kind: ``"signed"``, ``"absolute"`` or ``"both"``.
      ax: the matplotlib Axes to draw on.

    Raises:
      ValueError: other shapes, an unknown ``kind``, or names whose number does not match.
    """
    if kind not in ("signed", "absolute", "both"):
        raise ValueError(f"kind={kind!r}; pass 'signed', 'absolute' or 'both'")
    a = _array(attributions, "attributions")
    if a.ndim == 2:
        a = a[None]
    elif a.ndim != 3:
        raise ValueError(f"attributions of shape {a.shape} must be (T, F) or (N, T, F)")
    sums = {}
    if kind in ("signed", "both"):
        sums["signed sum over time"] = a.sum(axis=1).mean(axis=0)
    if kind in ("absolute", "both"):
        sums["sum of |attribution| over time"] = np.abs(a).sum(axis=1).mean(axis=0)
    return feature_bars(sums, feature_names=feature_names, normalize=False, ax=ax)


def image_overlay(
    image: Any,
    attributions: Any,
    *,
    sign: str = "all",
    alpha: float = 0.5,
    clip_percentile: float | None = 99.0,
    cmap: str | None = None,
    colorbar: bool = False,
    ax: Any = None,
) -> Any:
    """Returns the Axes with the attributions drawn over the image as a heat map.

    The channels are reduced by summing, ``s[h, w] = sum_c attr[h, w, c]`` (Captum's
    ``visualize_image_attr`` does the same; PAIR's grayscale view sums ``|attr|`` instead, which is
    ``sign="absolute"`` only when the channels agree in sign). Then, by ``sign``:

    - ``"all"``: ``s`` on a diverging colormap with symmetric limits ``[-m, m]``;
    - ``"positive"`` / ``"negative"``: ``max(s, 0)`` / ``max(-s, 0)`` with limits ``[0, m]``;
    - ``"absolute"``: ``|s|`` with limits ``[0, m]``;

    where ``m`` is the ``clip_percentile``-th percentile of the plotted magnitudes (PAIR's
    ``VisualizeImageDiverging``/``Grayscale`` use the 99th): the few largest values saturate instead
    of washing out the rest. The heat map is blended over the image with opacity ``alpha``.

    Args:
      image: ``(H, W)``, ``(H, W, C)`` (channels last) or None (heat map alone); floats are
        rescaled to [0, 1] when outside it, integers divided by 255.
      attributions: ``(H, W)`` or ``(H, W, C)`` with the image's ``H, W`` (and ``C`` if it has one).
      sign: ``"all"``, ``"positive"``, ``"negative"`` or ``"absolute"``.
      alpha: opacity of the heat map in [0, 1].
      clip_percentile: a percentile in ``(0, 100]``, or None for the maximum.
      cmap: a matplotlib colormap name (default diverging ``"RdBu_r"``, or a sequential one).
      colorbar: draw a colour bar.
      ax: the matplotlib Axes to draw on.

    Raises:
      ValueError: shapes that do not match, an unknown ``sign``, ``alpha`` outside [0, 1] or a bad
        percentile.
    """
    heat, limit = _heat(image, attributions, sign, clip_percentile)
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha!r} must be in [0, 1]")
    ax = _axes(ax)
    if image is not None:
        picture = _picture(np.asarray(image))
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0)
    shown = ax.imshow(heat, cmap=cmap or (_DIVERGING if sign == "all" else _SEQUENTIAL[sign]),
                      vmin=-limit if sign == "all" else 0.0, vmax=limit,
                      alpha=float(alpha) if image is not None else 1.0)
    ax.set_axis_off()
    if colorbar:
        ax.figure.colorbar(shown, ax=ax)
    return ax


def image_grid(
    images: Any,
    attributions: Any,
    *,
    sign: str = "all",
    alpha: float = 0.5,
    clip_percentile: float | None = 99.0,
    cmap: str | None = None,
    show_images: bool = True,
    axes: Any = None,
) -> Any:
    """Returns the Figure with a grid: one row per method (after a row of the images), one column per example.

    Each cell is :func:`image_overlay` of that example and method, with its own colour limit.

    Args:
      images: ``(N, H, W)`` or ``(N, H, W, C)``.
      attributions: a dict ``{method name: (N, H, W[, C]) array}``, or one such array.
      sign, alpha, clip_percentile, cmap: as in :func:`image_overlay`.
      show_images: add a first row with the images themselves.
      axes: a 2-D array of Axes of shape ``(rows, N)`` to draw on (a new figure otherwise).

    Raises:
      ValueError: images or attributions of other shapes, or ``axes`` of the wrong shape.
    """
    import matplotlib.pyplot as plt

    imgs = _array(images, "images")
    if imgs.ndim not in (3, 4):
        raise ValueError(f"images of shape {imgs.shape} must be (N, H, W) or (N, H, W, C)")
    methods = _methods(attributions, None, default="attribution")
    for name, a in methods.items():
        if a.shape[0] != imgs.shape[0]:
            raise ValueError(f"attributions {name!r} of shape {a.shape} must have the images' N = {imgs.shape[0]} "
                             "examples on axis 0")
    rows = len(methods) + int(bool(show_images))
    n = imgs.shape[0]
    if axes is None:
        fig, axes = plt.subplots(rows, n, figsize=(2.2 * n, 2.2 * rows), squeeze=False)
    else:
        axes = np.asarray(axes, dtype=object).reshape(np.shape(axes))
        if axes.shape != (rows, n):
            raise ValueError(f"axes of shape {axes.shape}; this grid needs ({rows}, {n}) (rows: "
                             f"{'images, ' if show_images else ''}{len(methods)} method(s); columns: examples)")
        fig = axes[0, 0].figure
    row = 0
    if show_images:
        for j in range(n):
            picture = _picture(imgs[j])
            axes[0, j].imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0)
            axes[0, j].set_axis_off()
        axes[0, 0].set_title("input", loc="left", fontsize="small")
        row = 1
    for name, a in methods.items():
        for j in range(n):
            image_overlay(imgs[j], a[j], sign=sign, alpha=alpha, clip_percentile=clip_percentile, cmap=cmap,
                          ax=axes[row, j])
        axes[row, 0].set_title(str(name), loc="left", fontsize="small")
        row += 1
    return fig


def feature_boxplot(
    attributions: Any,
    feature_names: Sequence[str] | None = None,
    *,
    kind: str = "box",
    absolute: bool = False,
    ax: Any = None,
) -> Any:
    """Returns the Axes with the distribution of each feature's attribution over a dataset.

    One box (median, quartiles, 1.5 IQR whiskers) or violin per feature, as innsight's
    ``boxplot``: it shows what a mean hides, e.g. a feature that pushes some examples up and others
    down.

    Args:
      attributions: ``(N, F)`` (reduce ``(N, T, F)`` first with :func:`jaxig.feature_attributions`).
      feature_names: ``F`` tick labels.
      kind: ``"box"`` or ``"violin"``.
      absolute: plot ``|attr|``.
      ax: the matplotlib Axes to draw on.

    Raises:
      ValueError: other shapes, an unknown ``kind``, or names whose number does not match.
    """
    if kind not in ("box", "violin"):
        raise ValueError(f"kind={kind!r}; pass 'box' or 'violin'")
    a = _array(attributions, "attributions")
    if a.ndim != 2:
        raise ValueError(f"attributions of shape {a.shape} must be (N, F); reduce other layouts first, "
                         "e.g. jaxig.feature_attributions(attr) for (N, T, F)")
    a = np.abs(a) if absolute else a
    names = _names(feature_names, a.shape[1], "feature_names", "features")
    ax = _axes(ax)
    positions = np.arange(1, a.shape[1] + 1)
    if kind == "box":
        ax.boxplot([a[:, i] for i in range(a.shape[1])], positions=positions)
    else:
        ax.violinplot([a[:, i] for i in range(a.shape[1])], positions=positions, showmedians=True)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(positions, [str(n) for n in names])
    ax.set_ylabel("|attribution|" if absolute else "attribution")
    return ax


def global_ranking(
    attributions: Any,
    feature_names: Sequence[str] | None = None,
    *,
    top_k: int | None = None,
    ax: Any = None,
) -> Any:
    """Returns the Axes with the features ranked by mean absolute attribution, most important on top.

    ``importance_f = mean_n |attr[n, f]|`` (signs of different examples do not cancel); horizontal
    bars, the ``top_k`` largest (all by default).

    Args:
      attributions: ``(N, F)``.
      feature_names: ``F`` names.
      top_k: how many features to show (a positive int), or None for all.
      ax: the matplotlib Axes to draw on.

    Raises:
      ValueError: other shapes, a bad ``top_k``, or names whose number does not match.
    """
    a = _array(attributions, "attributions")
    if a.ndim != 2:
        raise ValueError(f"attributions of shape {a.shape} must be (N, F); reduce other layouts first, "
                         "e.g. jaxig.feature_attributions(attr, absolute=True) for (N, T, F)")
    names = _names(feature_names, a.shape[1], "feature_names", "features")
    importance = np.abs(a).mean(axis=0)
    if top_k is None:
        top_k = a.shape[1]
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k={top_k!r} must be a positive int or None")
    order = np.argsort(-importance, kind="stable")[:top_k]
    ax = _axes(ax)
    positions = np.arange(len(order))[::-1]  # the most important at the top
    ax.barh(positions, importance[order])
    ax.set_yticks(positions, [str(names[i]) for i in order])
    ax.set_xlabel("mean |attribution|")
    return ax


def convergence(
    results: Mapping[str, Any],
    *,
    ylabel: str = "completeness gap |delta|",
    xlabel: str = "gradient evaluations",
    ax: Any = None,
) -> Any:
    """Returns the Axes with error against number of evaluations, log-log, one line per rule.

    For quadrature studies: e.g. the completeness gap ``|sum attr - (F(x) - F(x'))|`` of
    ``integrated_gradients(..., rule=r, n_steps=n, return_info=True)`` for several ``n``. A rule of
    order ``p`` shows as a line of slope ``-p``. Errors are plotted as ``|error|``; exact zeros
    cannot be shown on a log axis and are left out.

    Args:
      results: ``{rule name: (evals, errors)}`` with two 1-D sequences of equal length.
      ylabel, xlabel: axis labels.
      ax: the matplotlib Axes to draw on.

    Raises:
      ValueError: an empty dict, or ``evals`` and ``errors`` of different shapes or not 1-D.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict {rule name: (evals, errors)}")
    ax = _axes(ax)
    for name, pair in results.items():
        evals, errors = (np.asarray(v, dtype=float) for v in pair)
        if evals.ndim != 1 or evals.shape != errors.shape:
            raise ValueError(f"results[{name!r}]: evals of shape {evals.shape} and errors of shape {errors.shape} "
                             "must be 1-D and of equal length")
        errors = np.abs(errors)
        keep = errors > 0
        ax.plot(evals[keep], errors[keep], marker="o", label=str(name))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = np.unique(np.concatenate([np.asarray(pair[0], dtype=float) for pair in results.values()]))
    if len(ticks) <= 12:  # label the evaluation counts themselves, not powers of ten
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


# -- helpers --------------------------------------------------------------------------------------------


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _array(a: Any, what: str) -> np.ndarray:
    if isinstance(a, tuple) and len(a) == 2 and type(a[1]).__name__ == "Info":
        raise TypeError(f"{what} is the (attributions, info) pair of return_info=True; unpack it first")
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    return arr.astype(float)


def _methods(attributions: Any, labels: Sequence[str] | None, default: str = "attribution") -> dict:
    """Returns ``{method name: float array}`` from a dict, a stacked array with labels, or one array."""
    if isinstance(attributions, Mapping):
        if labels is not None:
            raise ValueError("labels name the methods of a stacked array; a dict's keys already name them")
        if not attributions:
            raise ValueError("attributions is an empty dict; pass {method name: array}")
        return {name: _array(a, f"attributions[{name!r}]") for name, a in attributions.items()}
    a = _array(attributions, "attributions")
    if labels is None:
        return {default: a}
    labels = list(labels)
    if a.ndim < 2 or a.shape[0] != len(labels):
        raise ValueError(f"{len(labels)} labels for a stacked array of shape {a.shape}: axis 0 must hold one "
                         "entry per method")
    return dict(zip(labels, a))


def _names(names: Sequence[Any] | None, size: int, what: str, of: str) -> list:
    if names is None:
        return list(range(size))
    names = list(names)
    if len(names) != size:
        raise ValueError(f"{len(names)} {what} for {size} {of}; pass {size} names")
    return names


def _check_percentile(p: float | None) -> None:
    if p is not None and not (isinstance(p, (int, float, np.floating)) and 0 < p <= 100):
        raise ValueError(f"clip_percentile={p!r} must be a number in (0, 100] or None")


def _limit(magnitudes: np.ndarray, percentile: float | None) -> float:
    """The colour limit: the percentile (or maximum) of the magnitudes; 1 when they are all zero."""
    _check_percentile(percentile)
    m = float(np.max(magnitudes)) if percentile is None else float(np.percentile(magnitudes, percentile))
    return m if m > 0 else 1.0


def _heat(image: Any, attributions: Any, sign: str, clip_percentile: float | None) -> tuple[np.ndarray, float]:
    if sign not in ("all", "positive", "negative", "absolute"):
        raise ValueError(f"sign={sign!r}; pass 'all', 'positive', 'negative' or 'absolute'")
    a = _array(attributions, "attributions")
    if a.ndim not in (2, 3):
        raise ValueError(f"attributions of shape {a.shape} must be (H, W) or (H, W, C) (channels last; "
                         "for channels-first arrays pass np.moveaxis(attr, 0, -1))")
    if image is not None:
        shape = np.shape(image)
        if len(shape) not in (2, 3) or shape[:2] != a.shape[:2] or (a.ndim == 3 and len(shape) == 3
                                                                    and shape[2] != a.shape[2]):
            raise ValueError(f"image of shape {shape} and attributions of shape {a.shape} do not match; both "
                             "must be (H, W) or (H, W, C) with the same H, W (and C)")
    s = a.sum(axis=-1) if a.ndim == 3 else a
    heat = {"all": s, "positive": np.maximum(s, 0.0), "negative": np.maximum(-s, 0.0), "absolute": np.abs(s)}[sign]
    return heat, _limit(np.abs(heat), clip_percentile)


def _picture(image: np.ndarray) -> np.ndarray:
    """The image as floats in [0, 1]: integers / 255, floats outside [0, 1] min-max rescaled."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype.kind in "iu":
        return image.astype(float) / 255.0
    image = image.astype(float)
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return image
