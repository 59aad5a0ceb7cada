"""``energy_aware_adaptive``: route to ``v``, ``t`` or ``FFN(LN(g v + (1-g) t + a))``."""

import keras
import numpy as np
from keras import ops

from fusion_spec.spec import InputError, describe

from ._layers import (
    FusionLayer,
    RouteMonitor,
    argmax,
    attention,
    batch_mean,
    categorical,
    feed_forward,
    gelu,
    layer_norm,
    layers_holding,
    linear,
    poison_undecided,
    select,
    straight_through,
    straight_through_routes,
    tokens,
)


def energy_loss(s, p, expected):
    r"""$\lambda \max(0, \bar e - E_{budget})$ from the expected energies ``(B,)``."""
    weight = p["energy_weight"] if s.energy_weight_trainable else s.energy_weight
    mean_energy = batch_mean(expected)  # 0, not NaN, for an empty batch
    return weight * ops.relu(mean_energy - s.energy_budget_mJ)


def energy_aware_adaptive(s, p, v, t, *, training, noise, drop, present=None, progress=None):
    r"""Route $k$ from $r = \mathrm{softmax}(\mathrm{MLP}_r([v;t])) \in \mathbb{R}^{B \times 3}$
    (categorical draw with ``noise["route"]`` when the spec samples, else argmax):
    $v$, $t$ or $\mathrm{FFN}(\mathrm{LN}(g v + (1-g) t + a))$.

    Energy $e = \kappa^\top r \in \mathbb{R}^B$ ($\kappa$ the route costs), loss
    $\lambda \max(0, \bar e - E_{budget})$.
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
    if s.straight_through and s.straight_through_routes == "all":
        out = straight_through_routes(out, r, (v, t, both))
    elif s.straight_through:  # "chosen"
        out = straight_through(out, r, route)

    expected = ops.matmul(r, ops.convert_to_tensor(s.energy_costs_mJ, dtype=r.dtype))  # (B,)

    kept = ops.ones_like(expected)  # (B,)
    if training and progress is not None:
        gate_u = noise["output_drop_gate"][0]
        flags = noise["output_drop_flags"]  # (B, 2)
        flagged = ops.any(flags < s.output_drop_flag_p, axis=-1)  # (B,)
        if isinstance(progress, float):
            p_drop = s.output_drop_probability(progress)
        else:  # a scalar tensor or variable, e.g. under jit
            p_drop = ops.minimum(
                s.output_drop_max,
                s.output_drop_start + s.output_drop_ramp * ops.cast(progress, gate_u.dtype),
            )
        dropped = ops.logical_and(gate_u < p_drop, flagged)
        kept = 1.0 - ops.cast(dropped, v.dtype)
        out = out * kept[:, None]

    aux = {
        "route_probs": r,
        "route": route,
        "expected_energy": expected,
        "energy_loss": energy_loss(s, p, expected),
        "output_kept": kept,
    }
    return out, aux


@keras.saving.register_keras_serializable(package="fusion_spec")
class EnergyAwareAdaptiveFusion(RouteMonitor, FusionLayer):
    r"""``energy_aware_adaptive`` as a Keras layer: per sample $v$, $t$ or the fused "both" path.

    Args:
        spec, seed: as ``FusionLayer``.
        energy_loss: add the energy loss $\lambda \max(0, \bar e - E_{budget})$ of every
            call to the layer's losses (``layer.losses``), so that ``model.fit`` trains
            the router towards the budget with no wrapper and a ``.keras`` file keeps
            the choice. ``False``: only reported in the aux outputs, as the original did.
        track_progress: hold the training progress in a non-trainable scalar variable
            ``progress`` (saved with the weights), used in training when a call
            gives no ``progress``; ``ProgressCallback`` sets it from the epoch.
        monitor: keep the training averages of the route shares, the expected energy
            and the energy loss for ``MonitorCallback`` (see ``RouteMonitor``), which
            writes them into ``history``.

    Call option ``progress``: a float in ``[0, 1]``, or a scalar tensor or variable
    (traced, so one compiled step serves every epoch); given in training (or
    tracked), it enables the progressive output dropout.
    Shape: ``v``, ``t`` ``(B, D)`` -> ``(B, D)``. Aux: ``route_probs`` ``(B, 3)``,
    ``route`` ``(B,)`` int32, ``expected_energy`` ``(B,)``, ``energy_loss`` ``()``,
    ``output_kept`` ``(B,)`` float 0/1.
    """

    kind = "energy_aware_adaptive"
    chunked_eval = True
    fuse = staticmethod(energy_aware_adaptive)
    monitored = ("route_image", "route_text", "route_both", "expected_energy", "energy_loss")

    def __init__(
        self,
        spec=None,
        seed=None,
        *,
        energy_loss: bool = True,
        track_progress: bool = False,
        monitor: bool = False,
        **kwargs,
    ):
        super().__init__(spec, seed=seed, **kwargs)
        self._init_monitor(monitor)
        for name, value in (("energy_loss", energy_loss), ("track_progress", track_progress)):
            if not isinstance(value, bool):
                raise InputError(
                    f"{self.kind}: argument {name!r} expected True or False; "
                    f"received {describe(value)}"
                )
        self.energy_loss = energy_loss
        self.track_progress = track_progress
        self.progress = None

    def build(self, v_shape=None, t_shape=None):
        super().build(v_shape, t_shape)
        if self.track_progress:
            self.progress = self.add_weight(
                name="progress",
                shape=(),
                initializer=keras.initializers.Constant(0.0),
                trainable=False,
            )
        self._build_monitor()

    def _call_options(self, call_options, training):
        progress = call_options.get("progress")
        if isinstance(progress, (np.ndarray, np.generic)) and np.shape(progress) == ():
            # a 0-d NumPy value (Keras's numpy backend's tensors are NumPy arrays): a float
            call_options = {**call_options, "progress": float(progress)}
            progress = call_options["progress"]
        # a framework tensor or Keras variable (NumPy arrays: the spec checks them)
        tensor = hasattr(progress, "shape") and not isinstance(progress, (np.ndarray, np.generic))
        if tensor:
            shape = tuple(progress.shape)
            if shape != ():
                raise InputError(
                    f"{self.kind}: call option 'progress' expected None, a float in [0, 1] or "
                    f"a scalar tensor; received a tensor of shape {shape}"
                )
            call_options = {**call_options, "progress": None}
        options = self.spec.check_call_options(call_options)
        if tensor:
            options["progress"] = progress  # not range-checked: that would read it on the host
        elif options["progress"] is None and training and self.progress is not None:
            options["progress"] = self.progress.value
        return options

    def merge_aux(self, aux):
        aux["energy_loss"] = energy_loss(self.spec, self._canonical, aux["expected_energy"])
        return aux

    def _after_call(self, aux, training):
        if self.energy_loss:
            self.add_loss(aux["energy_loss"])
        self._update_monitor(aux, training)

    def get_config(self):
        return {
            **super().get_config(),
            "energy_loss": self.energy_loss,
            "track_progress": self.track_progress,
            "monitor": self.monitor,
        }


class ProgressCallback(keras.callbacks.Callback):
    """Sets ``progress = epoch / epochs`` (the original's ``current_epoch / total_epochs``)
    at the start of each epoch, in every ``energy_aware_adaptive`` layer of the model
    built with ``track_progress=True``.

    Args:
        epochs: the total number of epochs; by default the ``epochs`` of ``fit``.
    """

    def __init__(self, epochs: int | None = None):
        super().__init__()
        if epochs is not None and (
            not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= 0
        ):
            raise InputError(
                f"ProgressCallback: argument 'epochs' expected None or a positive int; "
                f"received {describe(epochs)}"
            )
        self.epochs = epochs
        self._layers = []

    def on_train_begin(self, logs=None):
        self._layers = layers_holding(
            self.model, "progress",
            "ProgressCallback: expected an energy_aware_adaptive layer built with "
            "track_progress=True in the model; received a model with none",
        )

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.epochs or self.params["epochs"]
        for layer in self._layers:
            layer.progress.assign(min(1.0, epoch / epochs))
