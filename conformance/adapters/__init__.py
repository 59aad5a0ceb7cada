"""The bundled adapters: the NumPy reference, the PyTorch backend, the Keras backend.

``BUNDLED`` maps the CLI's backend names to ``module:Adapter`` targets. The
Keras adapter judges whichever Keras backend this process runs
(``KERAS_BACKEND``); the CLI runs it once per Keras backend in subprocesses.

The torch and Keras adapters take ``device`` (``"cpu"`` or ``"cuda"``) and
``precision`` (``"float32"``, or the TF32 opt-in ``"tensorfloat32"``, which
selects its own tolerance policy); the Keras adapter's device is chosen through
the environment before Keras is imported (``device_env``).
"""

from importlib.util import find_spec

BUNDLED: dict[str, str] = {
    "reference": "fusion_spec.conformance.adapters.reference:ReferenceAdapter",
    "torch": "fusion_spec.conformance.adapters.torch:TorchAdapter",
    "keras": "fusion_spec.conformance.adapters.keras:KerasAdapter",
}

#: The bundled adapters that take ``device`` and ``precision``.
DEVICE_ADAPTERS = ("torch", "keras")
DEVICES = ("cpu", "cuda")
#: ``bfloat16``: parameters and computation in bfloat16; ``bfloat16-autocast``: float32
#: parameters, bfloat16 autocast (torch) or the ``mixed_bfloat16`` policy (Keras). Both
#: are judged by the ``bfloat16`` tolerance policy.
PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "bfloat16-autocast")


def policy_dtype(precision: str) -> str:
    """The tolerance policy (``spec.tolerance``) of an adapter at ``precision``."""
    return "bfloat16" if precision.startswith("bfloat16") else precision

#: The Keras backends the default CLI run spawns, one subprocess each.
KERAS_BACKENDS = ("jax", "torch", "tensorflow", "numpy")

#: What each bundled backend needs installed (the Keras ones by Keras backend).
REQUIRES: dict[str, tuple[str, ...]] = {
    "reference": (),
    "torch": ("torch",),
    "keras-jax": ("keras", "jax"),
    "keras-torch": ("keras", "torch"),
    "keras-tensorflow": ("keras", "tensorflow"),
    "keras-numpy": ("keras", "jax", "scipy"),  # Keras's numpy backend imports both
}


def not_installed(name: str) -> str | None:
    """Why the bundled backend ``name`` (e.g. ``keras-jax``) cannot run here, or ``None``."""
    missing = [m for m in REQUIRES.get(name, ()) if find_spec(m) is None]
    return f"not installed ({', '.join(missing)} missing)" if missing else None


def device_env(device: str) -> dict[str, str]:
    """Environment that puts a Keras process (any Keras backend) on ``device``.

    Read when the frameworks are first imported, so it must be in place before:
    JAX's platform, Keras-on-torch's device, and for the CPU no visible GPU
    (TensorFlow places work on a GPU whenever it sees one).
    """
    if device not in DEVICES:
        raise ValueError(f"--device expected one of {list(DEVICES)}; received {device!r}")
    if device == "cuda":
        return {"JAX_PLATFORMS": "cuda", "KERAS_TORCH_DEVICE": "cuda"}
    return {"JAX_PLATFORMS": "cpu", "KERAS_TORCH_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": ""}


def check_settings(device: str, precision: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"argument 'device' expected one of {list(DEVICES)}; received {device!r}")
    if precision not in PRECISIONS:
        raise ValueError(
            f"argument 'precision' expected one of {list(PRECISIONS)}; received {precision!r}"
        )
