"""Generate the spec-derived tables of the docs from the pydantic models.

Pages hold hand-written prose and math; every table that restates the spec
(fields, parameters, call options, noise, aux outputs, cost, tolerances) is
generated here and written between markers::

    <!-- BEGIN generated:params -->
    ...
    <!-- END generated:params -->

Usage::

    python tools/gen_docs.py            # rewrite the generated blocks in docs/
    python tools/gen_docs.py --check    # exit 1 and name every stale or missing block

Shapes are written in terms of ``D`` (``dim``) and ``B`` (batch), found by
evaluating each declaration at two sizes; initial distributions and costs are
stated at ``D = 512`` (the original teacher's ``fusion_dim``).
"""

from __future__ import annotations

import argparse
import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion_spec import spec  # noqa: E402
from fusion_spec.spec import tolerance  # noqa: E402

DOCS = ROOT / "docs"
#: dim at which initial distributions and costs are stated.
DIM = 512
#: a small dim for the cost table (what the tests run).
SMALL_DIM = 64
#: two dims and batch sizes to read shapes symbolically (multiples of the default 8 heads).
_DIMS = (64, 128)
_BATCHES = (3, 5)

MARKER = re.compile(
    r"(<!-- BEGIN generated:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- END generated:(?P=name) -->)",
    re.S,
)
RULE_BLOCKS = ("fields", "params", "call-options", "noise", "aux", "cost")


# --- formatting helpers -------------------------------------------------------------


