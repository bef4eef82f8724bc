"""Prints pyproject's core dependencies pinned to their floors ("jax>=0.10.0" -> "jax==0.10.0").

.ci/run's minimum-versions job installs with these as pip constraints, so the floors it tests are
the floors pyproject declares, with nothing to keep in sync by hand. Exits 1 if a core dependency
has no ">=" floor (the job could not say what it tested).
"""

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def floors() -> dict[str, str]:
    """Returns {name: floor version} for every entry of [project].dependencies."""
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    out = {}
    for dep in deps:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?", dep)
        if m is None:
            raise SystemExit(f"{PYPROJECT}: dependency {dep!r} has no '>=' floor; give it one")
        out[m.group(1)] = m.group(2)
    return out


if __name__ == "__main__":
    sys.stdout.write("".join(f"{name}=={version}\n" for name, version in floors().items()))
