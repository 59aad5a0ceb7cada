"""Comparison tolerances against the float64 reference, one policy for every backend.

Values: ``|actual - expected| <= atol + rtol * |expected|`` element-wise, per
dtype of the backend's computation (the conformance suite scales ``atol`` by
``max(1, max|expected|)`` of the tensor, see ``conformance.compare``).
Decisions (routes, masks) are compared exactly except on samples whose
reference margin is at most ``decision_margin(dtype)``. Gradients of
``sum(output * R)`` are compared with central finite differences of the
reference within ``gradient_tolerance(dtype)``.

Measurements behind the float32 numbers (``python -m fusion_spec.conformance`` then
``python -m fusion_spec.conformance.measure``: all 102 forward cases and 18 gradient cases,
PyTorch 2.13 CPU and Keras 3.15.1 on jax 0.10.2 / torch / numpy, float32):

=================  ===========================  ==============================
backend            worst forward error,         worst gradient error,
                   ``max|a-e| / max(1,max|e|)``  scaled (see ``conformance.gradients``)
=================  ===========================  ==============================
torch              9.0e-7                       4.3e-7
keras-jax          9.0e-7                       2.3e-7
keras-torch        1.8e-6                       2.7e-7
keras-numpy        1.4e-6                       (no autodiff)
=================  ===========================  ==============================

The worst forward tensor is ``route_probs`` of ``energy_aware_adaptive_large``
(inputs of magnitude 1e3, logits in the thousands). The subtlest planted bug,
tanh GELU, deviates by at most 2.3e-4 scaled over the catalogue
(``shomr_training_automatic``); LayerNorm eps 1e-3 by 4.0e-2, attention scale
1/dim by 0.55, a transposed weight or swapped inputs by more than 1.
``atol = 1e-5`` sits between: 5.5x above the worst correct backend and 23x
below the subtlest bug.
``rtol = 1e-4`` bounds the error of large elements relative to themselves
(float32 epsilon 1.2e-7 times the depth of the deepest case, 3 encoder layers,
with a wide margin); ``decision_margin = 1e-4`` is 50x the worst error of any
probability, so a decision that differs with a larger reference margin cannot
be rounding. Gradients: ``atol = 1e-5`` is 23x the worst measured error.

Float64 numbers are for float64 backends (the reference meets them exactly).

bfloat16, measured (``--precision bfloat16`` and ``bfloat16-autocast`` of the bundled
adapters, all forward and gradient cases, PyTorch 2.13 CPU and Keras 3.15.1 on jax 0.10.2):

=========================================  ==============  ===============
backend                                    worst forward   worst gradient
=========================================  ==============  ===============
torch, bfloat16 autocast (float32 params)  3.8e-2          6.7e-3
torch, bfloat16 params                     2.0e-2 (*)      1.6e-2
keras-jax, ``mixed_bfloat16`` policy       2.4e-2 (*)      2.3e-7 (**)
=========================================  ==============  ===============

The worst is ``attention_weights`` of ``cross_attention_large`` under autocast.
(*) except that same case, whose inputs of magnitude 1e3 give attention scores of
about 1e6: rounded to bfloat16 (inputs cast by bfloat16 params or the Keras
policy) they carry absolute errors above 1e3, so the softmax is decided by
rounding (error 1.0) under any tolerance; bfloat16 inputs cannot take that case.
(**) the gradient check's ``stateless_call`` ran the products in float32.
``atol = 1e-1`` is 2.6x the worst correct forward error, the gradient ``atol = 5e-2``
3.2x the worst gradient error; ``rtol = 5e-2`` and the decision margin ``5e-2``
are about 6 bfloat16 epsilons (7.8e-3); params stored in bfloat16 do not
round-trip float32 params (the ``params_roundtrip`` property fails by design).

``tensorfloat32`` is the policy of the TF32 opt-in (float32 storage, matrix
products on inputs rounded to a 10-bit mantissa, unit roundoff 4.9e-4; selected
by ``--precision tensorfloat32``). Not measured by us (no GPU with TF32 was
available; on the CPU the products are float32 and meet it trivially): the
issue that asked for it measured errors up to 4e-4 (scaled) for the Keras layers
on JAX on an NVIDIA H200 with XLA's default TF32 products, so ``atol = 2e-3``
is 5x that, ``rtol = 1e-2`` about 20 unit roundoffs; decisions and gradients
likewise. It still separates the planted bugs above 4e-2 (LayerNorm eps and
worse), not the tanh GELU (2.3e-4).
"""

from __future__ import annotations

from ._errors import InputError

TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"rtol": 1e-10, "atol": 1e-10},
    "float32": {"rtol": 1e-4, "atol": 1e-5},
    "tensorfloat32": {"rtol": 1e-2, "atol": 2e-3},
    "bfloat16": {"rtol": 5e-2, "atol": 1e-1},
}

#: A differing decision is a boundary case when the reference margin is at most this.
DECISION_MARGINS: dict[str, float] = {
    "float64": 1e-9,
    "float32": 1e-4,
    "tensorfloat32": 2e-3,
    "bfloat16": 5e-2,
}

#: Gradients: ``rtol`` on each finite difference, ``atol`` times the gradient's scale.
GRADIENT_TOLERANCES: dict[str, dict[str, float]] = {
    "float64": {"rtol": 1e-6, "atol": 1e-7},
    "float32": {"rtol": 1e-4, "atol": 1e-5},
    "tensorfloat32": {"rtol": 1e-2, "atol": 2e-3},
    "bfloat16": {"rtol": 1e-1, "atol": 5e-2},
}


def _name(dtype: str, table: dict) -> str:
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in table:
        raise InputError(
            f"tolerance: argument 'dtype' expected one of {sorted(table)}; received {dtype!r}"
        )
    return name


def tolerance(dtype: str) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for a dtype name such as ``"float32"``."""
    return TOLERANCES[_name(dtype, TOLERANCES)]


def decision_margin(dtype: str) -> float:
    """Largest reference margin at which a differing decision counts as a boundary case."""
    return DECISION_MARGINS[_name(dtype, DECISION_MARGINS)]


def gradient_tolerance(dtype: str) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for gradients against finite differences."""
    return GRADIENT_TOLERANCES[_name(dtype, GRADIENT_TOLERANCES)]
