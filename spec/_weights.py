"""The framework-neutral weight file: safetensors with the spec as metadata."""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors import deserialize
from safetensors.numpy import save

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


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, for error messages."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def save_weights(path: str | os.PathLike, s, params: Mapping[str, Any]) -> None:
    """Write ``params`` (canonical names) and the spec JSON to one safetensors file.

    Arrays are cast to float32 and copied C-contiguous first (``np.array(order="C")``;
    ``np.ascontiguousarray`` would turn a 0-d array into 1-d): safetensors 0.8.0
    writes wrong bytes for transposed or strided arrays.

    The write is atomic: the bytes go to a temporary file in the target's folder
    (anonymous where the file system allows, so that even a killed process leaves
    nothing behind), then replace the target in one rename. A symlink is followed
    (its target is written, the link stays), as ``open(path, "wb")`` would; an
    existing target keeps its permission bits, a new file gets ``0o666`` less the
    umask. A path that is a directory, FIFO, device or socket is refused, never
    replaced; on any failure (``KeyboardInterrupt`` included) the temporary file
    is removed and the target is left as it was. Raises ``SpecError`` for an
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
    target = os.path.realpath(path)  # a symlink's final target; a new path as given
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise WeightsError(f"{path}: cannot write the weight file: folder {folder} does not exist")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise WeightsError(f"{path}: cannot write the weight file ({type(e).__name__}: {e})") from e
    if mode is not None and not stat.S_ISREG(mode):
        shown = path if target == os.path.abspath(path) else f"{path} (-> {target})"
        raise WeightsError(
            f"{shown}: cannot write the weight file: expected a regular file or a new path, "
            f"received {file_kind(mode)}; nothing was replaced"
        )
    data = save(tensors, metadata={"format": FORMAT, SPEC_KEY: s.model_dump_json()})
    try:
        _write_atomic(target, data, None if mode is None else stat.S_IMODE(mode))
    except OSError as e:
        raise WeightsError(f"{path}: cannot write the weight file ({type(e).__name__}: {e})") from e


def _write_atomic(target: str, data: bytes, mode: int | None) -> None:
    """Replace ``target`` by a file holding ``data``, in one rename.

    ``mode``: the permission bits to keep (an existing target's), or ``None`` for a
    new file (``0o666`` less the umask, applied by ``open`` itself). The temporary
    file is removed on every failure, ``BaseException`` included.
    """
    folder, name = os.path.split(target)
    fd, temp = _open_temporary(folder, name)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        if temp is None:  # anonymous: give it a name only now, complete
            temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
            _link_anonymous(fd, temp)
        os.replace(temp, target)
        temp = None
    finally:
        os.close(fd)
        if temp is not None:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass


def _link_anonymous(fd: int, path: str) -> None:
    """Give the ``O_TMPFILE`` file ``fd`` the name ``path``: ``linkat`` of
    ``/proc/self/fd/N`` with ``AT_SYMLINK_FOLLOW`` (``open(2)``), which ``os.link``
    uses only when given a folder descriptor."""
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(
            f"/proc/self/fd/{fd}", os.path.basename(path), dst_dir_fd=folder, follow_symlinks=True
        )
    finally:
        os.close(folder)


def _open_temporary(folder: str, name: str) -> tuple[int, str | None]:
    """A new file for writing in ``folder``: ``(fd, None)`` when it is anonymous
    (Linux ``O_TMPFILE``: it vanishes with the process until linked), else
    ``(fd, its path)``. Created with mode ``0o666`` less the umask."""
    if hasattr(os, "O_TMPFILE") and os.path.exists("/proc/self/fd"):
        try:
            return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666), None
        except OSError:
            pass  # a file system without O_TMPFILE: a named temporary file
    temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    return os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), temp


def _read_regular(path: str) -> bytes:
    """The bytes of ``path``, opened without blocking and checked regular again on the
    open descriptor (the path may have been swapped since ``os.stat``)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise WeightsError(
                f"{path}: not a readable safetensors file (expected a regular file, "
                f"received {file_kind(mode)})"
            )
        return f.read()


def _read(path: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Metadata and tensors (float32, or float64 to be refused) of a safetensors file.

    The path is checked with ``os.stat`` before it is opened: a FIFO, device,
    socket or directory is refused at once (opening a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WeightsError(f"{path}: not a readable safetensors file (no such file)") from None
    except OSError as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    if not stat.S_ISREG(mode):
        raise WeightsError(
            f"{path}: not a readable safetensors file (expected a regular file, "
            f"received {file_kind(mode)})"
        )
    try:
        data = _read_regular(path)
        entries = deserialize(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    except WeightsError:
        raise
    except Exception as e:  # OSError, SafetensorError, a malformed header
        reason = str(e) or type(e).__name__
        raise WeightsError(f"{path}: not a readable safetensors file ({reason})") from e
    metadata = dict(header.get("__metadata__") or {})
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
