"""fusion-spec: the reference definition of nine multimodal fusion layers.

Subpackages (import them explicitly; importing ``fusion_spec`` imports nothing heavy):

- ``fusion_spec.spec``: one pydantic model per rule, the single source of truth;
  the safetensors weight format; import of the original code's checkpoints.
- ``fusion_spec.fusion_ref``: the pure-NumPy float64 reference implementation.
- ``fusion_spec.backends.torch``, ``fusion_spec.backends.keras``: PyTorch modules and
  Keras 3 layers (extras ``torch`` and ``keras``/``keras-jax``/``keras-tensorflow``).
- ``fusion_spec.conformance``: the suite that judges any backend
  (``fusion-conformance`` on the command line).
"""

__version__ = "0.2.0"
