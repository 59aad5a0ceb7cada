"""``energy_aware_adaptive``: route to ``v``, ``t`` or ``FFN(LN(g v + (1-g) t + a))``.

Missing modality: a sample with one modality is routed to it.
"""

import numpy as np

from ._layers import (
    argmax,
    attention,
    categorical,
    feed_forward,
    forced_margin,
    gelu,
    layer_norm,
    linear,
    poison_undecided,
    relu,
    select,
    sigmoid,
    softmax,
    tokens,
)


def energy_aware_adaptive(s, p, v, t, *, training, noise, present=None, progress=None):
    B = v.shape[0]
    h = np.concatenate([v, t], axis=-1)  # (B, 2D)

    r = softmax(linear(p, "router.out", gelu(linear(p, "router.hidden", h))))  # (B, 3)
    if s.samples_route(training):
        route, route_margin = categorical(r, noise["route"])
    else:
        route, route_margin = argmax(r)
    if present is not None:
        route = present.single_route(route)
        r = present.route_probs(r, route)
        route_margin = forced_margin(present, route_margin)

    x = tokens(v, t)  # (B, 2, D)
    a = attention(p, "attn", x, x, s.heads)[0].mean(axis=1)  # (B, D)
    g = sigmoid(linear(p, "gate", h))
    both = feed_forward(
        p, "ffn", layer_norm(p, "norm", g * v + (1.0 - g) * t + a, s.layer_norm_eps)
    )
    out = poison_undecided(select(route, v, t, both), r)

    expected = r @ np.asarray(s.energy_costs_mJ, dtype=np.float64)  # (B,)
    weight = p["energy_weight"] if s.energy_weight_trainable else s.energy_weight
    mean_energy = expected.mean() if B else 0.0
    energy_loss = np.asarray(weight * relu(mean_energy - s.energy_budget_mJ), dtype=np.float64)

    kept, kept_margin = np.ones(B), np.full(B, np.inf)
    if training and progress is not None:
        drop_p = s.output_drop_probability(progress)
        gate_u = noise["output_drop_gate"][0]
        flags = noise["output_drop_flags"]  # (B, 2)
        dropped = (gate_u < drop_p) & np.any(flags < s.output_drop_flag_p, axis=-1)
        kept = 1.0 - dropped.astype(np.float64)
        flag_margin = np.min(np.abs(flags - s.output_drop_flag_p), axis=-1, initial=np.inf)
        kept_margin = np.minimum(abs(gate_u - drop_p), flag_margin)
        out = out * kept[:, None]

    aux = {
        "route_probs": r,
        "route": route,
        "expected_energy": expected,
        "energy_loss": energy_loss,
        "output_kept": kept,
        "route_margin": route_margin,
        "output_kept_margin": kept_margin,
    }
    return out, aux
