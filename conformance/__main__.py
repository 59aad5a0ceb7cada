"""``python -m fusion_spec.conformance``: judge backends and write the report.

Default: the reference and the PyTorch backend in this process, and the Keras
backend once per Keras backend (jax, torch, tensorflow, numpy) in subprocesses, merged
into one matrix on stdout, ``reports/conformance.md`` and
``reports/conformance.json``. ``python -m fusion_spec.conformance golden`` regenerates the
golden vectors (``--check`` only compares).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import golden, report, xfail
from .adapter import load_adapter
from .adapters import BUNDLED, KERAS_BACKENDS, not_installed
from .runner import run_adapter, run_bundled
from .suite import all_checks, select


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusion_spec.conformance",
        description="Judge fusion-spec backends against the float64 reference, rule by rule.",
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=("run", "golden", "list"),
        default="run",
        help="run the suite (default), regenerate the golden vectors, or list check ids",
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
    p.add_argument("--jobs", type=int, default=2, help="Keras subprocesses at a time (default: 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--check", action="store_true", help="golden: compare only, write nothing")
    p.add_argument("--rows-out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "golden":
        return golden.main(check=args.check)
    checks = select(all_checks(), args.include, args.exclude)
    if args.command == "list":
        print("\n".join(c.id for c in checks))
        return 0
    progress = None if args.quiet else sys.stderr
    began = time.perf_counter()
    if args.rows_out:  # a Keras subprocess of the bundled run
        adapter = load_adapter(BUNDLED[args.backend[0]])
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
    if args.quiet:
        forward_args.append("--quiet")
    if args.backend:
        rows, backends, seconds = [], {}, {}
        for target in args.backend:
            start = time.perf_counter()
            adapter = load_adapter(BUNDLED.get(target, target))
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
    for r in report.problems(rows):
        first = r["message"].splitlines()[0] if r["message"] else ""
        print(f"{r['status'].upper():8} {r['backend']} {r['id']}: {first}")
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    counts = report.summarise(rows)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    print(f"\n{len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print(f"wall time: {timing}")
    print(f"reports: {args.markdown}, {args.json}")
    return 1 if counts["fail"] + counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
