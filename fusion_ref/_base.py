"""Plumbing of the reference: input, noise and option checks, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fusion_spec.spec import (
    InputError,
    array_meta,
    as_numpy,
    check_arrays,
    check_flag,
    check_noise,
    check_params,
    parse,
)
from fusion_spec.spec._checks import check_present, numpy_host


def check_inputs(s, v: Any, t: Any, present: Any = None, image_mask: Any = None,
                 text_mask: Any = None):
    """Real floating ``(B, D_v)`` or ``(B, L_v, D_v)`` ``v`` (and ``t`` likewise) with equal
    ``B``, returned as float64; the optional ``(B, 2)`` presence mask and ``(B, L)``
    padding masks as bool (``None`` where not given).

    Any framework's tensors are accepted (read to the host); float16, bfloat16
    (ml_dtypes) and float32 widen exactly to float64. An integer mask must hold 0/1.
    """
    arrays = {"v": v, "t": t, "present": present, "image_mask": image_mask,
              "text_mask": text_mask}
    check_arrays(s, arrays, array_meta)
    masks = {}
    for name in ("present", "image_mask", "text_mask"):
        mask = None
        if arrays[name] is not None:
            mask = as_numpy(arrays[name])
            check_present(s, mask, name)
            mask = mask != 0
        masks[name] = mask
    return (
        as_numpy(v).astype(np.float64),
        as_numpy(t).astype(np.float64),
        masks["present"],
        (masks["image_mask"], masks["text_mask"]),
    )


def check_training(s, training: bool) -> None:
    if training and s.has_elementwise_dropout():
        raise InputError(
            f"{s.kind}: training mode with dropout={s.dropout}: element-wise dropout is not "
            "part of the noise contract, so the reference cannot reproduce it; "
            "use dropout=0 (expected 0.0, received "
            f"{s.dropout})"
        )


def prepare(s, params, v, t, training, noise: Mapping[str, Any] | None, options, present=None,
            padding=(None, None)):
    s = parse(s)
    training = check_flag(s.kind, "training", training)
    options = s.check_call_options(options)
    check_params(s, params)
    check_training(s, training)
    v64, t64, mask, padding = check_inputs(s, v, t, present, *padding)
    declared = s.noise(v64.shape[0], training=training, **options)
    if noise is None:
        if declared:
            wanted = ", ".join(f"{n.name} {n.shape}" for n in declared)
            raise InputError(
                f"{s.kind}: this call is stochastic and the reference draws no randomness; "
                f"pass noise={{...}} with uniform [0, 1) arrays: {wanted}"
            )
        noise = {}
    check_noise(s, noise, declared, array_meta, host=lambda x: numpy_host(as_numpy(x)))
    u = {n.name: as_numpy(noise[n.name]).astype(np.float64) for n in declared}
    p = {name: as_numpy(value).astype(np.float64) for name, value in params.items()}
    return s, training, p, v64, t64, mask, padding, u, options
