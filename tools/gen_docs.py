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
import functools
import inspect
import json
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
from fusion_spec.spec import _base as spec_base  # noqa: E402
from fusion_spec.spec import tolerance  # noqa: E402

DOCS = ROOT / "docs"
#: dtype of the integer aux ``route`` per implementation (tests/docs/test_generated.py
#: checks the reference's and PyTorch's against these).
ROUTE_DTYPES = {"the reference": "int64", "PyTorch": "int32", "Keras": "int32"}
#: dim at which initial distributions and costs are stated.
DIM = 512
#: a small dim for the cost table (what the tests run).
SMALL_DIM = 64
#: two dims and batch sizes to read shapes symbolically (multiples of the default 8 heads).
_DIMS = (64, 128)
_BATCHES = (3, 5)
#: a second head count (divides both dims) to read head-dependent shapes symbolically.
_HEADS = 4

MARKER = re.compile(
    r"(<!-- BEGIN generated:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- END generated:(?P=name) -->)",
    re.S,
)
RULE_BLOCKS = (
    "usage",
    "io",
    "fields",
    "params",
    "dropout",
    "differentiability",
    "call-options",
    "noise",
    "aux",
    "cost",
    "example",
    "links",
    "missing",
)


# --- formatting helpers -------------------------------------------------------------


