"""Every page of the built site, opened in headless Chromium with no network.

Checks through the rendered DOM that every formula was typeset by the vendored
KaTeX (no raw TeX, no ``.katex-error``), every diagram was drawn by the vendored
Mermaid (an ``<svg>`` that is not Mermaid's error diagram), no script raised, and
the page requested nothing off the local server. Skips only when Debian's
``chromium`` is absent (``apt-get install -y chromium``).
"""

from __future__ import annotations

import re

import pytest
from check_site import chromium, dom_problems, render_page, serve
from docs_support import DOCS, nav_pages, page_url

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)
PAGES = nav_pages()


@pytest.fixture(scope="module")
def base_url(site):
    with serve(site) as url:
        yield url


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page, base_url):
    problems, counts = render_page(base_url + page_url(page))
    assert problems == []
    source = (DOCS / page).read_text()
    assert counts["diagrams"] == source.count("```mermaid")
    if "$" in source:
        assert counts["formulas"] > 0


@needs_chromium
def test_render_check_catches_planted_failures(site, tmp_path, base_url):
    """A page with an untypeset formula, a broken diagram and a CDN script must fail."""
    page = (site / "rules" / "gated" / "index.html").read_text()
    planted = (
        '<div class="mermaid">flowchart LR\n  a[unclosed --> </div>'
        '<p><span class="arithmatex">\\(\\frac{1}{\\)</span></p>'
        '<script src="https://cdn.jsdelivr.net/npm/katex/dist/katex.min.js"></script>'
    )
    broken = site / "planted-broken"
    broken.mkdir(exist_ok=True)
    (broken / "index.html").write_text(page.replace("</article>", planted + "</article>", 1))
    try:
        problems, _ = render_page(base_url + "planted-broken/")
    finally:
        (broken / "index.html").unlink()
        broken.rmdir()
    text = "\n".join(problems)
    assert "diagram rendered Mermaid's error diagram" in text or "diagram not rendered" in text
    assert "KaTeX error" in text
    assert "requested an external URL: https://cdn.jsdelivr.net/" in text


def test_dom_check_reads_raw_tex_and_errors():
    html = (
        "<html><body><p>left \\(x^2\\) raw</p>"
        '<span class="arithmatex"><span class="katex">ok</span></span>'
        '<span class="arithmatex">\\(y\\)</span>'
        '<span class="katex-error" title="ParseError: bad">x</span>'
        '<div class="mermaid">graph</div>'
        '<div class="mermaid"><svg aria-roledescription="flowchart-v2"></svg></div>'
        "<pre><code>\\(kept in code\\)</code></pre></body></html>"
    )
    problems, counts = dom_problems(html)
    assert counts == {"formulas": 2, "diagrams": 2}
    assert sum(p.startswith("formula not typeset") for p in problems) == 1
    assert sum(p.startswith("KaTeX error: ParseError") for p in problems) == 1
    assert sum(p.startswith("diagram not rendered") for p in problems) == 1
    raw = [p for p in problems if p.startswith("raw TeX")]
    assert raw and not any(re.search("kept in code", p) for p in raw)
