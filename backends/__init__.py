"""Framework backends of fusion-spec: ``backends.torch`` and ``backends.keras``.

Each imports only ``spec`` (never ``fusion_ref``) and its own framework.
"""
