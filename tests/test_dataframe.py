"""to_dataframe: long tables for tabular, time-series and target='all' attributions, and the layouts it refuses."""

import sys

import numpy as np
import pytest

import jaxig

pd = pytest.importorskip("pandas")

RNG = np.random.default_rng(0)


def test_tabular_rows_and_columns():
    attr = RNG.normal(size=(3, 4))
    df = jaxig.to_dataframe(attr, feature_names=list("abcd"), method="IG")
    assert list(df.columns) == ["example", "feature", "output", "method", "value"]
    assert len(df) == 12
    row = df[(df.example == 2) & (df.feature == "c")]
    assert row.value.item() == attr[2, 2]
    assert set(df.method) == {"IG"} and df.output.isna().all()
    # the table pivots back to the array
    np.testing.assert_array_equal(df.pivot(index="example", columns="feature", values="value").to_numpy(), attr)


def test_time_series_needs_time_names_and_keeps_the_order():
    attr = RNG.normal(size=(2, 3, 4))  # (N, T, F)
    df = jaxig.to_dataframe(attr, time_names=["t0", "t1", "t2"])
    assert list(df.columns) == ["example", "feature", "time", "output", "method", "value"]
    row = df[(df.example == 1) & (df.time == "t2") & (df.feature == 0)]
    assert row.value.item() == attr[1, 2, 0]
    # summing over time gives feature_attributions' signed reduction
    per_feature = df.groupby(["example", "feature"]).value.sum().unstack().to_numpy()
    np.testing.assert_allclose(per_feature, np.asarray(jaxig.feature_attributions(attr)), rtol=1e-6)


def test_target_all_output_axis():
    attr = RNG.normal(size=(3, 2, 4))  # (K, N, F) from target="all"
    df = jaxig.to_dataframe(attr, output_names=["cat", "dog", "fox"])
    assert len(df) == 24 and "time" not in df.columns
    row = df[(df.output == "dog") & (df.example == 1) & (df.feature == 3)]
    assert row.value.item() == attr[1, 1, 3]
    df = jaxig.to_dataframe(RNG.normal(size=(3, 2, 5, 4)), output_axis=True, time_names=range(5))
    assert set(df.output) == {0, 1, 2} and set(df.time) == set(range(5)) and len(df) == 120


def test_dict_of_methods_stacks_frames():
    ig, sal = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    df = jaxig.to_dataframe({"IG": ig, "saliency": sal}, feature_names=["x", "y", "z"])
    assert len(df) == 12 and list(df.method.unique()) == ["IG", "saliency"]
    means = df.groupby(["method", "feature"]).value.mean()
    assert means[("saliency", "y")] == pytest.approx(sal[:, 1].mean())


def test_refuses_layouts_it_would_misread():
    with pytest.raises(ValueError, match=r"time series \(N, T, F\) or a target='all' result \(K, N, F\)"):
        jaxig.to_dataframe(np.zeros((3, 2, 4)))
    with pytest.raises(ValueError, match="reduce other layouts first"):
        jaxig.to_dataframe(np.zeros((2, 8, 8, 3)))  # images
    with pytest.raises(ValueError, match="reduce other layouts first"):
        jaxig.to_dataframe(np.zeros(4))
    with pytest.raises(ValueError, match="3 feature_names for F = 4"):
        jaxig.to_dataframe(np.zeros((2, 4)), feature_names=list("abc"))
    with pytest.raises(ValueError, match="2 output_names for K = 3"):
        jaxig.to_dataframe(np.zeros((3, 2, 4)), output_names=["a", "b"])
    with pytest.raises(ValueError, match="no time axis"):
        jaxig.to_dataframe(np.zeros((2, 4)), time_names=["t"])
    with pytest.raises(TypeError, match="unpack it first"):
        jaxig.to_dataframe((np.zeros((2, 4)), jaxig.Info()))


def test_without_pandas_the_error_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        jaxig.to_dataframe(np.zeros((2, 4)))
