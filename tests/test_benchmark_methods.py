"""benchmarks/methods_vs_captum.py runs: one tiny (method, workload) pair in-process agrees with Captum.

Skipped without torch/captum (the ``[compare]`` extra). Timings are not checked, only that the
harness produces a well-formed row whose two sides computed the same attributions.
"""

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("captum")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import methods_vs_captum as bench  # noqa: E402


@pytest.mark.parametrize("method", ["gradient_x_input", "expected_gradients"])
def test_one_tiny_pair_runs_and_agrees(method, tmp_path):
    # expected_gradients also checks that the injected draws reach both sides
    row = bench.bench_pair(method, "mlp_california", 1, runs=1, rows=8, in_process=True, tmpdir=tmp_path)
    assert row["captum_ms"] > 0 and row["jaxig_ms"] > 0 and row["jaxig_first_call_s"] > 0
    assert row["rel_diff"] <= 1e-4
    table = bench.markdown([row, bench.bench_pair("deeplift", "lstm_ts", 1)],
                           {**bench.environment(), "load_after": "0", "repeats": 1, "runs": 1, "ppe": "fast"})
    assert f"| {method} | mlp_california |" in table and "| deeplift | lstm_ts | DeepLift | n/a |" in table
