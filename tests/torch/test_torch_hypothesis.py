"""Property-based tests: random valid calls agree (reference vs PyTorch); random bad
calls raise only the library's errors, naming the argument. Profiles: tests/hypothesis_cases.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import torch as bt
from tests.backend_cases import perturbed_params
from tests.hypothesis_cases import examples, invalid_calls, message_names, valid_calls
from tests.robust_cases import assert_agrees

KINDS = list(spec.RULES)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add contention (40x slower on a loaded 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_CACHE: dict[str, tuple] = {}


def built(s):
    """The module of ``s`` and its params, reused across examples with the same spec;
    the state (input_norm's running statistics, moved by training calls) is put back to
    ``params`` each time, so every example starts from what the reference reads."""
    key = s.model_dump_json()
    if key not in _CACHE:
        params = perturbed_params(s, seed=len(_CACHE) % 7)
        _CACHE[key] = (bt.build(s, params), params)
    module, params = _CACHE[key]
    module.load_canonical(params)
    return module, params


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=examples())
@given(data=st.data())
def test_hypothesis_torch_agrees_with_the_reference(kind, data):
    s, v, t, training, noise, options = data.draw(valid_calls(kind), label="call")
    module, params = built(s)
    module.train(training)
    with torch.no_grad():
        out, aux = module(v, t, noise=noise, return_aux=True, **options)
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, training=training, noise=noise, return_aux=True, **options
    )
    aux = {k: x.numpy() for k, x in aux.items()}
    assert_agrees(s, out.numpy(), aux, ref, ref_aux, training=training, **options)


LIBRARY_ERRORS = (spec.InputError, spec.SpecError, spec.WeightsError)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=examples())
@given(data=st.data())
def test_hypothesis_bad_calls_raise_library_errors_naming_the_argument(kind, data):
    s, call, argument = data.draw(invalid_calls(kind), label="case")
    call = dict(call)
    v, t, training = call.pop("v"), call.pop("t"), call.pop("training")
    module, params = built(s)
    for name, run in [
        ("reference", lambda: fusion_ref.forward(s, params, v, t, training=training, **call)),
        ("torch", lambda: module.train(training)(v, t, **call)),
    ]:
        try:
            run()
        except LIBRARY_ERRORS as e:
            assert isinstance(e, spec.InputError), (name, e)
            assert message_names(str(e), argument), (name, argument, str(e))
        else:
            raise AssertionError(f"{name}: no error for a bad {argument}: {call}")
