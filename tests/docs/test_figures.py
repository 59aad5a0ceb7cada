"""Every figure on every docs page has a data source.

**The text of a page** is what a reader reads as prose or as table cells: the Markdown
less fenced code, inline code, math (``$...$``, ``$$...$$``), HTML comments and tags,
link targets and snippet includes (``--8<--``); and less the regions a program writes:
gen_docs's ``<!-- BEGIN generated:NAME -->`` blocks, the benchmarks'
``<!-- NAME: begin -->`` blocks, and pages generated whole (their first comment says
``do not edit``). Those are held to their sources elsewhere: ``gen_docs.py --check``,
tests/benchmarks, the conformance report's tests.

**A figure** is a numeral in that text that states a quantity: a number with a decimal
point or an exponent, a number of 10 or more, a number followed by a unit (``%``,
``x``, ``ms``, ``s``, ``us``, ``mJ``, ``GiB``, ``MB``, ``minutes``, ``points``...) and
the ``N`` of "N of M". Integers 0 to 9 standing alone are not figures (indices, route and
row numbers, list and section numbers, small counts named in the sentence), nor are
numerals inside a name (``ResNet-50``, ``UTF-8``, ``ViT-B/16``). Formulas and code are
not scanned: they hold the spec's constants and examples' inputs and outputs; the code
blocks run (tests/docs/test_examples.py) and the rule pages' printed digits are generated.

**A figure outside a generated region fails** unless ``ALLOWED`` lists the exact phrase
it stands in on that page, with why it is not a measurement: a constant of the spec
(the ``SPEC`` phrases are also checked against the spec's values), of a number format
or a library, a setting of a benchmark or of the conformance suite, a version, an
example's input. A measured figure (a timing, an accuracy, a ratio, a share of samples,
a count from a run) is never allowed: it is generated from its JSON, or left off.
"""

from __future__ import annotations

import json
import math
import re

import gen_docs
import numpy as np
import pytest
from docs_support import DOCS, nav_pages

from fusion_spec import spec

_REGIONS = (
    re.compile(r"<!-- BEGIN generated:(?P<n>[a-z-]+) -->.*?<!-- END generated:(?P=n) -->", re.S),
    re.compile(r"<!-- (?P<n>[a-z-]+): begin -->.*?<!-- (?P=n): end -->", re.S),
)
_NOT_TEXT = re.compile(
    r"^(?P<i>[ \t]*)(?P<f>```|~~~).*?^(?P=i)(?P=f)[ \t]*$"  # fenced code
    r"|\$\$.*?\$\$|\$[^$\n]+\$"  # math
    r"|`(?:[^`\n]|\n(?![ \t]*\n))+`"  # inline code (may span lines of a paragraph)
    r"|<!--.*?-->|<[^>\n]+>"  # comments, tags
    r"|\]\([^)\n]*\)"  # link targets
    r"|^[^\n]*--8<--[^\n]*$",  # snippet includes
    re.S | re.M,
)
_UNIT = r"(?:%|x\b|×|ms\b|us\b|µs\b|s\b|mJ\b|[KMG]i?B\b|minutes?\b|points?\b|seconds?\b)"
_NUMERAL = re.compile(
    r"(?<![\w./])(?<![A-Za-z]-)"  # not inside a name (ResNet-50, UTF-8, ViT-B/16)
    r"(?P<num>\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?)(?![\w/]*[A-Za-z]{2})"
    rf"(?P<unit>\s?{_UNIT})?(?P<of>\s+of\s+\d)?"
)


def text_of(page_text: str) -> str:
    """``page_text`` with everything that is not read as text blanked (offsets kept)."""
    first = page_text.split("\n", 4)[:4]
    if any("do not edit" in line for line in first):
        return re.sub(r"[^\n]", " ", page_text)
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731 - a one-line mask
    for region in _REGIONS:
        page_text = region.sub(blank, page_text)
    return _NOT_TEXT.sub(blank, page_text)


def figures(page_text: str) -> list[re.Match]:
    """The figures of a page's text (see the module's docstring)."""
    found = []
    for m in _NUMERAL.finditer(text_of(page_text)):
        number = m.group("num").rstrip(",")  # a list's comma, not a thousands separator
        quantity = (
            any(c in number for c in ".e")
            or float(number.replace(",", "")) >= 10
            or m.group("unit")
            or m.group("of")
        )
        if quantity:
            found.append(m)
    return found


