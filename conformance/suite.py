"""The checks of the suite and how one adapter is run through them.

Four categories, each check named ``rule/category/name``:

* ``forward``: one per case: output and aux against the reference
  (``conformance.compare``);
* ``gradient``: one per gradient case (``conformance.gradients``);
* ``distribution``: one per trial with the backend's own RNG
  (``conformance.distribution``);
* ``property``: per rule: eval output identical across calls; every
  parameter registered and round-tripping through canonical params; no NaN or
  inf for finite inputs, from zero to ``1e4``.

Statuses: ``pass``; ``fail`` (message points at the tensor, param or statistic);
``boundary`` (only decisions within the float rounding bound of the reference
margin differ; reported, not passed); ``n/a`` (with the adapter's reason);
``error`` (the adapter raised); ``xfail``/``xpass`` after an expected-failures file.
"""

from __future__ import annotations

import fnmatch
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from fusion_spec import fusion_ref, spec

from . import distribution, gradients
from .adapter import Adapter, NotSupported
from .cases import BATCH, Case, all_cases, cases_of, inputs
from .compare import compare_decision, compare_values
from .diagnose import diagnose

CATEGORIES = ("forward", "gradient", "distribution", "property")


@dataclass
class Outcome:
    """The result of one check on one adapter."""

    status: str
    message: str = ""
    tensors: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Check:
    """One named check; ``run(adapter)`` returns its ``Outcome``."""

    rule: str
    category: str
    name: str
    run: Callable[[Adapter], Outcome]
    doc: str = ""

    @property
    def id(self) -> str:
        return f"{self.rule}/{self.category}/{self.name}"


# --- forward -----------------------------------------------------------------------------


@cache
def reference(name: str):
    """The reference's ``(fused, aux)`` of case ``name`` (cached per process)."""
    c = next(c for c in all_cases() if c.name == name)
    return fusion_ref.forward(
        c.spec,
        c.params,
        c.v,
        c.t,
        training=c.training,
        **c.call_masks,
        noise=c.noise,
        return_aux=True,
        **c.options,
    )


def _copy_noise(noise):
    return None if noise is None else {k: u.copy() for k, u in noise.items()}


def _present_kwargs(adapter: Adapter, present: np.ndarray | None) -> dict | None:
    """``{"present": ...}`` for the adapter call; ``None`` when the adapter cannot take it."""
    if present is None:
        return {}
    if not getattr(adapter, "supports_present", False):
        return None
    return {"present": present.copy()}


def _call_kwargs(adapter: Adapter, case: Case) -> dict | str:
    """The masks of the adapter call (``present``, ``image_mask``, ``text_mask``), or the
    reason the adapter cannot run the case (it takes no presence mask or no tokens)."""
    present = _present_kwargs(adapter, case.present)
    if present is None:
        return NO_PRESENT
    if case.v.ndim == 3 or case.t.ndim == 3 or case.image_mask is not None or case.text_mask is not None:
        if not getattr(adapter, "supports_tokens", False):
            return NO_TOKENS
        for name in ("image_mask", "text_mask"):
            mask = getattr(case, name)
            if mask is not None:
                present[name] = mask.copy()
    return present


NO_PRESENT = (
    "the adapter does not take a presence mask (set supports_present = True and accept "
    "present= in forward and gradients)"
)

NO_TOKENS = (
    "the adapter does not take token sequences (set supports_tokens = True and accept "
    "(B, L, D) inputs and image_mask=, text_mask= in forward and gradients)"
)


NO_AUX_GRADIENTS = (
    "the adapter does not take aux loss terms (set supports_aux_gradients = True and accept "
    "aux_cotangents= in gradients)"
)