def _cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, newlines folded."""
    return str(text).replace("|", r"\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _collapsed(title: str, body: str) -> str:
    """``body`` in a block the reader opens (pymdownx.details ``???``), titled ``title``.

    For the long reference tables of a rule page (fields, parameters): 2,000 to 4,500 px
    tall on a phone each, read when looked for rather than scrolled past.
    """
    indented = "".join(f"    {line}" if line.strip() else line for line in body.splitlines(True))
    return f'??? abstract "{title}"\n\n{indented}'


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


def _shape_text(dims: list[str]) -> str:
    if not dims:
        return "`()` (scalar)"
    return "`(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")`"


def _shape(shapes: tuple[tuple[int, ...], tuple[int, ...]], points, symbol: str) -> str:
    first, second = shapes
    if len(first) != len(second):
        raise ValueError(f"rank changes with {symbol}: {first} vs {second}")
    return _shape_text(
        [_affine((a, b), points, symbol) for a, b in zip(first, second, strict=True)]
    )


def symbolic_shapes(kind: str, declare, fields: dict | None = None) -> dict[str, str]:
    """name -> shape in ``B``, ``D`` and ``h`` of every item ``declare(spec, batch)`` lists.

    The declaration is evaluated at a base size and again with one of ``D``, ``B``
    and ``h`` (``heads``) changed at a time; an axis that follows one of them is
    written as an affine function of it (``2D``, ``4D+1``), an axis that follows
    none as its number, and an axis that follows two raises.
    """
    fields = dict(fields or {})
    cls = spec.RULES[kind]
    base_dim, base_batch = _DIMS[0], _BATCHES[0]
    configs = {"D": ({"dim": _DIMS[1]}, base_batch), "B": ({}, _BATCHES[1])}
    points = {"D": _DIMS, "B": _BATCHES}
    if "heads" in cls.model_fields and "heads" not in fields:
        configs["h"] = ({"heads": _HEADS}, base_batch)
        points["h"] = (cls.model_fields["heads"].default, _HEADS)

    def evaluate(extra: dict, batch: int) -> dict[str, tuple[int, ...]]:
        s = _spec(kind, **{"dim": base_dim, **fields, **extra})
        return {item.name: tuple(item.shape) for item in declare(s, batch)}

    base = evaluate({}, base_batch)
    varied = {symbol: evaluate(extra, batch) for symbol, (extra, batch) in configs.items()}
    out = {}
    for name, shape in base.items():
        dims = []
        for axis, value in enumerate(shape):
            moved = {sym: v[name][axis] for sym, v in varied.items() if v[name][axis] != value}
            if len(moved) > 1:
                raise ValueError(f"{kind}: {name} axis {axis} depends on {sorted(moved)}")
            if not moved:
                dims.append(str(value))
                continue
            ((symbol, other),) = moved.items()
            dims.append(_affine((value, other), points[symbol], symbol))
        out[name] = _shape_text(dims)
    return out


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


def _code_union(type_text: str) -> str:
    """``a | b`` as code spans joined by a bar outside them: a bar escaped for the table
    inside a code span would show its backslash."""
    return " | ".join(f"`{part}`" for part in type_text.split(" | "))


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


def _spec(kind: str, dim: int = DIM, **fields):
    return spec.RULES[kind](dim=dim, **fields)


def fields_block(kind: str) -> str:
    cls = spec.RULES[kind]
    rows = []
    for name, field in cls.model_fields.items():
        default = "required" if field.is_required() else f"`{field.default!r}`"
        if name == "kind":  # its one value goes in the widest column
            default = "its value"
        rows.append(
            [
                f"`{name}`",
                "`str`" if name == "kind" else _code_union(_type_name(field.annotation)),
                default,
                _constraints(field),
                field.description or (f"Selects the rule: `{kind!r}`." if name == "kind" else ""),
            ]
        )
    text = _collapsed(
        "Every field: type, default, constraints, meaning",
        _table(["field", "type", "default", "constraints", "meaning"], rows),
    )
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


def _affine_expr(values: tuple[float, float], what: str) -> str | None:
    """``values`` at ``_DIMS`` as an integer-coefficient affine expression in D, else None."""
    rounded = tuple(round(x) for x in values)
    if any(abs(x - r) > 1e-6 * max(1.0, abs(x)) for x, r in zip(values, rounded, strict=True)):
        return None
    try:
        return _affine(rounded, _DIMS, "D")
    except ValueError:
        return None


def init_formula(kind: str, name: str, fields: dict | None = None) -> str:
    """The initial distribution of parameter ``name`` as a formula of the sizes (TeX).

    Read from the spec at two dims: a uniform bound ``theta`` with ``1/theta^2`` affine in
    ``D`` is ``1/sqrt(fan_in)``; with ``6/theta^2`` affine, Xavier's ``sqrt(6/(fan_in +
    fan_out))``; standard deviations and constants that do not move are numbers.
    """
    lo, hi = (
        {q.name: q.init for q in _spec(kind, d, **(fields or {})).params()}[name] for d in _DIMS
    )
    if lo.kind == "uniform":
        fan = _affine_expr((1 / lo.bound**2, 1 / hi.bound**2), "fan_in")
        if fan is not None:
            bound = rf"1/\sqrt{{{fan}}}"
        else:
            fans = _affine_expr((6 / lo.bound**2, 6 / hi.bound**2), "fan_in + fan_out")
            if fans is None:
                raise ValueError(f"{kind}: {name}: bound {lo.bound} is no known formula of D")
            bound = rf"\sqrt{{6/({fans})}}"
        return rf"$\mathcal{{U}}(-\theta, \theta)$, $\theta = {bound}$"
    if lo.kind == "normal":
        if lo.std != hi.std:
            raise ValueError(f"{kind}: {name}: a standard deviation that depends on D")
        return rf"$\mathcal{{N}}(0, {lo.std:g}^2)$"
    if lo.value != hi.value:
        raise ValueError(f"{kind}: {name}: a constant that depends on D")
    return f"${lo.value:g}$"


def _at_dim(init) -> str:
    if init.kind == "uniform":
        return f"$\\theta = {init.bound:.6g}$"
    if init.kind == "normal":
        return f"$\\mathcal{{N}}(0, {init.std:g}^2)$"
    return f"${init.value:g}$"


_INDEX = re.compile(r"\.(\d+)\.")


def param_rows(kind: str) -> list[dict]:
    """The parameters of the default spec, layers collapsed into pattern rows.

    Names that differ only in one ``.N.`` segment (``encoder.0.attn.query.weight``,
    ``encoder.1.attn.query.weight``, ...) with the same symbolic shape and
    distribution become one row ``encoder.{i}.attn.query.weight`` over ``i < n``.
    """
    s = _spec(kind, DIM)
    shapes = symbolic_shapes(kind, lambda sp, b: sp.params())
    groups: dict[tuple, list] = {}
    for q in s.params():
        m = _INDEX.search(q.name)
        pattern = q.name[: m.start()] + ".{i}." + q.name[m.end() :] if m else q.name
        key = (pattern, shapes[q.name], init_formula(kind, q.name), _at_dim(q.init))
        groups.setdefault(key, []).append((int(m.group(1)) if m else None, q))
    rows = []
    for (pattern, shape, formula, at), members in groups.items():
        indices = [i for i, _ in members]
        first = members[0][1]
        if len(members) > 1 and indices == list(range(len(members))):
            rows.append(
                {
                    "name": pattern,
                    "count": len(members),
                    "shape": shape,
                    "formula": formula,
                    "at": at,
                    "spec": first,
                    "tied": [q.init.tied_to for _, q in members[1:]],
                }
            )
        else:
            for _, q in members:
                rows.append(
                    {
                        "name": q.name,
                        "count": 1,
                        "shape": shape,
                        "formula": formula,
                        "at": at,
                        "spec": q,
                        "tied": [q.init.tied_to] if q.init.tied_to else [],
                    }
                )
    return rows


def optional_params(kind: str) -> list[tuple[str, object, str, str]]:
    """Parameters that only a non-default setting of a discrete field declares.

    ``params()`` of the default spec omits them (``energy_weight`` exists only with
    ``energy_weight_trainable=True``, the running statistics only with
    ``input_norm='batch'``), yet a backend must name and load them: each comes back
    as ``(setting, ParamSpec at D = 512, symbolic shape, initial-value formula)``.
    """
    default = {q.name for q in _spec(kind, DIM).params()}
    out, seen = [], set(default)
    for name, value in _variants(kind):
        fields = {name: value}
        extra = [q for q in _spec(kind, DIM, **fields).params() if q.name not in seen]
        if not extra:
            continue
        shapes = symbolic_shapes(kind, lambda sp, b: sp.params(), fields)
        for q in extra:
            seen.add(q.name)
            out.append(
                (f"`{name}={value!r}`", q, shapes[q.name], init_formula(kind, q.name, fields))
            )
    return out


def params_block(kind: str) -> str:
    s = _spec(kind, DIM)
    layers = getattr(s, "layers", None)
    rows, origins, patterns, tied = [], {}, set(), False
    for row in param_rows(kind):
        q = row["spec"]
        name = f"`{row['name']}`"
        notes = [q.doc] if q.doc else []
        if row["count"] > 1:
            bound = "L" if row["count"] == layers else str(row["count"])
            patterns.add(bound)
            notes.insert(0, f"$i < {bound}$")
            tied = tied or bool(row["tied"])
        elif row["tied"]:
            notes.append(f"starts as a copy of `{row['tied'][0]}`")
        if q.name.startswith("input_norm."):
            notes.append("absent with spec `input_norm='none'`")
        if not q.trained:
            notes.append("not trained")
        init = row["formula"] if row["formula"] == row["at"] else f"{row['formula']} ({row['at']})"
        # a note's own full stop goes where another note follows it
        rows.append([name, row["shape"], init, "; ".join([n.rstrip(".") for n in notes[:-1]] + notes[-1:])])
        if q.init.origin:
            origins.setdefault(q.init.origin, []).append(row["formula"])
    for setting, q, shape, formula in optional_params(kind):
        condition = f"only with spec {setting}" + ("; not trained" if not q.trained else "")
        note = f"{q.doc} {condition[0].upper()}{condition[1:]}." if q.doc else condition
        at = _at_dim(q.init)
        init = formula if formula == at else f"{formula} ({at})"
        rows.append([f"`{q.name}`", shape, init, note])
        if q.init.origin:
            origins.setdefault(q.init.origin, []).append(formula)
    total = sum(math.prod(q.shape) for q in s.params())
    text = _collapsed(
        "Every parameter and buffer: shape, initial value, note",
        _table(["name", "shape", f"initial value (at D = {DIM})", "note"], rows),
    )
    if patterns:
        text += "\nA row `name.{i}.rest` stands for one tensor per $i$"
        text += f"; $L$ = `layers` ({layers} by default)" if "L" in patterns else ""
        text += (
            ". Every $i \\geq 1$ starts as a copy of $i = 0$ (the original's "
            "`nn.TransformerEncoder` deep-copies one layer), then trains on its own.\n"
            if tied
            else ".\n"
        )
    text += f"\n{len(s.params())} tensors, {total:,} values at D = {DIM} with the default fields.\n"
    text += "\nWhere the distributions come from (the original's PyTorch initialisers):\n\n"
    for origin, formulas in origins.items():
        text += f"- {' or '.join(dict.fromkeys(formulas))}: {origin}\n"
    return text


def call_options_block(kind: str) -> str:
    options = spec.RULES[kind].call_options
    if not options:
        return "This rule takes no call options.\n"
    rows = [[f"`{o.name}`", _code_union(o.type), f"`{o.default!r}`", o.doc] for o in options]
    return _table(["option", "type", "default", "meaning"], rows)


class _Given(float):
    """A sample value for a float option whose default is None: labelled "given"."""


#: the value a float call option takes in the noise table (any value in its range).
_GIVEN = _Given(0.5)


def _option_samples(option) -> list[object]:
    values: list[object] = []
    if "bool" in option.type:
        values += [True, False]
    if "float" in option.type:
        values.append(_GIVEN)
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
    # a width other than dim declares the input projections (any width: 768 shows them)
    out += [("image_dim", 768), ("text_dim", 768)]
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

        def declare(sp, b, training=training, options=options):
            return sp.noise(b, training=training, **options)

        shapes = symbolic_shapes(kind, declare, fields)
        items = _spec(kind, _DIMS[0], **fields).noise(_BATCHES[0], training=training, **options)
        out[(training, tuple(options.items()))] = [
            [f"`{n.name}`", shapes[n.name], n.doc] for n in items
        ]
    return out


def _when(training: bool, options: tuple, setting: str = "") -> str:
    parts = ["training" if training else "eval"]
    parts += [f"`{k}` given" if v is _GIVEN else f"`{k}={v!r}`" for k, v in options]
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


def _masked_aux(s, batch: int) -> list:
    """The aux outputs a ``present`` mask adds to ``s.aux`` (``neither``), from ``s.call_aux``."""
    own = {a.name for a in s.aux(batch, training=False)}
    return [a for a in s.call_aux(batch, training=False, present=True) if a.name not in own]


def aux_block(kind: str) -> str:
    s = _spec(kind, _DIMS[0])
    items = s.aux(_BATCHES[0], training=False)
    masked = _masked_aux(s, _BATCHES[0])
    if not items:
        names = " and ".join(f"`{a.name}`" for a in masked)
        return (
            f"None of its own: `return_aux=True` returns an empty dict without `present`, and "
            f"{names} alone when the call passes `present` (see "
            "[Missing modalities](#missing-modalities)).\n"
        )
    shapes = symbolic_shapes(kind, lambda sp, b: sp.call_aux(b, training=False, present=True))
    rows = []
    for a in items + masked:
        shape = shapes[a.name]
        margin = f" Margin: `{a.margin}`." if a.margin else ""
        only = " Only when the call passes `present`." if a in masked else ""
        rows.append([f"`{a.name}`", shape, f"{a.role}, {a.dtype}", a.doc + margin + only])
    return _table(["aux", "shape", "role, dtype", "meaning"], rows)


def cost_block(kind: str) -> str:
    small, big = _spec(kind, SMALL_DIM).macs(), _spec(kind, DIM).macs()
    rows = [[f"`{route}`", f"{small[route]:,}", f"{big[route]:,}"] for route in big]
    return _table(["route", f"MACs / sample, D = {SMALL_DIM}", f"MACs / sample, D = {DIM}"], rows)


def _noise_names(kind: str) -> list[str]:
    """Every noise array the rule reads in some call or setting."""
    settings = [{}] + [{name: value} for name, value in _variants(kind)]
    return sorted(
        {
            row[0].strip("`")
            for fields in settings
            for rows in _noise_rows(kind, fields).values()
            for row in rows
        }
    )


# --- signatures and the first example ----------------------------------------------

#: the size of the rule pages' first example (a multiple of every default head count).
USAGE_DIM = 64


def _backend_class(kind: str) -> str:
    """The backend class of a rule: ``GatedSpec`` -> ``GatedFusion`` (both backends)."""
    return spec.RULES[kind].__name__.removesuffix("Spec") + "Fusion"


def usage_block(kind: str) -> str:
    """The rule page's opening: both backends' signatures, and a build and a call in each.

    The signatures list the spec's fields with their defaults (``build`` passes its
    keywords to ``spec.parse``) and the rule's call options; the two examples run in
    ``tests/docs/test_examples.py`` like every Python block of the site.
    """
    cls = spec.RULES[kind]
    fields = [
        name if field.is_required() else f"{name}={field.default!r}"
        for name, field in cls.model_fields.items()
        if name != "kind"
    ]
    options = "".join(f", {o.name}={o.default!r}" for o in cls.call_options)
    name = _backend_class(kind)
    dispatch = ", dispatch=None" if "route" in _noise_names(kind) else ""
    signatures = (
        "```text\n"
        + _wrap(
            f"fusion_spec.backends.torch.build({kind!r}, params=None, *, ",
            ", ".join(fields) + f", generator=None{dispatch})",
        )
        + f"\n    -> {name}, a torch.nn.Module\n"
        + _wrap(
            "module(",
            "v, t, present=None, *, image_mask=None, text_mask=None, noise=None, "
            f"return_aux=False{options})",
        )
        + "\n    -> fused, or (fused, aux) with return_aux=True\n\n"
        + _wrap(
            f"fusion_spec.backends.keras.build({kind!r}, params=None, *, ",
            "<the same spec fields>, seed=None, matmul_precision='float32')",
        )
        + f"\n    -> {name}, a keras.layers.Layer\n"
        + _wrap(
            "layer(",
            "v, t, present=None, training=None, noise=None, return_aux=False, "
            f"image_mask=None, text_mask=None{options})",
        )
        + "\n    -> fused, or (fused, aux) with return_aux=True\n```\n"
    )
    d = USAGE_DIM
    torch_example = (
        "```python\n"
        "import torch\n"
        "from fusion_spec.backends.torch import build\n\n"
        f'fusion = build("{kind}", dim={d})\n'
        f"fused = fusion(torch.randn(8, {d}), torch.randn(8, {d}))  # v, t: (B, D)\n"
        f"assert fused.shape == (8, {d})\n"
        "```\n"
    )
    keras_example = (
        "```python\n"
        "import os\n\n"
        'os.environ.setdefault("KERAS_BACKEND", "jax")  # before the first import of keras\n\n'
        "import numpy as np\n"
        "from fusion_spec.backends.keras import build\n\n"
        f'layer = build("{kind}", dim={d})\n'
        f'v, t = np.random.default_rng(0).normal(size=(2, 8, {d})).astype("float32")\n'
        f"fused = layer(v, t)\n"
        f"assert fused.shape == (8, {d})\n"
        "```\n"
    )
    return (
        signatures
        + "\nEvery spec field is a keyword of `build` ([Spec](#spec)); PyTorch:\n\n"
        + torch_example
        + "\nKeras:\n\n"
        + keras_example
    )


# --- the worked example -------------------------------------------------------------

#: One small call per rule: spec fields (beyond kind), batch, mode, noise and options.
#: Every parameter is drawn on a 0.1 grid from ``seed`` so that each number prints short.
#: D = 4, not 2: a LayerNorm of two features maps each to plus or minus its scale,
#: so at D = 2 whatever precedes it (the attention of ``simple``) left the printed
#: digits unchanged when removed. tests/docs/test_worked_examples.py plants removals
#: and checks that the digits change. input_norm="none": the rule's own math, the rule
#: page's formulas, without the default's standardisation of v and t.
EXAMPLES: dict[str, dict] = {
    "simple": {"fields": {"dim": 4, "input_norm": "none", "heads": 2, "layers": 1}, "batch": 1, "seed": 1},
    "concat_mlp": {"fields": {"dim": 4, "input_norm": "none", "hidden_mult": 1}, "batch": 1, "seed": 2},
    "gated": {"fields": {"dim": 4, "input_norm": "none"}, "batch": 1, "seed": 3},
    "film": {"fields": {"dim": 4, "input_norm": "none"}, "batch": 1, "seed": 4},
    "modality_dropout": {
        "fields": {"dim": 4, "input_norm": "none"},
        "batch": 1,
        "seed": 5,
        "training": True,
        "noise": {"drop_image": [0.1], "drop_text": [0.7]},
    },
    "transformer_concat": {"fields": {"dim": 4, "input_norm": "none", "heads": 2, "layers": 1}, "batch": 1, "seed": 6},
    "cross_attention": {"fields": {"dim": 4, "input_norm": "none", "heads": 2}, "batch": 1, "seed": 7},
    # seeds chosen so that every path runs: shomr's three samples are soft, hard on one
    # modality and hard on both; energy_aware_adaptive's take the three routes, above a
    # lowered budget (so that the energy loss is not 0)
    "shomr": {"fields": {"dim": 4, "input_norm": "none", "heads": 2}, "batch": 3, "seed": 7},
    "energy_aware_adaptive": {
        "fields": {"dim": 4, "input_norm": "none", "heads": 2, "energy_budget_mJ": 5.0},
        "batch": 3,
        "seed": 14,
    },
}


def example_inputs(kind: str):
    """The worked example's spec, parameters (on a 0.1 grid), inputs and noise."""
    import numpy as np

    ex = EXAMPLES[kind]
    s = spec.parse({"kind": kind, **ex["fields"]})
    rng = np.random.default_rng(ex["seed"])
    params = {}
    for q in s.params():
        if q.init.kind == "constant" and q.init.value == 1.0:  # LayerNorm scales around 1
            value = 1.0 + rng.integers(-5, 6, size=q.shape) / 10
        else:
            value = rng.integers(-9, 10, size=q.shape) / 10
        params[q.name] = np.asarray(value, dtype=np.float64)
    v = rng.integers(-9, 10, size=(ex["batch"], s.dim)) / 10
    t = rng.integers(-9, 10, size=(ex["batch"], s.dim)) / 10
    noise = {k: np.asarray(u, dtype=np.float64) for k, u in ex.get("noise", {}).items()}
    return s, params, v, t, noise


