"""Every ```python block on the site runs, each in a fresh interpreter.

A fresh process per block keeps the examples honest (each imports what it uses) and
lets a Keras example choose ``KERAS_BACKEND`` before Keras is first imported. Each
runs in a directory that holds a user's own ``spec.py`` and ``backends/`` (ordinary
names in ML projects), with the repository root off ``sys.path``: the examples must
work through the installed ``fusion_spec`` package alone.
Blocks that use PyTorch or Keras are skipped, with the reason, only where that
framework cannot be imported; CI installs both.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docs_support import DOCS, ROOT, nav_pages

from fusion_spec import spec

FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in nav_pages():
        text = (DOCS / page).read_text()
        for m in FENCE.finditer(text):
            found.append((page, text[: m.start()].count("\n") + 1, m.group(1)))
    return found


BLOCKS = _blocks()


def _missing_framework(code: str) -> str | None:
    needs = []
    if re.search(r"^\s*(import|from) (torch|fusion_spec\.backends\.torch)\b", code, re.M):
        needs.append("torch")
    if re.search(r"^\s*(import|from) (keras|fusion_spec\.backends\.keras)\b", code, re.M):
        needs += ["keras", os.environ.get("KERAS_BACKEND", "jax")]
    for module in needs:
        if importlib.util.find_spec(module) is None:
            return module
    return None


def test_the_docs_have_examples():
    pages = {page for page, _, _ in BLOCKS}
    assert {"quickstart.md", "guide/torch.md", "guide/keras.md", "guide/legacy.md"} <= pages
    assert all(f"rules/{kind}.md" in pages for kind in spec.RULES)


@pytest.mark.parametrize(
    ("page", "line", "code"), BLOCKS, ids=[f"{page}:{line}" for page, line, _ in BLOCKS]
)
def test_example_runs(page, line, code, tmp_path):
    missing = _missing_framework(code)
    if missing:
        pytest.skip(f"{page}:{line} needs {missing}, which is not installed")
    (tmp_path / "spec.py").write_text("raise ImportError('the user spec.py was imported')\n")
    (tmp_path / "backends").mkdir()
    (tmp_path / "backends" / "__init__.py").write_text("raise ImportError('user backends/')\n")
    pythonpath = [
        p
        for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if p and Path(p).resolve() != ROOT
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{page}:{line} failed:\n{result.stderr[-3000:]}"
