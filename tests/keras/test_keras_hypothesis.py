"""Property-based tests on this process's Keras backend: random valid calls agree with the
reference; random bad calls raise only the library's errors, naming the argument.

Keras computes the same ``keras.ops`` program on every backend; its NumPy backend is
the cheapest to run (no per-shape compilation), so it takes the full ``CI_EXAMPLES``
per rule; jax, torch and TensorFlow take ``OTHER_AGREE`` agreement and ``OTHER_BAD``
bad-call examples per rule (eager jax compiles each op for each new shape: 200
examples per rule would add minutes per backend); tests/keras/test_keras_robust.py
covers each backend's own behaviour on the edge cases.
The ``long`` profile runs ``LONG_EXAMPLES`` everywhere. Profiles: tests/hypothesis_cases.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_cases import BACKEND, to_numpy

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import keras as bk
from tests.backend_cases import perturbed_params
from tests.hypothesis_cases import CI_EXAMPLES, examples, invalid_calls, message_names, valid_calls
from tests.robust_cases import assert_agrees

KINDS = list(spec.RULES)
OTHER_AGREE, OTHER_BAD = 2, 25
AGREE = examples(CI_EXAMPLES if BACKEND == "numpy" else OTHER_AGREE)
BAD = examples(CI_EXAMPLES if BACKEND == "numpy" else OTHER_BAD)
_CACHE: dict[str, tuple] = {}


def built(s):
    """The layer of ``s`` and its params, reused across examples with the same spec;
    the state (input_norm's running statistics, moved by training calls) is put back to
    ``params`` each time, so every example starts from what the reference reads."""
    key = s.model_dump_json()
    if key not in _CACHE:
        params = perturbed_params(s, seed=len(_CACHE) % 7)
        _CACHE[key] = (bk.build(s, params, seed=0), params)
    module, params = _CACHE[key]
    module.load_canonical(params)
    return module, params


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=AGREE)
@given(data=st.data())
def test_hypothesis_keras_agrees_with_the_reference(kind, data):
    s, v, t, training, noise, options = data.draw(valid_calls(kind), label="call")
    layer, params = built(s)
    out, aux = layer(v, t, training=training, noise=noise, return_aux=True, **options)
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, training=training, noise=noise, return_aux=True, **options
    )
    aux = {k: to_numpy(x) for k, x in aux.items()}
    assert_agrees(s, to_numpy(out), aux, ref, ref_aux, training=training, **options)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=BAD)
@given(data=st.data())
def test_hypothesis_bad_calls_raise_library_errors_naming_the_argument(kind, data):
    s, call, argument = data.draw(invalid_calls(kind), label="case")
    call = dict(call)
    v, t = call.pop("v"), call.pop("t")
    layer, _ = built(s)
    try:
        layer(v, t, **call)
    except (spec.InputError, spec.SpecError, spec.WeightsError) as e:
        assert isinstance(e, spec.InputError), e
        assert message_names(str(e), argument), (argument, str(e))
    else:
        raise AssertionError(f"no error for a bad {argument}: {call}")