def unsourced(page: str, page_text: str, allowed: dict[tuple[str, str], str]) -> list[str]:
    """``page: figure in context`` for each figure neither generated nor allowed."""
    covered = []
    for (where, phrase), _why in allowed.items():
        if where == page:
            covered += [(m.start(), m.end()) for m in re.finditer(re.escape(phrase), page_text)]
    out = []
    for m in figures(page_text):
        end = m.start("num") + len(m.group("num").rstrip(","))
        if not any(a <= m.start() and end <= b for a, b in covered):
            line = page_text[
                page_text.rfind("\n", 0, m.start()) + 1 : page_text.find("\n", m.end())
            ]
            out.append(f"{page}: {m.group(0).strip()!r} in {line.strip()[:160]!r}")
    return out


def _pages() -> dict[str, str]:
    """Every page, and the snippets the rule pages include (their text is read there)."""
    snippets = [p.relative_to(DOCS).as_posix() for p in sorted((DOCS / "_snippets").glob("*.md"))]
    return {page: (DOCS / page).read_text() for page in [*nav_pages(), *snippets]}


SPEC = "a constant of the spec (checked below)"
ORIGINAL = "a constant of the original code, from ../shared/ORIGINAL_IMPLEMENTATION.md (checked below)"
FORMAT = "a property of a number format, not a run"
SUITE = "a setting of the conformance suite or its tests"
TOWERS = "a setting of benchmarks/towers.py (its JSON's config; checked below)"
TRAIN = "a setting of benchmarks/train_bench.py (its JSON's config; checked below)"
BENCH = "a setting of benchmarks/bench.py's timing method"
CHUNK = "the backends' EVAL_CHUNK_ELEMENTS (2**21) over D = 512 (checked below)"
#: (page, the exact phrase a figure stands in) -> why it is not a measurement.
ALLOWED: dict[tuple[str, str], str] = {
    ("conventions.md", "ResNet-50 2048, ViT-B/16 768, BERT-base 768"): "published encoder widths",
    ("conventions.md", "text tower 512"): "a published encoder width (CLIP's)",
    ("errors.md", "is 16 GiB at the bound"): "spec.MAX_DIM squared times 4 bytes (checked below)",
    ("errors.md", "the energy loss (up to 1e12)"): "the bound [0, 1e6] squared, from the spec",
    ("errors.md", "1e-3 and 1e3 and at thresholds"): "spec bounds of routing_temperature",
    ("errors.md", "`routing_temperature` 1e-3 and 1e3"): "spec bounds of routing_temperature",
    ("errors.md", "energy values 0 and 1e6"): "spec bound of the energy fields",
    ("errors.md", "(tested at 1e12 in every"): SUITE,
    ("errors.md", "Beyond about 1e17, float32"): FORMAT,
    ("errors.md", "overflows far earlier (65504)"): "float16's largest value (checked below)",
    ("errors.md", "input magnitudes from 1e-6 to\n1e12"): SUITE,
    ("errors.md", "runs 200 examples"): SUITE,
    ("errors.md", "runs 2000 with a fresh seed"): SUITE,
    ("guide/end-to-end.md", "(0.5) each training call"): SPEC,
    ("guide/end-to-end.md", "the default 0.5 weighs"): SPEC,
    ("training.md", "at BatchNorm's 0.1 they trail"): "PyTorch BatchNorm1d's documented default",
    ("guide/end-to-end.md", "BatchNorm's usual momentum 0.1"): "PyTorch BatchNorm1d's documented default",
    ("guide/end-to-end.md", "batches of 16 or more"): "advice, not a measurement",
    ("guide/end-to-end.md", "softmax 0.79 on"): SPEC,
    ("guide/end-to-end.md", '= 8 is below the "both" route\'s cost of 9.8'): SPEC,
    ("guide/missing.md", "where 30% of test samples"): TOWERS,
    ("guide/routing.md", "default 3.2, 4.1 and 9.8 mJ"): SPEC,
    ("training.md", "budget (8 mJ) lies below"): SPEC,
    ("training.md", "route's cost (9.8 mJ)"): SPEC,
    ("training.md", "weight 0.01, the loss pushes"): ORIGINAL,
    ("training.md", "at the weight 0.01 it sends"): ORIGINAL,
    ("training.md", "| `0.01`, trainable | A router that compares every route finds the task worth "
                    "any overshoot at 0.01"): ORIGINAL,
    ("guide/end-to-end.md", "(at the original's 0.01 such"): ORIGINAL,
    ("guide/routing.md", "at the original's 0.01 a router"): ORIGINAL,
    ("guide/routing.md", "starts near 8.5 mJ, above the default budget of 8 mJ"): SPEC,
    ("guide/torch.md", "float64 to 1e-12"): SUITE,
    ("performance.md", "at least 2 ms"): BENCH,
    ("performance.md", "Up to 301 rounds fit each case's budget (2 s; at least 5 rounds)"): BENCH,
    ("performance.md", "timed on 16 route draws"): BENCH,
    ("performance.md", "(22 instead of 30 `D x D` products"): "counted from the rule's formula",
    ("performance.md", "below 1.00x"): "the parity threshold, not a result",
    ("performance.md", "B = 32768"): BENCH,
    ("performance.md", "30% of the training samples missing"): TOWERS,
    ("quickstart.md", "Python 3.10"): "a version",
    ("errors.md", "(GPT-3: 96, PaLM: 118)"): "published model depths (the reason for the bound)",
    ("errors.md", "16 times the usual 4"): "spec.MAX_HIDDEN_MULT (64) over the usual FFN factor",
    ("guide/keras.md", "(4096 rows at D = 512)"): CHUNK,
    ("guide/torch.md", "(4096 rows at D = 512)"): CHUNK,
    ("performance.md", "2**21 elements each (`EVAL_CHUNK_ELEMENTS`: 4096 rows at\nD = 512"): CHUNK,
    ("performance.md", "still have 8192 token rows"): CHUNK,
    ("rules/energy_aware_adaptive.md", "(init 0.01)"): ORIGINAL,
    ("rules/energy_aware_adaptive.md", "(about 5.7 mJ) is below the 8 mJ budget"): SPEC,
    ("rules/energy_aware_adaptive.md", "Bernoulli(0.5)"): SPEC,
    ("rules/energy_aware_adaptive.md", "costs 3.2, 4.1, 9.8 mJ and budget 8 mJ"): SPEC,
    ("training.md", "16x16 images"): TOWERS,
    ("training.md", "10-token bags"): TOWERS,
    ("training.md", "learning rate 3e-3), batch\n128, 6000 training and 1500 test samples"): TOWERS,
    ("training.md", "With 30% of the training samples"): TOWERS,
    ("training.md", "(32 features each"): TRAIN,
    ("training.md", "standard deviation 1.9"): TRAIN,
    ("training.md", "2e-3), batch 128, 300 steps, 6400 training and 2000 test samples"): TRAIN,
    ("writing-a-backend.md", "p < 1e-6"): SUITE,
    ("writing-a-backend.md", "from 0 to 1e4"): SUITE,
    ("writing-a-backend.md", "LayerNorm eps 1e-3"): "a planted bug: Keras's default epsilon",
    ("writing-a-backend.md", "`fallback_threshold` of 0.7"): SUITE,
    ("writing-a-backend.md", "(N(300, 1)"): SUITE,
    ("writing-a-backend.md", "(N(0, 1e-8)"): SUITE,
    ("writing-a-backend.md", "default 1e-6 fails here), `*_huge` (N(0, 1e10)"): SUITE,
    ("writing-a-backend.md", "(default 120, 0 for none)"): SUITE,
    ("writing-a-backend.md", "seeds 1 to 20"): SUITE,
    ("writing-a-backend.md", "(default 120)"): SUITE,
    (
        "_snippets/faq-layer-norm.md",
        "Keras 1e-3, PyTorch 1e-5, Flax 1e-6, spec 1e-5",
    ): "the libraries' documented defaults, and the spec's (checked below)",
}


