r"""Distributional conformance of a backend's own RNG (no injected noise).

Each check runs the backend in the mode where it draws its own uniforms, counts
the outcomes over a fixed, large sample and tests them against the spec's
probabilities, which the reference gives exactly (the router's output weight is
zeroed so every sample has the same known route probabilities):

* route frequencies: Pearson's $\chi^2$ with $K - 1$ degrees of freedom;
* drop and keep rates: the exact two-sided binomial test (the sum of the
  probabilities of all counts no more likely than the observed one);
* batch granularity: a modality drawn once per batch must be dropped for all or
  none of its samples, in every call (no randomness: a mixed batch fails outright);
* independence, where the spec draws separately: the joint frequencies of
  (image kept, text kept), of the routes of samples ``2i`` and ``2i + 1``, and of
  the output drops of samples ``2i`` and ``2i + 1`` in active batches, by
  Pearson's $\chi^2$ against the product of the marginal probabilities. One
  uniform shared by two draws keeps every marginal rate and fails this test.

A check fails when $p < \alpha = 10^{-6}$, so a correct backend raises a false
alarm with probability at most $10^{-6}$ per test, and at most
``ALPHA * tests`` (below $2 \cdot 10^{-5}$) over all of a backend's distribution
checks (Bonferroni). The sample sizes detect a probability off by more than
about 0.05 (routes, 4096 draws) or 0.12 (batch-level drops, 400 calls).

p-values are computed here (regularised incomplete gamma, log-binomial sums):
the suite does not require SciPy.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusion_spec import fusion_ref

from .cases import make_spec, perturbed, route_logits

ALPHA = 1e-6


# --- p-values -------------------------------------------------------------------------


def _gamma_series(a: float, x: float) -> float:
    """Regularised lower incomplete gamma ``P(a, x)`` by its series (``x < a + 1``)."""
    term = total = 1.0 / a
    n = a
    for _ in range(10000):
        n += 1.0
        term *= x / n
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_fraction(a: float, x: float) -> float:
    """Regularised upper incomplete gamma ``Q(a, x)`` by Lentz's continued fraction (``x >= a + 1``)."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(x: float, df: int) -> float:
    """``P(X >= x)`` for ``X ~ chi^2(df)``: ``Q(df/2, x/2)``."""
    if x <= 0.0:
        return 1.0
    a, half = df / 2.0, x / 2.0
    if half < a + 1.0:
        return max(0.0, 1.0 - _gamma_series(a, half))
    return _gamma_fraction(a, half)


def chi2_test(counts: Sequence[int], probs: Sequence[float]) -> tuple[float, float]:
    """Pearson's statistic and p-value of ``counts`` against ``probs`` (zero-probability
    classes must have zero counts: any count there gives p = 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = counts.sum()
    expected = n * probs
    positive = expected > 0
    if np.any(counts[~positive] > 0):
        return math.inf, 0.0
    stat = float(np.sum((counts[positive] - expected[positive]) ** 2 / expected[positive]))
    return stat, chi2_sf(stat, int(positive.sum()) - 1)


def binom_test(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial p-value: total probability of counts no likelier than ``k``."""
    if p <= 0.0 or p >= 1.0:
        return 1.0 if k == (0 if p <= 0.0 else n) else 0.0
    ks = np.arange(n + 1)
    lgam = np.array([math.lgamma(i + 1.0) for i in range(n + 1)])
    logpmf = lgam[n] - lgam - lgam[::-1] + ks * math.log(p) + (n - ks) * math.log1p(-p)
    threshold = logpmf[k] + 1e-7 * abs(logpmf[k])
    kept = logpmf[logpmf <= threshold]
    top = kept.max()
    return float(min(1.0, math.exp(top) * np.sum(np.exp(kept - top))))


# --- the trials -----------------------------------------------------------------------

#: Route probabilities (0.2, 0.3, 0.5) at temperature 1, for every sample.
ROUTE_LOGITS = (math.log(0.2), math.log(0.3), math.log(0.5))


