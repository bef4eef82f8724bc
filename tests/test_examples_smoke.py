"""The worked examples (experiments/lstm_timeseries.py, multilabel.py, digits_cnn.py, text_classifier.py,
what_numbers_mean.py) run end to end at their tiniest settings (``--smoke``) and find what they should.

Each experiment's ``main`` runs in this process (one import of jax, flax and matplotlib for all of them)
into a temporary directory; the tests read the CSV files it wrote. The planted ground truths make the
assertions checkable: planted cells, label drivers and sentiment words recovered, signs right, the
completeness gap small. Optional dependencies (flax, optax, matplotlib; scikit-learn for the digits) skip
the tests when missing.
"""

import csv
import importlib.util
import math
import pathlib
import sys

import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _main(script):
    spec = importlib.util.spec_from_file_location(f"_example_{script}", ROOT / "experiments" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flax modules are dataclasses, which look their module up by name
    spec.loader.exec_module(module)
    return module.main


def _run(script, out):
    assert _main(script)(["--smoke", "--out", str(out)]) == 0


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _metrics(out):
    return {r["metric"]: float(r["value"]) for r in _rows(out / "metrics.csv")}


def _finite(rows, *columns):
    return all(math.isfinite(float(r[c])) for r in rows for c in columns)


def test_lstm_timeseries_recovers_planted_cells(tmp_path):
    _run("lstm_timeseries", tmp_path)
    for name in ("heatmap.png", "features.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    m = _metrics(tmp_path)
    assert m["test_r2"] > 0.9
    assert m["topk_hit_rate_ig"] >= 0.8  # truth: 1.0
    assert m["planted_mass_ig"] > 0.6 and m["planted_mass_truth"] == 1.0
    assert m["sign_agreement_planted"] >= 0.95
    assert m["r2_ig_vs_truth"] > 0.9
    assert m["completeness_max_rel_gap"] < 1e-3  # the LSTM is smooth: Gauss-Legendre converges fast
    assert m["per_feature_signed_max_rel_gap"] < 1e-3  # signed sums over time keep completeness
    cells = _rows(tmp_path / "cells.csv")
    assert _finite(cells, "mean_ig", "mean_abs_ig")
    planted = [float(r["mean_abs_ig"]) for r in cells if r["planted"] == "1"]
    other = [float(r["mean_abs_ig"]) for r in cells if r["planted"] == "0"]
    assert min(planted) > max(other)  # every planted cell outranks every unplanted one on average
    feats = _rows(tmp_path / "features.csv")
    for r in feats:  # the absolute sum is never below the |signed| sum, and both are finite
        assert float(r["abs_mean"]) >= abs(float(r["signed_mean"])) - 1e-9
        if r["n_planted"] == "0":
            assert float(r["abs_mean"]) < 0.25 * max(float(q["abs_mean"]) for q in feats)


def test_multilabel_explains_each_label_and_the_multi_hot_sum(tmp_path):
    _run("multilabel", tmp_path)
    assert (tmp_path / "multilabel.png").stat().st_size > 0
    m = _metrics(tmp_path)
    assert m["test_label_accuracy"] > 0.85
    for method in ("IG", "ablation"):
        assert m[f"{method}_top2_hit_rate_clear"] >= 0.9, method  # pairs far from the baseline
        assert m[f"{method}_sign_agreement"] >= 0.95, method
        assert m[f"{method}_multihot_driver_share"] > 0.5, method
    assert m["IG_pair_share"] > m["ablation_pair_share"] - 0.05
    # jaxig.weighted(Y), the sum of the positive labels' logits = the sum of per-label attributions (linearity)
    assert m["multihot_vs_sum_of_labels_ig"] < 1e-4
    assert m["multihot_vs_sum_of_labels_ablation"] < 1e-4
    assert m["multihot_completeness_max_rel_gap"] < 0.05
    labels = _rows(tmp_path / "labels.csv")
    assert len(labels) == 24
    example = _rows(tmp_path / "example.csv")
    assert {r["explained"] for r in example} >= {"multi_hot"}
    assert _finite(example, "attribution")


def test_digits_cnn_maps_beat_random_deletion(tmp_path):
    pytest.importorskip("sklearn")
    _run("digits_cnn", tmp_path)
    assert (tmp_path / "overlays.png").stat().st_size > 0
    rows = {r["method"]: r for r in _rows(tmp_path / "methods.csv")}
    assert set(rows) == {"integrated_gradients", "smoothgrad_ig", "saliency", "occlusion_2x2",
                         "expected_gradients", "random_pixels"}
    drop = {k: float(r["logit_drop_top8"]) for k, r in rows.items()}
    assert all(math.isfinite(v) for v in drop.values())
    for method in ("integrated_gradients", "smoothgrad_ig", "occlusion_2x2"):
        assert drop[method] > drop["random_pixels"], method
    assert float(rows["integrated_gradients"]["completeness_max_rel_gap"]) < 0.05
    assert float(rows["integrated_gradients"]["corr_with_ig"]) == pytest.approx(1.0)
    assert float(rows["smoothgrad_ig"]["corr_with_ig"]) > 0.5
    assert _finite(_rows(tmp_path / "maps.csv"), "attribution")


def test_text_classifier_recovers_planted_words(tmp_path):
    _run("text_classifier", tmp_path)
    assert (tmp_path / "tokens.png").stat().st_size > 0
    m = _metrics(tmp_path)
    assert m["test_accuracy"] > 0.9
    assert m["topk_hit_rate"] >= 0.9
    assert m["planted_sign_agreement"] >= 0.95
    assert m["completeness_max_rel_gap"] < 0.05
    words = _rows(tmp_path / "words.csv")
    strength = {float(r["weight"]): [] for r in words}
    for r in words:
        assert math.copysign(1.0, float(r["mean_attribution"])) == math.copysign(1.0, float(r["weight"])), r
        strength[float(r["weight"])].append(abs(float(r["mean_attribution"])))
    mean = {w: sum(v) / len(v) for w, v in strength.items()}
    assert mean[2.0] > mean[1.0] and mean[-2.0] > mean[-1.0]  # stronger words, larger attributions
    tokens = _rows(tmp_path / "tokens.csv")
    assert _finite(tokens, "attribution")
    for s in {r["sentence"] for r in tokens}:  # per-token values sum to logit(x) - logit(all PAD)
        mine = [r for r in tokens if r["sentence"] == s]
        total = sum(float(r["attribution"]) for r in mine)
        assert total == pytest.approx(float(mine[0]["logit"]) - m["logit_all_pad"],
                                      rel=0.05, abs=0.05 * abs(m["logit_all_pad"]) + 0.05)


def test_what_numbers_mean_closed_forms(tmp_path):
    _run("what_numbers_mean", tmp_path)
    assert (tmp_path / "numbers.png").stat().st_size > 0
    v = {(r["panel"], r["item"]): float(r["value"]) for r in _rows(tmp_path / "numbers.csv")}
    assert [v["a_logit", f] for f in ("x0", "x1", "x2")] == pytest.approx([3.0, -0.5, 0.5], abs=1e-5)
    assert sum(v["a_logit", f] for f in ("x0", "x1", "x2")) == pytest.approx(v["a_logit", "f(x)-f(0)"], abs=1e-5)
    prob = [v["b_probability", f] for f in ("x0", "x1", "x2")]
    assert sum(prob) == pytest.approx(v["b_probability", "f(x)-f(0)"], abs=1e-5)
    assert v["b_probability", "f(x)-f(0)"] == pytest.approx(0.5468, abs=1e-3)
    assert prob[0] / prob[1] == pytest.approx(3.0 / -0.5, rel=1e-4)  # same ratios as on the logit
    assert [v["c_mean_baseline", f] for f in ("x0", "x1", "x2")] == pytest.approx([1.0, 0.0, 0.5], abs=1e-5)
    assert v["e_signed", "A"] == pytest.approx(0.0, abs=1e-6) and v["e_absolute", "A"] == pytest.approx(2.0)
    assert v["e_signed", "B"] == pytest.approx(0.5) and v["e_absolute", "B"] == pytest.approx(0.5)
    assert v["e_signed", "A"] + v["e_signed", "B"] == pytest.approx(v["e_signed", "f(x)-f(0)"])
