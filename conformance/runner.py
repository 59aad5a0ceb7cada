"""Running adapters through the checks: in this process, or one subprocess per Keras backend.

Keras picks its backend once per process from ``KERAS_BACKEND``, so the bundled
run judges Keras by spawning ``python -m fusion_spec.conformance --backend keras --rows-out F``
once per Keras backend (at most ``jobs`` at a time) while this process runs
the other backends, then merges every row into one matrix.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from .adapter import Adapter, load_adapter
from .adapters import BUNDLED, DEVICE_ADAPTERS, device_env
from .suite import SHARED_EXPECTED, Check, Outcome, run_check

#: Seconds a check may run before it is abandoned and reported as an error (``--timeout``).
DEFAULT_TIMEOUT = 120.0


def row(adapter: Adapter, check: Check, outcome) -> dict:
    return {
        "backend": adapter.name,
        "id": check.id,
        "rule": check.rule,
        "category": check.category,
        "name": check.name,
        "status": outcome.status,
        "message": outcome.message,
        "seconds": round(outcome.seconds, 4),
        "tensors": outcome.tensors,
        "stats": outcome.stats,
    }


def run_adapter(
    adapter: Adapter,
    checks: list[Check],
    progress: TextIO | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> list[dict]:
    """Every check on one adapter; one progress line per rule, and one per failing check.

    ``timeout``: seconds each check may take (``None`` or 0: no limit); see
    ``run_check_within``.
    """
    rows: list[dict] = []
    rule, start = None, time.perf_counter()
    for check in checks:
        if check.rule != rule:
            _rule_done(adapter, rule, rows, start, progress)
            rule, start = check.rule, time.perf_counter()
        outcome = run_check_within(adapter, check, timeout)
        rows.append(row(adapter, check, outcome))
        if progress and outcome.status in ("fail", "error"):
            print(
                f"[{adapter.name}]   {outcome.status.upper()} {check.id}: "
                f"{hint_first(outcome.message)}",
                file=progress,
                flush=True,
            )
    _rule_done(adapter, rule, rows, start, progress)
    return rows


def run_check_within(adapter: Adapter, check: Check, timeout: float | None) -> Outcome:
    """``run_check`` with a time limit: a check still running after ``timeout`` seconds
    is an ``error`` outcome "timed out after N s", and the run goes on.

    The check runs in a daemon thread that is abandoned when it overruns: Python cannot
    stop a thread, and a hung adapter call (a lock, a blocking read, a loop) may never
    return, but it no longer holds up the run, and a daemon thread does not keep the
    process alive at exit. ``None`` or 0: no limit (the check runs in this thread).
    """
    if not timeout:
        return run_check(adapter, check)
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["outcome"] = run_check(adapter, check)
        except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
            result["raised"] = e

    worker = threading.Thread(target=work, name=f"conformance {check.id}", daemon=True)
    began = time.perf_counter()
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return Outcome(
            "error",
            f"timed out after {timeout:g} s (--timeout): the check was abandoned, still "
            "running in a background thread",
            seconds=time.perf_counter() - began,
        )
    if "raised" in result:
        raise result["raised"]  # a bug of the suite itself (gradients.CaseError)
    return result["outcome"]


def hint_first(message: str) -> str:
    """The failure message whole, its ``hint:`` (the likely bug) moved to the front."""
    parts = message.split("; ")
    hints = [p for p in parts if p.startswith("hint:")]
    return "; ".join(hints + [p for p in parts if not p.startswith("hint:")])


def _rule_done(adapter, rule, rows, start, progress) -> None:
    if progress is None or rule is None:
        return
    mine = [r for r in rows if r["rule"] == rule]
    counts = {
        s: sum(r["status"] == s for r in mine) for s in ("pass", "fail", "error", "boundary", "n/a")
    }
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    print(
        f"[{adapter.name}] {rule}: {text} ({time.perf_counter() - start:.1f} s)",
        file=progress,
        flush=True,
    )


#: One compute thread per process: the checks' tensors are tiny (at most 6 x 48), and
#: processes sharing the cores with multi-threaded BLAS/Eigen pools run several times
#: slower than single-threaded ones.
SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


#: Relative wall time of each Keras backend's subprocess (seconds on 2 cores, 2026-11-28):
#: the order in which they are launched.
KERAS_COST = {"jax": 47, "tensorflow": 21, "torch": 14, "numpy": 5}


def spawn_keras(
    keras_backend: str, args: list[str], rows_out: Path, device: str = "cpu"
) -> subprocess.Popen:
    """``python -m fusion_spec.conformance --backend keras`` under ``KERAS_BACKEND=keras_backend``."""
    env = dict(os.environ, KERAS_BACKEND=keras_backend, **SINGLE_THREAD, **device_env(device))
    cmd = [
        sys.executable,
        "-m",
        "fusion_spec.conformance",
        "--backend",
        "keras",
        "--rows-out",
        str(rows_out),
        *args,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


def run_bundled(
    names: list[str],
    keras_backends: list[str],
    checks: list[Check],
    forward_args: list[str],
    jobs: int,
    progress: TextIO | None,
    seed: int | None = None,
    *,
    device: str = "cpu",
    precision: str = "float32",
    timeout: float | None = DEFAULT_TIMEOUT,
) -> tuple[list[dict], dict[str, str], dict[str, float]]:
    """The bundled backends ``names``; ``keras`` expands to one subprocess per Keras backend.

    ``device`` and ``precision`` go to the torch and Keras adapters (the Keras
    subprocesses also get ``device_env(device)``; ``forward_args`` must carry
    ``--device``/``--precision``/``--timeout`` for them). Returns rows, ``{backend: description}``
    and wall seconds per backend.
    """
    if "torch" in names:
        import torch

        torch.set_num_threads(1)  # see SINGLE_THREAD
    rows: list[dict] = []
    described: dict[str, str] = {}
    seconds: dict[str, float] = {}
    # the slowest first (Keras on JAX compiles every operation per new shape: ~45 s of a
    # ~50 s run on 2 cores), so that it never waits for a slot
    pending = (
        sorted(keras_backends, key=lambda kb: KERAS_COST.get(kb, 0), reverse=True)
        if "keras" in names
        else []
    )
    running: list[tuple[str, subprocess.Popen, Path]] = []
    in_process = [n for n in names if n != "keras"]
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp, _shared_expected(tmp):

        def launch():
            # this process's own backends hold one of the ``jobs`` slots while they run
            slots = max(1, jobs - (1 if in_process else 0))
            while pending and len(running) < slots:
                kb = pending.pop(0)
                out = Path(tmp) / f"keras-{kb}.json"
                running.append((kb, spawn_keras(kb, forward_args, out, device), out))

        def reap() -> bool:
            """Collect every finished subprocess (none waited for); True if any was."""
            finished = False
            for item in list(running):
                kb, proc, out = item
                if proc.poll() is None:
                    continue
                finished = True
                running.remove(item)
                name = f"keras-{kb}"
                if out.exists():
                    payload = json.loads(out.read_text())
                    rows.extend(payload["rows"])
                    described.update(payload["backends"])
                    seconds.update(payload["seconds"])
                else:
                    described[name] = f"did not run (subprocess exit {proc.returncode})"
                    rows.extend(_crashed(name, checks, proc.returncode))
                launch()
            return finished

        launch()
        for name in names:
            if name == "keras":
                continue
            began = time.perf_counter()
            adapter = (
                load_adapter(BUNDLED[name], seed, device=device, precision=precision)
                if name in DEVICE_ADAPTERS
                else load_adapter(BUNDLED[name], seed)
            )
            described[adapter.name] = adapter.describe()
            rows.extend(run_adapter(adapter, checks, progress, timeout))
            seconds[adapter.name] = time.perf_counter() - began
            in_process.remove(name)
            reap()
        launch()
        while running or pending:
            # whichever finishes first frees its slot (not the first launched)
            if not reap():
                time.sleep(0.05)
            launch()
    # columns in the order asked for, whichever subprocess finished first
    wanted = [
        n for name in names for n in ([f"keras-{kb}" for kb in keras_backends] if name == "keras" else [name])
    ]
    rank = {n: i for i, n in enumerate(wanted)}
    described = dict(sorted(described.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    order = {n: i for i, n in enumerate(described)}
    rows.sort(key=lambda r: order.get(r["backend"], len(order)))
    return rows, described, seconds


@contextlib.contextmanager
def _shared_expected(tmp: str):
    """The run's processes share the reference's finite-difference gradients through files
    in ``tmp`` (``suite.SHARED_EXPECTED``): computed once per case instead of once per
    process (5 s each on 2 cores)."""
    folder = Path(tmp) / "expected"
    folder.mkdir()
    before = os.environ.get(SHARED_EXPECTED)
    os.environ[SHARED_EXPECTED] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SHARED_EXPECTED, None)
        else:
            os.environ[SHARED_EXPECTED] = before


def _crashed(name: str, checks: list[Check], code: int) -> list[dict]:
    return [
        {
            "backend": name,
            "id": c.id,
            "rule": c.rule,
            "category": c.category,
            "name": c.name,
            "status": "error",
            "message": f"the {name} subprocess exited with {code}",
            "seconds": 0.0,
            "tensors": [],
            "stats": {},
        }
        for c in checks
    ]
