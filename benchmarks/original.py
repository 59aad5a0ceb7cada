"""A faithful speed baseline: the original research modules' structure, holding our weights.

Written from ``ORIGINAL_IMPLEMENTATION.md`` (not the dense transcription in
``tests/legacy_original.py``, which runs every path on every sample):

* ``simple`` and ``transformer_concat``: ``nn.TransformerEncoder`` of
  ``nn.TransformerEncoderLayer`` (post-norm, GELU), whose eval fast path under
  ``no_grad``/``inference_mode`` fuses bias and activation into the matrix
  products. The original ``transformer_concat`` crashes; here it is its own
  encoder over ``[v + e_v, t + e_t]`` (our spec's reading of its intent).
* ``shomr`` and ``energy_aware_adaptive``: boolean-mask routing as the original
  runs it: ``if mask.any(): idx = mask.nonzero(as_tuple=True)[0]; out[idx] = path(x[idx])``
  per route, so each path (attention included) runs only on its own rows, at the
  price of one host synchronisation per route. ``energy_aware_adaptive`` samples
  its route in eval too (``torch.multinomial``), as the original does; our
  default takes the argmax, a different function (``eval_routing="argmax"``
  here gives the like-for-like structure). Under autocast the original's
  ``out[idx] = path(...)`` writes a bfloat16 result into a float32 buffer and
  raises; here each write casts to the buffer's dtype.
* the other rules: the original modules as they are (imports fixed).

``original(s, params)`` builds the module of spec ``s`` holding the canonical
``params`` (through ``spec.to_legacy``, the inverse of the checkpoint import),
so that it computes the same function as ``fusion_spec.backends.torch.build(s, params)``
(``tests/torch/test_faithful_baseline.py`` checks that). ``route=`` on the
routing modules' forward replaces the draw (tests only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fusion_spec import spec


def _encoder(s) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        s.dim,
        s.heads,
        dim_feedforward=s.ffn_mult * s.dim,
        dropout=s.dropout,
        activation="gelu",
        batch_first=True,
        layer_norm_eps=s.layer_norm_eps,
    )
    return nn.TransformerEncoder(layer, num_layers=s.layers, enable_nested_tensor=False)


def _mha(s) -> nn.MultiheadAttention:
    return nn.MultiheadAttention(s.dim, s.heads, dropout=s.dropout, batch_first=True)


def _mean_self_attention(mha: nn.MultiheadAttention, v: Tensor, t: Tensor) -> Tensor:
    x = torch.stack([v, t], dim=1)  # (N, 2, D)
    return mha(x, x, x, need_weights=False)[0].mean(dim=1)


class SimpleFusion(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.fusion = _encoder(s)

    def forward(self, img_emb, txt_emb):
        return self.fusion(torch.stack([img_emb, txt_emb], dim=1)).mean(dim=1)


class TransformerConcatFusion(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.transformer = _encoder(s)
        self.modality_token = nn.Parameter(torch.zeros(1, 2, s.dim)) if s.modality_embeddings else None

    def forward(self, img_emb, txt_emb):
        x = torch.stack([img_emb, txt_emb], dim=1)
        if self.modality_token is not None:
            x = x + self.modality_token
        return self.transformer(x).mean(dim=1)


class ConcatMLPFusion(nn.Module):
    def __init__(self, s):
        super().__init__()
        blocks, width = [], 2 * s.dim
        for _ in range(s.layers - 1):
            blocks += [nn.Linear(width, s.hidden_mult * s.dim), nn.GELU(), nn.Dropout(s.dropout)]
            width = s.hidden_mult * s.dim
        blocks.append(nn.Linear(width, s.dim))
        self.mlp = nn.Sequential(*blocks)

    def forward(self, img_emb, txt_emb):
        return self.mlp(torch.cat([img_emb, txt_emb], dim=-1))


class GatedFusion(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(2 * s.dim, s.dim), nn.Sigmoid())

    def forward(self, img_emb, txt_emb):
        g = self.gate(torch.cat([img_emb, txt_emb], dim=-1))
        return g * img_emb + (1 - g) * txt_emb


class FiLMFusion(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.mlp_gamma = nn.Linear(s.dim, s.dim)
        self.mlp_beta = nn.Linear(s.dim, s.dim)

    def forward(self, img_emb, txt_emb):
        return self.mlp_gamma(txt_emb) * img_emb + self.mlp_beta(txt_emb)


class ModalityDropoutFusion(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.p_img, self.p_txt = s.p_img, s.p_txt
        self.gated = nn.Sequential(nn.Linear(2 * s.dim, s.dim), nn.ReLU(), nn.Linear(s.dim, s.dim))

    def forward(self, img_emb, txt_emb):
        if self.training:
            if torch.rand(1) < self.p_img:
                img_emb = img_emb * 0
            if torch.rand(1) < self.p_txt:
                txt_emb = txt_emb * 0
        return self.gated(torch.cat([img_emb, txt_emb], dim=-1))


class CrossAttentionFusion(nn.Module):
    def __init__(self, s):
        super().__init__()
        d = s.dim
        self.norm1 = nn.LayerNorm(d, eps=s.layer_norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=s.layer_norm_eps)
        self.cross_attn = _mha(s)
        self.ffn = nn.Sequential(
            nn.Linear(d, s.ffn_mult * d),
            nn.GELU(),
            nn.Linear(s.ffn_mult * d, d),
            nn.Dropout(s.dropout),
        )

    def forward(self, img_emb, txt_emb):
        x = torch.stack([img_emb, txt_emb], dim=1)
        q = self.norm1((img_emb + txt_emb) / 2).unsqueeze(1)
        z = self.cross_attn(q, x, x, need_weights=False)[0].squeeze(1)
        return z + self.ffn(self.norm2(z))


class SHoMRFusion(nn.Module):
    """The original's soft/hard split, then one block per hard route, each on its own rows."""

    def __init__(self, s):
        super().__init__()
        d, p = s.dim, s.dropout
        self.confidence_threshold = s.confidence_threshold
        self.routing_temperature = s.routing_temperature
        self.conf_net = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(p), nn.Linear(d, 2))
        self.router = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(p), nn.Linear(d, 3))
        self.cross_attn = _mha(s)
        self.gate = nn.Sequential(nn.Linear(2 * d, d), nn.Sigmoid())
        self.norm1 = nn.LayerNorm(d, eps=s.layer_norm_eps)
        self.norm2 = nn.LayerNorm(d, eps=s.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(d, s.ffn_mult * d),
            nn.GELU(),
            nn.Dropout(p),
            nn.Linear(s.ffn_mult * d, d),
            nn.Dropout(p),
        )
        self.proj_single = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(p))

    def forward(self, img_emb, txt_emb, use_hard_routing=None, route=None):
        h = torch.cat([img_emb, txt_emb], dim=-1)
        c = torch.softmax(self.conf_net(h), dim=-1)
        m = c.max(dim=-1).values
        if use_hard_routing is None:
            hard = m > self.confidence_threshold
        else:
            hard = torch.full_like(m, bool(use_hard_routing), dtype=torch.bool)
        r = torch.softmax(self.router(h) / self.routing_temperature, dim=-1)
        if route is not None:
            k = route
        elif self.training:
            k = torch.multinomial(r, 1).squeeze(-1)
        else:
            k = r.argmax(dim=-1)
        out = torch.zeros_like(img_emb)
        soft = ~hard
        if soft.any():
            idx = soft.nonzero(as_tuple=True)[0]
            v, t = img_emb[idx], txt_emb[idx]
            a = _mean_self_attention(self.cross_attn, v, t)
            x = self.norm1(c[idx, 0:1] * v + c[idx, 1:2] * t + a)
            out[idx] = (x + self.ffn(x)).to(out.dtype)
        if hard.any():
            for kk, emb in ((0, img_emb), (1, txt_emb)):
                mask = hard & (k == kk)
                if mask.any():
                    idx = mask.nonzero(as_tuple=True)[0]
                    out[idx] = (self.proj_single(emb[idx])).to(out.dtype)
            mask = hard & (k == 2)
            if mask.any():
                idx = mask.nonzero(as_tuple=True)[0]
                v, t = img_emb[idx], txt_emb[idx]
                g = self.gate(h[idx])
                b = self.norm2(g * v + (1 - g) * t + _mean_self_attention(self.cross_attn, v, t))
                out[idx] = (b + self.ffn(b)).to(out.dtype)
        low = soft & (m < 0.3)
        if low.any():
            out[low] = ((img_emb + txt_emb) / 2)[low]
        return out


