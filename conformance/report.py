"""Results of a run: rows, the rule-by-rule matrix, and the Markdown and JSON reports.

A row is a plain dict (it crosses process boundaries as JSON): ``backend``,
``id`` (``rule/category/name``), ``rule``, ``category``, ``name``, ``status``,
``message``, ``seconds``, ``tensors`` (per-tensor max abs/rel error and ULPs),
``stats`` (distribution counts and p-values).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from fusion_spec import spec
from fusion_spec.spec.tolerance import DECISION_MARGINS, GRADIENT_TOLERANCES, TOLERANCES

from . import distribution
from .cases import all_cases
from .distribution import ALPHA
from .runner import hint_first
from .suite import CATEGORIES

FAILING = ("fail", "error")
MARK = {"pass": "✓", "fail": "✗", "error": "✗", "boundary": "≈", "xfail": "x", "xpass": "!"}


def summarise(rows: list[dict]) -> Counter:
    return Counter(r["status"] for r in rows)


def cell(rows: list[dict]) -> str:
    """One matrix cell: ``✓ 12/12``, ``✗ 10/12 (2 fail)``, or ``n/a`` when nothing applies.

    The count is of checks that pass, expected failures that pass (``xpass``)
    included; a cell with an ``xpass`` is marked ``!``: the expected-failures file
    is out of date (``! 12/12 (12 xpass)``).
    """
    if not rows:
        return "-"
    counts = summarise(rows)
    applicable = len(rows) - counts["n/a"]
    if applicable == 0:
        return "n/a"
    ok = counts["pass"] + counts["xpass"]
    bad = counts["fail"] + counts["error"]
    mark = MARK["fail"] if bad else MARK["xpass"] if counts["xpass"] else MARK["pass"]
    text = f"{mark} {ok}/{applicable}"
    extras = [
        f"{counts[s]} {s}" for s in ("fail", "error", "boundary", "xfail", "xpass") if counts[s]
    ]
    if counts["n/a"]:
        extras.append(f"{counts['n/a']} n/a")
    return text + (f" ({', '.join(extras)})" if extras else "")


def backends_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["backend"] for r in rows))


def matrix(rows: list[dict]) -> list[list[str]]:
    """Header plus one line per rule: the cell of every backend (all categories together)."""
    names = backends_of(rows)
    table = [["rule", *names]]
    for rule in spec.RULES:
        table.append(
            [rule]
            + [cell([r for r in rows if r["rule"] == rule and r["backend"] == b]) for b in names]
        )
    return table


def category_matrix(rows: list[dict]) -> list[list[str]]:
    """Header plus one line per backend: the cell of every category."""
    table = [["backend", *CATEGORIES]]
    for b in backends_of(rows):
        table.append(
            [b]
            + [
                cell([r for r in rows if r["backend"] == b and r["category"] == c])
                for c in CATEGORIES
            ]
        )
    return table


def worst_fraction(rows: list[dict]) -> tuple[float, str]:
    """The largest ``tolerance_used`` of any tensor or gradient in ``rows``, and where."""
    best = (0.0, "")
    for r in rows:
        for t in r.get("tensors") or []:
            used = t.get("tolerance_used", 0.0)
            if used > best[0]:
                best = (used, f"{r['id']} {t['name']}")
    return best


def headroom(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """``{backend: {rule: {"tolerance_used": x, "where": "id tensor"}}}``: the worst error of
    every compared tensor as a fraction of its tolerance (forward and gradient checks)."""
    out: dict[str, dict[str, dict]] = {}
    for b in backends_of(rows):
        for rule in spec.RULES:
            mine = [r for r in rows if r["backend"] == b and r["rule"] == rule]
            if any(r.get("tensors") for r in mine):
                used, where = worst_fraction(mine)
                out.setdefault(b, {})[rule] = {"tolerance_used": used, "where": where}
    return out


def headroom_matrix(rows: list[dict]) -> list[list[str]]:
    """Header plus one line per rule: each backend's worst error / tolerance (``-``: nothing compared)."""
    figures = headroom(rows)
    names = backends_of(rows)
    table = [["rule", *names]]
    for rule in spec.RULES:
        line = [rule]
        for b in names:
            f = figures.get(b, {}).get(rule)
            line.append("-" if f is None else f"{f['tolerance_used']:.2g}")
        table.append(line)
    return table


