"""Check a built site: nothing external, every formula and diagram rendered and readable.

Two checks, both usable from the tests and from the command line:

* ``external_urls(site)``: every ``src``/``href``/``srcset`` in the HTML and every
  CSS ``url(...)`` that points off the site (``http:``, ``https:``, ``//host``);
* ``Browser().open(url, width=...)``: opens one page in headless Chromium (Debian's
  ``chromium``, one process for a whole run, driven over the DevTools pipe), with the
  site served on localhost and every other host unresolvable. Once the vendored KaTeX
  and Mermaid have run it reports raw TeX left, KaTeX errors, diagrams without an
  ``<svg>`` (or with Mermaid's error diagram), uncaught script errors, any request to
  a host other than localhost, and the layout a reader sees at that width (see
  ``PageReport.layout_problems``): TeX shown as text, diagram text under 10 px as
  drawn, content cut by a box that hides its overflow, formulas, tables and diagrams
  wider than their box (at 390 px allowed only in a box that scrolls sideways), code
  broken mid-word in table cells, a page that scrolls sideways.

Usage::

    python tools/check_site.py site/   # every page at 1280 and 390 px; exit 1 on problems
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # nothing but the local server resolves: a CDN request fails instead of loading
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
#: the two viewport widths a page is read at (CSS px): a laptop and a phone.
DESKTOP_WIDTH = 1280
PHONE_WIDTH = 390
#: the smallest text height (CSS px) a diagram may shrink its labels to, at either width.
MIN_DIAGRAM_FONT_PX = 10.0
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)
_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
_RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(?:mathrm|frac|tfrac|odot|sum|begin)\b")


def chromium() -> str | None:
    """Path of Debian's ``chromium`` (or ``chromium-browser``), None when absent."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


# --- static check -------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("src", "href", "poster", "data"):
                self.urls.append(value.strip())
            elif name == "srcset":
                self.urls += [part.strip().split(" ")[0] for part in value.split(",")]


def external_urls(site: Path) -> list[tuple[str, str]]:
    """``(file, url)`` for every off-site URL in an HTML attribute or a CSS ``url()``."""
    found = []
    for path in sorted(site.rglob("*.html")):
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8"))
        found += [(str(path.relative_to(site)), u) for u in parser.urls if EXTERNAL.match(u)]
    for path in sorted(site.rglob("*.css")):
        for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", path.read_text(encoding="utf-8")):
            if EXTERNAL.match(u.strip()):
                found.append((str(path.relative_to(site)), u.strip()))
    return found


# --- rendered DOM ---------------------------------------------------------------------------


