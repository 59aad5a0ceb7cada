"""Forward time of the PyTorch backend's nine rules: eager, compiled, and baselines.

For each rule at ``B=256, D=512`` (the teacher's ``fusion_dim``, 8 heads, the
rules' default depths), in eval under ``torch.inference_mode`` on the CPU:

* ``eager``: ``fusion_spec.backends.torch.build(s)``;
* ``compiled``: ``torch.compile(module, fullgraph=True, dynamic=False)``;
* ``original``: the original research module (the transcription in
  ``tests/legacy_original.py``; ``transformer_concat``'s crashes, so its row
  times a hand-written ``nn.TransformerEncoder`` of the same size, which takes
  PyTorch's fused eval fast path as ``simple``'s original does);
* ``linear``: one ``nn.Linear(2D, D)`` on ``[v; t]``, the cheapest fusion.

Run: ``.venv/bin/python benchmarks/torch_bench.py [--batch 256] [--dim 512] [--train]``.
``--train`` times a training step (forward + backward, dropout 0.1) instead.
Prints milliseconds per call (fastest of ``--repeats`` interleaved runs after warm-up).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion_spec import spec  # noqa: E402
from fusion_spec.backends import torch as bt  # noqa: E402
from tests.legacy_original import build_original  # noqa: E402

#: Constructor arguments of the original modules at the benchmark size.
ORIGINAL_KWARGS = {
    "simple": ("heads", "layers", "dropout"),
    "concat_mlp": ("hidden_mult", "layers", "dropout"),
    "gated": (),
    "film": (),
    "modality_dropout": ("p_img", "p_txt"),
    "transformer_concat": ("heads", "layers", "dropout"),
    "cross_attention": ("heads", "dropout"),
    "shomr": ("heads", "dropout", "confidence_threshold", "routing_temperature"),
    "energy_aware_adaptive": ("heads", "dropout", "energy_budget_mJ"),
}


class ConcatLinear(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, v, t):
        return self.linear(torch.cat([v, t], dim=-1))


def original(s) -> nn.Module:
    kwargs = {k: getattr(s, k) for k in ORIGINAL_KWARGS[s.kind]}
    if s.kind == "transformer_concat":  # the original's forward raises; same encoder as simple
        return build_original("simple", dim=s.dim, **kwargs)
    return build_original(s.kind, dim=s.dim, **kwargs)


def timed(fns, repeats: int, warmup: int = 3) -> list[float]:
    """Fastest milliseconds per call of each of ``fns``, run interleaved.

    The minimum, not the median: on a shared machine it is the least disturbed run.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(warmup):
        for fn in fns:
            fn()
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [1e3 * min(record) for record in times]


def call(module, v, t, train: bool):
    if not train:

        def run():
            with torch.inference_mode():
                module(v, t)

        return run

    def step():
        module(v, t).sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train", action="store_true", help="time forward + backward")
    parser.add_argument("--rules", nargs="*", default=list(spec.RULES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    torch._dynamo.config.recompile_limit = 64
    B, D = args.batch, args.dim
    v, t = torch.randn(B, D), torch.randn(B, D)
    mode = "training step (fwd+bwd)" if args.train else "eval forward"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={B}, D={D}, {mode}, "
        f"fastest ms of {args.repeats}"
    )
    print(f"{'rule':24s} {'eager':>9s} {'compiled':>9s} {'original':>9s} {'linear':>9s}  compile s")
    linear = ConcatLinear(D).train(args.train)
    for kind in args.rules:
        s = spec.parse({"kind": kind, "dim": D})
        module = bt.build(s).train(args.train)
        start = time.perf_counter()
        compiled = torch.compile(module, fullgraph=True, dynamic=False)
        call(compiled, v, t, args.train)()
        compile_s = time.perf_counter() - start
        models = (module, compiled, original(s).train(args.train), linear)
        eager_ms, compiled_ms, original_ms, linear_ms = timed(
            [call(m, v, t, args.train) for m in models], args.repeats
        )
        print(
            f"{kind:24s} {eager_ms:9.2f} {compiled_ms:9.2f} {original_ms:9.2f} {linear_ms:9.2f}"
            f"  {compile_s:6.1f}"
        )


if __name__ == "__main__":
    main()
