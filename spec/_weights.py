"""The framework-neutral weight file: safetensors with the spec as metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ._params import WeightsError, as_numpy, check_params
from ._union import parse

FORMAT = "fusion-spec/1"
SPEC_KEY = "fusion_spec"


def save_weights(path: str | os.PathLike, s, params: Mapping[str, Any]) -> None:
    """Write ``params`` (canonical names) and the spec JSON to one safetensors file.

    Arrays are cast to float32 and copied C-contiguous first (``np.array(order="C")``;
    ``np.ascontiguousarray`` would turn a 0-d array into 1-d): safetensors 0.8.0
    writes wrong bytes for transposed or strided arrays.
    """
    s = parse(s)
    arrays = {name: as_numpy(value) for name, value in params.items()}
    check_params(s, arrays)
    tensors = {name: np.array(a, dtype=np.float32, order="C") for name, a in arrays.items()}
    metadata = {"format": FORMAT, SPEC_KEY: s.model_dump_json()}
    save_file(tensors, os.fspath(path), metadata=metadata)


def load_weights(path: str | os.PathLike):
    """Read a weight file written by ``save_weights``; returns ``(spec, params)``.

    Checks every name, shape and dtype (float32) against the embedded spec.
    """
    path = os.fspath(path)
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            params = {name: f.get_tensor(name) for name in f.keys()}
    except (OSError, SafetensorError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    if SPEC_KEY not in metadata:
        raise WeightsError(
            f"{path}: not a fusion-spec weight file: metadata key {SPEC_KEY!r} missing "
            f"(found keys {sorted(metadata)})"
        )
    if metadata.get("format") != FORMAT:
        raise WeightsError(
            f"{path}: expected format {FORMAT!r}, received {metadata.get('format')!r}"
        )
    try:
        s = parse(json.loads(metadata[SPEC_KEY]))
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path}: the embedded spec is not valid JSON ({e})") from e
    check_params(s, params, dtype="float32", what=f"weights in {path}")
    return s, params
