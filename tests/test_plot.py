"""jaxig.plot: what each plot draws (bars, tick labels, colour limits, image arrays, grids, log axes)."""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jaxig  # noqa: E402
from jaxig import plot  # noqa: E402

NAMES = ["MedInc", "HouseAge", "AveRooms", "Population"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _bar_heights(ax):
    return [[p.get_height() for p in container.patches] for container in ax.containers]


def _ticks(labels):
    return [t.get_text() for t in labels]


def test_import_jaxig_does_not_import_matplotlib():
    code = "import jaxig, sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_feature_bars_groups_methods_normalised_by_l1_norm():
    rng = np.random.default_rng(0)
    ig, dl = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    ax = plot.feature_bars({"IG": ig, "DeepLift": dl}, feature_names=NAMES)
    heights = _bar_heights(ax)
    assert len(heights) == 2 and all(len(h) == 4 for h in heights)
    mean = ig.mean(0)
    np.testing.assert_allclose(heights[0], mean / np.abs(mean).sum(), rtol=1e-12)
    np.testing.assert_allclose(np.abs(heights[1]).sum(), 1.0)
    assert _ticks(ax.get_xticklabels()) == NAMES
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["IG", "DeepLift"]
    # the groups sit side by side: the second method's bars are right of the first's
    xs = [[p.get_x() for p in c.patches] for c in ax.containers]
    assert all(b > a for a, b in zip(xs[0], xs[1]))


def test_feature_bars_stacked_array_absolute_unnormalised_on_given_axes():
    fig, ax = plt.subplots()
    stacked = np.array([[1.0, -2.0, 3.0], [-1.0, 0.5, 0.0]])
    out = plot.feature_bars(stacked, labels=["a", "b"], normalize=False, absolute=True, ax=ax)
    assert out is ax and out.figure is fig
    np.testing.assert_allclose(_bar_heights(ax), np.abs(stacked))
    assert _ticks(ax.get_xticklabels()) == ["0", "1", "2"]


def test_feature_bars_one_example_signed():
    ax = plot.feature_bars(np.array([2.0, -1.0, 1.0]), normalize=True)
    np.testing.assert_allclose(_bar_heights(ax), [[0.5, -0.25, 0.25]])


def test_feature_bars_errors():
    with pytest.raises(ValueError, match="3 feature_names for 4 features"):
        plot.feature_bars(np.ones((2, 4)), feature_names=NAMES[:3])
    with pytest.raises(ValueError, match=r"must be \(F,\) or \(N, F\)"):
        plot.feature_bars(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="different numbers of features"):
        plot.feature_bars({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(ValueError, match="2 labels for a stacked array"):
        plot.feature_bars(np.ones((3, 4)), labels=["a", "b"])


def test_timeseries_heatmap_symmetric_limits_and_labels():
    rng = np.random.default_rng(1)
    attr = rng.normal(size=(7, 3))  # (T, F)
    attr[2, 1] = -9.0  # the largest magnitude is negative: the limits must still be symmetric
    ax = plot.timeseries_heatmap(attr, feature_names=["a", "b", "c"], time_labels=[f"t{i}" for i in range(7)])
    image = ax.get_images()[0]
    assert image.get_array().shape == (3, 7)  # features x time
    np.testing.assert_allclose(image.get_array(), attr.T)
    assert image.get_clim() == (-9.0, 9.0)
    assert image.get_cmap().name == "RdBu_r"
    assert _ticks(ax.get_yticklabels()) == ["a", "b", "c"]
    assert _ticks(ax.get_xticklabels()) == [f"t{i}" for i in range(7)]
    assert len(ax.figure.axes) == 2  # the colour bar


def test_timeseries_heatmap_dataset_absolute_and_percentile():
    rng = np.random.default_rng(2)
    attr = rng.normal(size=(5, 30, 2))
    ax = plot.timeseries_heatmap(attr, absolute=True, clip_percentile=90, colorbar=False)
    mean_abs = np.abs(attr).mean(0)
    lo, hi = ax.get_images()[0].get_clim()
    assert lo == 0.0 and hi == pytest.approx(np.percentile(mean_abs, 90))
    assert len(ax.get_xticklabels()) == 15  # 30 time steps, every second labelled
    with pytest.raises(ValueError, match="2 feature_names for 3 features"):
        plot.timeseries_heatmap(np.ones((4, 3)), feature_names=["a", "b"])


def test_timeseries_bars_signed_and_absolute_sums():
    attr = np.array([[1.0, -2.0], [-3.0, 1.0], [1.0, 0.5]])  # (T=3, F=2)
    ax = plot.timeseries_bars(attr, feature_names=["x", "y"], kind="both")
    signed, absolute = _bar_heights(ax)
    np.testing.assert_allclose(signed, [-1.0, -0.5])
    np.testing.assert_allclose(absolute, [5.0, 3.5])
    # signed sums agree with the library's reduction
    np.testing.assert_allclose(signed, np.asarray(jaxig.feature_attributions(attr[None]))[0])
    assert _ticks(ax.get_xticklabels()) == ["x", "y"]
    assert len(_bar_heights(plot.timeseries_bars(attr, kind="absolute"))) == 1


def test_image_overlay_diverging_clip_percentile():
    rng = np.random.default_rng(3)
    image = rng.uniform(size=(8, 6, 3))
    attr = rng.normal(size=(8, 6, 3))
    ax = plot.image_overlay(image, attr, sign="all", alpha=0.4, clip_percentile=95)
    base, heat = ax.get_images()
    assert base.get_array().shape == (8, 6, 3)
    summed = attr.sum(-1)
    np.testing.assert_allclose(heat.get_array(), summed)  # channels reduced by summing
    limit = np.percentile(np.abs(summed), 95)
    lo, hi = heat.get_clim()
    assert hi == pytest.approx(limit) and lo == pytest.approx(-limit)
    assert heat.get_alpha() == 0.4
    assert heat.get_cmap().name == "RdBu_r"


@pytest.mark.parametrize("sign, expected", [
    ("positive", lambda s: np.maximum(s, 0)),
    ("negative", lambda s: np.maximum(-s, 0)),
    ("absolute", np.abs),
])
def test_image_overlay_signs(sign, expected):
    rng = np.random.default_rng(4)
    attr = rng.normal(size=(5, 5, 3))
    ax = plot.image_overlay(np.zeros((5, 5, 3), np.uint8), attr, sign=sign, clip_percentile=None)
    heat = ax.get_images()[-1]
    want = expected(attr.sum(-1))
    np.testing.assert_allclose(heat.get_array(), want)
    assert heat.get_clim() == (0.0, pytest.approx(want.max()))


def test_image_overlay_grayscale_and_heat_alone():
    ax = plot.image_overlay(None, np.arange(12.0).reshape(3, 4))
    (heat,) = ax.get_images()
    assert heat.get_array().shape == (3, 4) and heat.get_alpha() == 1.0
    ax = plot.image_overlay(np.ones((3, 4)), np.ones((3, 4)))
    assert ax.get_images()[0].get_array().shape == (3, 4)


def test_image_overlay_shape_errors():
    with pytest.raises(ValueError, match=r"image of shape \(8, 6, 3\) and attributions of shape \(8, 5, 3\)"):
        plot.image_overlay(np.zeros((8, 6, 3)), np.zeros((8, 5, 3)))
    with pytest.raises(ValueError, match="do not match"):
        plot.image_overlay(np.zeros((8, 6, 3)), np.zeros((8, 6, 1)))
    with pytest.raises(ValueError, match="channels-first"):
        plot.image_overlay(None, np.zeros((1, 3, 8, 6)))
    with pytest.raises(ValueError, match="sign="):
        plot.image_overlay(None, np.zeros((8, 6)), sign="pos")


def test_image_grid_rows_of_methods_columns_of_examples():
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(3, 6, 6, 3))
    attrs = {"IG": rng.normal(size=(3, 6, 6, 3)), "saliency": rng.normal(size=(3, 6, 6, 3))}
    fig = plot.image_grid(images, attrs)
    assert len(fig.axes) == 9  # (1 image row + 2 methods) x 3 examples
    overlays = [ax for ax in fig.axes if len(ax.get_images()) == 2]
    assert len(overlays) == 6
    fig2, axes = plt.subplots(2, 3)
    out = plot.image_grid(images, attrs, show_images=False, axes=axes)
    assert out is fig2
    with pytest.raises(ValueError, match=r"this grid needs \(3, 3\)"):
        plot.image_grid(images, attrs, axes=axes)
    with pytest.raises(ValueError, match="N = 3"):
        plot.image_grid(images, {"IG": attrs["IG"][:2]})


@pytest.mark.parametrize("kind", ["box", "violin"])
def test_feature_boxplot_one_distribution_per_feature(kind):
    rng = np.random.default_rng(6)
    attr = rng.normal(size=(40, 4))
    ax = plot.feature_boxplot(attr, NAMES, kind=kind)
    assert _ticks(ax.get_xticklabels()) == NAMES
    medians = np.median(attr, 0)
    if kind == "box":
        # each feature's median line: flat at its median, centred on its tick
        for i, m in enumerate(medians):
            assert any(len(line.get_xdata()) and np.allclose(line.get_ydata(), m)
                       and np.isclose(np.mean(line.get_xdata()), i + 1)
                       for line in ax.lines)
    else:
        from matplotlib.collections import PolyCollection

        bodies = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bodies) == 4
    with pytest.raises(ValueError, match=r"must be \(N, F\)"):
        plot.feature_boxplot(np.ones((3, 2, 4)))


def test_global_ranking_orders_by_mean_absolute_attribution():
    attr = np.array([[0.1, -3.0, 1.0, 0.0], [0.1, 3.0, -2.0, 0.5]])  # mean |.|: 0.1, 3, 1.5, 0.25
    ax = plot.global_ranking(attr, NAMES, top_k=3)
    assert len(ax.patches) == 3
    # the top of the chart reads first: labels by decreasing y position
    labels = sorted(zip([t.get_position()[1] for t in ax.get_yticklabels()], _ticks(ax.get_yticklabels())),
                    reverse=True)
    assert [name for _, name in labels] == ["HouseAge", "AveRooms", "Population"]
    widths = sorted([p.get_width() for p in ax.patches], reverse=True)
    np.testing.assert_allclose(widths, [3.0, 1.5, 0.25])
    with pytest.raises(ValueError, match="top_k"):
        plot.global_ranking(attr, top_k=0)


def test_convergence_log_log_one_line_per_rule():
    n = np.array([4, 8, 16, 32])
    results = {"GaussLegendre": (n, 1.0 / n**4), "Trapezoid": (n, -1.0 / n**2), "exact": (n, [1e-3, 0, 0, 0])}
    ax = plot.convergence(results)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == list(results)
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), 1.0 / n**2)  # |error|
    assert len(ax.get_lines()[2].get_xdata()) == 1  # zeros cannot be drawn on a log axis
    with pytest.raises(ValueError, match="equal length"):
        plot.convergence({"r": ([1, 2], [1.0])})