@dataclass(frozen=True)
class Trial:
    """``calls`` calls of batch ``batch`` with the backend's own RNG, counted by ``kind``:
    ``routes`` (chi-square on ``route``), ``modality_drop`` (binomial on ``keep_*``,
    plus all-or-none per batch at batch granularity) or ``output_drop``
    (binomial on batches with a drop, and on dropped samples within them)."""

    name: str
    spec: Any
    params: dict[str, np.ndarray]
    batch: int
    calls: int
    training: bool
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    #: ``(batch, 2)`` presence mask: samples with one modality must never be routed to
    #: (or keep) the absent one; the rates are judged on the samples with both.
    present: np.ndarray | None = None

    @property
    def rule(self) -> str:
        return self.spec.kind


def _trial(
    name,
    kind,
    fields,
    *,
    batch,
    calls,
    training=True,
    options=None,
    logits=None,
    doc="",
    present=False,
):
    s = make_spec(fields.pop("kind"), **fields)
    params = perturbed(s, 500 + len(name))
    if logits is not None:
        route_logits("router", logits)(s, params)
    mask = None
    if present:  # the four patterns in turn; half the samples have both
        mask = np.resize(np.array([[1, 1], [1, 0], [1, 1], [0, 1], [1, 1], [0, 0]], bool), (batch, 2))
    return Trial(name, s, params, batch, calls, training, kind, dict(options or {}), doc, mask)


def trials() -> list[Trial]:
    """Every distribution trial, in catalogue order."""
    shomr = {"kind": "shomr", "dim": 8, "heads": 2, "dropout": 0.0}
    eaa = {"kind": "energy_aware_adaptive", "dim": 8, "heads": 2, "dropout": 0.0}
    hard = {"use_hard_routing": True}
    return [
        _trial(
            "shomr_route_frequencies",
            "routes",
            dict(shomr),
            batch=256,
            calls=16,
            options=hard,
            logits=ROUTE_LOGITS,
        ),
        _trial(
            "shomr_route_frequencies_temperature_2",
            "routes",
            {**shomr, "routing_temperature": 2.0},
            batch=256,
            calls=16,
            options=hard,
            logits=ROUTE_LOGITS,
            doc="(0.2, 0.3, 0.5) at T=1 is (0.26, 0.32, 0.42) at T=2.",
        ),
        _trial(
            "shomr_eval_is_argmax",
            "routes",
            dict(shomr),
            batch=256,
            calls=2,
            training=False,
            options=hard,
            logits=ROUTE_LOGITS,
            doc="Eval takes argmax: every sample route 2, no draws.",
        ),
        _trial(
            "energy_aware_adaptive_route_frequencies",
            "routes",
            dict(eaa),
            batch=256,
            calls=16,
            logits=ROUTE_LOGITS,
        ),
        _trial(
            "energy_aware_adaptive_eval_sample_frequencies",
            "routes",
            {**eaa, "eval_routing": "sample"},
            batch=256,
            calls=16,
            training=False,
            logits=ROUTE_LOGITS,
            doc="eval_routing='sample' draws in eval too.",
        ),
        _trial(
            "energy_aware_adaptive_output_drop_rates",
            "output_drop",
            dict(eaa),
            batch=16,
            calls=200,
            options={"progress": 0.5},
            logits=ROUTE_LOGITS,
            doc="p(0.5) = 0.25 per batch; within it each sample drops w.p. 1 - 0.5^2.",
        ),
        _trial(
            "shomr_missing_routes",
            "routes",
            dict(shomr),
            batch=384,
            calls=16,
            options=hard,
            logits=ROUTE_LOGITS,
            present=True,
            doc="With a presence mask: lone modalities always take their own route.",
        ),
        _trial(
            "energy_aware_adaptive_missing_routes",
            "routes",
            dict(eaa),
            batch=384,
            calls=16,
            logits=ROUTE_LOGITS,
            present=True,
            doc="With a presence mask: lone modalities always take their own route.",
        ),
        _trial(
            "modality_dropout_missing_rates",
            "modality_drop",
            {**_sample_drop(), "kind": "modality_dropout"},
            batch=384,
            calls=16,
            present=True,
            doc="With a presence mask ('zero_fill'): a lone modality's absent row is drawn "
            "like a present one; a sample with neither is never kept.",
        ),
        _trial(
            "modality_dropout_missing_drop_rates",
            "modality_drop",
            {**_sample_drop(), "kind": "modality_dropout", "missing_modality": "drop"},
            batch=384,
            calls=16,
            present=True,
            doc="With a presence mask ('drop'): an absent modality is never kept; drop "
            "rates elsewhere.",
        ),
        _trial(
            "modality_dropout_batch_rates",
            "modality_drop",
            {"kind": "modality_dropout", "dim": 8},
            batch=4,
            calls=400,
        ),
        _trial(
            "modality_dropout_sample_rates",
            "modality_drop",
            {
                "kind": "modality_dropout",
                "dim": 8,
                "p_img": 0.2,
                "p_txt": 0.6,
                "drop_granularity": "sample",
            },
            batch=256,
            calls=16,
        ),
    ]


