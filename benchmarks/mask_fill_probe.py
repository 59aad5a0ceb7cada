"""Probe: where should an absent modality's row sit after ``input_norm="batch"``?

A diagnosis of the towers' missing-modality table (``benchmarks/towers.py``): with the
presence mask, ``film`` and ``cross_attention`` lose a fraction of a point on complete
test samples against training without it. The mask changes two things in the input
norm: the batch statistics exclude the absent rows, and an absent row outputs 0, the
present rows' mean. Without the mask the statistics include the zeroed rows and an
absent row lands where a raw zero does, ``-mu / sigma``. Each variant here changes one
of them in the PyTorch layer (patched, the library untouched) and trains the towers'
``missing_mask`` scenario:

- ``learned_fill``: absent rows output a learned vector per modality (zero-initialised);
- ``all_row_stats``: the statistics over every row, the absent ones as raw zeros
  (absent rows still output 0);
- ``raw_zero``: present-row statistics; absent rows output where a raw zero lands;
- ``none``: the layer as it is (for a rule's other ``missing_modality``);
- ``drop_present_only``: ``modality_dropout``'s keep masks from the training draws
  alone, so an absent row enters the MLP as the input norm left it (with
  ``input_norm_absent="zero"`` in the label: the normalised zero row, apart from a
  dropped row's 0), not as a dropped one. It patches ``missing_modality="drop"`` and
  led to ``"zero_fill"``, which computes it (the default since 2026-12-07);
- ``rule_unmasked``: any rule's ``fuse`` called without the mask, so a lone modality's
  absent row (the norm's fill) goes through the rule as a present one (``shomr``: the
  router routes it, not a fixed path); the layer still outputs zeros for neither.

``cross_attention``'s lone modalities under ``key_mask`` (its default), each variant a
change of one thing in how the lone token is attended (complete samples as the layer):

- ``manual_key_mask``: the layer's function, computed by the probe's own attention code
  (a control: its difference from the towers' mask runs is the noise of re-running);
- ``lone_half``: the lone token's weight 1/2 instead of 1, the rest on a zero value (the
  scale a token has beside another);
- ``null_key``: a third key, score 0 and value 0, beside the lone token (the weight it
  does not take goes to nothing, as ``add_zero_attn``);
- ``lone_no_dropout``: no attention dropout on a lone token's weight (dropout drops the
  whole head's value there);
- ``lone_detach``: a lone token passes no gradient back to its input (the towers), its
  value unchanged; ``lone_detach_image``, ``lone_detach_text``: for that modality alone.
  ``lone_detach`` led to ``lone_gradient="stop"`` (the default since 2026-12-07), which
  computes it before the rule (every token of a lone modality, the query's too);

and ``no_mask_function`` (any rule): the layer given the mask computes what it computes
without it (the statistics over every row, the absent ones as raw zeros, absent rows
where a raw zero lands, the rule unmasked): a control, its runs equal the towers'
``missing_no_mask`` runs of the same seed.

Compare with the towers' ``missing_no_mask`` and ``missing_mask`` runs of the same
trainer and seeds (``--compare``). A measurement for choosing a spec option: it led to
``input_norm_absent="zero"`` (``raw_zero`` here, the default since 2026-12-07). The
variants patch the earlier default, ``input_norm_absent="mean"``, which every run here
sets unless its label says otherwise (``modality_dropout``: ``missing_modality="drop"``,
``EARLIER_KIND``), and ``--compare`` pairs them with the towers' mask runs of that
setting (the label ``kind:input_norm_absent="mean"``, or the kind's own fields:
``cross_attention``'s runs pass a lone modality's gradient, ``lone_gradient="pass"``).

    python benchmarks/mask_fill_probe.py --variants raw_zero --rules film --seeds 5 6 7 8 9
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import towers  # noqa: E402

#: ``input_norm_absent`` of the layer the variants patch: the default they were run against
EARLIER = "mean"
#: A kind's own earlier default that the variants patch, in place of ``EARLIER``'s field
EARLIER_KIND = {"modality_dropout": {"missing_modality": "drop"},
                "cross_attention": {"lone_gradient": "pass"}}
#: cross_attention's lone-token variants (``_lone_fuse``)
LONE_VARIANTS = ("manual_key_mask", "lone_half", "null_key", "lone_no_dropout", "lone_detach",
                 "lone_detach_text", "lone_detach_image")
VARIANTS = ("none", "learned_fill", "all_row_stats", "raw_zero", "drop_present_only",
            "rule_unmasked", "no_mask_function", *LONE_VARIANTS)
#: the towers trainers a probe can run under: PyTorch's defaults, Keras's initialisers
SETUPS = {"torch": (), "torch-keras-init": towers.KERAS_INIT_PARTS}


def patch(variant: str, kind: str = "modality_dropout"):
    """Replace ``RunningStats`` behaviour for masked calls in this process (or, for the
    rule variants, ``kind``'s ``fuse``); returns a function that restores it."""
    import torch
    from torch import nn

    from fusion_spec.backends.torch import MODULES, _layers

    stats = _layers.RunningStats
    forward, init = stats.forward, stats.__init__
    if variant in LONE_VARIANTS:
        kind = "cross_attention"
    rule = MODULES["modality_dropout" if variant == "drop_present_only" else kind]
    fuse = rule.fuse

    def restore():
        stats.forward, stats.__init__ = forward, init
        rule.fuse = fuse

    if variant == "none":
        return restore
    if variant in ("drop_present_only", "rule_unmasked", "no_mask_function"):
        def fuse_unmasked(self, v, t, *, noise, present=None, **kw):
            return fuse(self, v, t, noise=noise, present=None, **kw)

        rule.fuse = fuse_unmasked
        if variant != "no_mask_function":
            return restore

        def all_rows(self, x, present, s, absent=None):  # vectors: absent = not present
            if present is None:
                return forward(self, x, None, s)
            return forward(self, torch.where(present[:, None], x, 0.0), None, s)

        stats.forward = all_rows
        return restore
    if variant in LONE_VARIANTS:
        rule.fuse = _lone_fuse(variant, fuse)
        return restore
    if variant == "learned_fill":
        def __init__(self, dim):
            init(self, dim)
            self.fill = nn.Parameter(torch.zeros(dim))

        def patched(self, x, present, s, absent=None):  # vectors: absent = not present
            y = forward(self, x, present, s)
            return y if present is None else torch.where(present[:, None], y, self.fill.to(y.dtype))

        stats.__init__ = __init__
    elif variant == "all_row_stats":
        def patched(self, x, present, s, absent=None):  # vectors: absent = not present
            if present is None:
                return forward(self, x, None, s)
            y = forward(self, torch.where(present[:, None], x, 0.0), None, s)
            return torch.where(present[:, None], y, 0.0)
    elif variant == "raw_zero":
        def patched(self, x, present, s, absent=None):  # vectors: absent = not present
            y = forward(self, x, present, s)  # present-row statistics, absent rows 0
            if present is None:
                return y
            if self.training:  # this batch's present-row statistics, as ``forward``
                w = present.to(x.dtype)
                n = w.sum().clamp(min=1)
                mean = (w[:, None] * x).sum(0) / n
                var = (w[:, None] * (x - mean).square()).sum(0) / n
            else:
                mean, var = self.running_mean, self.running_var
            zero = (torch.zeros_like(x) - mean) * torch.rsqrt(var + s.input_norm_eps)
            return torch.where(present[:, None], y, zero.to(y.dtype))  # a raw zero, normalised
    else:
        raise ValueError(f"mask_fill_probe: variant must be one of {VARIANTS}, got {variant!r}")
    stats.forward = patched
    return restore


def _lone_fuse(variant: str, fuse):
    """``cross_attention``'s ``fuse`` (vectors) with a lone modality attended as ``variant``
    says; unmasked calls and complete samples as the layer (``LONE_VARIANTS``)."""
    import math

    import torch
    import torch.nn.functional as F

    def fuse_lone(self, v, t, *, noise, present=None, want_aux=True):
        if present is None:
            return fuse(self, v, t, noise=noise, present=None, want_aux=want_aux)
        a = self.attn
        h, dh = a.heads, v.shape[-1] // a.heads
        q = torch.where(present.both[:, None], 0.5 * (v + t),
                        torch.where(present.image[:, None], v, t))  # as the layer
        q = a.query(self.norm1(q)).unflatten(-1, (h, dh))  # (B, h, dh)
        x = torch.stack([v, t], dim=1)  # (B, 2, D)
        if variant.startswith("lone_detach"):  # a lone token passes no gradient back
            only_v, only_t = present.image & ~present.text, present.text & ~present.image
            detach = {"lone_detach": (only_v, only_t), "lone_detach_text": (None, only_t),
                      "lone_detach_image": (only_v, None)}[variant]
            x = torch.stack([x[:, i] if d is None else
                             torch.where(d[:, None], x[:, i].detach(), x[:, i])
                             for i, d in enumerate(detach)], dim=1)
        k = a.key(x).unflatten(-1, (h, dh))  # (B, 2, h, dh)
        values = a.value(x).unflatten(-1, (h, dh))  # (B, 2, h, dh)
        scores = (q[:, None] * k).sum(-1) * a.scale  # (B, 2, h)
        keep = present.key_mask()[:, :, None]  # (B, 2, 1)
        lone = (present.image ^ present.text)[:, None, None]  # (B, 1, 1)
        w = torch.softmax(torch.where(keep, scores, -math.inf), dim=1)  # the layer's
        if variant == "lone_half":
            w = torch.where(lone, 0.5 * w, w)
        elif variant == "null_key":  # exp(0) = 1 in the denominator, value 0
            null = torch.where(lone, 0.0, -math.inf).expand_as(scores[:, :1])
            w = torch.softmax(torch.cat([torch.where(keep, scores, -math.inf), null], 1), 1)[:, :2]
        dropped = F.dropout(w, a.dropout, self.training)
        mix = torch.where(lone, w, dropped) if variant == "lone_no_dropout" else dropped
        z = a.output((mix[..., None] * values).sum(1).flatten(-2))  # (B, D)
        weights = torch.where(present.neither[:, None, None], 0.0, w.transpose(1, 2))
        return z + self.ffn(self.norm2(z)), {"attention_weights": weights} if want_aux else {}

    return fuse_lone


def _run_fields(label: str) -> dict:
    """The fields a probe run of ``label`` sets (``job``): the label's, and the earlier
    default that the variants patch where the label leaves it."""
    kind, fields = towers.parse_rule(label)
    return {"input_norm_absent": EARLIER, **EARLIER_KIND.get(kind, {}), **fields}


def job(variant: str, setup: str, label: str, seed: int, epochs: int) -> dict:
    """One ``missing_mask`` run of the towers with ``variant`` (its own process)."""
    kind = towers.parse_rule(label)[0]
    patch(variant, kind)
    fields = _run_fields(label)  # the layer the variants patch
    task = towers.make_task(seed, missing=True)
    run = towers.Run(kind, fields, seed, epochs, missing=True, mask=True)
    result = towers.train_torch(run, task, keras_init=SETUPS[setup])
    return {"variant": variant, "framework": setup, "rule": label, "seed": seed,
            "scenario": "missing_mask", **result}


def _earlier(label: str) -> str:
    """The towers label of the default mask the probe's variants were measured against:
    the rule's kind with its ``EARLIER_KIND`` field, else ``input_norm_absent`` at
    ``EARLIER`` (a rule that never reads an absent row has no such runs: its kind's runs
    compute the same)."""
    kind = label.split(":")[0]
    fields = EARLIER_KIND.get(kind, {"input_norm_absent": EARLIER})
    return towers.format_rule(kind, fields)


def _late(run: dict, key: str) -> float:
    return float(np.mean(run["history"][key][-towers.POOL_EPOCHS:]))


def paired(probe: dict, towers_report: dict) -> list[dict]:
    """Each (variant, trainer, rule, key) with two or more seeds: mask minus no mask with
    the variant (``variant``) and with the default mask (``default``), and the variant
    minus the default mask (``change``), each as an array over the seeds paired, of the
    mean over the last POOL_EPOCHS epochs of ``key`` ("accuracy", the complete samples'
    "loss")."""
    runs = {(r["framework"], r["rule"], r["scenario"], r["seed"]): r
            for r in towers_report["results"]}
    groups: dict[tuple, list] = {}
    for r in probe["results"]:
        groups.setdefault((r["variant"], r["framework"], r["rule"]), []).append(r)
    rows = []
    for (variant, fw, label), rs in sorted(groups.items()):
        for key in ("accuracy", "loss"):
            d_var, d_def = [], []
            for r in sorted(rs, key=lambda r: r["seed"]):
                plain = runs.get((fw, label.split(":")[0], "missing_no_mask", r["seed"]))
                mask = runs.get((fw, _earlier(label), "missing_mask", r["seed"]),
                                runs.get((fw, label.split(":")[0], "missing_mask", r["seed"])))
                if plain is None or mask is None or any(
                        key not in m["history"] for m in (plain, mask)):
                    continue
                d_var.append(_late(r, key) - _late(plain, key))
                d_def.append(_late(mask, key) - _late(plain, key))
            if len(d_var) < 2:
                continue
            a, b = np.array(d_var), np.array(d_def)
            rows.append({"variant": variant, "framework": fw, "rule": label, "key": key,
                         "variant_diff": a, "default": b, "change": a - b})
    return rows


def compare(probe: dict, towers_report: dict) -> str:
    """``paired``'s rows as text: the mean and NOISE_SE standard errors of each."""
    lines = []
    for row in paired(probe, towers_report):
        a, b, c = row["variant_diff"], row["default"], row["change"]
        lines.append(f"{row['variant']:14s} {row['framework']:17s} {row['rule']:45s} "
                     f"{row['key']:8s} n={len(a)}: "
                     f"variant {a.mean():+.4f} ± {towers._noise(a):.4f}, "
                     f"default mask {b.mean():+.4f} ± {towers._noise(b):.4f}, "
                     f"variant - default {c.mean():+.4f} ± {towers._noise(c):.4f}")
    return "\n".join(lines)


def markdown(probe: dict, towers_report: dict, kind: str) -> str:
    """``kind``'s probe variants as a table: per variant, layer and trainer, over the seeds
    paired, the variant's mask minus no mask and the variant minus the default mask, of
    the accuracy on complete samples and of their test loss (its own seeds: the towers
    runs made before it was recorded have none)."""
    cells: dict[tuple, dict] = {}
    for row in paired(probe, towers_report):
        if row["rule"].split(":")[0] == kind:
            cells.setdefault((row["variant"], row["rule"], row["framework"]), {})[row["key"]] = row

    def cell(d):
        return f"{d.mean():+.4f} ± {towers._noise(d):.4f}"

    lines = ["| variant | layer | trainer, seeds | accuracy: variant | accuracy: change | "
             "test loss: change |", "|---|---|---|---|---|---|"]
    for (variant, label, fw), by in cells.items():
        acc, loss = by.get("accuracy"), by.get("loss")
        if acc is None:
            continue
        layer = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in _run_fields(label).items())
        lines.append(f"| `{variant}` | {layer} | {fw}, {len(acc['change'])} | "
                     f"{cell(acc['variant_diff'])} | {cell(acc['change'])} | "
                     + (f"{cell(loss['change'])} ({len(loss['change'])})" if loss else "-") + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS[1:]), choices=VARIANTS)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=tuple(SETUPS))
    parser.add_argument("--rules", nargs="+", default=["film"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="write the runs here")
    parser.add_argument("--compare", nargs="+", type=Path, default=[],
                        help="towers reports holding the same trainers' mask / no-mask runs")
    parser.add_argument("--runs", type=Path, default=None,
                        help="no training: compare the probe runs stored here")
    args = parser.parse_args(argv)
    if args.runs is not None:
        if not args.compare:
            parser.error("--runs reads stored runs to compare: give --compare too")
        print(compare(json.loads(args.runs.read_text()), _towers(args.compare)))
        return 0
    todo = [(v, s, label, seed, args.epochs) for v in args.variants for s in args.setups
            for label in args.rules for seed in args.seeds]
    # one run per process: ``patch`` changes the class for the process's lifetime
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        results = list(pool.map(job, *zip(*todo, strict=True)))
    probe = {"config": {"variants": args.variants, "setups": args.setups, "rules": args.rules,
                        "seeds": args.seeds, "epochs": args.epochs}, "results": results}
    if args.json is not None:
        args.json.write_text(json.dumps(probe, indent=1) + "\n")
    if args.compare:
        print(compare(probe, _towers(args.compare)))
    return 0


def _towers(paths: list[Path]) -> dict:
    """The towers runs of the reports at ``paths``, as one report's ``results``."""
    return {"results": [r for p in paths for r in json.loads(p.read_text())["results"]]}


if __name__ == "__main__":
    raise SystemExit(main())
