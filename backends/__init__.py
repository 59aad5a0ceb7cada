"""Framework backends of fusion-spec: ``fusion_spec.backends.torch`` and ``fusion_spec.backends.keras``.

Each imports only ``spec`` (never ``fusion_ref``) and its own framework.
"""