def not_applicable(rows: list[dict]) -> list[str]:
    """``backend: reason (n checks, e.g. id)`` for every distinct n/a reason."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["status"] == "n/a":
            seen.setdefault((r["backend"], r["message"]), []).append(r["id"])
    return [
        f"{b}: {reason} ({len(ids)} checks, e.g. `{ids[0]}`)" for (b, reason), ids in seen.items()
    ]


def render_text(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def problems(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] in (*FAILING, "boundary", "xfail", "xpass")]


def markdown(rows: list[dict], backends: dict[str, str], warnings: list[str]) -> str:
    """The report page (also ``docs/conformance.md``): deterministic, no timings."""
    counts = summarise(rows)
    out = [
        "# Conformance matrix",
        "",
        "<!-- Generated by `python -m fusion_spec.conformance --markdown docs/conformance.md`; do not edit. -->",
        "",
        "Every bundled backend against the float64 NumPy reference, rule by rule "
        "(forward cases, gradients, distributions of the backend's own RNG, properties). "
        "A cell reads *passed / applicable*; `≈` marks boundary samples, where a decision "
        "differs only within the float rounding bound of the reference margin; `!` marks "
        "expected failures that pass (`xpass`: remove them from the expected-failures file). "
        "How to judge your own backend: [Writing a backend](writing-a-backend.md).",
        "",
        "## Backends",
        "",
        *[f"- **{name}**: {text}" for name, text in backends.items()],
        "",
        "## Rules x backends",
        "",
        render_markdown_table(matrix(rows)),
        "",
        "## Categories x backends",
        "",
        render_markdown_table(category_matrix(rows)),
        "",
        "## Headroom",
        "",
        "The worst error of any compared tensor (forward outputs and aux values, gradients) "
        "as a fraction of its tolerance, per rule: 1 is the edge of the tolerance, 0.01 "
        "a hundredfold margin. The JSON report names the check and tensor of each figure.",
        "",
        render_markdown_table(headroom_matrix(rows)),
        "",
        f"Totals: {len(rows)} checks; "
        + ", ".join(f"{counts[s]} {s}" for s in sorted(counts))
        + ".",
        "",
        "## Not applicable",
        "",
    ]
    out += [f"- {line}" for line in not_applicable(rows)] or ["None."]
    out += ["", "## Failures, boundary cases and expected failures", ""]
    listed = problems(rows)
    out += [
        f"- `{r['backend']}` `{r['id']}` **{r['status']}**: {hint_first(_one_line(r['message']))}"
        for r in listed
    ] or ["None."]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    out += ["", "## Tolerance policy", "", _policy_table(), ""]
    out += ["## The case catalogue", "", _catalogue_table(), ""]
    return "\n".join(out)


def _catalogue_table() -> str:
    """Every forward case (``conformance/cases.py``), one section per rule, and the
    distribution trials. Few columns, so the table fits the docs' content column."""
    by_rule: dict[str, list[list[str]]] = {}
    for c in all_cases():
        changed = {
            k: v
            for k, v in c.spec.model_dump().items()
            if k not in ("kind", "dim") and v != type(c.spec).model_fields[k].default
        }
        opts = ", ".join(f"`{k}={v}`" for k, v in {**changed, **c.options}.items())
        checks = ["training" if c.training else "eval"]
        checks += ["exact decisions"] * bool(c.exact_decisions) + ["gradient"] * bool(c.gradient)
        by_rule.setdefault(c.spec.kind, []).append(
            [
                f"`{c.name.removeprefix(c.spec.kind + '_')}`",
                f"{c.v.shape[0]} x {c.spec.dim}",
                ", ".join(checks),
                f"{opts}: {c.purpose}" if opts and c.purpose else opts or c.purpose,
            ]
        )
    sections = []
    for kind, rows in by_rule.items():
        table = render_markdown_table([["case", "B x D", "mode, checks", "options: purpose"], *rows])
        sections.append(
            f"### Cases of `{kind}`\n\nCase ids are `{kind}_` followed by the name.\n\n"
            + _collapsed("Every case: size, mode and checks, options and purpose", table)
        )
    table = "\n\n".join(sections)
    trials = [["distribution trial", "calls x B, mode, test", "what it is for"]]
    for tr in distribution.trials():
        mode = "training" if tr.training else "eval"
        trials.append([f"`{tr.name}`", f"{tr.calls} x {tr.batch}, {mode}, {tr.kind}", tr.doc])
    return table + "\n\n### Distribution trials\n\n" + render_markdown_table(trials)


def _collapsed(title: str, body: str) -> str:
    """``body`` in a block the reader opens (pymdownx.details ``???``): a rule's case table
    is 2,600 to 7,700 px tall on a phone, read when looked for rather than scrolled past."""
    indented = "\n".join(f"    {line}" if line.strip() else line for line in body.splitlines())
    return f'??? abstract "{title}"\n\n{indented}'


def _one_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _policy_table() -> str:
    table = [
        [
            "dtype",
            "rtol",
            "atol (x max(1, max abs))",
            "decision margin",
            "gradient rtol",
            "gradient atol",
        ]
    ]
    for dtype, tol in TOLERANCES.items():
        g = GRADIENT_TOLERANCES[dtype]
        table.append(
            [
                dtype,
                f"{tol['rtol']:g}",
                f"{tol['atol']:g}",
                f"{DECISION_MARGINS[dtype]:g}",
                f"{g['rtol']:g}",
                f"{g['atol']:g}",
            ]
        )
    return (
        render_markdown_table(table)
        + f"\n\nDistribution tests reject at p < {ALPHA:g} (false-alarm rate per test). "
        "The measurements behind the numbers are in the docstring of `spec/tolerance.py`."
    )


def write(
    rows: list[dict],
    backends: dict[str, str],
    warnings: list[str],
    *,
    json_path=None,
    markdown_path=None,
    seconds: dict | None = None,
) -> None:
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "backends": backends,
            "summary": dict(summarise(rows)),
            "headroom": headroom(rows),
            "seconds": seconds or {},
            "warnings": warnings,
            "results": rows,
        }
        path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    if markdown_path:
        path = Path(markdown_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(rows, backends, warnings))