def example_outputs(kind: str, params: dict | None = None) -> dict[str, str]:
    """What the worked example prints: ``fused`` and each aux output it asserts, as the
    literals of the block (8 significant digits); ``params`` replaces its parameters."""
    from fusion_spec import fusion_ref

    ex = EXAMPLES[kind]
    s, drawn, v, t, noise = example_inputs(kind)
    training = ex.get("training", False)
    fused, aux = fusion_ref.forward(
        s,
        drawn if params is None else params,
        v,
        t,
        training=training,
        noise=noise or None,
        return_aux=True,
        **ex.get("options", {}),
    )
    shown = [a.name for a in s.aux(len(v), training=training) if a.role != "margin"]
    return {"fused": _literal(fused), **{name: _literal(aux[name]) for name in shown}}


def _literal(x, digits: int = 8) -> str:
    import numpy as np

    a = np.asarray(x)
    if a.ndim == 0:
        if a.dtype.kind != "f":
            return str(a.item())
        text = f"{a.item():.{digits}g}"
        return text if any(c in text for c in ".en") else text + ".0"  # stays a float
    return "[" + ", ".join(_literal(e, digits) for e in a) + "]"


def _wrap(prefix: str, body: str, width: int = 76) -> str:
    """``prefix + body`` broken after commas so that lines stay within ``width``
    characters (the code column of the site shows about 80)."""
    lines, line = [], prefix
    rows = re.split(r"(?<=\], )", body)  # break between rows first, inside a row if needed
    pieces = [p for row in rows for p in (re.split(r"(?<=, )", row) if len(row) > 60 else [row])]
    for piece in pieces:
        if len(line) + len(piece) > width and line.strip():
            lines.append(line.rstrip())
            line = " " * 8 + piece
        else:
            line += piece
    lines.append(line)
    return "\n".join(lines)


