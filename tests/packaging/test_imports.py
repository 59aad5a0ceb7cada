"""Every import of the library's own code goes through ``fusion_spec``.

The repository root is on ``sys.path`` in the tests (``pythonpath``), so a bare
``import spec`` would work here and fail for an installed user: this test keeps
them out of the code, the tests, the tools, the benchmarks and the docs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"spec", "fusion_ref", "backends", "conformance"}
PY_DIRS = ["spec", "fusion_ref", "backends", "conformance", "tests", "tools", "benchmarks"]


def _bare_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] in OURS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in OURS:
                found.append((node.lineno, node.module))
    return found


def test_python_files_import_the_namespaced_package():
    bad = []
    for d in PY_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            for line, name in _bare_imports(ast.parse(path.read_text(), str(path))):
                bad.append(f"{path.relative_to(ROOT)}:{line}: import {name}")
    assert not bad, "use fusion_spec.<subpackage>:\n" + "\n".join(bad)


FENCE = re.compile(r"```(?:python|py)\n(.*?)```", re.S)
COMMAND = re.compile(r"(?:python -m|pytest -p|--backend|--fusion-adapter=)\s*(spec|conformance)\b")


def test_docs_and_readme_use_the_namespaced_package():
    bad = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        for block in FENCE.findall(text):
            for _, name in _bare_imports(ast.parse(block)):
                bad.append(f"{path.relative_to(ROOT)}: import {name}")
        bad += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in COMMAND.finditer(text)]
    assert not bad, "\n".join(bad)
