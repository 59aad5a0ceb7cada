"""Examples for backend authors; ``minimal_adapter`` is the one walked through in the guide."""
