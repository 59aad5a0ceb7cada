"""The built site: strict build, every page present, nothing loaded from off the site."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml
from check_site import external_urls
from docs_support import DOCS, ROOT, nav_pages, page_url

from fusion_spec import spec


def _nav_files(nav) -> list[str]:
    files = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += _nav_files(value) if isinstance(value, list) else [value]
    return files


def _config() -> dict:
    # mkdocs.yml names a Python object (the fence formatter); the test reads only plain keys.
    text = re.sub(r"!!python/name:\S+", "null", (ROOT / "mkdocs.yml").read_text())
    return yaml.safe_load(text)


def test_every_page_is_in_the_nav_and_built(site):
    nav = _nav_files(_config()["nav"])
    missing = sorted(set(nav) - set(nav_pages()))
    assert not missing, f"pages in the nav but not in docs/: {missing}"
    unlisted = sorted(set(nav_pages()) - set(nav))
    assert not unlisted, f"pages in docs/ but not in the nav: {unlisted}"
    for page in nav:
        assert (site / page_url(page) / "index.html").is_file(), page


def test_nav_has_one_page_per_rule():
    nav = _nav_files(_config()["nav"])
    assert [p for p in nav if p.startswith("rules/") and p != "rules/index.md"] == [
        f"rules/{kind}.md" for kind in spec.RULES
    ]


def test_no_google_fonts_and_no_generator_link():
    config = _config()
    assert config["theme"]["font"] is False
    assert config["extra"]["generator"] is False


def test_no_external_url_in_the_built_site(site):
    assert external_urls(site) == []


def test_external_url_scan_finds_planted_links(tmp_path):
    (tmp_path / "index.html").write_text(
        '<link href="https://fonts.googleapis.com/css?family=Roboto" rel="stylesheet">'
        '<script src="//unpkg.com/mermaid"></script><img srcset="a.png 1x, http://x.org/b.png 2x">'
        '<a href="../local/">ok</a>'
    )
    (tmp_path / "a.css").write_text("@font-face{src:url('https://cdn.example/f.woff2')}")
    found = sorted(u for _, u in external_urls(tmp_path))
    assert found == [
        "//unpkg.com/mermaid",
        "http://x.org/b.png",
        "https://cdn.example/f.woff2",
        "https://fonts.googleapis.com/css?family=Roboto",
    ]


def test_math_and_diagrams_come_from_the_vendored_copies(site):
    html = (site / "rules" / "gated" / "index.html").read_text()
    for asset in (
        "vendor/katex/katex.min.js",
        "vendor/katex/katex.min.css",
        "vendor/mermaid/mermaid.min.js",
    ):
        assert asset in html, asset
    # Material's own Mermaid integration (which loads from a CDN) picks up <pre class="mermaid">
    assert '<pre class="mermaid">' not in html
    assert '<div class="mermaid">' in html


def test_rule_pages_have_every_section():
    required = [
        "## What it computes",
        "## Why",
        "## Data flow",
        "```mermaid",
        "## Inputs and outputs",
        "**Type constraints**",
        "## Spec",
        "## Parameters",
        "initial value (at D = 512)",
        "## Dropout",
        "## Differentiability",
        "## Noise inputs",
        "## Aux outputs",
        "## Cost",
        "## Differences from the original code",
        "## Worked example",
        "## Source and test vectors",
        "fusion_ref.md#fusion_spec.fusion_ref.",
        "conformance.md#cases-of-",
        "## Library conventions",
        "```python",
        "| symbol | shape | meaning |",
        "faq-weight-layout.md",
    ]
    for kind in spec.RULES:
        text = (DOCS / "rules" / f"{kind}.md").read_text()
        missing = [r for r in required if r not in text]
        assert not missing, f"rules/{kind}.md lacks {missing}"


def test_no_broken_seed_escapes_in_the_docs():
    # the seed's LaTeX lost "\t" of \tilde and \text to a tab character
    for page in nav_pages():
        assert "\t" not in (DOCS / page).read_text(), page


def test_build_imports_neither_torch_nor_keras(tmp_path):
    """The API reference is read statically: the site builds where the frameworks cannot load."""
    poison = tmp_path / "poison"
    for name in ("torch", "keras", "jax"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported by the build')\n"
        )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(poison), os.environ.get("PYTHONPATH", "")]),
        "NO_MKDOCS_2_WARNING": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "imported by the build" not in result.stderr
    assert result.returncode == 0, result.stderr[-3000:]


def _page(name: str) -> str:
    return (DOCS / name).read_text()


def test_statements_a_reader_tripped_over_stay_fixed():
    """Issue 15's wrong or missing statements: each page says the corrected thing."""
    assert "linear in $v$" not in _page("rules/film.md")
    assert "affine in $v$" in _page("rules/film.md")
    concat = _page("rules/concat_mlp.md")
    assert "no interaction between the modalities" in concat and "$L = 1$" in concat
    for page in ("rules/simple.md", "rules/transformer_concat.md"):
        text = _page(page)
        assert "teacher" in text and "student" in text, page
    energy = _page("rules/energy_aware_adaptive.md")
    assert "in training **and in eval**" in energy
    assert "| training, `progress` given |" in energy and "`progress=0.5` |" not in energy
    assert "(import added)" in _page("performance.md")


