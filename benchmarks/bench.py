"""Speed of every rule against the original's structure and against its matrix products alone.

For each rule (default configuration, ``D = 512``, 8 heads, the original teacher's
depths), framework (``torch``; ``keras-jax`` in a subprocess), device (CPU, and
CUDA when present), mode (eval forward; training step = zero_grad + forward + backward),
precision (float32; bfloat16 autocast) and batch size, it times, interleaved
(one sample of each variant per round, each sample several calls long for fast calls,
the order rotated every round; the median of the rounds):

* ``ours``: ``fusion_spec.backends.torch.build(s, params)`` called eagerly
  (routing rules with their default ``dispatch="auto"``);
* ``compiled``: ``torch.compile(module, fullgraph=True, dynamic=False)``;
* ``original``: the faithful baseline of ``benchmarks/original.py`` holding the
  same weights (per-route gathers, ``nn.TransformerEncoder``'s fast path);
  ``energy_aware_adaptive``'s original samples its route in eval where ours takes
  the argmax (a different function), so its eval rows also give ``orig_argmax``,
  the original's structure on our routes;
* with ``--dispatch``, the routing rules' ``dense`` and ``sparse`` dispatch, and in
  training ``no_st``: ``straight_through=False`` (the original's gradient: its router
  gets none through the output; ours by default trains it, one more backward pass
  through the router MLP over the whole batch) and, for ``energy_aware_adaptive``,
  ``st_chosen``: ``straight_through_routes="chosen"`` (the router's gradient from the
  chosen route only, so the "both" path runs on its own rows);
* routing rules in training: every variant takes the same route draws (a pool of
  16: our noise, and the routes it gave passed to the original's ``route=``), so the
  ratio compares the same work (``shomr``'s routers have dropout in training, so its
  routes are paired up to samples near a boundary);
* with ``--control``, ``original_again``: a second copy of the original. Its ratio
  to the original (``A/A``) is the cell's noise floor: two copies of one module
  differ by a few percent in fast cells (caches, allocator, the other core);
* ``keras-jax``: the Keras layer's ``stateless_call`` under ``jax.jit`` (the
  compiled column; eager JAX dispatch is not a way anyone runs a model).

Against the machine: the rule's multiply-accumulates at that batch (``s.macs()``
per route, weighted by the routes the call took; x3 for a training step) give
``gflops`` (achieved), ``of_gemm`` (that rate over the rate of a ``(B, D) x (D, 4D)``
matrix product at the same batch in the same framework) and ``of_best`` (over
the best rate of a 2048-cube product in that framework).

Run (not part of ``make test``)::

    .venv/bin/python benchmarks/bench.py --quick            # CPU, B 16 256 4096, float32
    .venv/bin/python benchmarks/bench.py                    # everything (hours on a CPU)
    .venv/bin/python benchmarks/bench.py --rules shomr --batches 256 --modes train --dispatch

Writes ``--json`` (every figure and the machine), ``--markdown`` (tables for
``docs/performance.md``) and ``--svg`` (original/ours speed ratio against batch size).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion_spec import spec  # noqa: E402

ROUTING = ("shomr", "energy_aware_adaptive")
FULL_BATCHES = (16, 256, 4096, 32768)
QUICK_BATCHES = (16, 256, 4096)


# --- timing ---------------------------------------------------------------------------


def interleaved_medians(
    fns: dict, budget_s: float, sync=None, sample_s: float = 0.002
) -> dict[str, float]:
    """Median milliseconds per call of each of ``fns``, interleaved round by round.

    Warm-up: two calls of each. A sample times ``repeats`` calls in a row, the same
    ``repeats`` for every function of the case, chosen from the slowest warm-up call so
    that a sample lasts at least ``sample_s`` (a 0.15 ms call is timed 14 calls at a
    time: one ``perf_counter`` pair per call would add its own jitter). Each round times
    one sample of every function, starting with a different one each round (a fixed
    order would always give one of them the caches the other left). Rounds: as many as
    fit ``budget_s``, at least 5, at most 301 (fast cells spread by a few percent from
    round to round: their medians need the rounds).
    """
    sync = sync or (lambda: None)
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    slowest = 0.0
    for _ in range(2):
        for fn in fns.values():
            start = time.perf_counter()
            fn()
            sync()
            slowest = max(slowest, time.perf_counter() - start)
    repeats = max(1, math.ceil(sample_s / max(slowest, 1e-9)))
    began = time.perf_counter()
    rounds = 0
    while rounds < 5 or (rounds < 301 and time.perf_counter() - began < budget_s):
        for i in range(len(names)):
            name = names[(rounds + i) % len(names)]
            fn = fns[name]
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            sync()
            times[name].append((time.perf_counter() - start) / repeats)
        rounds += 1
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def rule_macs(s, batch: int, routes: dict[str, float] | None) -> float:
    """Multiply-accumulates of one forward of ``s`` over ``batch`` samples."""
    per_route = s.macs()
    if len(per_route) == 1 or routes is None:
        return batch * max(per_route.values())
    return batch * sum(per_route[r] * share for r, share in routes.items())


def route_shares(kind: str, aux: dict) -> dict[str, float]:
    """Share of the batch on each cost route of ``s.macs()``, from a call's aux outputs."""
    route = np.asarray(aux["route"])
    if kind == "energy_aware_adaptive":
        return {name: float(np.mean(route == k)) for k, name in enumerate(("image", "text", "both"))}
    hard = np.asarray(aux["hard"]).astype(bool)
    shares = {"soft": float(np.mean(~hard))}
    for k, name in enumerate(("hard_image", "hard_text", "hard_both")):
        shares[name] = float(np.mean(hard & (route == k)))
    return shares