def check_forward(adapter: Adapter, case: Case) -> Outcome:
    s, B = case.spec, case.v.shape[0]
    reason = adapter.not_applicable(s, training=case.training)
    if reason:
        return Outcome("n/a", reason)
    present = _call_kwargs(adapter, case)
    if isinstance(present, str):
        return Outcome("n/a", present)
    model = adapter.build(s, case.params)
    out, aux = adapter.forward(
        model,
        case.v.copy(),
        case.t.copy(),
        training=case.training,
        noise=_copy_noise(case.noise),
        options=dict(case.options),
        **present,
    )
    ref_out, ref_aux = reference(case.name)
    declared = s.call_aux(
        B, training=case.training, present=case.masked, tokens=case.tokens, **case.options
    )
    problems, boundary = [], np.zeros(B, dtype=bool)
    for a in declared:
        if a.role != "decision":
            continue
        margin = ref_aux.get(a.margin) if a.margin else None
        d = compare_decision(
            a.name,
            aux.get(a.name),
            ref_aux[a.name],
            margin,
            adapter.dtype,
            exact=case.exact_decisions,
        )
        boundary |= d.boundary
        if not d.ok:
            problems.append(d.message)
    rows = ~boundary
    reports = [compare_values("output", out, ref_out, adapter.dtype, rows=rows)]
    if case.training and s.input_norm == "batch":  # the state a training call leaves
        held = adapter.canonical_params(model)
        for name, value in fusion_ref.running_stats(
            s, case.params, case.v, case.t, **case.call_masks
        ).items():
            reports.append(compare_values(name, held.get(name), value, adapter.dtype))
    for a in declared:
        if a.role == "value":
            per_sample = len(a.shape) > 0 and a.shape[0] == B
            reports.append(
                compare_values(
                    a.name,
                    aux.get(a.name),
                    ref_aux[a.name],
                    adapter.dtype,
                    rows=rows if per_sample else None,
                )
            )
    problems += [r.message for r in reports if not r.ok]
    tensors = [r.as_dict() for r in reports]
    if not reports[0].ok and not boundary.any():
        hints = diagnose(case, out, adapter.dtype)
        if hints:
            problems.append("hint: the output matches the reference with " + " / ".join(hints))
    if problems:
        return Outcome("fail", "; ".join(problems), tensors)
    if boundary.any():
        idx = np.flatnonzero(boundary).tolist()
        return Outcome(
            "boundary",
            f"samples {idx}: a decision differs where the reference margin is within the "
            f"{adapter.dtype} rounding bound; the rest agrees",
            tensors,
        )
    return Outcome("pass", "", tensors)


# --- gradient ------------------------------------------------------------------------------


@cache
def expected_gradients(name: str) -> gradients.Expected:
    """The case's finite-difference gradients (the reference's, float64), computed once per
    run: with ``SHARED_EXPECTED`` set (the bundled run sets it for itself and its Keras
    subprocesses) they go through files there, so the processes of one run share them."""
    shared = os.environ.get(SHARED_EXPECTED)
    if shared:
        cached = gradients.load_expected(Path(shared) / f"{name}.npz")
        if cached is not None:
            return cached
    expected = gradients.finite_differences(next(c for c in all_cases() if c.name == name))
    if shared:
        gradients.save_expected(expected, Path(shared) / f"{name}.npz")
    return expected


#: Environment variable naming a directory where one run's processes share expected gradients.
SHARED_EXPECTED = "FUSION_CONFORMANCE_SHARED_EXPECTED"


def check_gradient(adapter: Adapter, case: Case) -> Outcome:
    reason = adapter.not_applicable(case.spec, training=case.training)
    if reason:
        return Outcome("n/a", reason)
    present = _call_kwargs(adapter, case)
    if isinstance(present, str):
        return Outcome("n/a", present)
    aux_cotangents = gradients.aux_cotangents(case)
    if aux_cotangents:
        if not getattr(adapter, "supports_aux_gradients", False):
            return Outcome("n/a", NO_AUX_GRADIENTS)
        present = {**present, "aux_cotangents": {k: r.copy() for k, r in aux_cotangents.items()}}
    model = adapter.build(case.spec, case.params)
    try:
        grads = adapter.gradients(
            model,
            case.v.copy(),
            case.t.copy(),
            gradients.cotangent(case),
            training=case.training,
            noise=_copy_noise(case.noise),
            options=dict(case.options),
            **present,
        )
    except NotSupported as e:
        return Outcome("n/a", str(e))
    expected = expected_gradients(case.name)
    ok, problems, figures = gradients.compare_gradients(case.spec, expected, grads, adapter.dtype)
    if case.present is not None:
        problems += gradients.absent_rows_gradient(grads, case.present)
        ok = not problems
    problems += gradients.stopped_rows_gradient(grads, case)
    ok = ok and not problems
    if case.image_mask is not None or case.text_mask is not None:
        problems += gradients.padding_gradient(grads, case.image_mask, case.text_mask)
        ok = not problems
    return Outcome("pass" if ok else "fail", "; ".join(problems), figures)


# --- distribution ----------------------------------------------------------------------


def check_trial(adapter: Adapter, trial: distribution.Trial) -> Outcome:
    reason = adapter.not_applicable(trial.spec, training=trial.training)
    if reason:
        return Outcome("n/a", reason)
    if _present_kwargs(adapter, trial.present) is None:
        return Outcome("n/a", NO_PRESENT)
    ok, message, stats = distribution.run_trial(adapter, trial)
    return Outcome("pass" if ok else "fail", message, stats=stats)


# --- properties --------------------------------------------------------------------------


