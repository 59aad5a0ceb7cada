"""The bundled adapters: the NumPy reference, the PyTorch backend, the Keras backend.

``BUNDLED`` maps the CLI's backend names to ``module:Adapter`` targets. The
Keras adapter judges whichever Keras backend this process runs
(``KERAS_BACKEND``); the CLI runs it once per Keras backend in subprocesses.
"""

from importlib.util import find_spec

BUNDLED: dict[str, str] = {
    "reference": "fusion_spec.conformance.adapters.reference:ReferenceAdapter",
    "torch": "fusion_spec.conformance.adapters.torch:TorchAdapter",
    "keras": "fusion_spec.conformance.adapters.keras:KerasAdapter",
}

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
