"""PyTorch transcriptions of the original code's nine fusion modules (test fixture).

Written from ``ORIGINAL_IMPLEMENTATION.md``, attribute for attribute, so that
their ``state_dict`` keys are the original checkpoint's and their forward is
the original's computation, quirks included (boolean-mask scatter, sampling in
eval, the unreachable fallback, the crashing ``modality_token`` write). The
missing ``import torch`` of four original files is *not* reproduced: these
modules are what the original computes once that import is added.

Only the tests import this file; it is never part of the library.
"""

from __future__ import annotations

import torch
from torch import nn


def _encoder(dim: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=4 * dim, dropout=dropout, activation="gelu", batch_first=True
    )
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


class SimpleFusion(nn.Module):
    def __init__(self, dim, heads=8, layers=2, dropout=0.1):
        super().__init__()
        self.fusion = _encoder(dim, heads, layers, dropout)

    def forward(self, img_emb, txt_emb):
        return self.fusion(torch.stack([img_emb, txt_emb], dim=1)).mean(dim=1)


class ConcatMLPFusion(nn.Module):
    def __init__(self, dim, hidden_mult=2, layers=2, dropout=0.1):
        super().__init__()
        blocks, width = [], 2 * dim
        for _ in range(layers - 1):
            blocks += [nn.Linear(width, hidden_mult * dim), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_mult * dim
        blocks.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*blocks)

    def forward(self, img_emb, txt_emb):
        return self.mlp(torch.cat([img_emb, txt_emb], dim=-1))


class GatedFusion(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(2 * dim, dim), nn.Sigmoid())

    def forward(self, img_emb, txt_emb):
        g = self.gate(torch.cat([img_emb, txt_emb], dim=-1))
        return g * img_emb + (1 - g) * txt_emb


class FiLMFusion(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.mlp_gamma = nn.Linear(dim, dim)
        self.mlp_beta = nn.Linear(dim, dim)

    def forward(self, img_emb, txt_emb):
        return self.mlp_gamma(txt_emb) * img_emb + self.mlp_beta(txt_emb)


class ModalityDropoutFusion(nn.Module):
    def __init__(self, dim, p_img=0.3, p_txt=0.3):
        super().__init__()
        self.p_img, self.p_txt = p_img, p_txt
        self.gated = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, img_emb, txt_emb):
        if self.training:
            if torch.rand(1) < self.p_img:
                img_emb = img_emb * 0
            if torch.rand(1) < self.p_txt:
                txt_emb = txt_emb * 0
        return self.gated(torch.cat([img_emb, txt_emb], dim=-1))


class TransformerConcatFusion(nn.Module):
    def __init__(self, dim, heads=8, layers=4, dropout=0.1):
        super().__init__()
        self.transformer = _encoder(dim, heads, layers, dropout)
        self.modality_token = nn.Parameter(torch.randn(1, 2, dim))

    def forward(self, img_emb, txt_emb):
        tokens = self.modality_token.expand(img_emb.shape[0], -1, -1)
        tokens[:, 0] = img_emb  # raises: in-place write into a view of a leaf
        tokens[:, 1] = txt_emb
        return self.transformer(tokens).mean(dim=1)


class CrossAttentionFusion(nn.Module):
    def __init__(self, dim, heads=8, dropout=0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, img_emb, txt_emb):
        x = torch.stack([img_emb, txt_emb], dim=1)
        q = self.norm1((img_emb + txt_emb) / 2).unsqueeze(1)
        z, _ = self.cross_attn(q, x, x)
        z = z.squeeze(1)
        return z + self.ffn(self.norm2(z))


