"""``energy_aware_adaptive``: route to ``v``, ``t`` or ``FFN(LN(g v + (1-g) t + a))``."""

import keras
from keras import ops

from ._layers import (
    FusionLayer,
    argmax,
    attention,
    batch_mean,
    categorical,
    feed_forward,
    gelu,
    layer_norm,
    linear,
    poison_undecided,
    select,
    straight_through,
    tokens,
)


def energy_aware_adaptive(s, p, v, t, *, training, noise, drop, present=None, progress=None):
    r"""Route $k$ from $r = \mathrm{softmax}(\mathrm{MLP}_r([v;t])) \in \mathbb{R}^{B \times 3}$
    (categorical draw with ``noise["route"]`` when the spec samples, else argmax):
    $v$, $t$ or $\mathrm{FFN}(\mathrm{LN}(g v + (1-g) t + a))$.

    Energy $e = c^\top r \in \mathbb{R}^B$, loss $\lambda \max(0, \bar e - E_{budget})$.
    Training with ``progress``: the sample's output is zeroed where the batch gate
    $u_g < p(\mathrm{progress})$ and either of its two flags $< p_{flag}$.
    Missing modality: a sample with one modality is routed to it; neither: route -1.
    """
    h = ops.concatenate([v, t], axis=-1)  # (B, 2D)

    r = ops.softmax(linear(p, "router.out", gelu(linear(p, "router.hidden", h))))  # (B, 3)
    route = categorical(r, noise["route"]) if s.samples_route(training) else argmax(r)  # (B,)
    if present is not None:  # one modality: routed to it; neither: route -1
        route = present.single_route(route)
        r = present.route_probs(r, route)

    x = tokens(v, t)  # (B, 2, D)
    a = ops.mean(attention(p, "attn", x, x, s.heads, drop=drop)[0], axis=1)  # (B, D)
    g = ops.sigmoid(linear(p, "gate", h))  # (B, D)
    b = layer_norm(p, "norm", g * v + (1.0 - g) * t + a, s.layer_norm_eps)
    both = feed_forward(p, "ffn", b, drop_out=drop)
    out = poison_undecided(select(route, v, t, both), r)
    if s.straight_through:
        out = straight_through(out, r, route)

    expected = ops.matmul(r, ops.convert_to_tensor(s.energy_costs_mJ, dtype=r.dtype))  # (B,)
    weight = p["energy_weight"] if s.energy_weight_trainable else s.energy_weight
    mean_energy = batch_mean(expected)  # 0, not NaN, for an empty batch
    energy_loss = weight * ops.relu(mean_energy - s.energy_budget_mJ)

    kept = ops.ones_like(expected)  # (B,)
    if training and progress is not None:
        gate_u = noise["output_drop_gate"][0]
        flags = noise["output_drop_flags"]  # (B, 2)
        flagged = ops.any(flags < s.output_drop_flag_p, axis=-1)  # (B,)
        dropped = ops.logical_and(gate_u < s.output_drop_probability(progress), flagged)
        kept = 1.0 - ops.cast(dropped, v.dtype)
        out = out * kept[:, None]

    aux = {
        "route_probs": r,
        "route": route,
        "expected_energy": expected,
        "energy_loss": energy_loss,
        "output_kept": kept,
    }
    return out, aux


@keras.saving.register_keras_serializable(package="fusion_spec")
class EnergyAwareAdaptiveFusion(FusionLayer):
    r"""``energy_aware_adaptive`` as a Keras layer: per sample $v$, $t$ or the fused "both" path.

    Call option ``progress`` (a Python float in ``[0, 1]``) enables the
    progressive output dropout in training. The energy loss is reported in the
    aux outputs, not added to the model's losses (the original did not return it).
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``route_probs`` ``(B, 3)``,
    ``route`` ``(B,)`` int32, ``expected_energy`` ``(B,)``, ``energy_loss`` ``()``,
    ``output_kept`` ``(B,)`` float 0/1.
    """

    kind = "energy_aware_adaptive"
    fuse = staticmethod(energy_aware_adaptive)
