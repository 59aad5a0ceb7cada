"""The "Choosing a rule" page: its figures are the spec's and the benchmarks' JSON's, and
its multiply-add formulas count what the reference computes."""

from __future__ import annotations

import json
import math
import re
import sys

import gen_docs
import numpy as np
import pytest
from docs_support import DOCS, ROOT

from fusion_spec import fusion_ref, spec
from fusion_spec.conformance.broken import patched
from fusion_spec.fusion_ref import _layers

sys.path.insert(0, str(ROOT / "benchmarks"))
import towers  # noqa: E402

PAGE = DOCS / "choosing.md"


def _block(name: str) -> str:
    text = PAGE.read_text()
    return text.split(f"<!-- BEGIN generated:{name} -->\n", 1)[1].split("<!-- END", 1)[0]


def _rows(name: str) -> dict[str, list[str]]:
    """rule -> the other cells of its row, in the page's table of block ``name``."""
    out = {}
    for line in _block(name).splitlines():
        m = re.match(r"\| \[?`(\w+)`", line)
        if m and m.group(1) in spec.RULES:
            out[m.group(1)] = [c.strip() for c in line.strip("|").split("|")[1:]]
    return out


def _poly_value(text: str, d: int) -> int:
    """``$24D^2 + 26D$`` at ``D = d``."""
    total = 0
    for term in text.strip("$").split(" + "):
        m = re.fullmatch(r"(\d*)(D\^2|D)?", term)
        coefficient = int(m.group(1) or 1)
        power = {"D^2": 2, "D": 1, None: 0}[m.group(2)]
        total += coefficient * d**power
    return total


def test_the_page_is_in_the_nav_and_linked_from_the_home_page():
    assert "choosing.md" in (ROOT / "mkdocs.yml").read_text()
    assert "(choosing.md)" in _rows_of_where_to_go()


def _rows_of_where_to_go() -> str:
    text = (DOCS / "index.md").read_text()
    return text.split("## Where to go", 1)[1].split("\n## ", 1)[0]


def test_parameter_counts_are_the_spec_params():
    rows = _rows("choose-cost")
    assert set(rows) == set(spec.RULES)
    for kind, (formula, *values) in ((k, r[:3]) for k, r in rows.items()):
        for d, shown in zip(gen_docs.CHOICE_DIMS, values, strict=True):
            count = sum(math.prod(p.shape) for p in spec.RULES[kind](dim=d).params())
            assert shown == f"{count:,}", (kind, d)
        for d in (8, 40, 1024):  # the formula holds away from the dims it was read at
            count = sum(math.prod(p.shape) for p in spec.RULES[kind](dim=d).params())
            assert _poly_value(formula, d) == count, (kind, d)


def _route_formulas(cell: str) -> dict[str, str]:
    if ": " not in cell:
        return {"all": cell}
    pairs = (part.split(": ") for part in cell.split("; "))
    return {route.strip("`"): formula for route, formula in pairs}


def _count_reference_macs(kind: str, dim: int) -> list[tuple[str, int]]:
    """(block, multiply-adds per sample) of each product the reference computes, in call
    order: ``linear`` weights by name, the attention's ``Q K^T`` and ``A V`` as
    ``<attention>.products``."""
    calls: list[tuple[str, int]] = []
    linear, attention = _layers.linear, _layers.attention
    batch = 3

    def counting_linear(p, name, x):
        rows = math.prod(x.shape[:-1]) // batch
        calls.append((name, rows * p[f"{name}.weight"].size))
        return linear(p, name, x)

    def counting_attention(p, name, query, keys, heads, key_mask=None):
        _, tq, d = query.shape
        calls.append((f"{name}.products", 2 * tq * keys.shape[1] * d))
        return attention(p, name, query, keys, heads, key_mask)

    s = spec.RULES[kind](dim=dim)
    params = spec.init_params(s, seed=0)
    rng = np.random.default_rng(0)
    v, t = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    with patched("linear", counting_linear), patched("attention", counting_attention):
        fusion_ref.forward(s, params, v, t)
    return calls