def test_every_figure_has_a_source():
    problems = [p for page, text in _pages().items() for p in unsourced(page, text, ALLOWED)]
    assert problems == [], "\n".join(problems)


def test_every_allowed_phrase_is_on_its_page():
    """A phrase the page no longer says is a stale entry: the list stays small."""
    pages = _pages()
    stale = [key for key in ALLOWED if key[1] not in pages[key[0]]]
    assert stale == []


def _eaa(**fields):
    return spec.parse("energy_aware_adaptive", dim=8, **fields)


def _original_lambda() -> float:
    """The original's ``lambda_energy`` initial value, as the record of its code states it."""
    record = DOCS.parent.parent / "shared" / "ORIGINAL_IMPLEMENTATION.md"
    if not record.exists():
        pytest.skip(f"{record} (the original's record, beside the repository) is absent")
    found = re.search(r"`lambda_energy` is a learnable parameter initialised to ([0-9]+(?:\.[0-9]+)?)",
                      record.read_text())
    assert found, f"{record}: the lambda_energy initialisation sentence moved"
    return float(found.group(1))


def _towers_config():
    return json.loads(gen_docs.TOWERS_JSON.read_text())["config"]


def _train_config():
    return json.loads(gen_docs.TRAIN_JSON.read_text())["config"]


