"""Token sequences with padding: our attending rules against what a user writes with torch.nn.

For ``simple`` and ``cross_attention`` (default fields, ``D = 256``, 8 heads, dropout 0)
over token sequences of ``L`` image and ``L`` text tokens (``L`` = 16, 64, 256), each
sample's real lengths drawn uniformly in ``[L/4, L]`` (the rest padding), it times,
interleaved (``bench.interleaved_medians``, medians of the rounds):

* ``ours``: ``fusion_spec.backends.torch.build(s, params)`` with ``image_mask`` /
  ``text_mask`` (padding computed and masked: ``F.scaled_dot_product_attention`` with a
  boolean mask);
* ``torch_nn``: the same function written with ``torch.nn`` holding the same weights:
  ``simple`` as ``nn.TransformerEncoder`` (post-norm, GELU, ``enable_nested_tensor=True``
  so that its eval fast path drops the padding) over the concatenated tokens with
  ``src_key_padding_mask``, then the mean over the real tokens; ``cross_attention``
  as ``nn.MultiheadAttention`` with ``key_padding_mask`` (query: the layer-normalised
  mean of the two modalities' masked means), then the FFN.

Both are checked to compute the same function (max abs difference printed and stored)
before they are timed. Modes: eval forward under ``torch.inference_mode`` and a training
step (forward + backward of ``out.sum()``). CPU, float32, this process's threads.

Run (not part of ``make test``)::

    .venv/bin/python benchmarks/tokens_bench.py --json docs/assets/tokens_bench.json

``tools/gen_docs.py`` renders the table of ``docs/performance.md`` from that file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import interleaved_medians as interleaved  # noqa: E402
from original import original  # noqa: E402

from fusion_spec import spec  # noqa: E402
from fusion_spec.backends.torch import build  # noqa: E402

DIM, HEADS, BATCH = 256, 8, 16
LENGTHS = (16, 64, 256)
RULES = ("simple", "cross_attention")


def masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` ``(B, L, D)`` over the tokens where ``keep`` ``(B, L)`` is true."""
    count = keep.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    return torch.where(keep[..., None], x, 0.0).sum(dim=1) / count


class TorchSimple(nn.Module):
    """``simple`` on tokens as a user writes it: ``nn.TransformerEncoder`` with padding masks."""

    def __init__(self, s, params):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            s.dim, s.heads, dim_feedforward=s.ffn_mult * s.dim, dropout=0.0,
            activation="gelu", batch_first=True, layer_norm_eps=s.layer_norm_eps,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=s.layers, enable_nested_tensor=True)
        self.encoder.load_state_dict(original(s, params).fusion.state_dict())

    def forward(self, v, t, image_mask, text_mask):
        keep = torch.cat([image_mask, text_mask], dim=1)  # (B, L_v + L_t)
        x = self.encoder(torch.cat([v, t], dim=1), src_key_padding_mask=~keep)
        return masked_mean(x, keep)


class TorchCrossAttention(nn.Module):
    """``cross_attention`` on tokens with ``nn.MultiheadAttention(key_padding_mask=...)``."""

    def __init__(self, s, params):
        super().__init__()
        o = original(s, params)
        self.norm1, self.norm2, self.ffn, self.attn = o.norm1, o.norm2, o.ffn, o.cross_attn

    def forward(self, v, t, image_mask, text_mask):
        q = 0.5 * (masked_mean(v, image_mask) + masked_mean(t, text_mask))
        keep = torch.cat([image_mask, text_mask], dim=1)
        x = torch.cat([v, t], dim=1)
        z = self.attn(self.norm1(q)[:, None], x, x, key_padding_mask=~keep, need_weights=False)[0][:, 0]
        return z + self.ffn(self.norm2(z))


BASELINES = {"simple": TorchSimple, "cross_attention": TorchCrossAttention}


def inputs(length: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(BATCH, length, DIM, generator=g)
    t = torch.randn(BATCH, length, DIM, generator=g)
    masks = []
    for _ in range(2):
        real = torch.randint(max(1, length // 4), length + 1, (BATCH,), generator=g)
        masks.append(torch.arange(length)[None] < real[:, None])  # (B, L)
    return v, t, *masks


def _step(module, call) -> None:
    module.zero_grad(set_to_none=True)
    call().sum().backward()


def _cells(kind: str, ours, theirs, length: int, budget_s: float) -> list[dict]:
    """The eval and training rows of one rule at one length."""
    v, t, mv, mt = inputs(length, seed=length)

    def call_ours():
        return ours(v, t, image_mask=mv, text_mask=mt)

    def call_theirs():
        return theirs(v, t, mv, mt)

    rows = []
    ours.eval(), theirs.eval()
    with torch.inference_mode():
        diff = float((call_ours() - call_theirs()).abs().max())
        times = interleaved({"ours": call_ours, "torch_nn": call_theirs}, budget_s)
    rows.append({"rule": kind, "L": length, "mode": "eval", "max_abs_diff": diff, "ms": times,
                 "ratio": times["torch_nn"] / times["ours"]})
    ours.train(), theirs.train()
    times = interleaved(
        {"ours": lambda: _step(ours, call_ours), "torch_nn": lambda: _step(theirs, call_theirs)},
        budget_s,
    )
    rows.append({"rule": kind, "L": length, "mode": "train", "max_abs_diff": diff, "ms": times,
                 "ratio": times["torch_nn"] / times["ours"]})
    return rows


def run(budget_s: float, lengths=LENGTHS) -> list[dict]:
    rows = []
    for kind in RULES:
        # input_norm="none": torch.nn's layers compute the rule's own function, no batch norm
        s = spec.parse(kind, dim=DIM, heads=HEADS, dropout=0.0, input_norm="none")
        params = spec.init_params(s, seed=0)
        ours, theirs = build(s, params), BASELINES[kind](s, params)
        for length in lengths:
            eval_row, train_row = _cells(kind, ours, theirs, length, budget_s)
            rows += [eval_row, train_row]
            print(f"{kind} L={length}: eval/train ratios {eval_row['ratio']:.2f} / "
                  f"{train_row['ratio']:.2f} (max |diff| {eval_row['max_abs_diff']:.1e})",
                  file=sys.stderr)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per cell (at least 5 rounds)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    args = parser.parse_args(argv)
    rows = run(args.budget, tuple(args.lengths))
    doc = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "load": os.getloadavg()[0]},
        "config": {"dim": DIM, "heads": HEADS, "batch": BATCH, "dtype": "float32",
                   "device": "cpu", "real_lengths": "uniform in [L/4, L] per sample and modality"},
        "rows": rows,
    }
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    np.random.seed(0)
    sys.exit(main())