class SHoMRFusion(nn.Module):
    def __init__(
        self, dim, heads=8, dropout=0.1, confidence_threshold=0.6, routing_temperature=1.0
    ):
        super().__init__()
        self.confidence_threshold = confidence_threshold
        self.routing_temperature = routing_temperature
        self.conf_net = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, 2)
        )
        self.router = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, 3)
        )
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.gate = nn.Sequential(nn.Linear(2 * dim, dim), nn.Sigmoid())
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * dim, dim),
            nn.Dropout(dropout),
        )
        self.proj_single = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, img_emb, txt_emb, use_hard_routing=None):
        h = torch.cat([img_emb, txt_emb], dim=-1)
        c = torch.softmax(self.conf_net(h), dim=-1)
        w_v, w_t = c[:, 0:1], c[:, 1:2]
        m = c.max(dim=-1).values
        if use_hard_routing is None:
            hard = m > self.confidence_threshold
        else:
            hard = torch.full_like(m, bool(use_hard_routing), dtype=torch.bool)
        r = torch.softmax(self.router(h) / self.routing_temperature, dim=-1)
        if self.training:
            k = torch.multinomial(r, 1).squeeze(-1)
        else:
            k = r.argmax(dim=-1)
        x = torch.stack([img_emb, txt_emb], dim=1)
        attn, _ = self.cross_attn(x, x, x)
        a = attn.mean(dim=1)
        out = torch.zeros_like(img_emb)
        soft = ~hard
        if soft.any():
            s = self.norm1(w_v * img_emb + w_t * txt_emb + a)
            s = s + self.ffn(s)
            out[soft] = s[soft]
        if hard.any():
            out[hard & (k == 0)] = self.proj_single(img_emb)[hard & (k == 0)]
            out[hard & (k == 1)] = self.proj_single(txt_emb)[hard & (k == 1)]
            g = self.gate(h)
            b = self.norm2(g * img_emb + (1 - g) * txt_emb + a)
            b = b + self.ffn(b)
            out[hard & (k == 2)] = b[hard & (k == 2)]
        low = soft & (m < 0.3)
        if low.any():
            out[low] = ((img_emb + txt_emb) / 2)[low]
        return out


class EnergyAwareAdaptiveFusion(nn.Module):
    COSTS = (3.2, 4.1, 9.8)

    def __init__(self, dim=512, heads=8, dropout=0.1, energy_budget_mJ=8.0):
        super().__init__()
        self.energy_budget_mJ = energy_budget_mJ
        self.lambda_energy = nn.Parameter(torch.tensor(0.01))
        self.router = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 3))
        self.gate = nn.Sequential(nn.Linear(2 * dim, dim), nn.Sigmoid())
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )
        self.energy_loss = None

    def forward(self, img_emb, txt_emb, current_epoch=None, total_epochs=20):
        h = torch.cat([img_emb, txt_emb], dim=-1)
        r = torch.softmax(self.router(h), dim=-1)
        k = torch.multinomial(r, 1).squeeze(-1)  # in training and in eval
        if self.training:
            costs = torch.tensor(self.COSTS, dtype=r.dtype)
            expected = (r * costs).sum(dim=-1).mean()
            self.energy_loss = self.lambda_energy * torch.relu(expected - self.energy_budget_mJ)
        out = torch.zeros_like(img_emb)
        out[k == 0] = img_emb[k == 0]
        out[k == 1] = txt_emb[k == 1]
        if (k == 2).any():
            x = torch.stack([img_emb, txt_emb], dim=1)
            attn, _ = self.cross_attn(x, x, x)
            g = self.gate(h)
            b = g * img_emb + (1 - g) * txt_emb + attn.mean(dim=1)
            out[k == 2] = self.ffn(self.norm(b))[k == 2]
        if self.training and current_epoch is not None:
            p = min(0.4, 0.1 + 0.3 * current_epoch / total_epochs)
            if torch.rand(1) < p:
                flags = torch.bernoulli(torch.full((img_emb.shape[0], 2), 0.5)).bool()
                out[flags.any(dim=-1)] = 0
        return out


ORIGINALS = {
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


def build_original(kind: str, **ctor_kwargs) -> nn.Module:
    """The original module of ``kind`` built with its constructor arguments."""
    return ORIGINALS[kind](**ctor_kwargs)


def perturb_(module: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Add float32 noise to every parameter (biases and LayerNorm leave their init).

    Fresh attention biases are zero and LayerNorm is the identity affine, so a
    mapping that drops or swaps them is invisible until they are perturbed.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype))
    return module
