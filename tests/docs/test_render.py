"""Every page of the built site, opened in one headless Chromium with no network.

Each page is read at 1280 px (a laptop) and 390 px (a phone). Through the rendered
DOM: every formula typeset by the vendored KaTeX (no raw TeX, no ``.katex-error``),
every diagram drawn by the vendored Mermaid, no script error, nothing requested off
the local server. Through the layout, at both widths: no ``$`` or TeX command shows as
text, the page does not scroll sideways, nothing is cut by a box that hides its
overflow, diagram text is at least 10 px high as drawn, no identifier in a table cell
is broken mid-word, and a formula, table or diagram wider than its box sits in a box
that scrolls sideways; at 1280 px formulas and tables also fit their column. The pages
are whatever ``docs/`` holds, so a page added later is checked the same way. Skips
only when Debian's ``chromium`` is absent (``apt-get install -y chromium``).
"""

from __future__ import annotations

import re
import uuid

import pytest
from check_site import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    Browser,
    PageReport,
    chromium,
    dom_problems,
    serve,
)
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


# A diagram Mermaid has already drawn (data-processed: the site's script leaves it as it
# is), 2000 units wide with 16 px labels: shown in a column it is shrunk to a few px.
TINY_DIAGRAM = (
    '<div class="mermaid" data-processed="true"><svg viewBox="0 0 2000 40" width="100%">'
    '<text x="0" y="20" font-size="16">a label shrunk with its diagram</text></svg></div>'
)


def _open_planted(site, browser, base_url, planted: str, width: int):
    """Open the gated rule page with ``planted`` HTML appended to its article, from a
    folder of its own: pytest-xdist workers share one built site, and two planted pages
    in one folder overwrote each other (a phone check once read the other's faults)."""
    page = (site / "rules" / "gated" / "index.html").read_text()
    broken = site / f"planted-{uuid.uuid4().hex}"
    broken.mkdir()
    (broken / "index.html").write_text(page.replace("</article>", planted + "</article>", 1))
    try:
        return browser.open(base_url + broken.name + "/", width=width)
    finally:
        (broken / "index.html").unlink()
        broken.rmdir()


@needs_chromium
def test_render_check_catches_planted_failures(site, browser, base_url):
    """Planted faults of every kind the checks look for must each be reported."""
    planted = (
        TINY_DIAGRAM + '<div class="mermaid">flowchart LR\n  a[unclosed --> </div>'
        '<p><span class="arithmatex">\\(\\frac{1}{\\)</span></p>'
        '<div class="arithmatex">\\[' + " + ".join(f"x_{{{i}}}" for i in range(120)) + "\\]</div>"
        "<p>a stray $\\epsilon = $ left as text</p>"
        "<table><tr>" + "".join(f"<td>column{i}wide</td>" for i in range(60)) + "</tr></table>"
        '<script src="https://cdn.jsdelivr.net/npm/katex/dist/katex.min.js"></script>'
    )
    report = _open_planted(site, browser, base_url, planted, DESKTOP_WIDTH)
    text = "\n".join(report.problems)
    assert "diagram rendered Mermaid's error diagram" in text or "diagram not rendered" in text
    assert "KaTeX error" in text
    assert "requested an external URL: https://cdn.jsdelivr.net/" in text
    layout = "\n".join(report.layout_problems(desktop=True))
    assert re.search(r"display formula \d+ px wide in a \d+ px column: 'x_\{0\}", layout)
    assert "TeX shown as text: 'a stray $\\\\epsilon = $ left as text'" in layout
    assert re.search(r"diagram \d: text \d\.\d px high", layout)
    assert re.search(r"table \d+ px wide in a \d+ px column: 'column0wide", layout)


@needs_chromium
def test_phone_check_catches_planted_cuts(site, browser, base_url):
    """At 390 px a formula or table in a box that hides its overflow, and diagram text
    shrunk below 10 px, are each reported; a wide formula in a box that scrolls is not."""
    long_sum = " + ".join(f"x_{{{i}}}" for i in range(40))
    planted = (
        TINY_DIAGRAM
        + f'<div class="arithmatex" style="overflow-x: hidden">\\[{long_sum} = y_{{cut}}\\]</div>'
        + f'<div class="arithmatex">\\[{long_sum} = y_{{scrolls}}\\]</div>'
        + '<div style="overflow: hidden"><table class="planted"><tr>'
        + "".join(f"<td>cell{i}clipped</td>" for i in range(30))
        + "</tr></table></div>"
    )
    report = _open_planted(site, browser, base_url, planted, PHONE_WIDTH)
    assert report.problems == []
    layout = "\n".join(report.layout_problems(desktop=False))
    assert re.search(r"diagram \d: text \d\.\d px high", layout)
    assert re.search(
        r"display formula \d+ px wide in a \d+ px box that does not scroll: 'x_\{0\}", layout
    )
    assert "y_{scrolls}" not in layout
    assert re.search(r"content cut by \d+ px by a <div> that hides its overflow: 'x0", layout)
    assert re.search(
        r"table \d+ px wide in a \d+ px box that does not scroll: 'cell0clipped", layout
    )
    assert re.search(
        r"content cut by \d+ px by a <div> that hides its overflow: 'cell0clipped", layout
    )


def test_layout_check_reads_a_synthetic_measurement():
    """The limits themselves, on measurements made up by hand: what each width allows."""
    layout = {
        "raw": [],
        "page_overflow": 0,
        "clipped": [{"tag": "td", "over": 14, "text": "x_0 = 1"}],
        "diagrams": [
            {
                "index": 0,
                "min_font_px": 6.3,
                "label": "yes",
                "width": 358,
                "box": 358,
                "scrolls": True,
            },
            {
                "index": 1,
                "min_font_px": 12.0,
                "label": "v",
                "width": 700,
                "box": 358,
                "scrolls": True,
            },
            {
                "index": 2,
                "min_font_px": 12.0,
                "label": "t",
                "width": 700,
                "box": 358,
                "scrolls": False,
            },
        ],
        "formulas": [
            {"width": 500, "box": 358, "scrolls": True, "tex": "scrolls"},
            {"width": 500, "box": 358, "scrolls": False, "tex": "cut"},
        ],
        "tables": [
            {"width": 900, "box": 358, "scrolls": True, "header": "scrolls"},
            {"width": 900, "box": 358, "scrolls": False, "header": "clipped"},
        ],
        "wrapped_code": ["encoder.{i}"],
    }
    phone = PageReport("u", PHONE_WIDTH, [], {}, layout).layout_problems(desktop=False)
    assert phone == [
        "content cut by 14 px by a <td> that hides its overflow: 'x_0 = 1'",
        "diagram 0: text 6.3 px high (< 10.0 px), e.g. 'yes'",
        "diagram 2 700 px wide in a 358 px box that does not scroll",
        "display formula 500 px wide in a 358 px box that does not scroll: 'cut'",
        "table 900 px wide in a 358 px box that does not scroll: 'clipped'",
        "code broken mid-word in a table cell: 'encoder.{i}'",
    ]
    desktop = PageReport("u", DESKTOP_WIDTH, [], {}, layout).layout_problems(desktop=True)
    assert "display formula 500 px wide in a 358 px column: 'scrolls'" in desktop
    assert "table 900 px wide in a 358 px column: 'scrolls'" in desktop


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
