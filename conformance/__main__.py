"""``python -m fusion_spec.conformance``: judge backends and write the report.

Default: the reference and the PyTorch backend in this process, and the Keras
backend once per Keras backend (jax, torch, tensorflow, numpy) in subprocesses, merged
into one matrix on stdout, ``reports/conformance.md`` and
``reports/conformance.json``. ``python -m fusion_spec.conformance golden`` regenerates the
golden vectors (``--check`` only compares); ``kill-matrix`` runs the planted-bug
catalogue and writes ``docs/kill-matrix.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import golden, report, xfail
from .adapter import load_adapter
from .adapters import (
    BUNDLED,
    DEVICE_ADAPTERS,
    DEVICES,
    KERAS_BACKENDS,
    PRECISIONS,
    device_env,
    not_installed,
)
from .runner import hint_first, run_adapter, run_bundled
from .suite import all_checks, select


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusion_spec.conformance",
        description="Judge fusion-spec backends against the float64 reference, rule by rule.",
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=("run", "golden", "list", "kill-matrix"),
        default="run",
        help="run the suite (default), regenerate the golden vectors, list check ids, or run "
        "the planted bugs and write their kill matrix (--markdown, default docs/kill-matrix.md)",
    )
    p.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="NAME|module:Adapter",
        help=f"a bundled backend ({', '.join(BUNDLED)}; 'keras' judges this process's "
        "KERAS_BACKEND) or an adapter class; repeatable. Default: reference, torch and "
        "keras once per --keras-backends in subprocesses",
    )
    p.add_argument(
        "--keras-backends",
        default=",".join(KERAS_BACKENDS),
        help="Keras backends of the default run, one subprocess each (default: %(default)s)",
    )
    p.add_argument(
        "-k",
        "--include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only checks whose id (rule/category/name) matches; shell pattern, repeatable",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="skip checks whose id matches; shell pattern, repeatable",
    )
    p.add_argument(
        "--xfail", metavar="FILE", help="expected-failures file (BACKEND CHECK REASON per line)"
    )
    p.add_argument(
        "--markdown",
        default="reports/conformance.md",
        metavar="PATH",
        help="Markdown report (default: %(default)s)",
    )
    p.add_argument(
        "--json",
        default="reports/conformance.json",
        metavar="PATH",
        help="JSON report (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of each adapter's own RNG (adapters that take one; default: theirs, 0)",
    )
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="device of the bundled torch and Keras adapters (default: %(default)s)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="matrix products of the bundled torch and Keras adapters: float32, or the "
        "TF32 opt-in judged by its own tolerance policy (default: %(default)s)",
    )
    p.add_argument("--jobs", type=int, default=2, help="Keras subprocesses at a time (default: 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--check", action="store_true", help="golden: compare only, write nothing")
    p.add_argument("--rows-out", help=argparse.SUPPRESS)
    return p


def bundled_adapter(name: str, device: str, precision: str, seed: int | None = None):
    """The bundled adapter ``name`` (``torch``, ``keras``, ...) on ``device`` at ``precision``.

    Keras reads its device from the environment at import: ``device_env`` is
    applied first (it takes effect when Keras is not imported yet; the adapter
    refuses a framework that computes elsewhere).
    """
    if name == "keras":
        os.environ.update(device_env(device))
    if name in DEVICE_ADAPTERS:
        return load_adapter(BUNDLED[name], seed, device=device, precision=precision)
    return load_adapter(BUNDLED[name], seed)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "golden":
        return golden.main(check=args.check)
    if args.command == "kill-matrix":
        return _kill_matrix(args)
    checks = select(all_checks(), args.include, args.exclude)
    if args.command == "list":
        return _print_lines(c.id for c in checks)
    progress = None if args.quiet else sys.stderr
    began = time.perf_counter()
    if args.rows_out:  # a Keras subprocess of the bundled run
        adapter = bundled_adapter(args.backend[0], args.device, args.precision, args.seed)
        rows = run_adapter(adapter, checks, progress)
        payload = {
            "rows": rows,
            "backends": {adapter.name: adapter.describe()},
            "seconds": {adapter.name: time.perf_counter() - began},
        }
        Path(args.rows_out).write_text(json.dumps(payload, default=float))
        return 0
    forward_args = [a for p in args.include for a in ("--include", p)]
    forward_args += [a for p in args.exclude for a in ("--exclude", p)]
    forward_args += ["--device", args.device, "--precision", args.precision]
    if args.quiet:
        forward_args.append("--quiet")
    if args.seed is not None:
        forward_args += ["--seed", str(args.seed)]
    if args.backend:
        rows, backends, seconds = [], {}, {}
        for target in args.backend:
            start = time.perf_counter()
            adapter = (
                bundled_adapter(target, args.device, args.precision, args.seed)
                if target in BUNDLED
                else load_adapter(target, args.seed)
            )
            backends[adapter.name] = adapter.describe()
            rows += run_adapter(adapter, checks, progress)
            seconds[adapter.name] = time.perf_counter() - start
    else:
        # the default run judges the bundled backends whose frameworks are installed
        skipped = {
            name: why
            for name in ["torch", *(f"keras-{b}" for b in args.keras_backends.split(",") if b)]
            if (why := not_installed(name))
        }
        keras_backends = [
            b for b in args.keras_backends.split(",") if b and f"keras-{b}" not in skipped
        ]
        rows, backends, seconds = run_bundled(
            ["reference", *(["torch"] if "torch" not in skipped else []), "keras"],
            keras_backends,
            checks,
            forward_args,
            args.jobs,
            progress,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
        )
        for name, why in skipped.items():
            backends[name] = f"not judged: {why}"
            print(f"not judged: {name}, {why}")
    warnings = xfail.apply(rows, xfail.load(args.xfail)) if args.xfail else []
    seconds["total"] = time.perf_counter() - began
    report.write(
        rows, backends, warnings, json_path=args.json, markdown_path=args.markdown, seconds=seconds
    )
    print(report.render_text(report.matrix(rows)))
    print()
    print(report.render_text(report.category_matrix(rows)))
    print()
    print("worst error as a fraction of its tolerance (1 = at the edge):")
    print(report.render_text(report.headroom_matrix(rows)))
    for r in report.problems(rows):
        first = r["message"].splitlines()[0] if r["message"] else ""
        print(f"{r['status'].upper():8} {r['backend']} {r['id']}: {hint_first(first)}")
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    counts = report.summarise(rows)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    print(f"\n{len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print(f"wall time: {timing}")
    print(f"reports: {args.markdown}, {args.json}")
    return 1 if counts["fail"] + counts["error"] else 0


def _print_lines(lines) -> int:
    """Print ``lines``; a reader that closes the pipe early (``| head``) ends it quietly."""
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def _kill_matrix(args) -> int:
    from . import planted

    path = Path(
        "docs/kill-matrix.md"
        if args.markdown == _parser().get_default("markdown")
        else args.markdown
    )
    kills = []
    for bug in planted.BUGS:
        if not planted.available(bug):
            print(f"not run: {bug.name} needs {bug.requires}", file=sys.stderr)
            continue
        kill = planted.run_bug(bug)
        kills.append(kill)
        if not args.quiet:
            state = f"killed by {len(kill.caught)}/{len(kill.ran)}" if kill.killed else "SURVIVED"
            print(f"[kill-matrix] {bug.name}: {state}", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(planted.markdown(kills))
    survived = [k.bug.name for k in kills if not k.killed]
    print(f"{len(kills) - len(survived)}/{len(kills)} planted bugs killed; wrote {path}")
    if survived:
        print(f"survivors: {', '.join(survived)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