#: The blocks each route runs, read from fusion_ref/shomr.py and
#: fusion_ref/energy_aware_adaptive.py (the reference computes every path for every
#: sample and selects): a block counts once per route.
ROUTE_BLOCKS = {
    "shomr": {
        "soft": ("confidence.", "router.", "attn.", "ffn."),
        "hard_image": ("confidence.", "router.", "single"),
        "hard_text": ("confidence.", "router.", "single"),
        "hard_both": ("confidence.", "router.", "gate", "attn.", "ffn."),
    },
    "energy_aware_adaptive": {
        "image": ("router.",),
        "text": ("router.",),
        "both": ("router.", "gate", "attn.", "ffn."),
    },
}


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_multiply_add_formulas_count_what_the_reference_computes(kind):
    formulas = _route_formulas(_rows("choose-cost")[kind][3])
    assert set(formulas) == set(spec.RULES[kind](dim=8).macs()), kind
    for dim in (16, 48):
        calls = _count_reference_macs(kind, dim)
        if kind not in ROUTE_BLOCKS:
            assert _poly_value(formulas["all"], dim) == sum(n for _, n in calls), (kind, dim)
            continue
        first: dict[str, int] = {}
        for name, n in calls:
            assert first.setdefault(name, n) == n, name  # a block repeated costs the same
        for route, blocks in ROUTE_BLOCKS[kind].items():
            counted = sum(n for name, n in first.items() if name.startswith(blocks))
            assert _poly_value(formulas[route], dim) == counted, (kind, route, dim)


def test_time_ratios_are_the_benchmark_json():
    report = json.loads(gen_docs.BENCH_JSON.read_text())
    ms = {
        (r["rule"], r["mode"], r["batch"]): r["ms"]["ours"]
        for r in report["rows"]
        if (r["framework"], r["device"], r["precision"]) == ("torch", "cpu", "float32")
    }
    columns = [(mode, b) for mode in ("eval", "train") for b in gen_docs.TIME_BATCHES]
    rows = _rows("choose-time")
    assert set(rows) == set(spec.RULES)
    for kind, cells in rows.items():
        for (mode, b), cell in zip(columns, cells, strict=True):
            expected = ms[(kind, mode, b)] / ms[(gen_docs.TIME_REFERENCE, mode, b)]
            assert cell == f"{expected:.2f}", (kind, mode, b)


def test_accuracy_ratios_are_the_towers_json():
    report = json.loads(gen_docs.TOWERS_JSON.read_text())
    rows = _rows("choose-accuracy")
    assert set(rows) == set(spec.RULES)
    for i, (scenario, fw, norm, _) in enumerate(gen_docs.ACCURACY_COLUMNS):
        ratio = towers.ratios(report, scenario)
        for kind, cells in rows.items():
            label = kind if norm == "batch" else f'{kind}:input_norm="{norm}"'  # "batch": default
            seeds = ratio.get((label, fw))
            assert cells[i] == (f"{np.median(list(seeds.values())):.2f}" if seeds else ""), (
                kind, scenario, fw, norm
            )


def test_missing_modality_and_draws_are_the_spec():
    rows = _rows("choose-behaviour")
    for kind, cls in spec.RULES.items():
        default = cls.model_fields["missing_modality"].default
        assert rows[kind][0].startswith(f"[`{default!r}`"), kind
        s = cls(dim=64)
        for column, training in ((1, True), (2, False)):
            for n in s.noise(4, training=training):
                assert f"`{n.name}`" in rows[kind][column], (kind, n.name)
        assert ("dropout" in rows[kind][1]) == s.has_elementwise_dropout(), kind
        assert cls.missing_semantics[default] in _block("choose-missing"), kind


def test_the_page_follows_the_json(tmp_path, monkeypatch):
    """A changed measurement changes the page, so gen_docs --check fails on stale figures."""
    report = json.loads(gen_docs.BENCH_JSON.read_text())
    for r in report["rows"]:
        if r["rule"] == "gated":
            r["ms"]["ours"] *= 2
    changed = tmp_path / "bench.json"
    changed.write_text(json.dumps(report))
    monkeypatch.setattr(gen_docs, "BENCH_JSON", changed)
    doubled = gen_docs.time_ratios()
    after = gen_docs.choosing_time_block()
    columns = [(mode, b) for mode in ("eval", "train") for b in gen_docs.TIME_BATCHES]
    cells = " | ".join(f"{doubled[('gated', mode, b)]:.2f}" for mode, b in columns)
    assert f"| `gated` | {cells} |" in after
    assert after != _block("choose-time")