class EnergyAwareAdaptiveFusion(nn.Module):
    """Sampled route (in eval too, unless ``eval_routing="argmax"``); "both" on its own rows."""

    def __init__(self, s, eval_routing: str = "sample"):
        super().__init__()
        d = s.dim
        self.eval_routing = eval_routing
        self.energy_budget_mJ = s.energy_budget_mJ
        self.costs = tuple(s.energy_costs_mJ)
        self.lambda_energy = nn.Parameter(torch.tensor(s.energy_weight))
        self.router = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 3))
        self.gate = nn.Sequential(nn.Linear(2 * d, d), nn.Sigmoid())
        self.cross_attn = _mha(s)
        self.norm = nn.LayerNorm(d, eps=s.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(d, s.ffn_mult * d),
            nn.GELU(),
            nn.Linear(s.ffn_mult * d, d),
            nn.Dropout(s.dropout),
        )
        self.energy_loss = None

    def forward(self, img_emb, txt_emb, route=None):
        h = torch.cat([img_emb, txt_emb], dim=-1)
        r = torch.softmax(self.router(h), dim=-1)
        if route is not None:
            k = route
        elif self.training or self.eval_routing == "sample":
            k = torch.multinomial(r, 1).squeeze(-1)
        else:
            k = r.argmax(dim=-1)
        if self.training:
            costs = torch.tensor(self.costs, dtype=r.dtype)
            expected = (r * costs).sum(dim=-1).mean()
            self.energy_loss = self.lambda_energy * torch.relu(expected - self.energy_budget_mJ)
        out = torch.zeros_like(img_emb)
        out[k == 0] = img_emb[k == 0]
        out[k == 1] = txt_emb[k == 1]
        both = k == 2
        if both.any():
            idx = both.nonzero(as_tuple=True)[0]
            v, t = img_emb[idx], txt_emb[idx]
            g = self.gate(h[idx])
            b = g * v + (1 - g) * t + _mean_self_attention(self.cross_attn, v, t)
            out[idx] = (self.ffn(self.norm(b))).to(out.dtype)
        return out


MODULES = {
    "simple": SimpleFusion,
    "concat_mlp": ConcatMLPFusion,
    "gated": GatedFusion,
    "film": FiLMFusion,
    "modality_dropout": ModalityDropoutFusion,
    "transformer_concat": TransformerConcatFusion,
    "cross_attention": CrossAttentionFusion,
    "shomr": SHoMRFusion,
    "energy_aware_adaptive": EnergyAwareAdaptiveFusion,
}


def original(s: Any, params: Mapping[str, Any] | None = None, **kwargs: Any) -> nn.Module:
    """The faithful baseline of rule ``s``, holding ``params`` (default: ``spec.init_params``)."""
    s = spec.parse(s)
    module = MODULES[s.kind](s, **kwargs)
    params = spec.init_params(s, seed=0) if params is None else params
    legacy = spec.to_legacy(s, params)
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in legacy.items()}
    if s.kind == "energy_aware_adaptive" and "lambda_energy" not in state:
        state["lambda_energy"] = torch.tensor(float(s.energy_weight))
    module.load_state_dict(state, strict=True)
    return module