def _cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, newlines folded."""
    return str(text).replace("|", r"\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _affine(values: tuple[int, int], points: tuple[int, int], symbol: str) -> str:
    """Write ``n`` as ``a*symbol + b`` given its values at two sizes."""
    (n1, n2), (x1, x2) = values, points
    a, rem = divmod(n2 - n1, x2 - x1)
    b = n1 - a * x1
    if rem or a * x2 + b != n2:
        raise ValueError(f"size {values} is not affine in {symbol} at {points}")
    if a == 0:
        return str(b)
    term = symbol if a == 1 else f"{a}{symbol}"
    return term if b == 0 else f"{term}+{b}"


def _shape(shapes: tuple[tuple[int, ...], tuple[int, ...]], points, symbol: str) -> str:
    first, second = shapes
    if len(first) != len(second):
        raise ValueError(f"rank changes with {symbol}: {first} vs {second}")
    dims = [_affine((a, b), points, symbol) for a, b in zip(first, second, strict=True)]
    if not dims:
        return "`()` (scalar)"
    return "`(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")`"


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return "tuple[" + ", ".join(_type_name(a) for a in typing.get_args(annotation)) + "]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field) -> str:
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = []
    for meta in field.metadata:
        for attr, symbol in symbols.items():
            if getattr(meta, attr, None) is not None:
                parts.append(f"{symbol} {getattr(meta, attr)}")
    if typing.get_origin(field.annotation) is typing.Literal:
        parts.append(
            "pinned" if len(typing.get_args(field.annotation)) == 1 else "one of the values"
        )
    return ", ".join(parts) or "-"


# --- rule blocks ----------------------------------------------------------------------


def _spec(kind: str, dim: int, **fields):
    return spec.RULES[kind](dim=dim, **fields)


def fields_block(kind: str) -> str:
    cls = spec.RULES[kind]
    rows = []
    for name, field in cls.model_fields.items():
        default = "required" if field.is_required() else f"`{field.default!r}`"
        rows.append(
            [
                f"`{name}`",
                f"`{_type_name(field.annotation)}`",
                default,
                _constraints(field),
                field.description or ("Selects the rule." if name == "kind" else ""),
            ]
        )
    text = _table(["field", "type", "default", "constraints", "meaning"], rows)
    decorators = cls.__pydantic_decorators__
    checks = []
    for name, dec in decorators.field_validators.items():
        fields = ", ".join(f"`{f}`" for f in dec.info.fields)
        checks.append(f"`{name}` on {fields}: {name.strip('_').replace('_', ' ')}")
    for name in decorators.model_validators:
        checks.append(f"`{name}` (model validator): {name.strip('_').replace('_', ' ')}")
    if checks:
        text += "\nValidators: " + "; ".join(checks) + ".\n"
    return text


def params_block(kind: str) -> str:
    lo, hi = (_spec(kind, d).params() for d in _DIMS)
    at = _spec(kind, DIM).params()
    rows = []
    for p, q, r in zip(lo, hi, at, strict=True):
        init = r.init.describe()
        origin = f" ({r.init.origin})" if r.init.origin else ""
        rows.append(
            [
                f"`{p.name}`",
                _shape((p.shape, q.shape), _DIMS, "D"),
                f"{init}{origin}",
                "yes" if p.trained else "no",
                p.doc,
            ]
        )
    s = _spec(kind, DIM)
    total = sum(math.prod(p.shape) for p in at)
    text = _table(["name", "shape", f"initialisation at D = {DIM}", "trained", "note"], rows)
    text += f"\n{len(at)} tensors, {total:,} values at D = {DIM} with the default fields.\n"
    silent = sorted(s.no_output_gradient())
    if silent:
        names = ", ".join(f"`{n}`" for n in silent)
        text += f"\nNo gradient from the fused output reaches (by design, see below): {names}.\n"
    return text


def call_options_block(kind: str) -> str:
    options = spec.RULES[kind].call_options
    if not options:
        return "This rule takes no call options.\n"
    rows = [[f"`{o.name}`", f"`{o.type}`", f"`{o.default!r}`", o.doc] for o in options]
    return _table(["option", "type", "default", "meaning"], rows)


def _option_samples(option) -> list[object]:
    values: list[object] = []
    if "bool" in option.type:
        values += [True, False]
    if "float" in option.type:
        values.append(0.5)
    return [v for v in values if v != option.default]


def _variants(kind: str) -> list[tuple[str, object]]:
    """(field, value) pairs of the non-default discrete settings of a rule."""
    out = []
    for name, field in spec.RULES[kind].model_fields.items():
        if name == "kind":
            continue
        if field.annotation is bool:
            values: tuple = (True, False)
        elif typing.get_origin(field.annotation) is typing.Literal:
            values = typing.get_args(field.annotation)
        else:
            continue
        out += [(name, v) for v in values if v != field.default]
    return out


def _noise_rows(kind: str, fields: dict) -> dict[tuple, list[list[str]]]:
    """call condition -> noise rows, for one setting of the spec fields."""
    calls: list[tuple[bool, dict]] = []
    for training in (False, True):
        calls.append((training, {}))
        for option in spec.RULES[kind].call_options:
            calls += [(training, {option.name: v}) for v in _option_samples(option)]
    out = {}
    for training, options in calls:
        lo, hi = (
            _spec(kind, _DIMS[0], **fields).noise(b, training=training, **options) for b in _BATCHES
        )
        out[(training, tuple(options.items()))] = [
            [f"`{n.name}`", _shape((n.shape, m.shape), _BATCHES, "B"), n.doc]
            for n, m in zip(lo, hi, strict=True)
        ]
    return out


def _when(training: bool, options: tuple, setting: str = "") -> str:
    parts = ["training" if training else "eval"]
    parts += [f"`{k}={v!r}`" for k, v in options]
    if setting:
        parts.append(setting)
    return ", ".join(parts)


def _new_rows(rows: dict[tuple, list], reference: dict[tuple, list]) -> list[tuple[tuple, list]]:
    """Calls whose noise is non-empty and differs from ``reference`` at the same call and
    (for a call with options) from the same setting's call without options."""
    out = []
    for (training, options), noise in rows.items():
        if not noise or noise == reference[(training, options)]:
            continue
        if options and noise == rows[(training, ())]:
            continue
        out.append(((training, options), noise))
    return out


def noise_block(kind: str) -> str:
    base = _noise_rows(kind, {})
    empty = {call: [] for call in base}
    rows = [[_when(*call), *row] for call, noise in _new_rows(base, empty) for row in noise]
    for name, value in _variants(kind):
        variant = _noise_rows(kind, {name: value})
        setting = f"spec `{name}={value!r}`"
        rows += [
            [_when(*call, setting), *row]
            for call, noise in _new_rows(variant, base)
            for row in noise
        ]
    if not rows:
        return "None: the rule is deterministic in training and in eval.\n"
    return _table(["call", "noise", "shape", "meaning"], rows)


def aux_block(kind: str) -> str:
    lo, hi = (_spec(kind, _DIMS[0]).aux(b, training=False) for b in _BATCHES)
    if not lo:
        return "None: `return_aux=True` returns an empty dict.\n"
    rows = []
    for a, b in zip(lo, hi, strict=True):
        shape = _shape((a.shape, b.shape), _BATCHES, "B")
        margin = f"`{a.margin}`" if a.margin else "-"
        rows.append([f"`{a.name}`", shape, a.role, a.dtype, margin, a.doc])
    return _table(["aux", "shape", "role", "dtype", "margin", "meaning"], rows)


