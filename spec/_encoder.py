"""Declarations of the post-norm Transformer encoder shared by two rules."""

from __future__ import annotations

from ._base import (
    ParamSpec,
    attention,
    encoder_layer_macs,
    feed_forward,
    layer_norm,
    tie,
)


def encoder_layer(prefix: str, dim: int, ffn_mult: int) -> list[ParamSpec]:
    """One post-norm layer: ``x = LN1(x + MHA(x)); x = LN2(x + FFN(x))``."""
    return (
        attention(f"{prefix}.attn", dim)
        + layer_norm(f"{prefix}.norm1", dim)
        + feed_forward(f"{prefix}.ffn", dim, ffn_mult * dim)
        + layer_norm(f"{prefix}.norm2", dim)
    )


def encoder(prefix: str, dim: int, layers: int, ffn_mult: int) -> list[ParamSpec]:
    """``layers`` encoder layers; layers 1.. start as copies of layer 0."""
    specs = encoder_layer(f"{prefix}.0", dim, ffn_mult)
    for i in range(1, layers):
        layer = encoder_layer(f"{prefix}.{i}", dim, ffn_mult)
        specs += tie(layer, f"{prefix}.0", f"{prefix}.{i}")
    return specs


def encoder_macs(dim: int, layers: int, ffn_mult: int, tokens: int = 2) -> int:
    return layers * encoder_layer_macs(dim, tokens, ffn_mult)