def example_block(kind: str) -> str:
    """One call with every number shown, as a runnable check against the reference.

    ``tests/docs/test_examples.py`` runs the block (the reference must reproduce the
    printed output), and ``--check`` regenerates it, so neither the numbers nor the
    call can drift from the reference.
    """
    s, params, v, t, noise = example_inputs(kind)
    training = EXAMPLES[kind].get("training", False)
    printed = example_outputs(kind)
    fields = {"kind": kind, **EXAMPLES[kind]["fields"]}
    lines = [
        "import numpy as np",
        "from fusion_spec import fusion_ref, spec",
        "",
        _wrap("s = spec.parse(", repr(fields) + ")"),
        "params = {",
    ]
    for name, value in params.items():
        lines.append(_wrap(f"    {name!r}: np.array(", _literal(value, 3) + "),"))
    lines.append("}")
    lines.append(_wrap("v = np.array(", _literal(v, 3) + ")"))
    lines.append(_wrap("t = np.array(", _literal(t, 3) + ")"))
    call = "s, params, v, t, return_aux=True"
    if training:
        lines.append("noise = {")
        for name, u in noise.items():
            lines.append(f"    {name!r}: np.array({_literal(u, 3)}),")
        lines.append("}")
        call = "s, params, v, t, training=True, noise=noise, return_aux=True"
    for key, value in EXAMPLES[kind].get("options", {}).items():
        call += f", {key}={value!r}"
    lines.append(f"fused, aux = fusion_ref.forward({call})")
    lines.append("")
    lines.append("# printed to 8 significant digits, so rounded by at most 5e-8 relative")
    lines.append(_wrap("expected = np.array(", printed.pop("fused") + ")"))
    lines.append("np.testing.assert_allclose(fused, expected, rtol=1e-7, atol=1e-12)")
    for name, value in printed.items():
        lines.append(
            _wrap(
                f"np.testing.assert_allclose(aux[{name!r}], ",
                value + ", rtol=1e-7, atol=1e-12)",
            )
        )
    mode = "training, with the noise shown" if training else "eval"
    head = (
        f"One call at D = {s.dim}, B = {len(v)} ({mode}) of the rule alone "
        "(`input_norm=\"none\"`: the formulas above, without the default's "
        "standardisation of v and t): every parameter, input and "
        "output. Parameters are drawn on a 0.1 grid so that each number prints short; "
        "the expected values come from the reference, and the block runs as a test.\n\n"
    )
    return head + "```python\n" + "\n".join(lines) + "\n```\n"


def io_block(kind: str) -> str:
    """Inputs, outputs and type constraints, in the manner of ONNX's operator pages."""
    cls = spec.RULES[kind]
    s = _spec(kind, DIM)
    inputs = [
        ["`v`", "`(B, D)` or `(B, L_v, D)`", "F", "image embedding, or image tokens"],
        ["`t`", "`(B, D)` or `(B, L_t, D)`", "F", "text embedding, or text tokens"],
        [
            "`present` (optional)",
            "`(B, 2)`",
            "bool (or int 0/1)",
            "which of (image, text) each sample has; see [Missing modalities](#missing-modalities)",
        ],
        [
            "`image_mask`, `text_mask` (optional)",
            "`(B, L_v)`, `(B, L_t)`",
            "bool (or int 0/1)",
            "the real tokens (True) and the padding of token inputs; see "
            "[Token sequences](../conventions.md#token-sequences)",
        ],
    ]
    noise_names = _noise_names(kind)
    if noise_names:
        listed = ", ".join(f"`{n}`" for n in noise_names)
        inputs.append(
            [
                "`noise` (optional)",
                "see [Noise inputs](#noise-inputs)",
                "float",
                f"uniform $[0, 1)$ arrays {listed}; the reference requires them in a "
                "stochastic call, a backend draws them when they are omitted",
            ]
        )
    for o in cls.call_options:
        inputs.append([f"`{o.name}` (call option)", "scalar", _code_union(o.type), o.doc])
    aux = s.aux(1, training=False)
    masked = ", ".join(f"`{a.name}`" for a in _masked_aux(s, 1))
    outputs = [["`fused`", "`(B, D)`", "F", "the fused embedding"]]
    own = ", ".join(f"`{a.name}`" for a in aux if a.role != "margin")
    outputs.append(
        [
            "`aux` (with `return_aux=True`)",
            "dict",
            "F, int" if any(a.dtype == "int" for a in aux) else "F",
            "see [Aux outputs](#aux-outputs): "
            + (f"{own}; {masked} with `present`" if own else f"{masked} with `present`"),
        ]
    )
    ints = [a.name for a in aux if a.dtype == "int"]
    text = "**Inputs**\n\n" + _table(["name", "shape", "type", "meaning"], inputs)
    text += f"\n**Token sequences**: {cls.token_semantics}\n"
    text += "\n**Outputs**\n\n" + _table(["name", "shape", "type", "meaning"], outputs)
    text += (
        "\n**Type constraints**\n\n"
        "- **F** (`v`, `t`, `fused`, float aux): the reference (`fusion_ref`) accepts any "
        "floating dtype and computes and returns **float64**; PyTorch casts the inputs to "
        "the module's parameter dtype (float32 by default; float64, bfloat16 or float16 "
        "after `module.to(dtype)`); Keras computes in the layer's compute dtype (float32 by "
        "default, or a dtype policy such as `mixed_bfloat16`).\n"
        "- Parameters: canonical float32 (`spec.init_params`, weight files); the reference "
        "reads them as float64.\n"
        "- `v` and `t` share their batch size B (B = 0 is allowed); a wrong shape, dtype, "
        "noise array or call option raises `InputError`, see "
        "[Errors](../errors.md#inputerror).\n"
    )
    with_present = aux + _masked_aux(s, 1)
    decisions = [a.name for a in with_present if a.role == "decision" and a.dtype != "int"]
    if decisions:
        names = ", ".join(f"`{n}`" for n in decisions)
        text += f"- Decisions {names}: 0/1 in F (float64 in the reference).\n"
    if aux:
        if ints:
            names = ", ".join(f"`{n}`" for n in ints)
            where = ", ".join(f"**{dtype}** in {who}" for who, dtype in ROUTE_DTYPES.items())
            text += f"- {names}: integer route index, {where}.\n"
        margins = [a.name for a in aux if a.role == "margin"]
        if margins:
            text += "- Margins (`*_margin`): float64, from the reference only.\n"
    return text


def dropout_block(kind: str) -> str:
    cls = spec.RULES[kind]
    if "dropout" not in cls.model_fields:
        return (
            "None: the rule has no `dropout` field and no element-wise dropout (the original "
            "models apply their own dropout to the fused output, outside the rule).\n"
        )
    default = cls.model_fields["dropout"].default
    text = (
        f"In training, element-wise dropout of rate `dropout` (default {default}) acts at, "
        "in forward order:\n\n"
    )
    text += "".join(f"{i}. {site}\n" for i, site in enumerate(cls.dropout_sites, 1))
    text += (
        "\nIt is the identity in eval. It is not part of the "
        "[noise contract](../conventions.md#noise-contract): the reference requires "
        "`dropout=0` in training, and the formulas above leave it out. The original models "
        "also apply a dropout to the fused output, outside the rule.\n"
    )
    return text


def differentiability_block(kind: str) -> str:
    """Which inputs and parameters receive gradient from the fused output."""
    cls = spec.RULES[kind]
    s = _spec(kind, DIM)
    names = [q.name for q in s.params()]
    silent = s.no_output_gradient()
    rows = [["`v`, `t`", "yes"]]
    if _noise_names(kind):
        rows.append(["noise arrays", "no: they are only compared with thresholds"])
    st = "straight_through" in cls.model_fields
    toggled = _spec(kind, DIM, straight_through=not s.straight_through) if st else None
    silent_then = toggled.no_output_gradient() if toggled else silent
    patterns = sorted({_INDEX.sub(".{i}.", n) for n in silent | silent_then})
    if patterns:
        listed = ", ".join(f"`{n}`" for n in patterns)
        if st:
            on = "no" if s.straight_through is False else "yes"
            rows.append(
                [
                    listed,
                    f"{'no' if on == 'no' else 'yes'} with the default "
                    f"`straight_through={s.straight_through}`; "
                    f"{'yes' if on == 'no' else 'no'} with "
                    f"`straight_through={not s.straight_through}`",
                ]
            )
        else:
            rows.append([listed, "no (by design)"])
    keys = sorted({_INDEX.sub(".{i}.", n) for n in names if n.endswith("attn.key.bias")})
    if keys:
        rows.append(
            [
                ", ".join(f"`{n}`" for n in keys),
                "zero up to rounding: it shifts every score of a query alike, which the "
                "softmax ignores",
            ]
        )
    rows.append(["every other parameter" if len(rows) > 1 else "every parameter", "yes"])
    text = _table(["input or parameter", "gradient from `fused`"], rows)
    aux = s.aux(1, training=False)
    if aux:
        values = [a.name for a in aux if a.role == "value"]
        steps = [a.name for a in aux if a.role != "value"]
        if values:
            text += (
                "\nThe aux values "
                + ", ".join(f"`{n}`" for n in values)
                + " are differentiable functions of the inputs and parameters"
            )
            text += (
                "; decisions and margins "
                + ", ".join(f"`{n}`" for n in steps)
                + " are piecewise constant (zero gradient).\n"
                if steps
                else ".\n"
            )
    chosen = (
        "multiplies a routed output by "
        "$1 + r_k - \\mathrm{sg}(r_k)$, where $\\mathrm{sg}$ stops the gradient: the "
        "value is unchanged, and the router receives the gradient "
        "$\\partial \\mathcal{L} / \\partial r_k = \\langle \\partial \\mathcal{L} / "
        "\\partial f, f \\rangle$ of each sample's chosen route"
    )
    if st and "straight_through_routes" in cls.model_fields:
        text += (
            "\nStraight-through (`straight_through=True`), with the default "
            f"`straight_through_routes={s.straight_through_routes!r}`, adds "
            "$\\sum_j (r_j - \\mathrm{sg}(r_j))\\,\\mathrm{sg}(y_j)$ over every route's "
            "output $y_j$ (a non-finite $y_j$ as 0), where $\\mathrm{sg}$ stops the gradient: "
            "the value is unchanged, and the router receives the gradient of the mixture "
            "$\\sum_j r_j y_j$, $\\partial \\mathcal{L} / \\partial r_j = \\langle "
            "\\partial \\mathcal{L} / \\partial f, y_j \\rangle$ for every route $j$. "
            f"`straight_through_routes='chosen'` {chosen}.\n"
        )
    elif st:
        text += f"\nStraight-through (`straight_through=True`) {chosen}.\n"
    return text