def _sample_drop() -> dict[str, Any]:
    return {"dim": 8, "p_img": 0.2, "p_txt": 0.6, "drop_granularity": "sample"}


def expected_route_probs(trial: Trial, v, t) -> np.ndarray:
    """The spec's route distribution of the trial (the same for every sample): ``(K,)``."""
    declared = trial.spec.noise(1, training=trial.training, **trial.options)
    _, aux = fusion_ref.forward(
        trial.spec,
        trial.params,
        v[:1],
        t[:1],
        training=trial.training,
        noise={n.name: np.zeros(n.shape) for n in declared},
        return_aux=True,
        **trial.options,
    )
    return aux["route_probs"][0]


def run_trial(adapter, trial: Trial) -> tuple[bool, str, dict]:
    """Run one trial; returns ``(ok, message, statistics)``."""
    s = trial.spec
    rng = np.random.default_rng(zlib.crc32(trial.name.encode()))
    v = rng.standard_normal((trial.batch, s.dim)).astype(np.float32)
    t = rng.standard_normal((trial.batch, s.dim)).astype(np.float32)
    model = adapter.build(s, trial.params)
    present = {} if trial.present is None else {"present": trial.present.copy()}
    auxes = []
    for _ in range(trial.calls):
        _, aux = adapter.forward(
            model, v, t, training=trial.training, noise=None, options=dict(trial.options), **present
        )
        auxes.append(aux)
    if trial.present is None:
        return _JUDGES[trial.kind](trial, auxes, v, t)
    return _judge_present(trial, auxes, v, t)


def _judge_present(trial, auxes, v, t):
    """Forced outcomes on the samples missing a modality, then the rates on those with both."""
    mask = trial.present
    both, image, text = mask.all(1), mask[:, 0], mask[:, 1]
    problems = []
    if trial.kind == "routes":
        routes = np.stack([np.asarray(a["route"]).astype(np.int64) for a in auxes])  # (calls, B)
        for rows, want, what in (
            (image & ~text, 0, "image only"),
            (text & ~image, 1, "text only"),
            (~image & ~text, -1, "neither"),
        ):
            bad = int(np.sum(routes[:, rows] != want))
            if bad:
                problems.append(
                    f"route: {bad} draws of {what} samples took a route other than {want} "
                    "(a sample must never be routed to an absent modality)"
                )
    rates = both  # the samples whose draws the rule's own judge reads
    if trial.kind == "modality_drop":
        drop = trial.spec.missing_modality == "drop"
        if not drop:  # 'zero_fill': a lone modality is drawn like a present one
            rates = mask.any(1)
        for name, column in (("keep_image", 0), ("keep_text", 1)):
            keeps = np.stack([np.asarray(a[name], dtype=np.float64) for a in auxes])
            never = ~mask[:, column] if drop else ~rates
            kept = int(np.sum(keeps[:, never]))
            if kept:
                what = "absent samples kept (absent must mean dropped)" if drop else (
                    "samples with neither modality kept"
                )
                problems.append(f"{name}: {kept} {what}")
    inner = Trial(
        trial.name, trial.spec, trial.params, int(rates.sum()), trial.calls, trial.training,
        trial.kind, trial.options, trial.doc,
    )
    sub = [{k: np.asarray(a)[rates] if np.ndim(a) else a for k, a in aux.items()} for aux in auxes]
    ok, message, stats = _JUDGES[trial.kind](inner, sub, v[rates], t[rates])
    if message:
        problems.append(message)
    return ok and not problems, "; ".join(problems), stats


