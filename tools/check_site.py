"""Check a built site: nothing external, every formula and diagram rendered.

Two checks, both usable from the tests and from the command line:

* ``external_urls(site)``: every ``src``/``href``/``srcset`` in the HTML and every
  CSS ``url(...)`` that points off the site (``http:``, ``https:``, ``//host``);
* ``render_page(url)``: opens one page in headless Chromium (Debian's ``chromium``),
  with the site served on localhost and every other host unresolvable, dumps the DOM
  after a virtual-time budget and reports raw TeX left, KaTeX errors, diagrams
  without an ``<svg>`` (or with Mermaid's error diagram), uncaught script errors
  and any request to a host other than localhost (from Chromium's net log).

Usage::

    python tools/check_site.py site/        # both checks on every page; exit 1 on problems
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
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
    "--enable-logging=stderr",
    "--v=0",
    # nothing but the local server resolves: a CDN request fails instead of loading
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
VIRTUAL_TIME_MS = 20000
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


def _page_requests(netlog: Path, origin: str) -> set[str]:
    """URLs the page itself requested (initiator ``origin``), from Chromium's net log.

    The browser's own background requests (update checks and the like) carry no
    page initiator and are not the site's doing, so they are left out.
    """
    text = netlog.read_text() if netlog.exists() else ""
    try:
        events = json.loads(text).get("events", [])
    except json.JSONDecodeError:
        # Chromium can leave the log without its closing brackets: read the events found.
        events = [{"params": json.loads(m)} for m in re.findall(r'"params":(\{[^{}]*\})', text)]
    return {
        e["params"]["url"]
        for e in events
        if e.get("params", {}).get("url") and e["params"].get("initiator") == origin
    }


def render_page(url: str, *, timeout: float = 120.0) -> tuple[list[str], dict[str, int]]:
    """Open ``url`` in headless Chromium; problems in the rendered page and its counts."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium not found (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        netlog = Path(profile) / "netlog.json"
        cmd = [
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}/user",
            f"--log-net-log={netlog}",
            f"--virtual-time-budget={VIRTUAL_TIME_MS}",
            "--dump-dom",
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0 or "<html" not in out.stdout:
            return [f"chromium exited {out.returncode}: {out.stderr[-800:]}"], {}
        problems, counts = dom_problems(out.stdout)
        for line in out.stderr.splitlines():
            if "Uncaught" in line:
                problems.append(f"script error: {line.strip()[:200]}")
        origin = "/".join(url.split("/")[:3])  # scheme://host:port
        for requested in sorted(_page_requests(netlog, origin)):
            if not requested.startswith(origin + "/"):
                problems.append(f"requested an external URL: {requested}")
    return problems, counts


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
    with serve(args.site) as base:
        for page in pages(args.site):
            found, counts = render_page(base + page.removesuffix("index.html"))
            print(
                f"{page}: {counts.get('formulas', 0)} formulas, {counts.get('diagrams', 0)} diagrams",
                file=sys.stderr,
            )
            problems += [f"{page}: {p}" for p in found]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    sys.exit(main())
