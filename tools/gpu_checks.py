"""GPU checks: the CUDA conformance runs, a host-synchronisation check, and the GPU benchmark.

Run on a machine with one CUDA GPU and the CUDA builds of torch and jax
(``pip install -U "jax[cuda13]"``; a CUDA torch wheel), from the repository root::

    python tools/gpu_checks.py --out gpu-results        # about 8 minutes on one GPU

Steps, each in its own subprocess with its share of ``--budget`` (seconds),
writing into ``--out``:

1. ``conformance-cuda.{md,json}``: ``python -m fusion_spec.conformance --device cuda``
   over torch and Keras on jax and torch, float32, default settings (the layers pin
   JAX's matrix products to float32; TF32 is not used);
2. ``sync.txt``: every rule's eager forward and backward on CUDA under
   ``torch.cuda.set_sync_debug_mode("error")`` with the default dispatch, at B = 256
   and 4096 (a host synchronisation raises);
3. ``bench-cuda.{json,md,svg}``: ``benchmarks/bench.py`` on CUDA: torch eager
   (float32 and bfloat16 autocast, with the routing rules' dense and sparse dispatch,
   which gives the crossover for ``SPARSE_MIN_BATCH["cuda"]``) and Keras on JAX
   (float32), B = 256, 4096, 32768; then torch compiled, float32, B = 4096.

``summary.md`` lists what ran, how long it took and where the figures are.
``--smoke`` runs the same steps on the CPU at a toy size (a test runs it, with
``--budget 0``: no time limit, so that a loaded machine makes it slower, never red).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SYNC_CHECK = """
import sys, torch
from fusion_spec import spec
from fusion_spec.backends import torch as bt
device, dim, batches = sys.argv[1], int(sys.argv[2]), [int(b) for b in sys.argv[3:]]
if device == "cuda":
    torch.cuda.set_sync_debug_mode("error")
for kind in spec.RULES:
    s = spec.parse({"kind": kind, "dim": dim})
    module = bt.build(s).to(device)
    for B in batches:
        v = torch.randn(B, dim, device=device, requires_grad=True)
        t = torch.randn(B, dim, device=device, requires_grad=True)
        for training in (False, True):
            out = module.train(training)(v, t)
            out.sum().backward()
    print(f"{kind}: no host synchronisation (B = {batches}, eval and training)", flush=True)
"""


def step(name: str, cmd: list[str], timeout: float | None, log: list[str]) -> bool:
    """Run one step; ``timeout`` in seconds, ``None`` for no limit."""
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    began = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, timeout=timeout, check=False)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    took = time.perf_counter() - began
    log.append(f"| {name} | {status} | {took:.0f} s |")
    print(f"== {name}: {status} in {took:.0f} s", flush=True)
    return status == "ok"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu-results")
    p.add_argument(
        "--budget", type=float, default=480.0, help="seconds for all steps (0: no limit)"
    )
    p.add_argument("--smoke", action="store_true", help="the same steps on the CPU, toy size")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    if args.smoke:
        device, dim, batches, sync_batches = "cpu", "32", ["8"], ["8"]
        rules, budget = ["--rules", "gated", "shomr"], "0.01"
        include = ["-k", "gated/forward/gated_default", "-k", "shomr/forward/shomr_default"]
    else:
        import torch

        if not torch.cuda.is_available():
            print("gpu_checks: no CUDA device (torch.cuda.is_available() is False); --smoke runs "
                  "the steps on the CPU", file=sys.stderr)
            return 2
        device, dim, batches, sync_batches = "cuda", "512", ["256", "4096", "32768"], ["256", "4096"]
        rules, include, budget = [], [], "0.3"
    began = time.perf_counter()
    log = ["| step | status | wall |", "|---|---|---|"]

    def left(share: float) -> float | None:
        """The step's time limit: its share of the budget, at most what is left of it."""
        if not args.budget:
            return None
        return max(1.0, min(share * args.budget, args.budget - (time.perf_counter() - began)))

    conformance = [py, "-m", "fusion_spec.conformance", "--device", device, "--quiet"]
    conformance += ["--keras-backends", "jax,torch", *include]
    conformance += ["--markdown", str(out / f"conformance-{device}.md")]
    conformance += ["--json", str(out / f"conformance-{device}.json")]
    ok = step("conformance", conformance, left(0.3), log)
    sync_log = out / "sync.txt"
    with sync_log.open("w") as f:
        done = subprocess.run(
            [py, "-c", SYNC_CHECK, device, dim, *sync_batches],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=left(0.1),
            check=False,
        )
    log.append(f"| host synchronisation | {'ok' if done.returncode == 0 else 'FAILED'} | |")
    ok &= done.returncode == 0
    bench = [py, "benchmarks/bench.py", "--devices", device, "--dim", dim, "--budget", budget]
    bench += ["--batches", *batches, *rules]
    eager = bench + ["--frameworks", "torch", "--variants", "eager", "--dispatch"]
    eager += ["--precisions", "float32", "bfloat16"]
    eager += [f"--{k}={out / f'bench-{device}.{k}'}" for k in ("json", "markdown", "svg")]
    ok &= step("benchmark, torch eager", eager, left(0.35), log)
    few = rules[:2] if args.smoke else []  # the toy run compiles one rule only
    keras = bench + [*few, "--frameworks", "keras-jax", "--precisions", "float32"]
    keras += [f"--{k}={out / f'bench-{device}-keras-jax.{k}'}" for k in ("json", "markdown", "svg")]
    ok &= step("benchmark, keras-jax", keras, left(0.6), log)
    compiled = bench[: bench.index("--batches")] + ["--batches", batches[len(batches) // 2]]
    compiled += few or rules
    compiled += ["--frameworks", "torch", "--variants", "eager", "compiled"]
    compiled += ["--precisions", "float32", "--modes", "eval"]
    compiled += [f"--{k}={out / f'bench-{device}-compiled.{k}'}" for k in ("json", "markdown", "svg")]
    ok &= step("benchmark, torch compiled", compiled, left(1.0), log)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = [f"# GPU checks, {stamp}, device {device}", "", *log, ""]
    summary.append(f"Total {time.perf_counter() - began:.0f} s. Figures: {out}.")
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