# --- torch ------------------------------------------------------------------------------


def torch_rows(args, devices: list[str]) -> tuple[list[dict], dict]:
    import torch

    from benchmarks.original import original
    from fusion_spec.backends import torch as bt

    torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = 1024
    torch._dynamo.config.cache_size_limit = 1024
    rows, gemm = [], {}
    for device in devices:
        dev = torch.device(device)
        sync = torch.cuda.synchronize if dev.type == "cuda" else None
        best = _torch_gemm_rate(dev, 2048, 2048, 2048, sync)
        gemm[f"torch-{device}"] = {"best_gflops": best}
        for precision in args.precisions:
            for B in args.batches:
                rate = _torch_gemm_rate(dev, B, args.dim, 4 * args.dim, sync)
                gemm[f"torch-{device}"][f"B{B}_gflops"] = rate
                for kind in args.rules:
                    for mode in args.modes:
                        row = _torch_case(
                            args, torch, bt, original, dev, sync, kind, mode, precision, B
                        )
                        row.update(gemm_gflops=rate, best_gflops=best)
                        _finish(row)
                        rows.append(row)
                        print(_line(row), flush=True)
    return rows, gemm


def _torch_gemm_rate(dev, m: int, k: int, n: int, sync) -> float:
    import torch

    x, w = torch.randn(m, k, device=dev), torch.randn(n, k, device=dev)
    with torch.inference_mode():
        ms = interleaved_medians({"gemm": lambda: torch.nn.functional.linear(x, w)}, 0.5, sync)
    return 2.0 * m * k * n / (ms["gemm"] * 1e-3) / 1e9


def route_draws(torch, s, ours, v, t, count: int = 16) -> tuple[list, dict]:
    """``count`` route draws of a routing rule in training: our noise and the routes it
    gives (for the original's ``route=``), and the mean share of each cost route.

    How much work a call does depends on how many samples its draw sends down the
    expensive path; timing every variant on the same draws pairs the comparison
    (independent draws add their spread to every ratio).
    """
    gen = torch.Generator().manual_seed(v.shape[0] + 1)
    draws, shares = [], []
    with torch.no_grad():
        for _ in range(count):
            noise = {
                n.name: torch.rand(n.shape, generator=gen).to(v.device)
                for n in s.noise(v.shape[0], training=True)
            }
            _, aux = ours(v, t, noise=noise, return_aux=True)  # in training mode
            draws.append((noise, aux["route"].long()))
            shares.append(route_shares(s.kind, {k: a.cpu() for k, a in aux.items()}))
    return draws, {k: float(np.mean([x[k] for x in shares])) for k in shares[0]}