def links_block(kind: str) -> str:
    cls = spec.RULES[kind]
    manifest = ROOT / "conformance" / "golden" / "manifest.json"
    cases = [c["name"] for c in json.loads(manifest.read_text())["cases"] if c["rule"] == kind]
    return (
        f"- Spec: `spec/{kind}.py`, "
        f"[`{cls.__name__}`](../reference/spec.md#fusion_spec.spec.{cls.__name__}).\n"
        f"- Reference (the oracle): `fusion_ref/{kind}.py`, "
        f"[its source](../reference/fusion_ref.md#fusion_spec.fusion_ref.{kind}.{kind}).\n"
        f"- Backends: `backends/torch/{kind}.py`, `backends/keras/{kind}.py`.\n"
        f"- Golden vectors: {len(cases)} cases `{kind}_*` in "
        f"`conformance/golden/vectors/{kind}.safetensors` (index "
        "`conformance/golden/manifest.json`), "
        f"listed in the [case catalogue](../conformance.md#cases-of-{kind.replace('_', '_')}).\n"
    )


def missing_block(kind: str) -> str:
    """The rule's missing-modality semantics, from ``missing_semantics`` and its field."""
    cls = spec.RULES[kind]
    field = cls.model_fields["missing_modality"]
    text = spec_base.PRESENCE_PREAMBLE + "\n\n"
    text += (
        f"Spec field `missing_modality` (default `{field.default!r}`) chooses what a sample "
        "with one modality computes:\n\n"
    )
    for value, semantics in cls.missing_semantics.items():
        default = " (default)" if value == field.default else ""
        text += f"- `{value!r}`{default}: {semantics}\n"
    return text


RULE_GENERATORS: dict[str, Callable[[str], str]] = {
    "usage": usage_block,
    "io": io_block,
    "fields": fields_block,
    "params": params_block,
    "call-options": call_options_block,
    "noise": noise_block,
    "aux": aux_block,
    "cost": cost_block,
    "example": example_block,
    "links": links_block,
    "dropout": dropout_block,
    "differentiability": differentiability_block,
    "missing": missing_block,
}


# --- other pages ----------------------------------------------------------------------


def overview_block() -> str:
    """One row per rule; costs per route in a second table, so neither is wide."""
    rows, costs = [], []
    for kind, cls in spec.RULES.items():
        s = _spec(kind, DIM)
        count = sum(math.prod(p.shape) for p in s.params())
        stochastic = [
            mode
            for mode, training in (("training", True), ("eval", False))
            if s.noise(4, training=training)
        ]
        rows.append(
            [f"[`{kind}`]({kind}.md)", cls.summary, f"{count:,}", ", ".join(stochastic) or "never"]
        )
        routes = s.macs()
        for i, (route, n) in enumerate(routes.items()):
            costs.append([f"`{kind}`" if i == 0 else "", f"`{route}`", f"{n:,}"])
    header = ["rule", "what it computes", f"params at D = {DIM}", "draws noise in"]
    text = _table(header, rows)
    text += f"\nMultiply-accumulates per sample at D = {DIM}, per route:\n\n"
    return text + _table(["rule", "route", "MACs / sample"], costs)


# --- the "Choosing a rule" page -------------------------------------------------------

#: the benchmark runs the page reads (docs/performance.md quotes the same runs).
BENCH_JSON = ROOT / "benchmarks" / "cpu-2026-11-29.json"
TOWERS_JSON = DOCS / "assets" / "train_towers.json"
#: dims at which the cost table gives values, beside the formula.
CHOICE_DIMS = (256, 512)
#: dims at which a cost is read to write it as a polynomial of D (multiples of 8 heads);
#: the last one only checks the fit.
_POLY_DIMS = (64, 128, 192, 320)
#: the rule every measured time is divided by: the concatenation into an MLP, the
#: nearest rule to the training benchmark's baseline.
TIME_REFERENCE = "concat_mlp"
TIME_BATCHES = (256, 4096)
#: a median accuracy ratio below this marks a rule the towers benchmark could not train
#: with its defaults (a threshold, not a measurement).
TRAINS_AT = 0.9


def _relative(path: Path) -> str:
    """A data file as the page names it: from the repository root."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def poly_of_dim(cost: Callable[[int], int]) -> tuple[int, ...]:
    """Integer coefficients ``(c0, c1, c2)`` with ``cost(D) = c0 + c1 D + c2 D^2``.

    Solved from three dims of ``_POLY_DIMS`` and checked at the fourth: a cost that is
    no quadratic in D with integer coefficients raises.
    """
    from fractions import Fraction

    (x0, x1, x2), x3 = _POLY_DIMS[:3], _POLY_DIMS[3]
    y0, y1, y2 = (Fraction(cost(x)) for x in (x0, x1, x2))
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    c2 = (d12 - d01) / (x2 - x0)
    c1 = d01 - c2 * (x0 + x1)
    c0 = y0 - c1 * x0 - c2 * x0 * x0
    coefficients = (c0, c1, c2)
    if any(c.denominator != 1 for c in coefficients) or c0 + c1 * x3 + c2 * x3 * x3 != cost(x3):
        raise ValueError(f"cost {[cost(x) for x in _POLY_DIMS]} is no integer quadratic in D")
    return tuple(int(c) for c in coefficients)


def poly_text(coefficients: tuple[int, ...]) -> str:
    """``(5, 3, 2)`` -> ``$2D^2 + 3D + 5$``."""
    terms = []
    for power in (2, 1, 0):
        c = coefficients[power]
        if c == 0:
            continue
        unit = {2: "D^2", 1: "D", 0: ""}[power]
        number = "" if c == 1 and unit else str(c)
        terms.append(f"{number}{unit}")
    return "$" + (" + ".join(terms) or "0") + "$"


def param_count(kind: str, dim: int) -> int:
    """Values in the canonical parameters of the default spec at ``dim``."""
    return sum(math.prod(p.shape) for p in _spec(kind, dim).params())


def choosing_cost_block() -> str:
    rows = []
    for kind in spec.RULES:
        params = poly_of_dim(lambda d, k=kind: param_count(k, d))
        routes = _spec(kind, DIM).macs()
        macs = []
        for route in routes:
            formula = poly_text(poly_of_dim(lambda d, k=kind, r=route: _spec(k, d).macs()[r]))
            macs.append(formula if len(routes) == 1 else f"`{route}`: {formula}")
        rows.append(
            [f"[`{kind}`](rules/{kind}.md)", poly_text(params)]
            + [f"{param_count(kind, d):,}" for d in CHOICE_DIMS]
            + ["; ".join(macs)]
        )
    header = ["rule", "parameters"] + [f"at D = {d}" for d in CHOICE_DIMS]
    return _table(header + ["multiply-adds per sample"], rows)


def bench_times(path: Path = BENCH_JSON) -> dict[tuple[str, str, int], float]:
    """(rule, mode, batch) -> milliseconds per call of our torch module (median sample)."""
    rows = json.loads(path.read_text())["rows"]
    return {
        (r["rule"], r["mode"], r["batch"]): r["ms"]["ours"]
        for r in rows
        if (r["framework"], r["device"], r["precision"]) == ("torch", "cpu", "float32")
    }


def time_ratios(path: Path = BENCH_JSON) -> dict[tuple[str, str, int], float]:
    """(rule, mode, batch) -> time per call over ``TIME_REFERENCE``'s at that mode and batch."""
    ms = bench_times(path)
    return {
        (rule, mode, batch): t / ms[(TIME_REFERENCE, mode, batch)]
        for (rule, mode, batch), t in ms.items()
    }


