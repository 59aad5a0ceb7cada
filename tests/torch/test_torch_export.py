"""Every rule exports in eval with ``torch.export`` and to ONNX; onnxruntime matches the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_cases import KIND_CASES, inputs, make_spec, perturbed_params

from fusion_spec import fusion_ref
from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance

ort = pytest.importorskip("onnxruntime")


def dynamic_batch():
    batch = torch.export.Dim("batch", min=1, max=1024)
    return ({0: batch}, {0: batch})


@pytest.mark.parametrize("case", KIND_CASES)
def test_torch_export_with_dynamic_batch(case):
    s = make_spec(case)
    module = bt.build(s, perturbed_params(s)).eval()
    v, t = (torch.from_numpy(x) for x in inputs(s))
    program = torch.export.export(module, (v, t), dynamic_shapes=dynamic_batch())
    if module.routes:  # export traces the dense dispatch; eager "auto" would gather rows
        module.dispatch = "dense"
    for batch in (8, 3):
        v, t = (torch.from_numpy(x) for x in inputs(s, seed=batch, batch=batch))
        assert torch.equal(program.module()(v, t), module(v, t))


@pytest.mark.parametrize("case", KIND_CASES)
def test_onnx_export_runs_in_onnxruntime_and_matches_reference(case):
    s = make_spec(case)
    params = perturbed_params(s)
    module = bt.build(s, params).eval()
    v, t = (torch.from_numpy(x) for x in inputs(s))
    program = torch.onnx.export(
        module, (v, t), dynamo=True, dynamic_shapes=dynamic_batch(), verbose=False
    )
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    assert len(names) == 2
    for batch in (8, 5):
        v, t = inputs(s, seed=batch, batch=batch)
        (out,) = session.run(None, {names[0]: v, names[1]: t})
        ref = fusion_ref.forward(s, params, v, t)
        np.testing.assert_allclose(out, ref, **tolerance("float32"))