def _pairs_test(name, first, second, probs_a, probs_b, what):
    """Joint frequencies of the pairs ``(first[i], second[i])`` (integer classes) against
    the outer product of ``probs_a`` and ``probs_b``: ``(problem or "", statistics)``."""
    ka, kb = len(probs_a), len(probs_b)
    counts = np.bincount(first * kb + second, minlength=ka * kb)[: ka * kb]
    expected = np.outer(probs_a, probs_b).ravel()
    stat, p = chi2_test(counts, expected)
    n = int(counts.sum())
    stats = {
        "joint_counts": counts.tolist(),
        "joint_expected": (n * expected).round(1).tolist(),
        "joint_chi2": stat,
        "joint_p_value": p,
    }
    if p >= ALPHA:
        return "", stats
    return (
        f"{name}: joint counts {counts.tolist()} of {what} over {n} pairs vs expected "
        f"{(n * expected).round(1).tolist()} for independent draws: chi2 = {stat:.1f}, "
        f"p = {p:.2g} < {ALPHA:g} (one uniform shared by two draws?)"
    ), stats


def _judge_routes(trial, auxes, v, t):
    probs = expected_route_probs(trial, v, t)
    routes = np.concatenate([np.asarray(a["route"]).astype(np.int64) for a in auxes])
    n = routes.size
    counts = np.bincount(routes, minlength=probs.size)[: probs.size]
    samples = trial.spec.samples_route(trial.training) if trial.rule != "shomr" else trial.training
    if not samples:
        want = int(np.argmax(probs))
        ok = bool(np.all(routes == want))
        stats = {"counts": counts.tolist(), "expected_route": want}
        msg = (
            ""
            if ok
            else (
                f"route in eval: expected the argmax {want} for all {n} samples (no sampling in "
                f"eval); received counts {counts.tolist()}: the backend samples in eval"
            )
        )
        return ok, msg, stats
    stat, p = chi2_test(counts, probs)
    stats = {
        "counts": counts.tolist(),
        "expected": (n * probs).round(1).tolist(),
        "chi2": stat,
        "p_value": p,
    }
    problems = []
    if p < ALPHA:
        problems.append(
            f"route frequencies {counts.tolist()} over {n} draws vs expected "
            f"{(n * probs).round(1).tolist()} (probabilities {probs.round(4).tolist()}): "
            f"chi2 = {stat:.1f}, p = {p:.2g} < {ALPHA:g}"
        )
    per_call = routes.reshape(len(auxes), -1)  # (calls, B)
    pair_problem, pair_stats = _pairs_test(
        "route",
        per_call[:, 0::2].ravel(),
        per_call[:, 1::2].ravel(),
        probs,
        probs,
        "(route of sample 2i, route of sample 2i + 1)",
    )
    stats.update(pair_stats)
    if pair_problem:
        problems.append(pair_problem)
    return not problems, "; ".join(problems), stats