def _softmax_both() -> float:
    bias = _eaa().router_init_bias
    return math.exp(bias[2]) / sum(math.exp(b) for b in bias)


#: (page, allowed phrase, the figure as written, the value it restates).
CHECKS = [
    ("training.md", "budget (8 mJ) lies below", "8", lambda: _eaa().energy_budget_mJ),
    ("training.md", "weight 0.01, the loss", "0.01", lambda: _original_lambda()),
    ("training.md", "at the weight 0.01 it", "0.01", lambda: _original_lambda()),
    ("training.md", "| `0.01`, trainable", "0.01", lambda: _original_lambda()),
    ("training.md", "overshoot at 0.01", "0.01", lambda: _original_lambda()),
    ("guide/end-to-end.md", "original's 0.01 such", "0.01", lambda: _original_lambda()),
    ("guide/routing.md", "original's 0.01 a router", "0.01", lambda: _original_lambda()),
    ("training.md", "route's cost (9.8 mJ)", "9.8", lambda: _eaa().energy_costs_mJ[2]),
    ("guide/routing.md", "default 3.2, 4.1 and 9.8 mJ", "3.2", lambda: _eaa().energy_costs_mJ[0]),
    ("guide/routing.md", "default 3.2, 4.1 and 9.8 mJ", "4.1", lambda: _eaa().energy_costs_mJ[1]),
    ("guide/routing.md", "default 3.2, 4.1 and 9.8 mJ", "9.8", lambda: _eaa().energy_costs_mJ[2]),
    ("guide/routing.md", "starts near 8.5 mJ", "8.5", gen_docs.untrained_expected_energy),
    ("guide/routing.md", "default budget of 8 mJ", "8", lambda: _eaa().energy_budget_mJ),
    ("guide/routing.md", "(`energy_weight`, default 1)", "1", lambda: _eaa().energy_weight),
    ("rules/energy_aware_adaptive.md", "(init 0.01)", "0.01", lambda: _original_lambda()),
    (
        "rules/energy_aware_adaptive.md",
        "(about 5.7 mJ)",
        "5.7",
        lambda: gen_docs.untrained_expected_energy({"router_init_bias": None}),
    ),
    ("rules/energy_aware_adaptive.md", "the 8 mJ budget", "8", lambda: _eaa().energy_budget_mJ),
    ("rules/energy_aware_adaptive.md", "Bernoulli(0.5)", "0.5", lambda: _eaa().output_drop_flag_p),
    ("rules/energy_aware_adaptive.md", "costs 3.2,", "3.2", lambda: _eaa().energy_costs_mJ[0]),
    ("rules/energy_aware_adaptive.md", " 4.1, ", "4.1", lambda: _eaa().energy_costs_mJ[1]),
    ("rules/energy_aware_adaptive.md", " 9.8 mJ and", "9.8", lambda: _eaa().energy_costs_mJ[2]),
    ("guide/end-to-end.md", "(0.5) each training call", "0.5", lambda: _eaa().input_norm_momentum),
    ("guide/end-to-end.md", "the default 0.5 weighs", "0.5", lambda: _eaa().input_norm_momentum),
    ("guide/end-to-end.md", "softmax 0.79 on", "0.79", _softmax_both),
    ("guide/end-to-end.md", "= 8 is below", "8", lambda: _eaa().energy_budget_mJ),
    ("guide/end-to-end.md", "cost of 9.8", "9.8", lambda: _eaa().energy_costs_mJ[2]),
    ("errors.md", "is 16 GiB at the bound", "16", lambda: spec.MAX_DIM**2 * 4 / 2**30),
    ("errors.md", "far earlier (65504)", "65504", lambda: float(np.finfo(np.float16).max)),
    ("_snippets/faq-layer-norm.md", "spec 1e-5", "1e-5", lambda: _eaa().layer_norm_eps),
    ("guide/missing.md", "where 30% of", "30", lambda: 100 * _towers_config()["fraction_missing"]),
    (
        "performance.md",
        "30% of the training",
        "30",
        lambda: 100 * _towers_config()["fraction_missing"],
    ),
    ("training.md", "With 30% of", "30", lambda: 100 * _towers_config()["fraction_missing"]),
    ("training.md", "learning rate 3e-3", "3e-3", lambda: _towers_config()["lr"]),
    ("training.md", "batch\n128, 6000", "128", lambda: _towers_config()["batch"]),
    ("training.md", "2e-3), batch", "2e-3", lambda: _train_config()["lr"]),
    ("training.md", "batch 128, 300 steps", "128", lambda: _train_config()["batch"]),
    ("training.md", "300 steps", "300", lambda: _train_config()["steps"]),
    ("guide/keras.md", "(4096 rows at D", "4096", lambda: _chunk_rows(512)),
    ("guide/torch.md", "(4096 rows at D", "4096", lambda: _chunk_rows(512)),
    ("performance.md", "2**21 elements", "21", lambda: math.log2(_chunk_elements())),
    ("performance.md", "`EVAL_CHUNK_ELEMENTS`: 4096 rows", "4096", lambda: _chunk_rows(512)),
    ("performance.md", "still have 8192 token rows", "8192", lambda: 2 * _chunk_rows(512)),
]