def _torch_case(args, torch, bt, original, dev, sync, kind, mode, precision, B) -> dict:
    train = mode == "train"
    # like for like with the original, which has no input normalisation (from_legacy's
    # input_norm="none"); the default input_norm="batch" is not in these timings
    s = spec.parse({"kind": kind, "dim": args.dim, "input_norm": "none"})
    params = spec.init_params(s, seed=0)
    gen = torch.Generator().manual_seed(B)
    # in training the embeddings come from encoders being trained: gradients reach them too
    v = torch.randn(B, args.dim, generator=gen).to(dev).requires_grad_(train)
    t = torch.randn(B, args.dim, generator=gen).to(dev).requires_grad_(train)
    models = {"ours": bt.build(s, params).to(dev)}
    if "compiled" in args.variants:
        models["compiled"] = torch.compile(models["ours"], fullgraph=True, dynamic=False)
    models["original"] = original(s, params).to(dev)
    if args.control:  # the noise floor: the original against a second copy of itself
        models["original_again"] = original(s, params).to(dev)
    if kind == "energy_aware_adaptive" and not train:
        models["orig_argmax"] = original(s, params, eval_routing="argmax").to(dev)
    if args.dispatch and kind in ROUTING:
        models["dense"] = bt.build(s, params, dispatch="dense").to(dev)
        models["sparse"] = bt.build(s, params, dispatch="sparse").to(dev)
        if train:  # the original trains no router through its output: ours without that
            models["no_st"] = bt.build(s.replace(straight_through=False), params).to(dev)
        if train and getattr(s, "straight_through_routes", None) == "all":
            # the default's extra cost: every route's output for the router (dense "both")
            chosen = s.replace(straight_through_routes="chosen")
            models["st_chosen"] = bt.build(chosen, params).to(dev)
    for m in models.values():
        m.train(train)
    autocast = precision == "bfloat16"
    draws = train_shares = None
    if train and kind in ROUTING:
        draws, train_shares = route_draws(torch, s, models["ours"], v, t)

    def caller(name, m):
        originals = ("original", "original_again", "orig_argmax")
        calls = itertools.count()

        def run():
            if train:  # as a training loop does (optimizer.zero_grad): gradients are
                # written fresh each step, not accumulated into the previous step's
                m.zero_grad(set_to_none=True)
                v.grad = t.grad = None
            kwargs = {}
            if draws is not None:  # call i of every variant takes draw i: paired routes
                noise, route = draws[next(calls) % len(draws)]
                kwargs = {"route": route} if name in originals else {"noise": noise}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                if train:
                    out = m(v, t, **kwargs)
                else:
                    with torch.inference_mode():
                        out = m(v, t, **kwargs)
            if train:
                out.float().sum().backward()

        return run

    with torch.inference_mode():
        _, aux = models["ours"].train(False)(v, t, return_aux=True)
        models["ours"].train(train)
    shares = route_shares(kind, {k: a.cpu() for k, a in aux.items()}) if kind in ROUTING else None
    shares = train_shares or shares  # the routes the timed calls took
    began = time.perf_counter()
    if "compiled" in models:
        caller("compiled", models["compiled"])()  # compile outside the timed rounds
    compile_s = time.perf_counter() - began
    ms = interleaved_medians({k: caller(k, m) for k, m in models.items()}, args.budget, sync)
    return {
        "framework": "torch",
        "device": str(dev),
        "precision": precision,
        "mode": mode,
        "rule": kind,
        "batch": B,
        "ms": ms,
        "compile_s": round(compile_s, 2) if "compiled" in models else None,
        "routes": shares,
        "macs": rule_macs(s, B, shares) * (3 if train else 1),
    }


# --- keras on jax -----------------------------------------------------------------------


def keras_rows(args, devices: list[str]) -> tuple[list[dict], dict]:
    """Run this script's ``--keras-worker`` under ``KERAS_BACKEND=jax``, once per device."""
    rows, gemm = [], {}
    for device in devices:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS=device)
            cmd = [sys.executable, __file__, "--keras-worker", str(out), *sys.argv[1:]]
            done = subprocess.run(cmd, env=env, check=False)
            if done.returncode or not out.exists():
                print(f"keras-jax on {device}: worker exited {done.returncode}", flush=True)
                continue
            payload = json.loads(out.read_text())
            rows += payload["rows"]
            gemm.update(payload["gemm"])
    return rows, gemm