def _judge_modality_drop(trial, auxes, v, t):
    s = trial.spec
    problems, stats = [], {}
    for aux_name, p_drop in (("keep_image", s.p_img), ("keep_text", s.p_txt)):
        keeps = np.stack([np.asarray(a[aux_name], dtype=np.float64) for a in auxes])  # (calls, B)
        if s.drop_granularity == "batch":
            mixed = int(np.sum(keeps.min(axis=1) != keeps.max(axis=1)))
            if mixed:
                problems.append(
                    f"{aux_name}: {mixed}/{len(auxes)} batches mix kept and dropped samples; "
                    "drop_granularity='batch' draws once per batch (modality drop per sample?)"
                )
            kept, n = int(keeps[:, 0].sum()), keeps.shape[0]
        else:
            kept, n = int(keeps.sum()), keeps.size
        p = binom_test(kept, n, 1.0 - p_drop)
        stats[aux_name] = {"kept": kept, "n": n, "p_keep": 1.0 - p_drop, "p_value": p}
        if p < ALPHA:
            problems.append(
                f"{aux_name}: kept {kept}/{n} ({kept / n:.3f}) vs keep probability "
                f"{1.0 - p_drop:g}: binomial p = {p:.2g} < {ALPHA:g}"
            )
    image, text = (
        np.stack([np.asarray(a[name], dtype=np.float64) for a in auxes]).astype(np.int64)
        for name in ("keep_image", "keep_text")
    )  # (calls, B), 1 = kept
    if s.drop_granularity == "batch":
        image, text = image[:, :1], text[:, :1]
    pair_problem, pair_stats = _pairs_test(
        "keep_image x keep_text",
        image.ravel(),
        text.ravel(),
        [s.p_img, 1.0 - s.p_img],
        [s.p_txt, 1.0 - s.p_txt],
        "(image kept, text kept)",
    )
    stats["joint"] = pair_stats
    if pair_problem:
        problems.append(pair_problem)
    return not problems, "; ".join(problems), stats


def _judge_output_drop(trial, auxes, v, t):
    s = trial.spec
    p_gate = s.output_drop_probability(trial.options["progress"])
    p_flag = 1.0 - (1.0 - s.output_drop_flag_p) ** 2
    dropped = np.stack([1.0 - np.asarray(a["output_kept"], dtype=np.float64) for a in auxes])
    active = dropped.max(axis=1) > 0  # (calls,)
    p_active = p_gate * (1.0 - (1.0 - p_flag) ** trial.batch)
    p1 = binom_test(int(active.sum()), active.size, p_active)
    k, n = int(dropped[active].sum()), int(active.sum()) * trial.batch
    stats = {
        "batches_with_drops": int(active.sum()),
        "calls": active.size,
        "p_batch": p_active,
        "p_value_batch": p1,
        "dropped": k,
        "samples_in_those": n,
        "p_sample": p_flag,
    }
    problems = []
    if p1 < ALPHA:
        problems.append(
            f"output_kept: {int(active.sum())}/{active.size} batches had drops vs probability "
            f"{p_active:.4f}: binomial p = {p1:.2g} < {ALPHA:g}"
        )
    if n:
        # Within an active batch the count is conditioned on at least one drop; with
        # batch 16 that condition has probability 1 - 0.25^16 and is negligible.
        p2 = binom_test(k, n, p_flag)
        stats["p_value_sample"] = p2
        if p2 < ALPHA:
            problems.append(
                f"output_kept: {k}/{n} samples dropped within active batches vs probability "
                f"{p_flag:g}: binomial p = {p2:.2g} < {ALPHA:g}"
            )
        pairs = dropped[active].astype(np.int64)  # (active calls, B), 1 = dropped
        pair_problem, pair_stats = _pairs_test(
            "output_kept",
            pairs[:, 0::2].ravel(),
            pairs[:, 1::2].ravel(),
            [1.0 - p_flag, p_flag],
            [1.0 - p_flag, p_flag],
            "(sample 2i dropped, sample 2i + 1 dropped) in active batches",
        )
        stats["joint"] = pair_stats
        if pair_problem:
            problems.append(pair_problem)
    return not problems, "; ".join(problems), stats


_JUDGES = {
    "routes": _judge_routes,
    "modality_drop": _judge_modality_drop,
    "output_drop": _judge_output_drop,
}
