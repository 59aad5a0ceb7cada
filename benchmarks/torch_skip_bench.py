"""Where ``skip_unrouted=True`` pays off: dense (every path for every sample) vs skipping.

For ``energy_aware_adaptive`` and ``shomr`` (every sample hard) at ``D=512``,
the router is pinned (zero output weight, bias ``log p``) so that a fixed
fraction ``f`` of the batch takes the expensive "both" path (the rest split
evenly between the image and text routes), with routes drawn from evenly spread
injected noise (training mode, dropout 0). ``shomr`` also runs as initialised
(``use_hard_routing=None``: per sample soft or hard).

Run: ``.venv/bin/python benchmarks/torch_skip_bench.py [--dim 512] [--batches 8 32 128 512 2048]``.
Prints milliseconds per forward (fastest of interleaved runs, under
``torch.inference_mode``) and the
speed-up of skipping; the crossover is the smallest batch where it exceeds 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.torch_bench import timed  # noqa: E402
from fusion_spec import spec  # noqa: E402
from fusion_spec.backends import torch as bt  # noqa: E402


def pin_router(module, both: float) -> None:
    """Every sample's route probabilities: ``((1 - f) / 2, (1 - f) / 2, f)``."""
    probs = ((1.0 - both) / 2, (1.0 - both) / 2, both)
    with torch.no_grad():
        module.router.out.weight.zero_()
        module.router.out.bias.copy_(torch.tensor([math.log(max(p, 1e-9)) for p in probs]))


def pair(kind: str, dim: int, both: float | None):
    """(dense, skipping) modules with the same weights, in training mode, dropout 0."""
    s = spec.parse({"kind": kind, "dim": dim, "dropout": 0.0})
    dense = bt.build(s, generator=torch.Generator().manual_seed(0)).train()
    if both is not None:
        pin_router(dense, both)
    skipping = bt.build(s, dense.canonical_params(), skip_unrouted=True).train()
    return dense, skipping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="*", default=[8, 32, 128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    D = args.dim
    scenarios = [
        ("energy_aware_adaptive", 0.1, {}),
        ("energy_aware_adaptive", 1 / 3, {}),
        ("energy_aware_adaptive", 0.9, {}),
        ("shomr", 0.1, {"use_hard_routing": True}),
        ("shomr", 1 / 3, {"use_hard_routing": True}),
        ("shomr", None, {}),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, D={D}")
    print(
        f"{'rule':22s} {'both f':>7s} {'B':>6s} {'dense ms':>9s} {'skip ms':>9s} {'speed-up':>9s}"
    )
    for kind, both, options in scenarios:
        dense, skipping = pair(kind, D, both)
        for B in args.batches:
            gen = torch.Generator().manual_seed(B)
            v, t = torch.randn(B, D, generator=gen), torch.randn(B, D, generator=gen)
            noise = {
                n.name: (torch.arange(n.shape[0]) + 0.5) / n.shape[0]
                if n.name == "route"
                else torch.rand(n.shape, generator=gen)
                for n in dense.spec.noise(B, training=True, **options)
            }
            with torch.inference_mode():
                dense_ms, skip_ms = timed(
                    [
                        lambda: dense(v, t, noise=noise, **options),  # noqa: B023
                        lambda: skipping(v, t, noise=noise, **options),  # noqa: B023
                    ],
                    args.repeats,
                )
            label = "init" if both is None else f"{both:.2f}"
            print(
                f"{kind:22s} {label:>7s} {B:6d} {dense_ms:9.2f} {skip_ms:9.2f} "
                f"{dense_ms / skip_ms:8.2f}x"
            )


if __name__ == "__main__":
    main()