def _default_case(rule: str) -> Case:
    return cases_of(rule)[0]


def check_eval_deterministic(adapter: Adapter, rule: str) -> Outcome:
    c = _default_case(rule)
    model = adapter.build(c.spec, c.params)
    runs = [
        adapter.forward(model, c.v.copy(), c.t.copy(), training=False, noise=None, options={})
        for _ in range(3)
    ]
    (out0, aux0), *rest = runs
    for out, aux in rest:
        if not np.array_equal(out, out0):
            return Outcome(
                "fail",
                f"eval output differs between identical calls (max diff "
                f"{np.max(np.abs(out - out0)):.3g}): eval must not draw randomness "
                "(sampling in eval?) or keep state",
            )
        for name, value in aux0.items():
            if not np.array_equal(np.asarray(aux.get(name)), np.asarray(value)):
                return Outcome("fail", f"eval aux {name!r} differs between identical calls")
    return Outcome("pass")


def check_params_roundtrip(adapter: Adapter, rule: str) -> Outcome:
    c = _default_case(rule)
    model = adapter.build(c.spec, c.params)
    held = adapter.canonical_params(model)
    declared = [p.name for p in c.spec.params()]
    missing = [n for n in declared if n not in held]
    if missing:
        return Outcome(
            "fail",
            f"params {missing} are not registered with the framework (missing from "
            "canonical_params: never saved, moved or trained)",
        )
    try:
        spec.check_params(c.spec, held, what="canonical_params()")
    except spec.WeightsError as e:
        return Outcome("fail", str(e))
    changed = [n for n in declared if not np.array_equal(np.asarray(held[n]), c.params[n])]
    if changed:
        return Outcome(
            "fail",
            f"params {changed} do not round-trip: canonical_params() after loading differs "
            "from what was loaded (layout or transpose?)",
        )
    args = dict(training=False, noise=None, options={})
    out1, _ = adapter.forward(model, c.v.copy(), c.t.copy(), **args)
    out2, _ = adapter.forward(adapter.build(c.spec, held), c.v.copy(), c.t.copy(), **args)
    if not np.array_equal(out1, out2):
        return Outcome("fail", "a model rebuilt from canonical_params() computes another output")
    return Outcome("pass")


def check_finite(adapter: Adapter, rule: str) -> Outcome:
    c = _default_case(rule)
    model = adapter.build(c.spec, c.params)
    v, t = inputs(c.spec.dim, BATCH, 0)
    margins = {a.name for a in c.spec.aux(BATCH) if a.role == "margin"}
    for scale in (0.0, 1e-30, 1.0, 1e4):
        out, aux = adapter.forward(
            model,
            v * np.float32(scale),
            t * np.float32(scale),
            training=False,
            noise=None,
            options={},
        )
        tensors = {"output": out, **{n: a for n, a in aux.items() if n not in margins}}
        bad = [n for n, a in tensors.items() if not np.all(np.isfinite(a))]
        if bad:
            return Outcome(
                "fail", f"non-finite values in {bad} for finite inputs of scale {scale:g}"
            )
    return Outcome("pass")


#: ``check_nan_rows``: the non-finite input elements (sample, feature) of v and of t.
NAN_V, NAN_T = ((3, 1),), ((1, 2),)


def check_nan_rows(adapter: Adapter, rule: str) -> Outcome:
    """docs/errors.md's promise: a NaN or inf in a sample's ``v`` or ``t`` makes that sample's
    output row non-finite (all NaN for a routed rule's undecided route) and leaves the other
    samples as they are without it."""
    c = _default_case(rule)
    model = adapter.build(c.spec, c.params)
    v, t = inputs(c.spec.dim, BATCH, 0)
    for b, j in NAN_V:
        v[b, j] = np.inf
    for b, j in NAN_T:
        t[b, j] = np.nan
    # shomr: every sample routed (soft samples mix both paths and are NaN anyway)
    options = {"use_hard_routing": True} if "use_hard_routing" in {
        o.name for o in c.spec.call_options
    } else {}
    out, _ = adapter.forward(model, v.copy(), t.copy(), training=False, noise=None, options=options)
    ref = fusion_ref.forward(c.spec, c.params, v, t, **options)
    out = np.asarray(out, dtype=np.float64)
    problems = []
    for b in sorted({b for b, _ in NAN_V + NAN_T}):
        if np.isnan(ref[b]).all() and not np.isnan(out[b]).all():
            problems.append(
                f"row {b} (a non-finite input): expected all NaN (the reference's route is "
                f"undecided); received {int(np.isfinite(out[b]).sum())} finite elements"
            )
        elif not np.isfinite(out[b]).all() == np.isfinite(ref[b]).all():
            problems.append(
                f"row {b} (a non-finite input): expected a non-finite row; received a finite one"
            )
    clean = np.ones(BATCH, dtype=bool)
    clean[[b for b, _ in NAN_V + NAN_T]] = False
    report = compare_values("output", out, ref, adapter.dtype, rows=clean)
    if not report.ok:
        problems.append("the samples without a non-finite input: " + report.message)
    return Outcome("fail" if problems else "pass", "; ".join(problems), [report.as_dict()])


