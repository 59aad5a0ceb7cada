"""``tools/gpu_checks.py --smoke``: the GPU script's steps run end to end (on the CPU, toy size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_checks_smoke_runs_every_step_and_writes_its_figures(tmp_path):
    """Functional only: ``--budget 0`` lifts the steps' time limits (how long they take is
    the script's output, not a pass condition: a loaded machine is slower, not wrong)."""
    cmd = [sys.executable, "tools/gpu_checks.py", "--smoke", "--budget", "0", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    assert summary.count("| ok |") == 5, summary
    report = json.loads((tmp_path / "conformance-cpu.json").read_text())
    assert set(report["backends"]) == {"reference", "torch", "keras-jax", "keras-torch"}
    assert report["summary"] == {"pass": 8}
    assert "gated: no host synchronisation" in (tmp_path / "sync.txt").read_text()
    rows = json.loads((tmp_path / "bench-cpu.json").read_text())["rows"]
    assert {(r["rule"], r["mode"], r["precision"]) for r in rows} == {
        (k, m, p) for k in ("gated", "shomr") for m in ("eval", "train")
        for p in ("float32", "bfloat16")
    }
    assert all(r["ms"]["ours"] > 0 and "original" in r["ms"] for r in rows)
    assert {"dense", "sparse"} <= set(next(r for r in rows if r["rule"] == "shomr")["ms"])
    keras = json.loads((tmp_path / "bench-cpu-keras-jax.json").read_text())["rows"]
    assert {(r["framework"], r["rule"]) for r in keras} == {("keras-jax", "gated")}
    compiled = json.loads((tmp_path / "bench-cpu-compiled.json").read_text())["rows"]
    assert all("compiled" in r["ms"] for r in compiled)
    assert (tmp_path / "bench-cpu.svg").read_text().startswith("<svg")
