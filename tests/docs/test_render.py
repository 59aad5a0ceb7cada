"""Every page of the built site, opened in one headless Chromium with no network.

Each page is read at 1280 px (a laptop) and 390 px (a phone). Through the rendered
DOM: every formula typeset by the vendored KaTeX (no raw TeX, no ``.katex-error``),
every diagram drawn by the vendored Mermaid, no script error, nothing requested off
the local server. Through the layout: at 1280 px no display formula is wider than
its column, no table overflows, no identifier in a table cell is broken mid-word and
diagram text is at least 10 px high; at both widths no ``$`` or TeX command shows as
text and the page does not scroll sideways. The pages are whatever ``docs/`` holds,
so a page added later is checked the same way. Skips only when Debian's
``chromium`` is absent (``apt-get install -y chromium``).
"""

from __future__ import annotations

import re

import pytest
from check_site import DESKTOP_WIDTH, PHONE_WIDTH, Browser, chromium, dom_problems, serve
from docs_support import DOCS, nav_pages, page_url

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)
PAGES = nav_pages()


@pytest.fixture(scope="module")
def base_url(site):
    with serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def opened(browser, base_url):
    """(page, width) -> report, each page loaded once per width for all the tests."""
    cache = {}

    def get(page: str, width: int):
        if (page, width) not in cache:
            cache[(page, width)] = browser.open(base_url + page_url(page), width=width)
        return cache[(page, width)]

    return get


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page, opened):
    report = opened(page, DESKTOP_WIDTH)
    assert report.problems == []
    source = (DOCS / page).read_text()
    assert report.counts["diagrams"] == source.count("```mermaid")
    if "$" in source:
        assert report.counts["formulas"] > 0


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_layout_at_desktop_width(page, opened):
    assert opened(page, DESKTOP_WIDTH).layout_problems(desktop=True) == []


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_layout_at_phone_width(page, opened):
    assert opened(page, PHONE_WIDTH).layout_problems(desktop=False) == []


@needs_chromium
def test_render_check_catches_planted_failures(site, browser, base_url):
    """Planted faults of every kind the checks look for must each be reported."""
    page = (site / "rules" / "gated" / "index.html").read_text()
    wide_diagram = "flowchart LR\n" + "\n".join(
        f'  n{i}["a fairly long label number {i}"] --> n{i + 1}' for i in range(12)
    )
    planted = (
        f'<div class="mermaid">{wide_diagram}</div>'
        '<div class="mermaid">flowchart LR\n  a[unclosed --> </div>'
        '<p><span class="arithmatex">\\(\\frac{1}{\\)</span></p>'
        '<div class="arithmatex">\\[' + " + ".join(f"x_{{{i}}}" for i in range(120)) + "\\]</div>"
        "<p>a stray $\\epsilon = $ left as text</p>"
        "<table><tr>" + "".join(f"<td>column{i}wide</td>" for i in range(60)) + "</tr></table>"
        '<script src="https://cdn.jsdelivr.net/npm/katex/dist/katex.min.js"></script>'
    )
    broken = site / "planted-broken"
    broken.mkdir(exist_ok=True)
    (broken / "index.html").write_text(page.replace("</article>", planted + "</article>", 1))
    try:
        report = browser.open(base_url + "planted-broken/", width=DESKTOP_WIDTH)
    finally:
        (broken / "index.html").unlink()
        broken.rmdir()
    text = "\n".join(report.problems)
    assert "diagram rendered Mermaid's error diagram" in text or "diagram not rendered" in text
    assert "KaTeX error" in text
    assert "requested an external URL: https://cdn.jsdelivr.net/" in text
    layout = "\n".join(report.layout_problems(desktop=True))
    assert re.search(r"display formula \d+ px wide in a \d+ px column: 'x_\{0\}", layout)
    assert "TeX shown as text: 'a stray $\\\\epsilon = $ left as text'" in layout
    assert re.search(r"diagram \d: text \d\.\d px high", layout)
    assert re.search(r"table \d+ px wide in a \d+ px column: 'column0wide", layout)


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
