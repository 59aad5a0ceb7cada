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
from .runner import DEFAULT_TIMEOUT, hint_first, run_adapter, run_bundled
from .suite import all_checks, select

PROG = "python -m fusion_spec.conformance"


class UsageError(Exception):
    """A bad argument, found before the run: one line on stderr and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line and exit code 2 (argparse would print its usage block first)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _seconds(text: str) -> float:
    """``--timeout``: seconds >= 0 (0: no limit)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds >= 0 (0: no limit); received {text!r}"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
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
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="seconds each check may run before it is abandoned and reported as an error "
        "'timed out after N s'; the run goes on (0: no limit; default: %(default)g)",
    )
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
    """The command line; returns the exit code: 0 all judged checks pass (or are expected
    failures), 1 some fail, 2 a bad argument (one line on stderr, nothing run)."""
    try:
        return _main(argv)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "golden":
        return golden.main(check=args.check)
    if args.command == "kill-matrix":
        return _kill_matrix(args)
    everything = all_checks()
    checks = select(everything, args.include, args.exclude)
    if not checks:
        raise UsageError(
            f"no checks selected: -k/--include {args.include} and --exclude {args.exclude} "
            f"match none of the {len(everything)} checks ('{PROG} list' prints their ids)"
        )
    if args.command == "list":
        return _print_lines(c.id for c in checks)
    timeout = args.timeout or None
    progress = None if args.quiet else sys.stderr
    began = time.perf_counter()
    if args.rows_out:  # a Keras subprocess of the bundled run
        adapter = _adapter(args.backend[0], args)
        rows = run_adapter(adapter, checks, progress, timeout)
        payload = {
            "rows": rows,
            "backends": {adapter.name: adapter.describe()},
            "seconds": {adapter.name: time.perf_counter() - began},
        }
        Path(args.rows_out).write_text(json.dumps(payload, default=float))
        return 0
    # every argument is checked before the first check runs
    expected = _xfail(args.xfail) if args.xfail else None
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        _check_writable(option, path)
    if args.jobs < 1:
        raise UsageError(f"--jobs expected a positive int; received {args.jobs}")
    forward_args = [a for p in args.include for a in ("--include", p)]
    forward_args += [a for p in args.exclude for a in ("--exclude", p)]
    forward_args += ["--device", args.device, "--precision", args.precision]
    forward_args += ["--timeout", repr(args.timeout)]
    if args.quiet:
        forward_args.append("--quiet")
    if args.seed is not None:
        forward_args += ["--seed", str(args.seed)]
    not_judged = []
    if args.backend:
        adapters = [_adapter(target, args) for target in args.backend]
        rows, backends, seconds = [], {}, {}
        for adapter in adapters:
            start = time.perf_counter()
            backends[adapter.name] = adapter.describe()
            rows += run_adapter(adapter, checks, progress, timeout)
            seconds[adapter.name] = time.perf_counter() - start
    else:
        # the default run judges the bundled backends whose frameworks are installed
        asked = [b for b in args.keras_backends.split(",") if b]
        unknown = [b for b in asked if b not in KERAS_BACKENDS]
        if unknown:
            raise UsageError(
                f"--keras-backends expected names among {list(KERAS_BACKENDS)}; "
                f"received {args.keras_backends!r}"
            )
        skipped = {
            name: why
            for name in ["torch", *(f"keras-{b}" for b in asked)]
            if (why := not_installed(name))
        }
        if "torch" not in skipped:
            # refuses --device cuda without CUDA (and any other setting) before the run
            _adapter("torch", args, f"--device {args.device} --precision {args.precision}")
        keras_backends = [b for b in asked if f"keras-{b}" not in skipped]
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
            timeout=timeout,
        )
        for name, why in skipped.items():
            backends[name] = f"not judged: {why}"
            not_judged.append(f"not judged: {name}, {why}")
    warnings = xfail.apply(rows, expected) if expected is not None else []
    seconds["total"] = time.perf_counter() - began
    try:
        report.write(
            rows,
            backends,
            warnings,
            json_path=args.json,
            markdown_path=args.markdown,
            seconds=seconds,
        )
    except OSError as e:  # checked before the run; the disk may still fill up
        raise UsageError(f"cannot write the reports: {e}") from None
    counts = report.summarise(rows)
    _print_lines(_summary(rows, counts, seconds, not_judged, args))
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    return 1 if counts["fail"] + counts["error"] else 0


def _summary(rows, counts, seconds, not_judged, args):
    """The lines of the run's summary on stdout."""
    yield from not_judged
    yield report.render_text(report.matrix(rows))
    yield ""
    yield report.render_text(report.category_matrix(rows))
    yield ""
    yield "worst error as a fraction of its tolerance (1 = at the edge):"
    yield report.render_text(report.headroom_matrix(rows))
    for r in report.problems(rows):
        first = r["message"].splitlines()[0] if r["message"] else ""
        yield f"{r['status'].upper():8} {r['backend']} {r['id']}: {hint_first(first)}"
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    yield f"\n{len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    yield f"wall time: {timing}"
    yield f"reports: {args.markdown}, {args.json}"


def _adapter(target: str, args, option: str | None = None):
    """The adapter ``target`` (a bundled name or ``module:Adapter``), or a ``UsageError``
    naming the option and why it cannot be made (bad name, import error, no CUDA)."""
    try:
        if target in BUNDLED:
            return bundled_adapter(target, args.device, args.precision, args.seed)
        return load_adapter(target, args.seed)
    except Exception as e:  # noqa: BLE001 (any failure to make it is the user's argument)
        first = (str(e).splitlines() or [""])[0]
        if option is None:
            option = f"--backend {target!r}"
        unknown = ":" not in target and target not in BUNDLED
        bundled = f"; bundled: {', '.join(BUNDLED)}" if unknown else ""
        which = f"the {target} adapter" if target in BUNDLED else "the adapter"
        raise UsageError(
            f"{option}: cannot load {which} ({type(e).__name__}: {first}){bundled}"
        ) from None


def _xfail(path: str):
    """The expected-failures file, or a ``UsageError`` naming it and the reason."""
    try:
        return xfail.load(path)
    except OSError as e:
        raise UsageError(
            f"--xfail {path}: cannot read the expected-failures file ({e.strerror or e})"
        ) from None
    except (ValueError, UnicodeDecodeError) as e:  # a line without a reason names itself
        raise UsageError(f"--xfail {e}") from None


def _check_writable(option: str, path: str) -> None:
    """Refuse, before the run, a report path that cannot be written (a folder, a path under
    a file, no permission, a read-only or virtual file system): by trying, since
    ``os.access`` answers yes to root everywhere. Missing folders are created, as the
    report would create them; a file created by the try is removed again."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: expected a file path; received a directory")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: cannot write the report: {folder} is not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.close(os.open(target, os.O_WRONLY | os.O_APPEND))  # changes nothing
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            target.unlink()
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
        raise UsageError(
            f"{option} {path}: cannot write the report: {e.strerror or e}{where}"
        ) from None


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
