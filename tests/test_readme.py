"""The README's first example runs as written and says what it returns."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_first_example_runs_and_its_comments_hold():
    text = README.read_text()
    section = text[text.index("## A first example"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README first example", "exec"), scope)
    assert scope["attr_all"].shape == (4, 2, 3)
    assert float(np.max(np.abs(scope["delta"]))) < 1e-6
    assert scope["grad"].shape == scope["x"].shape
