"""Extra memory of one eval call at a large batch, per (backend, rule), as a multiple of
the inputs: the memory table of docs/performance.md.

    python benchmarks/memory_bench.py --batch 65536 --dim 512 \\
        --json docs/assets/memory_bench.json

How it measures. Each (backend, rule, setting) runs in a fresh Python process, so that
no allocator pool, cache or earlier peak of another measurement is counted:

1. build the layer (``dim`` D, the spec's other defaults, ``dropout=0``), in eval, and
   call it once at B = 64 so that one-off costs (kernel libraries loading, JAX's
   compilation of each operation for a first shape) stay out of the figure;
2. allocate ``v`` and ``t`` ``(B, D)`` float32, filled so that every page is resident;
3. read the resident set (``VmRSS`` of ``/proc/self/status``) and reset the process's
   peak to it (writing ``5`` to ``/proc/self/clear_refs`` sets ``VmHWM`` to ``VmRSS``;
   Linux 4.0 and later);
4. make one eval call at B (PyTorch: under ``torch.inference_mode()``; Keras:
   ``training=False``) and read the peak (``VmHWM``).

The extra memory is the peak minus the resident set before the call, and the ratio is it
over the inputs' bytes (``v`` and ``t``: ``2 B D 4``). The output, ``(B, D)``, is half of
that and is counted. Why the resident set: ``tracemalloc`` sees Python's allocator only,
not PyTorch's CPU allocator nor XLA's; PyTorch's own memory statistics see no JAX or
TensorFlow buffer. The resident set counts every page the process touches, whoever
allocated it; ``ru_maxrss`` cannot be reset, so it would report an earlier, larger peak
(the inputs' creation) instead of the call's. Memory an allocator frees and reuses
within the call is counted once, as the machine sees it.

Keras on JAX, growth per batch size: in one process, calls at ``--growth-batches``
distinct batch sizes (B = 1000, 1001, ...) after a warm-up call; the resident set grows
by the figure reported per new size, against calls repeating one size (the control).
Eager JAX compiles each operation for each new shape and keeps the executable; after
``jax.clear_caches()`` as many calls at new sizes again (B = 2001, ...) grow the
resident set by the third figure: whether the memory the caches held is reused.

Settings: ``chunked`` is the default layer (PyTorch's attention rules and Keras's
chunked rules run an eval call over chunks of the batch); ``whole`` turns chunking off
(``eval_chunk_elements = 0``), the earlier behaviour, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

#: The rules measured: PyTorch chunks the attention rules; Keras also its routing rules.
TORCH_RULES = ("simple", "transformer_concat", "cross_attention")
KERAS_RULES = ("simple", "transformer_concat", "cross_attention", "shomr", "energy_aware_adaptive")
SETTINGS = ("whole", "chunked")


def _status(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _inputs(batch: int, dim: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((batch, dim), dtype=np.float32),
        rng.standard_normal((batch, dim), dtype=np.float32),
    )


def _layer(backend: str, rule: str, dim: int, setting: str):
    """The layer and a function calling it in eval."""
    # input_norm="none": the published runs measured the rules' own intermediates
    fields = {"dim": dim, "dropout": 0.0, "input_norm": "none"}
    if backend == "torch":
        import torch

        from fusion_spec.backends import torch as bt

        torch.manual_seed(0)
        module = bt.build(rule, **fields).eval()
        if setting == "whole":
            module.eval_chunk_elements = 0

        def call(v, t):
            with torch.inference_mode():
                return module(torch.from_numpy(v), torch.from_numpy(t))

        return call
    from fusion_spec.backends import keras as bk

    layer = bk.build(rule, seed=0, **fields)
    if setting == "whole":
        layer.eval_chunk_elements = 0

    def call(v, t):
        return layer(v, t, training=False)

    return call


def measure_one(backend: str, rule: str, batch: int, dim: int, setting: str) -> dict:
    """One measurement, in this process (``main`` runs each in a fresh one)."""
    call = _layer(backend, rule, dim, setting)
    call(*_inputs(64, dim))  # one-off costs
    v, t = _inputs(batch, dim)
    before = _status("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    out = call(v, t)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    del out
    inputs = v.nbytes + t.nbytes
    return {
        "backend": backend,
        "rule": rule,
        "setting": setting,
        "batch": batch,
        "dim": dim,
        "inputs_bytes": inputs,
        "extra_bytes": peak - before,
        "ratio": (peak - before) / inputs,
        "seconds": seconds,
    }


def measure_growth(batches: int, dim: int) -> dict:
    """Keras on JAX: resident set growth per new batch size, and per repeated size."""
    import keras

    from fusion_spec.backends import keras as bk

    layer = bk.build("simple", seed=0, dim=dim, dropout=0.0, input_norm="none")
    layer(*_inputs(999, dim), training=False)
    per = {}
    for name, sizes in (
        ("repeated", [1000] * batches),
        ("new", [1001 + i for i in range(batches)]),
    ):
        layer(*_inputs(sizes[0], dim), training=False)
        start = _status("VmRSS")
        for b in sizes:
            layer(*_inputs(b, dim), training=False)
        per[name] = (_status("VmRSS") - start) / batches
    import gc

    import jax

    jax.clear_caches()  # JAX's compiled executables, one per operation and shape
    gc.collect()
    start = _status("VmRSS")
    for b in range(2001, 2001 + batches):  # new sizes again, into the memory freed
        layer(*_inputs(b, dim), training=False)
    after_clear = (_status("VmRSS") - start) / batches
    return {
        "backend": f"keras-{keras.backend.backend()}",
        "rule": "simple",
        "dim": dim,
        "calls": batches,
        "bytes_per_new_batch_size": per["new"],
        "bytes_per_repeated_call": per["repeated"],
        "bytes_per_new_batch_size_after_clear_caches": after_clear,
    }


def _child(args: list[str]) -> dict:
    env = dict(os.environ)
    if args[0] == "keras":
        env["KERAS_BACKEND"] = args[1]
    out = subprocess.run(
        [sys.executable, __file__, "--one", *args], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"{args}: failed\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--keras-backend", default="jax")
    parser.add_argument("--growth-batches", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rules", nargs="+", help="only these rules (default: all measured)")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.one:  # a child: backend, keras backend, rule, setting | "growth"
        backend, keras_backend, what = a.one[:3]
        if what == "growth":
            result = measure_growth(a.growth_batches, a.dim)
        else:
            result = measure_one(backend, what, a.batch, a.dim, a.one[3])
            if backend == "keras":
                result["backend"] = f"keras-{keras_backend}"
        print(json.dumps(result))
        return
    import keras
    import torch

    result = {
        "machine": {
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "argv": sys.argv[1:] if argv is None else argv,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "keras": keras.__version__,
            "load_average_at_start": list(os.getloadavg()),
        },
        "batch": a.batch,
        "dim": a.dim,
        "rows": [],
        "jax_growth": None,
    }

    def write() -> None:
        """After every measurement: a run cut off keeps what it measured."""
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
        if a.json:
            a.json.write_text(json.dumps(result, indent=1) + "\n")

    rows = result["rows"]
    for backend, rules in (("torch", TORCH_RULES), ("keras", KERAS_RULES)):
        for rule in (r for r in rules if a.rules is None or r in a.rules):
            for setting in SETTINGS:
                r = _child([backend, a.keras_backend, rule, setting, "--batch", str(a.batch),
                            "--dim", str(a.dim)])
                rows.append(r)
                write()
                print(
                    f"{r['backend']:>12} {rule:>22} {setting:>8}: extra "
                    f"{r['extra_bytes'] / 2**20:8.1f} MiB = {r['ratio']:5.2f}x the inputs "
                    f"({r['seconds']:.1f} s)",
                    flush=True,
                )
    if a.keras_backend == "jax":
        growth = _child(["keras", "jax", "growth", "--dim", str(a.dim),
                         "--growth-batches", str(a.growth_batches)])
        result["jax_growth"] = growth
        write()
        print(
            f"keras-jax: {growth['bytes_per_new_batch_size'] / 2**20:.1f} MiB per new batch "
            f"size, {growth['bytes_per_repeated_call'] / 2**20:.2f} MiB per repeated call, "
            f"{growth['bytes_per_new_batch_size_after_clear_caches'] / 2**20:.1f} MiB per new "
            f"size after jax.clear_caches()"
        )
    if a.json:
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
