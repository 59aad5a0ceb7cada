"""One model, one training run, in both frameworks: PyTorch and Keras-JAX losses agree,
with complete data and with the presence mask.

A small model of the shape users build (two linear towers over fixed features, the
fusion layer with its default fields, a linear head), the same canonical initial
weights, the same batches, the same noise arrays for every stochastic decision, the
same optimiser. Its training loss is recorded for 200 steps in PyTorch and in Keras
(JAX), each in float32, and the two curves are compared step by step.

Why the bound: both frameworks compute the same float32 function with different
kernels, so one step's loss differs in its last bits (about 1e-7 relative). Training
feeds those differences back through the weights; over 200 steps of a stable run they
grow but stay many orders below the loss's own change (from about 1.1 to the
measured end values), so a bound of ``RTOL`` relative on every step's loss is far above
rounding and far below any real difference (a missing factor, another epsilon, a
wrong gradient or a dropped running-statistics update moves the curve by 1e-3 to 1e-1
within a few dozen steps, as the planted checks below show).

Dropout is 0: its masks are drawn by each framework's RNG and are not a spec noise
input. Keras's Adam adds its epsilon to sqrt(v) before the bias correction ("epsilon
hat" of Kingma and Ba), PyTorch's after it. The same ``eps`` in both is therefore not
the same optimiser: at Keras's default 1e-7 the two differ by up to 1e-4 relative on
parameters whose gradients are ~1e-6, and over 200 steps that alone drove the curves
apart by 4.6e-3 (``modality_dropout``) and let a routing decision flip
(``energy_aware_adaptive``, 3.9e-2 from step 180). PyTorch is given the matched
epsilon instead, eps_t = epsilon * sqrt(1 - beta2^t) ** -1 at step t, which makes its
update algebraically Keras's; the measured worst difference is then 3.6e-5
(``transformer_concat``), and ``RTOL`` = 5e-4 leaves a factor 14 for other CPUs and
BLAS builds.

Each rule also trains with ``MISSING`` of the samples missing one modality and the
presence mask given to the layer (its missing-modality semantics, and the input norm's
statistics over the present rows only): the measured worst is 1.2e-5
(``transformer_concat``, Adam), so the towers benchmark's Keras and PyTorch runs with
the mask differ only in the model around the layer, not in the layer's training.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("the training-loop agreement is measured with Keras on JAX", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from fusion_spec import spec  # noqa: E402
from fusion_spec.backends import keras as bk  # noqa: E402
from fusion_spec.backends import torch as bt  # noqa: E402

RULES = tuple(spec.RULES)
STEPS = 200
BATCH = 32
DIM = 8
FEATURES = 6
CLASSES = 3
EPSILON = 1e-7
#: per-step relative bound on the loss (see the module docstring); the measured worst
#: over the 9 rules x 2 optimisers is printed by the test (-s)
RTOL = 5e-4
OPTIMISERS = {"sgd": 0.1, "adam": 3e-3}
#: the share of samples missing one modality in the runs with the presence mask
MISSING = 0.3


def _spec(kind: str):
    fields = {"kind": kind, "dim": DIM}
    model_fields = spec.RULES[kind].model_fields
    if "heads" in model_fields:
        fields["heads"] = 2
    if "dropout" in model_fields:
        fields["dropout"] = 0.0
    return spec.parse(fields)


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    xv = rng.standard_normal((STEPS, BATCH, FEATURES)).astype(np.float32)
    xt = rng.standard_normal((STEPS, BATCH, FEATURES)).astype(np.float32) + 2.0
    teacher = rng.standard_normal((2 * FEATURES, CLASSES))
    y = np.argmax(np.concatenate([xv, xt - 2.0], axis=-1) @ teacher, axis=-1).astype(np.int64)
    return xv, xt, y


def _present(missing: bool, seed: int = 3):
    """Per step, the presence mask ``(BATCH, 2)``: ``MISSING`` of the samples miss one
    modality (which one drawn per sample), as the towers benchmark trains; ``None`` for
    complete data."""
    if not missing:
        return [None] * STEPS
    rng = np.random.default_rng(seed)
    present = np.ones((STEPS, BATCH, 2), dtype=bool)
    hit = rng.random((STEPS, BATCH)) < MISSING
    side = rng.integers(0, 2, (STEPS, BATCH))
    present[..., 0] &= ~(hit & (side == 0))
    present[..., 1] &= ~(hit & (side == 1))
    return list(present)


def _weights(s, seed: int = 1):
    rng = np.random.default_rng(seed)
    towers = {
        name: (rng.uniform(-0.4, 0.4, (DIM, FEATURES)).astype(np.float32),
               rng.uniform(-0.4, 0.4, (DIM,)).astype(np.float32))
        for name in ("v", "t", "head")
    }
    towers["head"] = (rng.uniform(-0.35, 0.35, (CLASSES, DIM)).astype(np.float32),
                      rng.uniform(-0.35, 0.35, (CLASSES,)).astype(np.float32))
    fusion = spec.init_params(s, seed=seed)
    return towers, {k: np.asarray(a, np.float32) for k, a in fusion.items()}


def _noise(s, steps: int, seed: int = 2):
    rng = np.random.default_rng(seed)
    return [
        {n.name: rng.random(n.shape).astype(np.float32) for n in s.noise(BATCH, training=True)}
        for _ in range(steps)
    ]


def matched_epsilon(epsilon: float, step: int, beta2: float = 0.999) -> float:
    """PyTorch's Adam ``eps`` at ``step`` (1-based) that makes its update Keras's.

    PyTorch: lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Keras:
    lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + epsilon). Equal when
    eps = epsilon / sqrt(1 - b2^t).
    """
    return epsilon / np.sqrt(1.0 - beta2**step)


def torch_losses(s, optimiser: str, steps: int = STEPS, epsilon: float = EPSILON,
                 match_epsilon: bool = True, missing: bool = False) -> np.ndarray:
    towers, fusion = _weights(s)
    xv, xt, y = _data()
    present = _present(missing)
    noise = _noise(s, steps)
    lin = {}
    for name, (w, b) in towers.items():
        layer = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
        lin[name] = layer
    module = bt.build(s, fusion).train()
    params = [p for m in (*lin.values(), module) for p in m.parameters()]
    lr = OPTIMISERS[optimiser]
    opt = (torch.optim.SGD(params, lr=lr) if optimiser == "sgd"
           else torch.optim.Adam(params, lr=lr, eps=epsilon))
    losses = []
    for i in range(steps):
        for group in opt.param_groups:
            if "eps" in group and match_epsilon:
                group["eps"] = matched_epsilon(epsilon, i + 1)
        fused, aux = module(lin["v"](torch.from_numpy(xv[i])), lin["t"](torch.from_numpy(xt[i])),
                            None if present[i] is None else torch.from_numpy(present[i]),
                            noise={k: torch.from_numpy(u) for k, u in noise[i].items()} or None,
                            return_aux=True)
        loss = torch.nn.functional.cross_entropy(lin["head"](fused), torch.from_numpy(y[i]))
        if "energy_loss" in aux:
            loss = loss + aux["energy_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return np.asarray(losses)


class _Model(keras.Model):
    def __init__(self, s, towers, fusion):
        super().__init__()
        self.dense = {}
        for name, (w, b) in towers.items():
            layer = keras.layers.Dense(w.shape[0], name=f"dense_{name}")
            layer.build((None, w.shape[1]))
            layer.set_weights([w.T.copy(), b])
            setattr(self, f"dense_{name}", layer)
            self.dense[name] = layer
        self.fusion = bk.build(s, fusion)

    def call(self, xv, xt, present=None, noise=None, training=False):
        args = () if present is None else (present,)
        fused, aux = self.fusion(self.dense["v"](xv), self.dense["t"](xt), *args,
                                 training=training, noise=noise, return_aux=True)
        energy = aux.get("energy_loss", jnp.zeros((), "float32"))
        return self.dense["head"](fused), energy


def keras_losses(s, optimiser: str, steps: int = STEPS, epsilon: float = EPSILON,
                 missing: bool = False) -> np.ndarray:
    towers, fusion = _weights(s)
    xv, xt, y = _data()
    present = _present(missing)
    noise = _noise(s, steps)
    model = _Model(s, towers, fusion)
    model(xv[0], xt[0], training=False)  # build every variable (eval: no noise, no state update)
    lr = OPTIMISERS[optimiser]
    opt = (keras.optimizers.SGD(lr) if optimiser == "sgd"
           else keras.optimizers.Adam(lr, epsilon=epsilon))
    opt.build(model.trainable_variables)
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_fn(tv, ntv, xv, xt, y, present, noise):
        (logits, energy), ntv = model.stateless_call(tv, ntv, xv, xt, present,
                                                      noise=noise or None, training=True)
        return xent(y, logits) + energy, ntv

    @jax.jit
    def step(tv, ntv, ov, xv, xt, y, present, noise):
        (loss, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            tv, ntv, xv, xt, y, present, noise)
        tv, ov = opt.stateless_apply(ov, grads, tv)
        return loss, tv, ntv, ov

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    ov = [v.value for v in opt.variables]
    losses = []
    for i in range(steps):
        loss, tv, ntv, ov = step(tv, ntv, ov, xv[i], xt[i], y[i], present[i], noise[i])
        losses.append(float(loss))
    return np.asarray(losses)


def worst_relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "mask"])
@pytest.mark.parametrize("optimiser", list(OPTIMISERS))
@pytest.mark.parametrize("kind", RULES)
def test_training_losses_agree_over_200_steps(kind, optimiser, missing):
    """Complete data, and ``MISSING`` of the samples missing one modality with the
    presence mask given to the layer (its missing-modality semantics and the input
    norm's statistics over the present rows, in training)."""
    s = _spec(kind)
    ours = keras_losses(s, optimiser, missing=missing)
    theirs = torch_losses(s, optimiser, missing=missing)
    assert np.all(np.isfinite(ours)) and np.all(np.isfinite(theirs))
    # the run trains: the loss falls, so agreement is not two flat lines
    assert theirs[-20:].mean() < 0.8 * theirs[:20].mean(), (kind, optimiser, theirs[::20])
    worst = worst_relative(ours, theirs)
    print(f"{kind} {optimiser} {'mask' if missing else 'complete'}: worst relative loss "
          f"difference {worst:.2e} over {STEPS} steps")
    assert worst < RTOL, (kind, optimiser, missing, worst, np.abs(ours - theirs).argmax())


def test_a_different_optimiser_epsilon_is_caught():
    """The bound is tight enough to see a real difference: Adam's epsilon 1e-3 in Keras."""
    s = _spec("gated")
    theirs = torch_losses(s, "adam", steps=60)
    ours = keras_losses(s, "adam", steps=60, epsilon=1e-3)
    assert worst_relative(ours, theirs) > RTOL


def test_the_epsilon_placement_alone_is_caught():
    """PyTorch's eps used as if it were Keras's (the same 1e-7, unmatched): over 200
    steps ``modality_dropout`` leaves the bound. Without the matching the test would
    compare two optimisers."""
    s = _spec("modality_dropout")
    theirs = torch_losses(s, "adam")
    theirs_unmatched = torch_losses(s, "adam", match_epsilon=False)
    ours = keras_losses(s, "adam")
    assert worst_relative(ours, theirs) < RTOL
    assert worst_relative(ours, theirs_unmatched) > RTOL


def test_a_mask_given_to_one_framework_only_is_caught():
    """The mask's runs are not the complete runs again: the same samples with the mask
    in Keras and without it in PyTorch leave the bound (``simple``, whose output is the
    present modality alone for a sample missing one, within 60 steps)."""
    s = _spec("simple")
    ours = keras_losses(s, "adam", steps=60, missing=True)
    theirs = torch_losses(s, "adam", steps=60, missing=False)
    assert worst_relative(ours, theirs) > RTOL
