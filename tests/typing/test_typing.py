"""The public API as type checkers see it: mypy over a user's file and the docs' examples.

``user_file.py`` asserts the types (``assert_type``) and the mistakes mypy must
report (``# type: ignore[code]`` with ``warn_unused_ignores``); the python blocks
of the quick start and the PyTorch guide must type-check as they are. mypy runs
with the project's configuration (``[tool.mypy]``: the pydantic plugin) and
without any plugin, as an editor's checker without it sees the package (pyright
reads the same ``Field(default=...)`` defaults). Without mypy the tests skip,
except under CI, which installs it (requirements/ci.txt).
"""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER_FILE = Path(__file__).with_name("user_file.py")
DOC_PAGES = ("quickstart.md", "guide/torch.md")
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)

#: The project's configuration less the plugin: what a user without it gets.
WITHOUT_PLUGIN = f"""[mypy]
mypy_path = {ROOT / "src"}
warn_unused_ignores = True
check_untyped_defs = True

[mypy-fusion_spec.*]
follow_imports = silent
"""

pytestmark = pytest.mark.slow  # mypy reads torch's stubs: about a minute per run


def _require_mypy() -> None:
    if importlib.util.find_spec("mypy") is None:
        if os.environ.get("CI"):
            pytest.fail("mypy is not installed; CI installs it from requirements/ci.txt")
        pytest.skip("mypy is not installed (pip install -r requirements/ci.txt)")
    if importlib.util.find_spec("torch") is None:
        pytest.skip("the typed examples use the PyTorch backend, which is not installed")


def _mypy(files: list[Path], config: Path, cache: Path) -> str:
    """mypy's report on ``files``; fails the test with it unless mypy found nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(cache)]
        + [str(f) for f in files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _doc_blocks(tmp_path: Path) -> list[Path]:
    """Each python block of the pages as its own module, named after its page and line."""
    files = []
    for page in DOC_PAGES:
        text = (ROOT / "docs" / page).read_text()
        for m in FENCE.finditer(text):
            line = text[: m.start()].count("\n") + 1
            name = re.sub(r"\W", "_", page.removesuffix(".md"))
            path = tmp_path / f"doc_{name}_{line}.py"
            path.write_text(m.group(1))
            files.append(path)
    return files


@pytest.fixture(scope="module")
def project_cache(tmp_path_factory) -> Path:
    """One mypy cache for the runs with the project's configuration (torch's stubs once)."""
    return tmp_path_factory.mktemp("mypy_cache")


def test_the_typed_fields_follow_the_spec_classes():
    """spec/_fields.py (each rule's fields as a TypedDict) is generated: no drift."""
    from fusion_spec.spec._fieldgen import FIELDS_PATH, render_fields

    assert FIELDS_PATH.read_text() == render_fields(), (
        "spec/_fields.py is stale: run `python -m fusion_spec.spec fields`"
    )


def test_the_docs_pages_have_python_blocks(tmp_path):
    assert len(_doc_blocks(tmp_path)) >= 7


def test_user_file_and_docs_examples_type_check_with_the_project_config(tmp_path, project_cache):
    _require_mypy()
    files = [USER_FILE, *_doc_blocks(tmp_path)]
    assert "Success" in _mypy(files, ROOT / "pyproject.toml", project_cache)


def test_user_file_type_checks_without_the_pydantic_plugin(tmp_path):
    _require_mypy()
    config = tmp_path / "mypy.ini"
    config.write_text(WITHOUT_PLUGIN)
    assert "Success" in _mypy([USER_FILE], config, tmp_path / "cache")


def test_mypy_reports_what_the_user_file_marks_as_mistakes(tmp_path, project_cache):
    """The check can fail: without its ``type: ignore`` marks, the mistakes are reported."""
    _require_mypy()
    bare = tmp_path / "user_file_bare.py"
    bare.write_text(re.sub(r"  # type: ignore\[[a-z-]+\]", "", USER_FILE.read_text()))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
        + ["--cache-dir", str(project_cache), str(bare)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Unexpected keyword argument "dropuot" for "CrossAttentionSpec"' in result.stdout
    assert 'Unexpected keyword argument "dropuot" for "CrossAttentionFusion"' in result.stdout
    assert "Incompatible types in assignment" in result.stdout


def test_user_file_runs():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("the user file uses the PyTorch backend, which is not installed")
    runpy.run_path(str(USER_FILE), run_name="user_file")