def keras_worker(args, out_path: str) -> None:
    import jax
    import jax.numpy as jnp

    from fusion_spec.backends import keras as bk

    device = jax.devices()[0].platform
    device = "cpu" if device == "cpu" else "cuda"
    sync = None
    rows = []

    def jax_rate(m, k, n):
        x, w = jnp.ones((m, k), jnp.float32), jnp.ones((k, n), jnp.float32)
        f = jax.jit(lambda x, w: jnp.matmul(x, w, precision="highest"))
        ms = interleaved_medians({"gemm": lambda: f(x, w).block_until_ready()}, 0.5, sync)
        return 2.0 * m * k * n / (ms["gemm"] * 1e-3) / 1e9

    best = jax_rate(2048, 2048, 2048)
    gemm = {f"keras-jax-{device}": {"best_gflops": best}}
    for precision in args.precisions:
        policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
        for B in args.batches:
            rate = jax_rate(B, args.dim, 4 * args.dim)
            gemm[f"keras-jax-{device}"][f"B{B}_gflops"] = rate
            for kind in args.rules:
                for mode in args.modes:
                    row = _keras_case(args, bk, device, policy, kind, mode, B)
                    row.update(precision=precision, gemm_gflops=rate, best_gflops=best)
                    _finish(row)
                    rows.append(row)
                    print(_line(row), flush=True)
    Path(out_path).write_text(json.dumps({"rows": rows, "gemm": gemm}))


def _keras_case(args, bk, device, policy, kind, mode, B) -> dict:
    import jax
    import jax.numpy as jnp
    import keras

    train = mode == "train"
    s = spec.parse({"kind": kind, "dim": args.dim, "input_norm": "none"})  # as the torch cells
    layer = bk.LAYERS[kind](s, seed=0, dtype=policy)
    layer.build()
    layer.load_canonical(spec.init_params(s, seed=0))
    rng = np.random.default_rng(B)
    v = jnp.asarray(rng.standard_normal((B, args.dim), dtype=np.float32))
    t = jnp.asarray(rng.standard_normal((B, args.dim), dtype=np.float32))
    trainable = [x.value for x in layer.trainable_variables]
    fixed = [x.value for x in layer.non_trainable_variables]
    noise = {n.name: jnp.full(n.shape, 0.5, jnp.float32) for n in s.noise(B, training=train)}

    def forward(values, v, t):
        out, _ = layer.stateless_call(values, fixed, v, t, training=train, noise=noise or None)
        return out

    loss = lambda *a: forward(*a).astype("float32").sum()  # noqa: E731
    fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)) if train else forward)
    began = time.perf_counter()
    jax.block_until_ready(fn(trainable, v, t))
    compile_s = time.perf_counter() - began
    ms = interleaved_medians(
        {"compiled": lambda: jax.block_until_ready(fn(trainable, v, t))}, args.budget
    )
    shares = None
    if kind in ROUTING:
        _, aux = layer(v, t, return_aux=True)
        shares = route_shares(kind, {k: keras.ops.convert_to_numpy(a) for k, a in aux.items()})
    return {
        "framework": "keras-jax",
        "device": device,
        "mode": mode,
        "rule": kind,
        "batch": B,
        "ms": ms,
        "compile_s": round(compile_s, 2),
        "routes": shares,
        "macs": rule_macs(s, B, shares) * (3 if train else 1),
    }


# --- results ----------------------------------------------------------------------------


def _finish(row: dict) -> None:
    ms = row["ms"]
    fastest = min(ms[k] for k in ("ours", "compiled") if k in ms)
    row["gflops"] = 2.0 * row["macs"] / (fastest * 1e-3) / 1e9
    row["of_gemm"] = row["gflops"] / row["gemm_gflops"]
    row["of_best"] = row["gflops"] / row["best_gflops"]
    if "original" in ms:
        row["speedup"] = {k: ms["original"] / ms[k] for k in ms if k != "original"}