def check_empty_batch(adapter: Adapter, rule: str) -> Outcome:
    """docs/errors.md's promise for ``(0, D)`` inputs: outputs ``(0, D)``, every aux of batch
    size 0, scalar aux as the reference computes them (``energy_loss`` 0, not a NaN mean)."""
    c = _default_case(rule)
    model = adapter.build(c.spec, c.params)
    v = np.zeros((0, c.spec.width("image")), np.float32)
    t = np.zeros((0, c.spec.width("text")), np.float32)
    out, aux = adapter.forward(model, v, t, training=False, noise=None, options={})
    _, ref_aux = fusion_ref.forward(c.spec, c.params, v, t, return_aux=True)
    problems = []
    if np.shape(out) != (0, c.spec.dim):
        problems.append(f"output: expected shape (0, {c.spec.dim}); received {np.shape(out)}")
    for a in c.spec.call_aux(0):
        if a.role == "margin":
            continue
        got = aux.get(a.name)
        if got is None or np.shape(got) != tuple(a.shape):
            problems.append(
                f"{a.name}: expected shape {tuple(a.shape)}; received "
                f"{None if got is None else np.shape(got)}"
            )
        elif a.shape == () and not np.array_equal(np.asarray(got, np.float64), ref_aux[a.name]):
            problems.append(f"{a.name}: expected {float(ref_aux[a.name])!r}; received {got!r}")
    return Outcome("fail" if problems else "pass", "; ".join(problems))


PROPERTIES = {
    "eval_deterministic": check_eval_deterministic,
    "empty_batch": check_empty_batch,
    "nan_rows": check_nan_rows,
    "params_roundtrip": check_params_roundtrip,
    "finite_outputs": check_finite,
}


# --- the catalogue of checks --------------------------------------------------------------


def all_checks() -> list[Check]:
    """Every check, rule by rule."""
    checks = []
    trials = distribution.trials()
    for rule in spec.RULES:
        for c in cases_of(rule):
            checks.append(Check(rule, "forward", c.name, _bind(check_forward, c), c.doc))
        for c in cases_of(rule):
            if c.gradient:
                checks.append(Check(rule, "gradient", c.name, _bind(check_gradient, c), c.doc))
        for tr in trials:
            if tr.rule == rule:
                checks.append(Check(rule, "distribution", tr.name, _bind(check_trial, tr), tr.doc))
        for name, fn in PROPERTIES.items():
            checks.append(Check(rule, "property", name, _bind(_applicable(fn), rule)))
    return checks


def _applicable(prop):
    """``prop`` preceded by the adapter's ``not_applicable`` for the rule's default case."""

    def run(adapter: Adapter, rule: str) -> Outcome:
        reason = adapter.not_applicable(_default_case(rule).spec, training=False)
        return Outcome("n/a", reason) if reason else prop(adapter, rule)

    return run


def _bind(fn, arg):
    return lambda adapter: fn(adapter, arg)


def select(
    checks: Iterable[Check], include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[Check]:
    """Checks whose id matches any ``include`` pattern (all if none) and no ``exclude`` one.

    Patterns are shell-style (``fnmatch``) against ``rule/category/name``;
    ``shomr/*``, ``*/gradient/*``, ``*_exact_boundary``.
    """
    include, exclude = list(include), list(exclude)
    return [
        c
        for c in checks
        if (not include or any(fnmatch.fnmatchcase(c.id, p) for p in include))
        and not any(fnmatch.fnmatchcase(c.id, p) for p in exclude)
    ]


def run_check(adapter: Adapter, check: Check) -> Outcome:
    """Run one check; an exception from the adapter is an ``error`` outcome with its traceback."""
    start = time.perf_counter()
    try:
        outcome = check.run(adapter)
    except NotSupported as e:
        outcome = Outcome("n/a", str(e))
    except gradients.CaseError:
        raise
    except Exception as e:  # noqa: BLE001 (the adapter's bug is the report)
        tb = traceback.format_exc(limit=-3)
        outcome = Outcome("error", f"{type(e).__name__}: {e}\n{tb}")
    outcome.seconds = time.perf_counter() - start
    return outcome