def _chunk_elements() -> int:
    """The backends' chunk size (both, and equal)."""
    pytest.importorskip("torch")
    from fusion_spec.backends.torch import _layers as torch_layers

    return torch_layers.EVAL_CHUNK_ELEMENTS


def _chunk_rows(dim: int) -> int:
    return _chunk_elements() // dim


@pytest.mark.parametrize(("page", "phrase", "figure", "value"), CHECKS, ids=lambda x: "")
def test_restated_constants_match_their_source(page, phrase, figure, value):
    """A constant a page restates is the spec's (or the benchmark config's) to the digits
    it prints: ``5.7`` for 5.7000, not for 8.49."""
    assert phrase in _pages()[page]
    assert figure in phrase
    decimals = len(figure.split(".")[1]) if "." in figure and "e" not in figure else None
    expected = value()
    if decimals is None:
        assert float(figure) == pytest.approx(expected, rel=1e-9)
    else:
        assert round(expected, decimals) == pytest.approx(float(figure))


def test_a_planted_figure_is_flagged():
    """An unsourced figure planted in prose is reported; the same inside a generated
    block, a code span or a formula is not, and neither is a small index."""
    page = "rules/gated.md"
    text = (DOCS / page).read_text()
    assert unsourced(page, text, ALLOWED) == []
    planted = text.replace(
        "\n## ", "\nThe fused kernel is 3.7x faster and reaches 91% accuracy.\n\n## ", 1
    )
    found = unsourced(page, planted, ALLOWED)
    assert [f.split(" in ")[0] for f in found] == [f"{page}: '3.7x'", f"{page}: '91%'"]
    hidden = text.replace(
        "<!-- END generated:io -->", "It runs 3.7x faster.\n<!-- END generated:io -->", 1
    ).replace("\n## ", "\nRow 1 of `x` is `3.7`, and $y = 0.25$.\n\n## ", 1)
    assert unsourced(page, hidden, ALLOWED) == []


def test_the_scan_reads_every_allowed_phrase():
    """Each allowed phrase holds a figure the scan finds: an entry that covers nothing is
    not needed, and a mask that blanks prose (a regex running across lines once blanked
    whole rule pages) shows up here as phrases with no figure."""
    pages = _pages()
    unused = []
    for (page, phrase), _why in ALLOWED.items():
        spans = [(m.start(), m.end()) for m in re.finditer(re.escape(phrase), pages[page])]
        if not any(a <= f.start() < b for f in figures(pages[page]) for a, b in spans):
            unused.append((page, phrase))
    assert unused == []
