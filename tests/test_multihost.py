"""The same calls under jax.distributed.initialize: 2 processes x 4 CPU devices on localhost.

tests/_multihost_worker.py is started twice (a coordinator on a free port, gloo CPU collectives);
each process holds half of the batch (jax.make_array_from_process_local_data) and the gathered
attributions must equal a one-process run on the whole batch. Timeouts keep a stuck launch from
hanging the suite; a machine without CPU collectives skips with the reason.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from _multihost_worker import cases, problem

import jaxig

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("multihost") / "report.json"
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    worker = os.path.join(HERE, "_multihost_worker.py")
    procs = [subprocess.Popen([sys.executable, worker, str(i), "2", str(port), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the 2-process run did not finish within {TIMEOUT_S} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    log = "\n".join(logs)
    result = json.loads(out.read_text()) if out.exists() else None
    if result is not None and "skip" in result:
        pytest.skip(f"no multi-process CPU run here (jax.distributed with gloo collectives): {result['skip']}")
    if any(p.returncode for p in procs) or result is None:
        pytest.fail(f"the 2-process run failed:\n{log[-4000:]}")
    return result


def test_two_processes_form_one_eight_device_mesh(report):
    assert (report["process_count"], report["device_count"], report["local_device_count"]) == (2, 8, 4)
    assert report["errors"] == {}, report["errors"]


@pytest.mark.parametrize("kind", ["auto", "explicit"])
@pytest.mark.parametrize("name", list(cases(jaxig, None)))
def test_gathered_result_equals_one_process(report, name, kind):
    f, X = problem()
    expected = np.asarray(cases(jaxig, None)[name](f, X))
    got = report["results"][f"{name}/{kind}"]
    assert got["n_devices"] == 8 and got["spec"].startswith("P('batch'"), got["spec"]
    np.testing.assert_allclose(np.asarray(got["value"]), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_alpha_sharding_across_processes(report):
    f, X = problem()
    expected = np.asarray(jaxig.integrated_gradients(f, X[:1], target=1, n_steps=256))
    got = report["results"]["alpha_sharding"]
    assert got["n_devices"] == 8
    np.testing.assert_allclose(np.asarray(got["value"]), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
