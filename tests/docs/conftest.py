"""Shared fixtures of the docs tests: the repository paths and one strict build of the site."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "tools"))


def nav_pages() -> list[str]:
    """docs-relative Markdown pages of the site (snippets excluded)."""
    return sorted(
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if "_snippets" not in p.relative_to(DOCS).parts
    )


def page_url(page: str) -> str:
    """Site-relative URL of a docs page (``use_directory_urls: true``)."""
    stem = page.removesuffix(".md")
    if stem == "index":
        return ""
    return stem.removesuffix("/index") + "/" if stem.endswith("/index") else stem + "/"


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site built with ``mkdocs build --strict``; ``FUSION_DOCS_SITE`` reuses a built one."""
    given = os.environ.get("FUSION_DOCS_SITE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out