def test_every_rule_with_dropout_says_where():
    for kind, cls in spec.RULES.items():
        has_field = "dropout" in cls.model_fields
        assert bool(cls.dropout_sites) == has_field, kind
        text = _page(f"rules/{kind}.md")
        for site in cls.dropout_sites:
            assert site in text, (kind, site)


def test_notation_does_not_clash():
    """Token rows count from 0 like routes; one letter per thing across the pages."""
    pages = {p: _page(p) for p in nav_pages() if p.startswith("rules/")}
    for page, text in pages.items():
        assert "_{2,:}" not in text, f"{page}: 1-based token rows"
        assert "T_q" not in text and "T_k" not in text, f"{page}: T is the temperature"
        assert "c^\\top r" not in text, f"{page}: c is the confidence, costs are kappa"
        assert "_{b=1}" not in text and "U_b" not in text, f"{page}: b is a bias, samples are n"
    assert "\\mathbb{1}[\\cdot]" in pages["rules/index.md"]  # the indicator, in the notation
    assert "b + \\mathrm{FFN}(b)" not in pages["rules/shomr.md"]  # b is a bias


def _retired() -> list[tuple[str, bool]]:
    """``(literal, checked)`` for every symbol of the Retired table of ``notation.md``."""
    section = _page("notation.md").split("## Retired", 1)[1]
    out = []
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        out += [(lit, cells[-1] == "checked") for lit in re.findall(r"`([^`]+)`", cells[0])]
    return out


def _math(text: str) -> list[str]:
    """The TeX of a Markdown page: ``$$...$$`` and ``$...$``, code blocks and spans removed."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [a or b for a, b in re.findall(r"\$\$(.+?)\$\$|\$([^$\n]+)\$", text, flags=re.S)]


def _retired_uses(text: str, literals: list[str]) -> list[str]:
    """The retired ``literals`` that the math of ``text`` uses, as whole symbols
    (``\\pi`` matches ``\\pi`` but not ``\\pi_v``; ``X_1`` not ``X_{1,:}``)."""
    found = []
    math = "\n".join(_math(text))
    for lit in literals:
        before = r"(?<![A-Za-z\\])" if lit[0].isalnum() else ""
        after = r"(?![A-Za-z0-9_])" if lit[-1].isalnum() else ""
        if re.search(before + re.escape(lit) + after, math):
            found.append(lit)
    return found


def test_no_page_uses_a_retired_symbol():
    """notation.md's Retired table, every row marked checked: no page's math uses it."""
    checked = [lit for lit, ok in _retired() if ok]
    assert {"c_k", "X_1", "U_{n,2}", "\\pi", "W_{val}", "W_q"} <= set(checked)
    for page in nav_pages():
        if page != "notation.md":
            uses = _retired_uses(_page(page), checked)
            assert not uses, f"{page} uses retired symbols {uses}: see docs/notation.md"


def test_retired_symbol_check_finds_planted_uses():
    checked = [lit for lit, ok in _retired() if ok]
    planted = (
        "cost $c_k$, $f = X_1$ and $$U_{n,0} < q \\lor U_{n,2} < q$$ at progress $\\pi$, "
        "$W_q^\\top$, ``$W_q$ in code``"
    )
    assert _retired_uses(planted, checked) == ["c_k", "X_1", "U_{n,2}", "\\pi", "W_q"]
    fine = "mask $\\pi_v, \\pi_t$, rows $X_{0,:}$, $X_{1,:}$, $U_{n,1}$, $W_{\\mathrm{value}}$"
    assert _retired_uses(fine, checked) == []


def test_notation_gives_each_symbol_one_row():
    text = _page("notation.md").split("## Retired", 1)[0]
    symbols = re.findall(r"^\| (\$.+?\$[^|]*?) \|", text, flags=re.M)
    assert len(symbols) > 60
    assert len(symbols) == len(set(symbols)), sorted(s for s in symbols if symbols.count(s) > 1)


def test_no_escaped_quote_leaks_into_a_page():
    # a raw string's \" in the spec's Markdown reached two rule pages as \"both\"
    for page in nav_pages():
        assert '\\"' not in _page(page), page