@dataclass
class _Node:
    tag: str
    classes: set[str]
    attrs: dict[str, str]
    children: list[_Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def walk(self) -> Iterator[_Node]:
        yield self
        for child in self.children:
            yield from child.walk()


class _Tree(HTMLParser):
    """A minimal DOM from Chromium's serialisation (every non-void element is closed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("#document", set(), {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        attrs_d = {k: v or "" for k, v in attrs}
        node = _Node(tag, set(attrs_d.get("class", "").split()), attrs_d)
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        attrs_d = {k: v or "" for k, v in attrs}
        self.stack[-1].children.append(_Node(tag, set(attrs_d.get("class", "").split()), attrs_d))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].text.append(data)


def _visible_text(node: _Node) -> Iterator[str]:
    """Text outside rendered math, code, scripts and styles."""
    if (
        node.tag in ("script", "style", "code", "pre", "svg", "annotation")
        or "katex" in node.classes
    ):
        return
    yield from node.text
    for child in node.children:
        yield from _visible_text(child)


def dom_problems(html: str) -> tuple[list[str], dict[str, int]]:
    """Problems in a rendered page, and counts of formulas and diagrams found."""
    tree = _Tree()
    tree.feed(html)
    nodes = list(tree.root.walk())
    problems = []
    maths = [n for n in nodes if "arithmatex" in n.classes]
    for n in maths:
        if not any("katex" in c.classes for c in n.walk() if c is not n):
            problems.append(f"formula not typeset: {''.join(n.text)[:80]!r}")
    for n in nodes:
        if "katex-error" in n.classes:
            problems.append(f"KaTeX error: {n.attrs.get('title', '')[:160]}")
    diagrams = [n for n in nodes if n.tag == "div" and "mermaid" in n.classes]
    for n in diagrams:
        svgs = [c for c in n.walk() if c.tag == "svg"]
        if not svgs:
            problems.append(f"diagram not rendered: {''.join(n.text)[:80]!r}")
        elif any(s.attrs.get("aria-roledescription") == "error" for s in svgs):
            problems.append("diagram rendered Mermaid's error diagram (syntax error)")
    text = "".join(_visible_text(tree.root))
    for m in _RAW_TEX.finditer(text):
        problems.append(
            f"raw TeX left in the page: {text[max(0, m.start() - 40) : m.end() + 40]!r}"
        )
    return problems, {"formulas": len(maths), "diagrams": len(diagrams)}


class CdpError(RuntimeError):
    """Chromium answered a DevTools command with an error."""


class Browser:
    """One headless Chromium for a whole run, driven over the DevTools pipe.

    ``--remote-debugging-pipe`` needs no port and no websocket library: commands go
    to the browser's fd 3, answers and events come back on fd 4, each a JSON
    message ended by a NUL byte. Every page is opened in the same tab, so a test
    session pays the browser's start-up once.
    """

    def __init__(self, *, timeout: float = 60.0) -> None:
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium not found (Debian: apt-get install -y chromium)")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child: the pipe ends Chromium expects
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._proc = subprocess.Popen(
            [
                exe,
                *CHROMIUM_FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                "--hide-scrollbars",
                "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=wire_fds,  # noqa: PLW1509 - only dup2, no Python state touched
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self._command("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._command(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")

    # --- protocol ---------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], 0.5)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _command(self, method: str, params: dict | None = None, session: str | None = None):
        self._next_id += 1
        message: dict = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise CdpError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def send(self, method: str, params: dict | None = None) -> dict:
        """A DevTools command on the page's session; its result."""
        return self._command(method, params, self._session)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"evaluate: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    # --- pages ------------------------------------------------------------------------
    def open(self, url: str, *, width: int = DESKTOP_WIDTH, height: int = 900) -> PageReport:
        """Load ``url`` at a viewport ``width`` px wide; wait for math and diagrams; report."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(_READY_JS):
            if time.monotonic() > deadline:
                break  # measure what is there: the checks name what did not render
            time.sleep(0.1)
        layout = self.evaluate(_LAYOUT_JS)
        html = self.evaluate("document.documentElement.outerHTML")
        problems, counts = dom_problems(html)
        origin = "/".join(url.split("/")[:3])  # scheme://host:port
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text")
                problems.append(f"script error: {str(text)[:200]}")
            elif event["method"] == "Network.requestWillBeSent":
                requested = params.get("request", {}).get("url", "")
                if EXTERNAL.match(requested) and not requested.startswith(origin + "/"):
                    problems.append(f"requested an external URL: {requested}")
        return PageReport(url, width, problems, counts, layout)

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                self._command("Browser.close")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Ready: the document loaded, its fonts too, every formula typeset (or failed) and every
# diagram drawn (or failed) by the vendored KaTeX and Mermaid, and sized by the site's
# mermaid-init.js (it marks the body when it has set the diagrams' legible widths).
_READY_JS = """
(async () => {
  if (document.readyState !== "complete") return false;
  await document.fonts.ready;
  const maths = [...document.querySelectorAll(".arithmatex")];
  if (!maths.every(m => m.querySelector(".katex, .katex-error"))) return false;
  const diagrams = [...document.querySelectorAll("div.mermaid")];
  if (diagrams.length && document.body.dataset.diagrams !== "drawn") return false;
  return diagrams.every(d => d.querySelector("svg") || d.dataset.processed);
})()
"""

# What a reader sees, measured in CSS px (collapsed blocks opened first): natural widths of display formulas against the
# box they sit in, the font size of diagram text after the SVG is scaled to the column,
# tables wider than their box, code split over lines in table cells, text outside math and
# code that still shows TeX, and the page's own horizontal overflow.
_LAYOUT_JS = r"""
(() => {
  const describe = (el) => (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 70);
  // a collapsed block is read once opened: measure its content open
  document.querySelectorAll(".md-content details:not([open])").forEach((d) => { d.open = true; });
  const scrolls = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const out = {formulas: [], diagrams: [], tables: [], wrapped_code: [], raw: [], clipped: [],
               page_overflow: document.documentElement.scrollWidth - window.innerWidth};
  document.querySelectorAll("div.arithmatex").forEach((box) => {
    const parts = box.querySelectorAll(".katex-html > *");
    if (!parts.length) return;
    let left = Infinity, right = -Infinity;
    parts.forEach((p) => {
      const r = p.getBoundingClientRect();
      left = Math.min(left, r.left); right = Math.max(right, r.right);
    });
    const tex = box.querySelector("annotation");
    out.formulas.push({width: right - left, box: box.clientWidth, scrolls: scrolls(box),
                       tex: tex ? tex.textContent.trim().slice(0, 70) : describe(box)});
  });
  document.querySelectorAll("div.mermaid svg").forEach((svg, i) => {
    const vb = svg.viewBox && svg.viewBox.baseVal;
    const shown = svg.getBoundingClientRect().width;
    const scale = vb && vb.width ? shown / vb.width : 1;
    let min = Infinity, label = "";
    svg.querySelectorAll("text, span, p, div").forEach((el) => {
      if (!el.textContent.trim() || el.querySelector("span, p, div, tspan")) return;
      const px = parseFloat(getComputedStyle(el).fontSize) * scale;
      if (px < min) { min = px; label = describe(el); }
    });
    const box = svg.closest("div.mermaid");
    out.diagrams.push({index: i, min_font_px: min, label: label, width: shown,
                       box: box.clientWidth, scrolls: scrolls(box)});
  });
  document.querySelectorAll(".md-content table").forEach((table) => {
    const box = table.closest(".md-typeset__scrollwrap") || table.parentElement;
    const width = table.scrollWidth;
    out.tables.push({width: width, box: box.clientWidth, scrolls: scrolls(box),
                     header: describe(table.querySelector("tr") || table)});
    table.querySelectorAll("td code, th code").forEach((code) => {
      const text = code.textContent;
      if (!/\s/.test(text) && code.getClientRects().length > 1) out.wrapped_code.push(text);
    });
  });
  // content cut off: a box that hides what overflows it (overflow hidden or clip) with
  // some of its content drawn past its inner edges (scrollWidth alone also counts the
  // padding a title keeps free for its icon); KaTeX's MathML copy is hidden on purpose,
  // for screen readers only
  const cut = (o) => o === "hidden" || o === "clip";
  document.querySelectorAll(".md-content *").forEach((el) => {
    if (el.closest(".katex-mathml, svg") || !el.getClientRects().length) return;
    const s = getComputedStyle(el);
    const wide = cut(s.overflowX) && el.scrollWidth > el.clientWidth + 1;
    const tall = cut(s.overflowY) && el.scrollHeight > el.clientHeight + 1;
    if (!wide && !tall) return;
    const r = el.getBoundingClientRect();
    const left = r.left + el.clientLeft, top = r.top + el.clientTop;
    const range = document.createRange();
    range.selectNodeContents(el);
    let over = 0;
    for (const c of range.getClientRects()) {
      if (!c.width || !c.height) continue;
      if (wide) over = Math.max(over, left - c.left, c.right - (left + el.clientWidth));
      if (tall) over = Math.max(over, top - c.top, c.bottom - (top + el.clientHeight));
    }
    if (over > 1) out.clipped.push({tag: el.tagName.toLowerCase(), text: describe(el),
                                    over: Math.round(over)});
  });
  const skip = "script, style, code, pre, svg, textarea, .katex, .katex-error, .md-search";
  const root = document.querySelector(".md-main") || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const tex = /\$|\\[A-Za-z]+|\\[()\[\]{}]/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const parent = n.parentElement;
    if (!parent || parent.closest(skip) || !parent.getClientRects().length) continue;
    const m = n.textContent.match(tex);
    if (m) {
      const i = m.index;
      out.raw.push(n.textContent.slice(Math.max(0, i - 40), i + 40).replace(/\s+/g, " "));
    }
  }
  // a bar escaped for a Markdown table inside a code span shows its backslash
  document.querySelectorAll(".md-content td code, .md-content th code").forEach((code) => {
    if (code.textContent.includes("\\|")) out.raw.push(code.textContent.slice(0, 80));
  });
  return out;
})()
"""


@dataclass
class PageReport:
    """One page at one viewport width: DOM problems, counts and layout measurements."""

    url: str
    width: int
    problems: list[str]
    counts: dict[str, int]
    layout: dict

    def layout_problems(self, *, desktop: bool) -> list[str]:
        """What a reader trips over at this width.

        At both widths: TeX shown as text, a page that scrolls sideways, content cut by a
        box that hides its overflow, diagram text under ``MIN_DIAGRAM_FONT_PX`` as drawn,
        an identifier in a table cell broken mid-word, and a formula, table or diagram
        wider than its box unless that box scrolls sideways itself (then all of it can be
        reached). At the desktop width (``desktop``) formulas and tables also fit their
        column: scrolling inside a box is for the phone.
        """
        layout = self.layout
        found = [f"TeX shown as text: {snippet!r}" for snippet in layout["raw"]]
        if layout["page_overflow"] > 1:
            found.append(f"the page scrolls sideways by {layout['page_overflow']} px")
        for c in layout["clipped"]:
            found.append(
                f"content cut by {c['over']} px by a <{c['tag']}> that hides its overflow: "
                f"{c['text']!r}"
            )
        for d in layout["diagrams"]:
            if d["min_font_px"] < MIN_DIAGRAM_FONT_PX:
                found.append(
                    f"diagram {d['index']}: text {d['min_font_px']:.1f} px high "
                    f"(< {MIN_DIAGRAM_FONT_PX} px), e.g. {d['label']!r}"
                )
            if d["width"] > d["box"] + 1 and not d["scrolls"]:
                found.append(
                    f"diagram {d['index']} {d['width']:.0f} px wide in a {d['box']} px box "
                    "that does not scroll"
                )
        for f in layout["formulas"]:
            if f["width"] > f["box"] + 1 and (desktop or not f["scrolls"]):
                where = "column" if desktop else "box that does not scroll"
                found.append(
                    f"display formula {f['width']:.0f} px wide in a {f['box']} px {where}: "
                    f"{f['tex']!r}"
                )
        for t in layout["tables"]:
            if t["width"] > t["box"] + 1 and (desktop or not t["scrolls"]):
                where = "column" if desktop else "box that does not scroll"
                found.append(
                    f"table {t['width']} px wide in a {t['box']} px {where}: {t['header']!r}"
                )
        found += [f"code broken mid-word in a table cell: {c!r}" for c in layout["wrapped_code"]]
        return found


# --- serving ----------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 (a free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def pages(site: Path) -> list[str]:
    """Site-relative paths of every page (``index.html`` files, the 404 page excluded)."""
    return sorted(
        str(p.relative_to(site)) for p in site.rglob("index.html") if "assets" not in p.parts
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built site (mkdocs build -d SITE)")
    args = parser.parse_args(argv)
    problems = [f"{f}: external URL {u}" for f, u in external_urls(args.site)]
    with serve(args.site) as base, Browser() as browser:
        for page in pages(args.site):
            url = base + page.removesuffix("index.html")
            desktop = browser.open(url, width=DESKTOP_WIDTH)
            phone = browser.open(url, width=PHONE_WIDTH)
            counts = desktop.counts
            print(
                f"{page}: {counts.get('formulas', 0)} formulas, {counts.get('diagrams', 0)} diagrams",
                file=sys.stderr,
            )
            found = desktop.problems + desktop.layout_problems(desktop=True)
            found += [f"at {PHONE_WIDTH} px: {p}" for p in phone.layout_problems(desktop=False)]
            problems += [f"{page}: {p}" for p in found]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    sys.exit(main())
