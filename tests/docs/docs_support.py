"""Paths and page helpers of the docs tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

import sys
from pathlib import Path

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