def _line(row: dict) -> str:
    ms = "  ".join(f"{k} {v:9.3f}" for k, v in row["ms"].items())
    ratio = ""
    if "speedup" in row:
        ratio = "  original/ours " + " ".join(f"{k} {v:.2f}" for k, v in row["speedup"].items())
    return (
        f"{row['framework']:9s} {row['device']:5s} {row['precision']:8s} {row['mode']:5s} "
        f"{row['rule']:22s} B={row['batch']:<6d} {ms} ms{ratio}  of_gemm {row['of_gemm']:.2f}"
    )


def machine() -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    for name in ("torch", "jax", "keras", "numpy"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def markdown(rows: list[dict], meta: dict) -> str:
    """One table per framework x device x precision x mode: ms per call and original/ours."""
    out = [
        f"Measured {meta['date']} on {meta['cpu']} ({meta['cpu_count']} cores"
        + (f", GPU {meta['gpu']}" if meta.get("gpu") else "")
        + f"), {meta['threads']} threads, load average at start "
        + " / ".join(f"{x:.1f}" for x in meta["load_average_at_start"])
        + f"; torch {meta['torch']}, jax {meta['jax']}, keras {meta['keras']}. "
        "Milliseconds per call, median of interleaved rounds; in brackets original / ours "
        "(above 1: ours is faster). `of GEMM`: the rule's achieved multiply-accumulate rate "
        "over the same framework's `(B, D) x (D, 4D)` product at that batch.",
        "",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["framework"], r["device"], r["precision"], r["mode"]), []).append(r)
    for (fw, dev, prec, mode), group in groups.items():
        batches = sorted({r["batch"] for r in group})
        label = "eval forward" if mode == "eval" else "training step (forward + backward)"
        out += [f"### {fw}, {dev}, {prec}, {label}", ""]
        header = ["rule"] + [f"B={b}" for b in batches] + [f"of GEMM (B={batches[-1]})"]
        table = [header]
        for kind in dict.fromkeys(r["rule"] for r in group):
            cells = [f"`{kind}`"]
            for b in batches:
                r = next((r for r in group if r["rule"] == kind and r["batch"] == b), None)
                cells.append(_cell(r) if r else "")
            last = next(r for r in group if r["rule"] == kind and r["batch"] == batches[-1])
            cells.append(f"{last['of_gemm']:.2f}")
            table.append(cells)
        out += _table(table) + [""]
    return "\n".join(out)


def _cell(r: dict) -> str:
    ms = r["ms"]
    parts = []
    for key in ("ours", "compiled"):
        if key in ms:
            ratio = r.get("speedup", {}).get(key)
            label = "" if key == "ours" else "compiled "
            parts.append(f"{label}{ms[key]:.3g}" + (f" ({ratio:.2f}x)" if ratio else ""))
    if "orig_argmax" in ms:
        parts.append(f"vs our routes {r['speedup']['ours'] / r['speedup']['orig_argmax']:.2f}x")
    if "no_st" in ms:
        parts.append(f"without straight-through {r['speedup']['no_st']:.2f}x")
    if "st_chosen" in ms:
        parts.append(f"chosen-route straight-through {r['speedup']['st_chosen']:.2f}x")
    if "original_again" in ms:
        parts.append(f"A/A {r['speedup']['original_again']:.2f}x")
    return "; ".join(parts)