def choosing_time_block() -> str:
    machine = json.loads(BENCH_JSON.read_text())["machine"]
    ratio = time_ratios()
    columns = [(mode, b) for mode in ("eval", "train") for b in TIME_BATCHES]
    names = {"eval": "eval", "train": "training step"}
    rows = [
        [f"`{kind}`"] + [f"{ratio[(kind, mode, b)]:.2f}" for mode, b in columns]
        for kind in spec.RULES
    ]
    text = (
        f"Time per call over `{TIME_REFERENCE}`'s at the same batch and mode: PyTorch "
        f"{machine['torch']}, float32, eager, on a {machine['cpu_count']}-core "
        f"{machine['cpu']} ({machine['threads']} threads), D = {machine['dim']}, measured "
        f"{machine['date']} by `benchmarks/bench.py` (`{_relative(BENCH_JSON)}`; "
        "milliseconds on the [performance page](performance.md)).\n\n"
    )
    header = ["rule"] + [f"{names[mode]}, B = {b}" for mode, b in columns]
    return text + _table(header, rows)


@functools.cache
def _towers():
    """``benchmarks/towers.py``, whose functions compute docs/training.md's tables."""
    import importlib.util

    loader = importlib.util.spec_from_file_location("towers", ROOT / "benchmarks" / "towers.py")
    module = importlib.util.module_from_spec(loader)
    sys.modules.setdefault("towers", module)  # its dataclasses look their module up
    loader.loader.exec_module(module)
    return module


#: the accuracy columns: (scenario, framework, input_norm setting, heading).
ACCURACY_COLUMNS = (
    ("complete", "torch", "batch", "complete, PyTorch"),
    ("complete", "keras-jax", "batch", "complete, Keras (JAX)"),
    ("missing_mask", "torch", "batch", "30% missing, mask, PyTorch"),
    ("missing_no_mask", "torch", "batch", "30% missing, no mask, PyTorch"),
    ("complete", "torch", "none", 'complete, PyTorch, `input_norm="none"`'),
)


def accuracy_ratios(path: Path = TOWERS_JSON) -> dict[tuple[str, str, str, str], float]:
    """(scenario, framework, kind, input_norm) -> median over seeds of the accuracy over
    the baseline's (``towers.ratios``: same framework and seed)."""
    import numpy as np

    towers = _towers()
    report = json.loads(path.read_text())
    out = {}
    for scenario in towers.SCENARIOS:
        for (label, fw), seeds in towers.ratios(report, scenario).items():
            kind, fields = towers.parse_rule(label)
            if set(fields) - {"input_norm"} or not seeds:
                continue
            norm = towers.input_norm_of(label)
            out[(scenario, fw, kind, norm)] = float(np.median(list(seeds.values())))
    return out


def choosing_accuracy_block() -> str:
    ratio = accuracy_ratios()
    towers = _towers()
    report = json.loads(TOWERS_JSON.read_text())
    rows = []
    for kind in spec.RULES:
        cells = [ratio.get((sc, fw, kind, norm)) for sc, fw, norm, _ in ACCURACY_COLUMNS]
        rows.append([f"`{kind}`"] + ["" if c is None else f"{c:.2f}" for c in cells])
    text = (
        "Median over seeds of the test accuracy over the baseline's (concatenate, then an "
        "MLP) of the same framework and seed, in the two-tower benchmark of the "
        "[training page](training.md#both-towers-trained-from-scratch) "
        f"(`{_relative(TOWERS_JSON)}`, {report['config']['epochs']} epochs, "
        f"D = {report['config']['dim']}; seeds: complete "
        f'{towers.seeds_of(report, "complete")}). The defaults (`input_norm="batch"`) except '
        "in the last column. The missing-modality columns: "
        f"{report['config']['fraction_missing']:.0%} of the training samples lack one "
        "modality, tested on complete samples; with the presence mask, over the "
        "baseline's accuracy on complete data (the baseline takes no mask); without it, "
        "over the baseline's on the same data.\n\n"
    )
    return text + _table(["rule"] + [h for *_, h in ACCURACY_COLUMNS], rows)


def _randomness(kind: str, training: bool) -> str:
    """What a call draws: its noise arrays, with the call option or spec setting that
    adds them, and element-wise dropout."""
    parts, seen = [], set()
    settings = [("", {})] + [(f"spec `{n}={v!r}`", {n: v}) for n, v in _variants(kind)]
    for setting, fields in settings:
        for (mode, options), rows in _noise_rows(kind, fields).items():
            names = [row[0] for row in rows if row[0] not in seen]
            if mode != training or not names:
                continue
            seen.update(names)
            when = _when(mode, options, setting).partition(", ")[2]
            parts.append(", ".join(names) + (f" ({when})" if when else ""))
    if training and _spec(kind, DIM).has_elementwise_dropout():
        parts.append(f"dropout {_spec(kind, DIM).dropout:g}")
    return "; ".join(parts) or "nothing"


def choosing_behaviour_block() -> str:
    ratio = accuracy_ratios()
    rows = []
    for kind, cls in spec.RULES.items():
        field = cls.model_fields["missing_modality"]
        others = [f"`{v!r}`" for v in cls.missing_semantics if v != field.default]
        missing = f"`{field.default!r}`" + (f" (or {', '.join(others)})" if others else "")
        default = ratio.get(("complete", "torch", kind, "batch"))
        if default is None:
            trains = "not measured"
        elif default < TRAINS_AT:
            trains = f"{default:.2f}: no"
        else:
            trains = f"{default:.2f}: yes"
        rows.append(
            [
                f"`{kind}`",
                f"[{missing}](rules/{kind}.md#missing-modalities)",
                _randomness(kind, True),
                _randomness(kind, False),
                trains,
            ]
        )
    header = ["rule", "missing modality", "training draws", "eval draws", "from scratch"]
    return _table(header, rows) + (
        "\nFrom scratch: the median accuracy ratio of the spec's defaults "
        '(`input_norm="batch"`, PyTorch, complete data) in the two-tower benchmark; below '
        f'{TRAINS_AT:g} ("no") the defaults did not train the rule there, from it up ("yes") '
        "they did.\n"
    )


def missing_semantics_block() -> str:
    """Each rule's default missing-modality semantics, verbatim from the spec."""
    text = ""
    for kind, cls in spec.RULES.items():
        default = cls.model_fields["missing_modality"].default
        text += f"- [`{kind}`](rules/{kind}.md#missing-modalities), `{default!r}`: "
        text += cls.missing_semantics[default] + "\n"
    return text


# --- the performance page -------------------------------------------------------------

#: the host-bound run (D = 8, one thread) of docs/performance.md.
HOST_JSON = ROOT / "benchmarks" / "cpu-host-2026-11-29.json"
#: bench.py arguments that name output files, left out of the command a page quotes.
_OUTPUT_FLAGS = ("--json", "--markdown", "--svg")


@functools.cache
def _bench():
    """``benchmarks/bench.py``, whose ``_cell`` writes its own Markdown tables."""
    import importlib.util

    loader = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(loader)
    sys.modules.setdefault("bench", module)
    loader.loader.exec_module(module)
    return module


def _bench_command(argv: list[str]) -> str:
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in _OUTPUT_FLAGS:
            skip = True
        else:
            kept.append(a)
    return "benchmarks/bench.py " + " ".join(kept)


def _loads(loads: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in loads)


def bench_run_sentence(path: Path) -> str:
    """When, how and on what a benchmark JSON was measured, from its ``machine``."""
    m = json.loads(path.read_text())["machine"]
    return (
        f"Measured {m['date']} with `{_bench_command(m['argv'])}` on a {m['cpu_count']}-core "
        f"{m['cpu']}, {m['threads']} thread{'s' if m['threads'] != 1 else ''}, D = {m['dim']}, "
        f"torch {m['torch']}; load average (1, 5, 15 minutes) "
        f"{_loads(m['load_average_at_start'])} at the start and "
        f"{_loads(m['load_average_at_end'])} at the end. "
        f"Raw figures: `{_relative(path)}`.\n"
    )