def cost_block(kind: str) -> str:
    small, big = _spec(kind, SMALL_DIM).macs(), _spec(kind, DIM).macs()
    rows = [[f"`{route}`", f"{small[route]:,}", f"{big[route]:,}"] for route in big]
    return _table(["route", f"MACs / sample, D = {SMALL_DIM}", f"MACs / sample, D = {DIM}"], rows)


RULE_GENERATORS: dict[str, Callable[[str], str]] = {
    "fields": fields_block,
    "params": params_block,
    "call-options": call_options_block,
    "noise": noise_block,
    "aux": aux_block,
    "cost": cost_block,
}


# --- other pages ----------------------------------------------------------------------


def overview_block() -> str:
    rows = []
    for kind, cls in spec.RULES.items():
        s = _spec(kind, DIM)
        count = sum(math.prod(p.shape) for p in s.params())
        macs = s.macs()
        cost = ", ".join(f"{route} {n:,}" for route, n in macs.items())
        stochastic = [
            mode
            for mode, training in (("training", True), ("eval", False))
            if s.noise(4, training=training)
        ]
        rows.append(
            [
                f"[`{kind}`]({kind}.md)",
                cls.summary,
                f"{count:,}",
                cost,
                ", ".join(stochastic) or "never",
            ]
        )
    header = [
        "rule",
        "what it computes",
        f"params at D = {DIM}",
        f"MACs / sample at D = {DIM}",
        "draws noise in",
    ]
    return _table(header, rows)


def tolerances_block() -> str:
    rows = []
    for dtype, tol in tolerance.TOLERANCES.items():
        grad = tolerance.GRADIENT_TOLERANCES[dtype]
        rows.append(
            [
                f"`{dtype}`",
                f"{tol['rtol']:g}",
                f"{tol['atol']:g}",
                f"{tolerance.DECISION_MARGINS[dtype]:g}",
                f"{grad['rtol']:g}",
                f"{grad['atol']:g}",
            ]
        )
    header = [
        "computation dtype",
        "rtol",
        "atol",
        "decision margin",
        "gradient rtol",
        "gradient atol",
    ]
    return _table(header, rows)


def measurements_block() -> str:
    """The policy's own justification, verbatim from ``spec/tolerance.py``."""
    return "```text\n" + inspect.cleandoc(tolerance.__doc__) + "\n```\n"


def pages() -> dict[str, dict[str, Callable[[], str]]]:
    """docs-relative page -> {block name: generator}; every listed block must be present."""
    out: dict[str, dict[str, Callable[[], str]]] = {
        "rules/index.md": {"overview": overview_block},
        "conventions.md": {"tolerances": tolerances_block, "measurements": measurements_block},
    }
    for kind in spec.RULES:
        out[f"rules/{kind}.md"] = {
            name: (lambda k=kind, g=gen: g(k)) for name, gen in RULE_GENERATORS.items()
        }
    return out


def render(text: str, blocks: dict[str, Callable[[], str]], page: str) -> tuple[str, list[str]]:
    """``text`` with every generated block refreshed, and the problems found."""
    problems = []
    present = {m.group("name") for m in MARKER.finditer(text)}
    for name in sorted(set(blocks) - present):
        problems.append(f"{page}: block {name!r} missing (add its BEGIN/END markers)")
    for name in sorted(present - set(blocks)):
        problems.append(f"{page}: unknown block {name!r}")

    def replace(m: re.Match) -> str:
        gen = blocks.get(m.group("name"))
        body = gen() if gen else m.group("body")
        return m.group(1) + body + m.group(4)

    return MARKER.sub(replace, text), problems


def run(docs: Path, check: bool) -> list[str]:
    problems = []
    for page, blocks in pages().items():
        path = docs / page
        if not path.exists():
            problems.append(f"{page}: page missing")
            continue
        text = path.read_text()
        new, found = render(text, blocks, page)
        problems += found
        if new != text:
            if check:
                problems.append(
                    f"{page}: generated tables out of date (run python tools/gen_docs.py)"
                )
            else:
                path.write_text(new)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail instead of writing")
    parser.add_argument("--docs", type=Path, default=DOCS, help="docs folder (default: docs/)")
    args = parser.parse_args(argv)
    problems = run(args.docs, args.check)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
