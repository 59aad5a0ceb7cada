"""Fixtures of the docs tests: one strict build of the site per test run."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs_support import ROOT


def _build(out: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site built with ``mkdocs build --strict``; ``FUSION_DOCS_SITE`` reuses a built one.

    Under pytest-xdist the workers share one build: the first to take the lock builds
    into the run's common temporary folder, the others wait and reuse it.
    """
    given = os.environ.get("FUSION_DOCS_SITE")
    if given:
        return Path(given)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp("site")
        _build(out)
        return out
    shared = tmp_path_factory.getbasetemp().parent  # common to the workers of this run
    out, done = shared / "docs-site", shared / "docs-site.built"
    with open(shared / "docs-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            _build(out)
            done.touch()
    return out
