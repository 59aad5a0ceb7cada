"""The Keras backend tests: one Keras backend per process, chosen by ``KERAS_BACKEND``.

Keras reads ``KERAS_BACKEND`` once, at import. Run this directory once per
backend, each in its own process::

    KERAS_BACKEND=jax   python -m pytest tests/keras -q
    KERAS_BACKEND=torch python -m pytest tests/keras -q
    KERAS_BACKEND=numpy python -m pytest tests/keras -q

Without the variable the tests use JAX (Keras's own default, TensorFlow, is not
installed in this project).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
