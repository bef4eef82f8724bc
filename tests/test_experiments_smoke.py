"""The comparison experiments run end to end (``--smoke``) and their outputs say what they should.

Each experiment runs in a subprocess, as a user runs it, into a temporary directory; the tests then read
the CSV/JSON it wrote. Optional dependencies (flax, optax, matplotlib; scikit-learn for the diabetes data)
skip the test when missing.
"""

import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytest.importorskip("flax")
pytest.importorskip("optax")
pytest.importorskip("matplotlib")


def _run(script, out):
    # the checkout's jaxig first, whatever copy is installed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_compare_methods_smoke(tmp_path):
    pytest.importorskip("sklearn")
    stdout = _run("compare_methods.py", tmp_path)
    for name in ("results.csv", "summary.json", "methods.png", "conductance.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = _rows(tmp_path / "results.csv")
    assert set(rows[0]) == {"method", "feature", "value", "source"}
    ours = [r for r in rows if r["source"] == "jaxig"]
    methods = {r["method"] for r in ours}
    expected = {"integrated_gradients", "exact_integrated_gradients", "smoothgrad_ig", "deeplift",
                "expected_gradients", "expected_integrated_gradients", "feature_ablation", "shapley_value_sampling",
                "saliency", "gradient_x_input", "occlusion", "first_layer_weights", "layer_conductance",
                "layer_conductance_stieltjes"}
    assert methods == expected
    features = {"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}
    for m in expected - {"layer_conductance", "layer_conductance_stieltjes"}:
        vals = {r["feature"]: float(r["value"]) for r in ours if r["method"] == m}
        assert set(vals) == features, m
        # normalised as the tutorial: the |values| of one method sum to 1
        assert math.isclose(sum(abs(v) for v in vals.values()), 1.0, rel_tol=1e-5), m
    # IG and exact IG on the same ReLU net: close per feature, and exact IG is complete to rounding
    ig = {r["feature"]: float(r["value"]) for r in ours if r["method"] == "integrated_gradients"}
    ex = {r["feature"]: float(r["value"]) for r in ours if r["method"] == "exact_integrated_gradients"}
    assert max(abs(ig[k] - ex[k]) for k in features) < 0.05

    summary = json.loads((tmp_path / "summary.json").read_text())
    s = summary["methods"]
    assert s["integrated_gradients"]["completeness_max_rel_gap"] < 0.1
    for m in ("exact_integrated_gradients", "deeplift", "shapley_value_sampling"):
        assert s[m]["completeness_max_rel_gap"] < 1e-4, m  # complete by construction
    assert s["feature_ablation"]["completeness_max_rel_gap"] > 1e-3  # the MLP is not additive
    assert "completeness_max_abs_gap" not in s["saliency"]
    assert s["integrated_gradients"]["evaluations_per_example"] == 50

    try:
        import captum  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        assert summary["captum_max_rel_diff"] is None
        assert "Captum column skipped" in stdout
    else:
        diffs = summary["captum_max_rel_diff"]
        assert set(diffs) == {"integrated_gradients", "deeplift", "saliency", "gradient_x_input",
                              "feature_ablation", "layer_conductance"}
        assert max(diffs.values()) <= 1e-4, diffs
        assert {r["method"] for r in rows if r["source"] == "captum"} == set(diffs) - {"layer_conductance"} | {
            "layer_conductance_stieltjes"}


def test_axiom_matrix_smoke(tmp_path):
    _run("axiom_matrix.py", tmp_path)
    for name in ("matrix.md", "matrix.csv", "matrix.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    cell = {(r["method"], r["axiom"]): r for r in _rows(tmp_path / "matrix.csv")}
    axioms = {"completeness", "completeness (trained MLP)", "sensitivity", "dummy", "implementation invariance",
              "linearity", "symmetry"}
    assert {a for _, a in cell} == axioms
    assert all(r["status"] in ("pass", "FAIL", "n/a") for r in cell.values())
    for a in axioms:  # IG passes every check
        assert cell["integrated_gradients", a]["status"] == "pass", a
    assert cell["saliency", "completeness"]["status"] == "FAIL"
    assert cell["saliency", "sensitivity"]["status"] == "FAIL"
    assert cell["gradient_x_input", "completeness"]["status"] == "FAIL"  # nonlinear f
    assert cell["feature_ablation", "completeness"]["status"] == "FAIL"  # non-additive f
    assert cell["shapley_value_sampling", "completeness"]["status"] == "pass"
    assert float(cell["shapley_value_sampling", "completeness"]["worst_measured"]) < 1e-5
    assert cell["deeplift", "implementation invariance"]["status"] == "FAIL"  # the paper's pair of networks
    assert cell["exact_integrated_gradients", "completeness"]["status"] == "n/a"  # quadratic: not piecewise linear
    assert cell["exact_integrated_gradients", "completeness (trained MLP)"]["status"] == "pass"
    # every failure comes with its counterexample
    assert all(r["first_failure"].startswith("example") for r in cell.values() if r["status"] == "FAIL")
    md = (tmp_path / "matrix.md").read_text()
    assert "| saliency | FAIL" in md and "Counterexamples" in md
