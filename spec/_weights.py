"""The framework-neutral weight file: safetensors with the spec as metadata."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import deserialize, safe_open
from safetensors.numpy import save_file

from ._errors import SpecError, WeightsError, describe
from ._params import as_numpy, check_params
from ._union import parse, parse_stored

FORMAT = "fusion-spec/1"
SPEC_KEY = "fusion_spec"

#: safetensors dtypes a weight file may hold; each widens exactly to float32.
#: bfloat16 is decoded here by hand (NumPy itself has no bfloat16: ml_dtypes
#: provides it, a dependency of jax and TensorFlow but not of fusion-spec).
_DECODE = {
    "F32": lambda b: np.frombuffer(b, dtype="<f4"),
    "F16": lambda b: np.frombuffer(b, dtype="<f2").astype(np.float32),
    "BF16": lambda b: (np.frombuffer(b, dtype="<u2").astype(np.uint32) << 16).view(np.float32),
    # refused later by the float32 check with its name: narrowing would round
    "F64": lambda b: np.frombuffer(b, dtype="<f8"),
}


def _path(path: Any, what: str) -> str:
    try:
        return os.fspath(path)
    except TypeError:
        raise WeightsError(
            f"{what}: argument 'path' expected a str or os.PathLike; received {describe(path)}"
        ) from None


def save_weights(path: str | os.PathLike, s, params: Mapping[str, Any]) -> None:
    """Write ``params`` (canonical names) and the spec JSON to one safetensors file.

    Arrays are cast to float32 and copied C-contiguous first (``np.array(order="C")``;
    ``np.ascontiguousarray`` would turn a 0-d array into 1-d): safetensors 0.8.0
    writes wrong bytes for transposed or strided arrays. Raises ``SpecError`` for an
    invalid spec and ``WeightsError`` for params that do not match it or a path
    that cannot be written.
    """
    path = _path(path, "save_weights")
    s = parse(s)
    check_params(s, params)
    tensors = {
        name: np.array(as_numpy(value), dtype=np.float32, order="C")
        for name, value in params.items()
    }
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise WeightsError(f"{path}: cannot write the weight file: folder {folder} does not exist")
    metadata = {"format": FORMAT, SPEC_KEY: s.model_dump_json()}
    try:
        save_file(tensors, path, metadata=metadata)
    except Exception as e:  # OSError, SafetensorError (naming a temporary file)
        raise WeightsError(f"{path}: cannot write the weight file ({type(e).__name__}: {e})") from e


def _read(path: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Metadata and tensors (float32, or float64 to be refused) of a safetensors file."""
    if not os.path.exists(path):
        raise WeightsError(f"{path}: not a readable safetensors file (no such file)")
    if os.path.isdir(path):
        raise WeightsError(f"{path}: not a readable safetensors file (a directory)")
    try:
        with safe_open(path, framework="np") as f:
            metadata = dict(f.metadata() or {})
        entries = deserialize(Path(path).read_bytes())
    except Exception as e:  # OSError, SafetensorError, a malformed header
        reason = str(e) or type(e).__name__
        raise WeightsError(f"{path}: not a readable safetensors file ({reason})") from e
    unsupported = [f"{name!r}: {e['dtype']}" for name, e in entries if e["dtype"] not in _DECODE]
    if unsupported:
        raise WeightsError(
            f"{path}: unsupported tensor dtypes ({', '.join(unsupported)}); "
            f"expected F32, F16 or BF16"
        )
    params = {
        name: _DECODE[e["dtype"]](e["data"]).reshape(tuple(e["shape"])) for name, e in entries
    }
    return metadata, params


def load_weights(path: str | os.PathLike):
    """Read a weight file written by ``save_weights``; returns ``(spec, params)``.

    Checks every name and shape against the embedded spec. Tensors are float32,
    or float16/bfloat16 widened exactly to float32 (bfloat16 decoded without
    ml_dtypes); float64 is refused (narrowing would round). Every failure
    (missing, empty, truncated or foreign file, invalid embedded spec, mismatched
    tensors) is a ``WeightsError`` naming the path and the reason.
    """
    path = _path(path, "load_weights")
    metadata, params = _read(path)
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
        s = parse_stored(metadata[SPEC_KEY])
    except SpecError as e:
        raise WeightsError(f"{path}: the embedded spec is invalid: {e}") from e
    check_params(s, params, dtype="float32", what=f"weights in {path}")
    return s, params