def _table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def svg(rows: list[dict], meta: dict) -> str:
    """Original / ours (eager) against batch size, one line per rule, a panel per mode."""
    picked = [r for r in rows if r["framework"] == "torch" and "speedup" in r]
    picked = [r for r in picked if r["precision"] == "float32" and r["device"] == "cpu"]
    modes = [m for m in ("eval", "train") if any(r["mode"] == m for r in picked)]
    rules = list(dict.fromkeys(r["rule"] for r in picked))
    batches = sorted({r["batch"] for r in picked})
    if not picked or len(batches) < 1:
        return ""
    w, h, pad = 360, 260, 45
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    colours += ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    values = [r["speedup"]["ours"] for r in picked]
    lo, hi = min(0.5, min(values)), max(1.5, max(values))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * len(modes) + 170}" '
        f'height="{h + 20}" font-family="sans-serif" font-size="11">'
    ]
    for i, mode in enumerate(modes):
        x0 = i * w

        def px(b, x0=x0):
            k = batches.index(b)
            return x0 + pad + (w - 2 * pad) * (k / max(1, len(batches) - 1))

        def py(val):
            return h - pad - (h - 2 * pad) * (val - lo) / (hi - lo)

        parts.append(f'<text x="{x0 + w / 2}" y="15" text-anchor="middle">{mode}</text>')
        parts.append(
            f'<line x1="{x0 + pad}" y1="{py(1.0)}" x2="{x0 + w - pad}" y2="{py(1.0)}" '
            'stroke="#999" stroke-dasharray="4"/>'
        )
        for tick in np.linspace(lo, hi, 5):
            parts.append(
                f'<text x="{x0 + pad - 5}" y="{py(tick) + 4}" text-anchor="end">{tick:.2f}</text>'
            )
        for b in batches:
            parts.append(f'<text x="{px(b)}" y="{h - pad + 15}" text-anchor="middle">{b}</text>')
        parts.append(
            f'<text x="{x0 + w / 2}" y="{h - 8}" text-anchor="middle">batch size B</text>'
        )
        for j, kind in enumerate(rules):
            pts = sorted(
                (r["batch"], r["speedup"]["ours"])
                for r in picked
                if r["mode"] == mode and r["rule"] == kind
            )
            if pts:
                path = " ".join(f"{px(b):.1f},{py(val):.1f}" for b, val in pts)
                colour = colours[j % len(colours)]
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
                )
    for j, kind in enumerate(rules):
        y = 30 + 16 * j
        colour = colours[j % len(colours)]
        x = w * len(modes) + 5
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{y}">{kind}</text>')
    parts.append(
        f'<text x="{w * len(modes) + 5}" y="{30 + 16 * len(rules) + 10}">original / ours</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="B 16 256 4096, float32, torch on the CPU")
    p.add_argument("--rules", nargs="*", default=list(spec.RULES))
    p.add_argument("--batches", nargs="*", type=int)
    p.add_argument("--frameworks", nargs="*", choices=("torch", "keras-jax"))
    p.add_argument("--devices", nargs="*", choices=("cpu", "cuda"))
    p.add_argument("--modes", nargs="*", default=["eval", "train"], choices=("eval", "train"))
    p.add_argument("--precisions", nargs="*", choices=("float32", "bfloat16"))
    p.add_argument("--variants", nargs="*", choices=("eager", "compiled"))
    p.add_argument("--dispatch", action="store_true", help="also time dense and sparse dispatch")
    p.add_argument(
        "--control",
        action="store_true",
        help="also time a second copy of the original: each cell's A/A ratio is its noise floor",
    )
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed rounds per case")
    p.add_argument("--json", default="benchmarks/results/bench.json")
    p.add_argument("--markdown", default="benchmarks/results/bench.md")
    p.add_argument("--svg", default="benchmarks/results/bench.svg")
    p.add_argument("--keras-worker", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    cuda = _cuda_available()
    args.batches = args.batches or list(QUICK_BATCHES if args.quick else FULL_BATCHES)
    args.frameworks = args.frameworks or (["torch"] if args.quick else ["torch", "keras-jax"])
    args.devices = args.devices or (["cpu", "cuda"] if cuda and not args.quick else ["cpu"])
    args.precisions = args.precisions or (["float32"] if args.quick else ["float32", "bfloat16"])
    args.variants = args.variants or (["eager"] if args.quick else ["eager", "compiled"])
    if args.keras_worker:
        keras_worker(args, args.keras_worker)
        return
    meta = machine()
    meta.update(threads=args.threads, argv=sys.argv[1:], dim=args.dim)
    rows, gemm = [], {}
    if "torch" in args.frameworks:
        r, g = torch_rows(args, args.devices)
        rows += r
        gemm.update(g)
    if "keras-jax" in args.frameworks:
        r, g = keras_rows(args, args.devices)
        rows += r
        gemm.update(g)
    meta["load_average_at_end"] = os.getloadavg()
    meta["gemm"] = gemm
    for path, text in (
        (args.json, json.dumps({"machine": meta, "rows": rows}, indent=1) + "\n"),
        (args.markdown, markdown(rows, meta) + "\n"),
        (args.svg, svg(rows, meta)),
    ):
        if path and text:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
            print(f"wrote {path}")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
