"""Missing-modality scenario: every rule trained on complete data, tested with 30% of the
test samples missing one modality, with and without the presence mask.

A synthetic two-modality task (no data download): a class ``y`` in ``{0..K-1}``;
``v`` and ``t`` are noisy, independently rotated views of the class's prototype, so
each modality alone predicts the class and both together predict it better. Each rule
(PyTorch backend, dim 16) with a linear head is trained with Adam on complete pairs,
then tested on

* ``complete``: every sample has both modalities;
* ``missing, mask``: 30% of samples lose one modality at random (half image, half
  text); the absent row holds garbage and ``present`` says so;
* ``missing, no mask``: the same samples with the absent row zeroed and no mask (what
  a library without a mask leaves users to do).

Accuracy in percent over ``--test`` samples; prints a Markdown table. The standalone
stand-in for the missing-modality scenario of the training benchmark.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fusion_spec import spec
from fusion_spec.backends import torch as bt

FIELDS = {"dim": 16, "heads": 2}
ATTENTION = {"simple", "transformer_concat", "cross_attention", "shomr", "energy_aware_adaptive"}


def task(n: int, classes: int, dim: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(1234).standard_normal((classes, dim))
    rot_v, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((dim, dim)))
    rot_t, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((dim, dim)))
    y = rng.integers(0, classes, n)
    v = protos[y] @ rot_v + noise * rng.standard_normal((n, dim))
    t = protos[y] @ rot_t + noise * rng.standard_normal((n, dim))
    return (torch.tensor(a, dtype=torch.float32) for a in (v, t)), torch.from_numpy(y)


def knock_out(n: int, fraction: float, seed: int) -> torch.Tensor:
    """``(n, 2)`` bool: ``fraction`` of samples lose one modality (image or text at random)."""
    rng = np.random.default_rng(seed)
    present = np.ones((n, 2), dtype=bool)
    hit = rng.random(n) < fraction
    present[hit, rng.integers(0, 2, n)[hit]] = False
    return torch.from_numpy(present)


def run(kind: str, args) -> dict[str, float]:
    fields = {**FIELDS, "dropout": 0.0} if kind in ATTENTION else {"dim": FIELDS["dim"]}
    if kind in ("simple", "concat_mlp", "transformer_concat"):
        fields["dropout"] = 0.0
    s = spec.parse({"kind": kind, **fields})
    torch.manual_seed(0)
    fusion = bt.build(s)
    head = torch.nn.Linear(s.dim, args.classes)
    opt = torch.optim.Adam([*fusion.parameters(), *head.parameters()], lr=3e-3)
    (v, t), y = task(args.train, args.classes, s.dim, args.noise, seed=0)
    fusion.train()
    for _ in range(args.steps):
        i = torch.randint(0, args.train, (args.batch,))
        loss = torch.nn.functional.cross_entropy(head(fusion(v[i], t[i])), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    fusion.eval()
    (v, t), y = task(args.test, args.classes, s.dim, args.noise, seed=1)
    present = knock_out(args.test, args.fraction, seed=2)
    garbage_v = torch.where(present[:, :1], v, torch.full_like(v, 1e6))
    garbage_t = torch.where(present[:, 1:], t, torch.full_like(t, 1e6))
    zero_v = torch.where(present[:, :1], v, 0.0)
    zero_t = torch.where(present[:, 1:], t, 0.0)
    with torch.no_grad():
        acc = {
            "complete": head(fusion(v, t)).argmax(-1),
            "missing, mask": head(fusion(garbage_v, garbage_t, present)).argmax(-1),
            "missing, no mask": head(fusion(zero_v, zero_t)).argmax(-1),
        }
    return {k: 100.0 * float((p == y).float().mean()) for k, p in acc.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--train", type=int, default=8192)
    parser.add_argument("--test", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--noise", type=float, default=1.5)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{args.steps} Adam steps of {args.batch}, {args.classes} classes, noise {args.noise}, "
        f"{args.fraction:.0%} of {args.test} test samples lose one modality; accuracy %"
    )
    print("\n| rule | complete | missing, mask | missing, no mask | seconds |\n|---|---|---|---|---|")
    for kind in spec.RULES:
        start = time.perf_counter()
        acc = run(kind, args)
        seconds = time.perf_counter() - start
        cells = " | ".join(f"{acc[k]:.1f}" for k in ("complete", "missing, mask", "missing, no mask"))
        print(f"| `{kind}` | {cells} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
