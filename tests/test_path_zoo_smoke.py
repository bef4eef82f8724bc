"""experiments/path_zoo.py runs end to end at its smallest settings (``--smoke``) and its table says what it should.

Runs in-process (the experiment's ``main``) so that it shares the session's compiled programs. Optional
dependencies (flax, optax, matplotlib) skip the test when missing.
"""

import csv
import importlib.util
import math
import pathlib
import sys

import pytest

import jaxig

pytest.importorskip("flax")
pytest.importorskip("optax")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUMERIC = ["completeness_gap", "mass_on_planted", "spearman_vs_truth", "deletion_auc", "insertion_auc",
           "infidelity", "grad_evals", "seconds"]


def _load():
    spec = importlib.util.spec_from_file_location("path_zoo", ROOT / "experiments" / "path_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # flax's dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_path_zoo_smoke(tmp_path):
    summary = _load().main(["--smoke", "--out", str(tmp_path)])
    for name in ("results.csv", "summary.json", "panels_planted.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "results.csv", newline="") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    expected = {"ig_black", "ig_blurred_baseline", "smoothgrad_ig", "expected_gradients", "random"}
    # the methods of other branches run wherever this jaxig has them, and none fails
    for name, attr in (("blur_ig", "blur_integrated_gradients"), ("guided_ig", "guided_integrated_gradients"),
                       ("idgi", "idgi")):
        if hasattr(jaxig, attr):
            expected.add(name)
    assert set(rows) == expected, summary["skipped"]
    assert not any(why.startswith("failed") for why in summary["skipped"]["planted"].values()), summary["skipped"]
    for method, row in rows.items():
        assert row["dataset"] == "planted"
        for column in NUMERIC:
            if column == "completeness_gap" and method == "random":
                assert row[column] == ""  # not an attribution method: no gap to report
                continue
            assert math.isfinite(float(row[column])), (method, column, row[column])
    ig, rnd = rows["ig_black"], rows["random"]
    num = lambda r, c: float(r[c])  # noqa: E731
    assert num(ig, "completeness_gap") < 0.08  # 8 Gauss-Legendre steps on a small ReLU CNN (about 0.03)
    assert num(ig, "grad_evals") == 8
    # every metric separates IG from random attributions
    assert num(ig, "mass_on_planted") > num(rnd, "mass_on_planted") + 0.2
    assert num(ig, "spearman_vs_truth") > num(rnd, "spearman_vs_truth") + 0.2
    assert num(ig, "deletion_auc") < num(rnd, "deletion_auc")
    assert num(ig, "insertion_auc") > num(rnd, "insertion_auc")
    assert num(ig, "infidelity") < 0.1 * num(rnd, "infidelity")
