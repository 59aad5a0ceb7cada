"""The vendored renderers match their manifest and pins, and stay small."""

from __future__ import annotations

import subprocess
import sys

from docs_support import DOCS, ROOT


def test_vendored_files_match_the_manifest():
    result = subprocess.run(
        [sys.executable, "tools/vendor_assets.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_katex_css_references_only_shipped_woff2_fonts():
    import re

    css = (DOCS / "assets" / "vendor" / "katex" / "katex.min.css").read_text()
    fonts = set(re.findall(r"url\(([^)]+)\)", css))
    assert fonts and all(f.endswith(".woff2") for f in fonts)
    for font in fonts:
        assert (DOCS / "assets" / "vendor" / "katex" / font).is_file(), font


def test_vendored_assets_stay_small():
    total = sum(p.stat().st_size for p in (DOCS / "assets" / "vendor").rglob("*") if p.is_file())
    assert total < 4_000_000, f"vendored assets take {total:,} bytes"