def _aa_range(rows: list[dict]) -> tuple[float, float]:
    aa = [r["speedup"]["original_again"] for r in rows if "original_again" in r["speedup"]]
    return min(aa), max(aa)


def _bench_table(rows: list[dict], mode: str) -> str:
    bench = _bench()
    group = [r for r in rows if r["mode"] == mode]
    batches = sorted({r["batch"] for r in group})
    out = []
    for kind in spec.RULES:
        cells = [f"`{kind}`"]
        for b in batches:
            r = next((r for r in group if r["rule"] == kind and r["batch"] == b), None)
            cells.append(bench._cell(r) if r else "")
        last = next(r for r in group if r["rule"] == kind and r["batch"] == batches[-1])
        out.append(cells + [f"{last['of_gemm']:.2f}"])
    header = ["rule"] + [f"B={b}" for b in batches] + [f"of GEMM (B={batches[-1]})"]
    return _table(header, out)


def perf_cpu_block() -> str:
    rows = json.loads(BENCH_JSON.read_text())["rows"]
    low, high = _aa_range(rows)
    text = bench_run_sentence(BENCH_JSON) + (
        "\nMilliseconds per call (median sample); in brackets the original's time over ours "
        "(above 1: ours is faster); `A/A`: the original over a second copy of itself, the "
        f"cell's noise floor ({low:.2f}x to {high:.2f}x in this run). "
        '`energy_aware_adaptive` in eval: "vs our routes" is the original\'s structure on '
        "our argmax routes over ours (the original samples its route, a different "
        'function). Training rows of the routing rules: "without straight-through" is our '
        "module with `straight_through=False`. `of GEMM`: the rule's multiply-accumulate "
        "rate over torch's `(B, D) x (D, 4D)` product at that batch.\n"
    )
    text += "\n### Eval forward (torch, CPU, float32, eager)\n\n" + _bench_table(rows, "eval")
    text += "\n### Training step, forward + backward (torch, CPU, float32, eager)\n\n"
    return text + _bench_table(rows, "train")


#: Training steps re-measured after a rule's default became straight_through_routes="all"
#: (the 2026-11-29 run predates it): rule -> (raw figures, what "all" computes in training)
RETRAIN_JSON = {
    "energy_aware_adaptive": (
        ROOT / "benchmarks" / "cpu-2026-12-07-eaa-train.json",
        'the "both" path for every sample',
    ),
    "shomr": (
        ROOT / "benchmarks" / "cpu-2026-12-07-shomr-train.json",
        'every path (soft, "both" and both projections) for every sample',
    ),
}


def _retrain_block(kind: str) -> str:
    """``kind``'s re-measured training row, with its own run sentence."""
    path, computes = RETRAIN_JSON[kind]
    rows = json.loads(path.read_text())["rows"]
    bench = _bench()
    batches = sorted({r["batch"] for r in rows})
    cells = [bench._cell(next(r for r in rows if r["batch"] == b)) for b in batches]
    table = _table([f"B={b}" for b in batches], [cells])
    return (
        bench_run_sentence(path)
        + f"\nThe training row of `{kind}` in the table above was measured "
        f"before its default became `straight_through_routes=\"all\"`, which computes "
        f"{computes} in training. Re-measured on its own (the original's "
        "own milliseconds differ between the two runs: compare the ratios, not the "
        "milliseconds, with the table above); \"chosen-route straight-through\" is our module with "
        "`straight_through_routes=\"chosen\"`, the cost before the change.\n\n" + table
    )


def perf_eaa_train_block() -> str:
    return _retrain_block("energy_aware_adaptive")


def perf_shomr_train_block() -> str:
    return _retrain_block("shomr")


def perf_host_block() -> str:
    rows = json.loads(HOST_JSON.read_text())["rows"]
    low, high = _aa_range(rows)
    bench = _bench()
    batches = sorted({r["batch"] for r in rows})
    cells = {(r["rule"], r["mode"]): bench._cell(r) for r in rows}
    table = _table(
        ["rule", "eval forward", "training step"],
        [[f"`{k}`", cells[(k, "eval")], cells[(k, "train")]] for k in spec.RULES],
    )
    return (
        bench_run_sentence(HOST_JSON)
        + (
            f"\nMilliseconds per call at B = {', '.join(map(str, batches))}, original / ours in "
            f"brackets, A/A from {low:.2f}x to {high:.2f}x:\n\n"
        )
        + table
    )


#: benchmarks/tokens_bench.py: token sequences with padding against torch.nn.
TOKENS_JSON = ROOT / "docs" / "assets" / "tokens_bench.json"


def perf_tokens_block() -> str:
    """The token benchmark's table: milliseconds per call and torch.nn / ours."""
    doc = json.loads(TOKENS_JSON.read_text())
    c, m = doc["config"], doc["machine"]
    rows = []
    for r in doc["rows"]:
        rows.append([
            f"`{r['rule']}`", str(r["L"]), r["mode"], f"{r['ms']['ours']:.1f}",
            f"{r['ms']['torch_nn']:.1f}", f"{r['ratio']:.2f}x", f"{r['max_abs_diff']:.1e}",
        ])
    head = (
        f"Measured {doc['date']} with `benchmarks/tokens_bench.py` on {m['cpus']} CPU cores, "
        f"{m['threads']} threads, torch {m['torch']}, load average {m['load']:.2f} at the "
        f"start; B = {c['batch']}, D = {c['dim']}, {c['heads']} heads, {c['dtype']}; real "
        f"lengths {c['real_lengths']}. Raw figures: `{_relative(TOKENS_JSON)}`.\n\n"
    )
    return head + _table(
        ["rule", "L per modality", "mode", "ours ms", "torch.nn ms", "torch.nn / ours",
         "max abs diff"],
        rows,
    )


#: benchmarks/memory_bench.py: extra memory of one eval call at a large batch.
MEMORY_JSON = ROOT / "docs" / "assets" / "memory_bench.json"


def perf_memory_block() -> str:
    """The memory benchmark's table (whole batch against chunked) and the JAX growth."""
    doc = json.loads(MEMORY_JSON.read_text())
    m = doc["machine"]
    cells = {(r["backend"], r["rule"], r["setting"]): r for r in doc["rows"]}
    order = sorted({(r["backend"], r["rule"]) for r in doc["rows"]},
                   key=lambda k: (k[0] != "torch", list(spec.RULES).index(k[1])))
    rows = []
    for backend, rule in order:
        row = [backend, f"`{rule}`"]
        for setting in ("whole", "chunked"):
            r = cells.get((backend, rule, setting))
            row.append(f"{r['extra_bytes'] / 2**20:.0f} MiB ({r['ratio']:.2f}x)" if r else "")
        rows.append(row)
    text = (
        f"Measured {m['date']} with `benchmarks/memory_bench.py "
        f"{' '.join(a for a in m['argv'] if not a.endswith('.json') and a != '--json')}` on "
        f"{m['cpu_count']} CPU cores, torch {m['torch']}, keras {m['keras']}; B = {doc['batch']}, "
        f"D = {doc['dim']}, inputs {2 * doc['batch'] * doc['dim'] * 4 / 2**20:.0f} MiB "
        f"(`v` and `t`, float32). Raw figures: `{_relative(MEMORY_JSON)}`.\n\n"
    )
    text += _table(
        ["backend", "rule", "whole batch (x inputs)", "chunked, the default (x inputs)"], rows
    )
    g = doc.get("jax_growth")
    if g:
        text += (
            f"\nKeras on JAX, {g['calls']} calls of `{g['rule']}` at D = {g['dim']}: the resident "
            f"set grows {g['bytes_per_new_batch_size'] / 2**20:.1f} MiB per new batch size and "
            f"{g['bytes_per_repeated_call'] / 2**20:.2f} MiB per call repeating one size; after "
            "`jax.clear_caches()`, "
            f"{g['bytes_per_new_batch_size_after_clear_caches'] / 2**20:.1f} MiB per new size.\n"
        )
    return text


