"""The bundled adapters: the NumPy reference, the PyTorch backend, the Keras backend.

``BUNDLED`` maps the CLI's backend names to ``module:Adapter`` targets. The
Keras adapter judges whichever Keras backend this process runs
(``KERAS_BACKEND``); the CLI runs it once per Keras backend in subprocesses.
"""

BUNDLED: dict[str, str] = {
    "reference": "conformance.adapters.reference:ReferenceAdapter",
    "torch": "conformance.adapters.torch:TorchAdapter",
    "keras": "conformance.adapters.keras:KerasAdapter",
}

#: The Keras backends the default CLI run spawns, one subprocess each.
KERAS_BACKENDS = ("jax", "torch", "numpy")
