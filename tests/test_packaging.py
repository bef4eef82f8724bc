"""The package tells the truth about itself: floors, version, license, typing marker, dependencies."""

import importlib.metadata
import importlib.resources
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import pytest
from jax.extend import core as jex_core
from packaging.requirements import Requirement
from packaging.version import Version

import jaxig

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _floors() -> dict[str, Version]:
    """Returns {name: floor} from [project].dependencies; every one must have a '>=' floor."""
    out = {}
    for dep in PROJECT["dependencies"]:
        req = Requirement(dep)
        lower = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{dep!r} needs exactly one '>=' floor (.ci/run's minimum job pins it)"
        out[req.name] = lower[0]
    return out


@pytest.mark.parametrize("name", ["jax", "jaxlib", "numpy", "scipy"])
def test_installed_version_is_at_least_the_declared_floor(name):
    floors = _floors()
    assert name in floors, f"{name} is imported by jaxig but not declared in [project].dependencies"
    installed = Version(importlib.metadata.version(name))
    assert installed >= floors[name], f"{name} {installed} is below the declared floor {floors[name]}"


def test_jax_floor_is_the_first_release_with_the_apis_jaxig_uses():
    # jax.extend.core.jaxprs_in_params (autobatch's jaxpr walk) arrived in jax 0.10.0; jax 0.9.2 fails
    # with AttributeError. If jaxig stops needing it, the floor may come down: re-run the minimum job.
    assert hasattr(jex_core, "jaxprs_in_params")
    assert _floors()["jax"] >= Version("0.10.0")
    assert _floors()["jaxlib"] == _floors()["jax"], "jax and jaxlib are released in lockstep"


def test_ci_minimum_job_pins_exactly_the_declared_floors():
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "min_requirements.py")], capture_output=True,
                         text=True, check=True).stdout.split()
    pins = dict(line.split("==") for line in out)
    assert {k: Version(v) for k, v in pins.items()} == _floors()


def test_flax_is_not_a_core_dependency():
    names = {Requirement(dep).name for dep in PROJECT["dependencies"]}
    assert "flax" not in names
    extras = PROJECT["optional-dependencies"]
    assert any(Requirement(d).name == "flax" for d in extras["test"])
    assert any(Requirement(d).name == "equinox" for d in extras["test"])


def test_import_jaxig_does_not_import_flax():
    code = "import sys, jaxig; print('flax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False"


def test_version_agrees_everywhere():
    assert jaxig.__version__ == PROJECT["version"]
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(PROJECT['version'])}$", cff, re.M)


def test_license_file_is_apache_2_and_matches_the_metadata():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert re.search(r"^license: Apache-2.0$", (ROOT / "CITATION.cff").read_text(), re.M)


def test_package_is_marked_typed():
    assert (importlib.resources.files("jaxig") / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["jaxig"]


def test_jax_version_attribute_agrees_with_metadata():
    # the floor check above reads distribution metadata; the module must be that distribution
    assert Version(jax.__version__) == Version(importlib.metadata.version("jax"))