def perf_losses_block() -> str:
    """Every cell whose ratio prints below 1.00x (the original faster), beside its A/A."""
    rows = []
    runs = [(BENCH_JSON, "D = 512"), (HOST_JSON, "host-bound")]
    runs += [(path, "D = 512, re-measured") for path, _ in RETRAIN_JSON.values()]
    for path, run in runs:
        measured = json.loads(path.read_text())["rows"]
        order = {kind: i for i, kind in enumerate(spec.RULES)}
        for r in sorted(measured, key=lambda r: (order[r["rule"]], r["mode"], r["batch"])):
            ratio = r["speedup"]["ours"]
            if round(ratio, 2) < 1:
                aa = r["speedup"].get("original_again")
                rows.append(
                    [
                        f"`{r['rule']}`",
                        "eval" if r["mode"] == "eval" else "training",
                        run,
                        r["batch"],
                        f"{ratio:.2f}x",
                        f"{aa:.2f}x" if aa else "",
                    ]
                )
    return _table(["rule", "mode", "run", "B", "original / ours", "A/A"], rows)


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


TRAIN_JSON = DOCS / "assets" / "train_bench.json"
#: an accuracy within this of chance reads "at chance" (the task's chance is 1/3).
AT_CHANCE = 0.05


def untrained_expected_energy(fields: dict | None = None) -> float:
    """``energy_aware_adaptive``'s expected energy (mJ) of an untrained router: its route
    logits start at the bias ``router_init_bias`` (the weights' share is small), so the
    route probabilities are its softmax; a ``None`` bias (the original) is uniform."""
    s = _spec("energy_aware_adaptive", DIM, **(fields or {}))
    bias = s.router_init_bias or (0.0, 0.0, 0.0)
    weights = [math.exp(b - max(bias)) for b in bias]
    return sum(c * w for c, w in zip(s.energy_costs_mJ, weights, strict=True)) / sum(weights)


def train_notes_block() -> str:
    """The training benchmark's findings in prose, every figure read from its JSON."""
    data = json.loads(TRAIN_JSON.read_text())
    runs = data["results"]

    def of(rule: str, framework: str = "torch") -> list[dict]:
        return sorted(
            (r for r in runs if r["rule"] == rule and r["framework"] == framework),
            key=lambda r: r["seed"],
        )

    chance_seeds = [
        str(r["seed"])
        for r in of("transformer_concat:modality_embedding_std=1.0")
        if r["accuracy"] < data["chance"] + AT_CHANCE
    ]
    energy = of("energy_aware_adaptive")
    final = [r["train_expected_energy_mJ_last"] for r in energy]
    both = sum(r["route_share"][2] / sum(r["route_share"]) for r in energy) / len(energy)
    s = _spec("energy_aware_adaptive", DIM)
    seeds = ", ".join(chance_seeds) if chance_seeds else "none"
    return (
        "The rows with a `field=value` suffix are the original's options (`--original`), for\n"
        "comparison: without the straight-through gradient both routing rules stay far below\n"
        "the baseline in both frameworks, and `N(0, 1)` modality embeddings left PyTorch's\n"
        f"`transformer_concat` at chance for seed {seeds}.\n\n"
        "With its defaults, `energy_aware_adaptive`'s energy term acts: an untrained router's\n"
        f"expected energy is about {untrained_expected_energy():.1f} mJ (its route logits start "
        f"at `router_init_bias`),\nabove the {s.energy_budget_mJ:g} mJ budget; in PyTorch the "
        f"batch's expected energy ends training at\n{min(final):.1f} to {max(final):.1f} mJ, "
        f'just under it, with {100 * both:.0f}% of test samples on the "both" route\n'
        "(mean over the seeds).\n\n"
        f"The figures above come from one run on the machine the JSON records as\n"
        f"`{data['machine']}`: {data['wall_seconds'] / 60:.0f} minutes of wall time, of which "
        "the training times in the JSON\nare a noisy share. Accuracy does not depend on the load.\n"
        + _rerun_note(data.get("rerun"))
    )


def _rerun_note(rerun: dict | list[dict] | None) -> str:
    """The sentences for runs re-made after a default changed (the JSON's ``rerun``: one
    record or a list of them, oldest first)."""
    if not rerun:
        return ""
    out = ""
    for r in [rerun] if isinstance(rerun, dict) else rerun:
        rules = ", ".join(f"`{k}`" for k in r["rules"])
        out += (f"The default runs of {rules} were re-made when {r['why']}: "
                f"{r['wall_seconds'] / 60:.1f} minutes on `{r['machine']}`.\n")
    return out


#: benchmarks/route_code_probe.py: shomr's routes on complete test samples, by class
ROUTE_CODE_JSON = DOCS / "assets" / "route_code_probe.json"


def route_code_block() -> str:
    """Per seed and label, the hard complete test samples on the image route, by text
    class, and the accuracy on the complete samples (``route_code_probe.py``'s runs)."""
    data = json.loads(ROUTE_CODE_JSON.read_text())
    rows = []
    for r in sorted(data["runs"], key=lambda r: (r["rule"] != "shomr", r["seed"])):
        image = r["routes"]["image"]
        rows.append([
            f"`{r['rule'].replace(chr(34), '')}`",
            r["seed"],
            f"{r['accuracy']:.3f}",
            image["samples"],
            " / ".join(map(str, image["text_class"])),
            f"{image['accuracy']:.3f}" if image["accuracy"] is not None else "-",
        ])
    setups = sorted({r["setup"] for r in data["runs"]})
    return (
        f"`benchmarks/route_code_probe.py`, trainer {', '.join(setups)}, 30% missing, "
        "the mask in training and test: over the complete test samples, the accuracy, "
        "the hard samples the router sends to the image route, their count per text "
        "class, and the accuracy on them. Raw figures (the image classes too): "
        "[`assets/route_code_probe.json`](assets/route_code_probe.json), "
        f"{data['wall_seconds'] / 60:.0f} minutes on `{data['machine']}`.\n\n"
        + _table(["rule", "seed", "accuracy", "image route", "by text class",
                  "accuracy there"], rows)
    )


#: benchmarks/mask_fill_probe.py: one change at a time in the layer under the mask
MASK_PROBE_JSON = DOCS / "assets" / "mask_fill_probe.json"


def mask_probe_block() -> str:
    """``cross_attention``'s probe variants beside the towers' runs of the same seeds
    (``mask_fill_probe.markdown``)."""
    import importlib.util

    _towers()  # the probe imports it by name
    loader = importlib.util.spec_from_file_location(
        "mask_fill_probe", ROOT / "benchmarks" / "mask_fill_probe.py")
    probe = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(probe)
    data = json.loads(MASK_PROBE_JSON.read_text())
    report = json.loads(TOWERS_JSON.read_text())
    towers = probe.towers
    default = spec.RULES["cross_attention"].model_fields["missing_modality"].default
    earlier = probe.EARLIER_KIND["cross_attention"]
    patched = ", ".join([f"`{default}`"] + [f"`{k}={json.dumps(v)}`" for k, v in earlier.items()])
    return (
        "`benchmarks/mask_fill_probe.py`'s runs of `cross_attention` "
        "([`assets/mask_fill_probe.json`](assets/mask_fill_probe.json)), each paired by "
        "seed with the towers' runs of its trainer, over the last "
        f"{towers.POOL_EPOCHS} epochs, the mean and {towers.NOISE_SE_WORDS} its standard "
        "error. Variant: the variant's mask minus no mask, accuracy on complete samples. "
        f"Change: the variant minus the towers' runs with the mask of the layer the "
        f"variants patch ({patched}), accuracy and test loss (the loss over the seeds whose "
        "towers runs recorded it, counted in brackets). The layer column gives the fields "
        "the run set; `key_mask` never reads an absent row, so there `input_norm_absent` "
        "changes nothing.\n\n"
        + probe.markdown(data, report, "cross_attention") + "\n"
    )


def pages() -> dict[str, dict[str, Callable[[], str]]]:
    """docs-relative page -> {block name: generator}; every listed block must be present."""
    out: dict[str, dict[str, Callable[[], str]]] = {
        "rules/index.md": {"overview": overview_block},
        "conventions.md": {"tolerances": tolerances_block, "measurements": measurements_block},
        "choosing.md": {
            "choose-cost": choosing_cost_block,
            "choose-time": choosing_time_block,
            "choose-accuracy": choosing_accuracy_block,
            "choose-behaviour": choosing_behaviour_block,
            "choose-missing": missing_semantics_block,
        },
        "training.md": {"train-notes": train_notes_block, "route-code": route_code_block,
                        "mask-probe": mask_probe_block},
        "performance.md": {
            "perf-cpu": perf_cpu_block,
            "perf-eaa-train": perf_eaa_train_block,
            "perf-shomr-train": perf_shomr_train_block,
            "perf-host": perf_host_block,
            "perf-losses": perf_losses_block,
            "perf-tokens": perf_tokens_block,
            "perf-memory": perf_memory_block,
        },
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
