"""The PyTorch modules on token sequences ``(B, L, D)`` with padding masks.

Against the reference (tests/reference/test_tokens.py pins its semantics): every
rule, eval and training, with and without ``present``; padding never read (NaN there
never leaks, its gradient is exactly zero); one token is the vector call; compile
and export with dynamic lengths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_cases import (
    BATCH,
    CASES,
    KIND_CASES,
    as_torch,
    assert_matches_reference,
    inputs,
    perturbed_params,
    uniform_noise,
)

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance
from tests.backend_cases import (
    IMAGE_MASK,
    MISSING_VARIANTS,
    PRESENT,
    TEXT_MASK,
    garbage_in_padding,
    token_inputs,
)

ALL_SPECS = CASES | MISSING_VARIANTS
MASKS = {"image_mask": IMAGE_MASK, "text_mask": TEXT_MASK}


def build(fields, *, training=False, **extra):
    s = spec.parse({**fields, **extra})
    params = perturbed_params(s)
    module = bt.build(s, params)
    module.train(training)
    return s, params, module


def run(module, v, t, **kw):
    tensors = {k: torch.from_numpy(np.asarray(x)) for k, x in kw.items() if k != "noise"}
    return module(torch.from_numpy(v), torch.from_numpy(t), **tensors, noise=kw.get("noise"),
                  return_aux=True)


@pytest.mark.parametrize("case", list(ALL_SPECS))
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("with_present", [False, True])
def test_tokens_match_the_reference(case, training, with_present):
    s, params, module = build(ALL_SPECS[case], training=training)
    v, t = token_inputs(s)
    noise = uniform_noise(s, BATCH, training=training) or None
    kw = dict(MASKS, **({"present": PRESENT} if with_present else {}))
    ref, ref_aux = fusion_ref.forward(s, params, v, t, training=training, noise=noise,
                                      return_aux=True, **kw)
    with torch.no_grad():
        out, aux = run(module, v, t, noise=as_torch(noise), **kw)
    aux.pop("neither")
    assert_matches_reference(s, out, aux, ref, ref_aux, training=training)


@pytest.mark.parametrize("case", list(ALL_SPECS))
def test_nan_in_padding_never_leaks_and_gets_zero_gradient(case):
    s, _, module = build(ALL_SPECS[case], training=True)
    v, t = garbage_in_padding(*token_inputs(s), IMAGE_MASK, TEXT_MASK, np.nan)
    v, t = torch.from_numpy(v).requires_grad_(), torch.from_numpy(t).requires_grad_()
    noise = as_torch(uniform_noise(s, BATCH, training=True))
    out, aux = module(v, t, image_mask=torch.from_numpy(IMAGE_MASK),
                      text_mask=torch.from_numpy(TEXT_MASK), noise=noise, return_aux=True)
    assert torch.isfinite(out).all()
    loss = (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum()
    for a in s.aux(BATCH, training=True):
        if a.differentiable:
            loss = loss + aux[a.name].sum()
    loss.backward()
    real = 0.0
    for x, mask in ((v, IMAGE_MASK), (t, TEXT_MASK)):
        assert torch.isfinite(x.grad).all()
        assert (x.grad[torch.from_numpy(~mask)] == 0).all()
        real += float(x.grad[torch.from_numpy(mask)].abs().sum())
    assert real > 0  # (a training draw may drop one modality, not both)


@pytest.mark.parametrize("case", list(ALL_SPECS))
def test_one_token_is_the_vector_call_exactly(case):
    s, _, module = build(ALL_SPECS[case])
    v, t = inputs(s)
    noise = as_torch(uniform_noise(s, BATCH, training=False))  # eval_routing="sample" draws
    with torch.no_grad():
        vector = run(module, v, t, present=PRESENT, noise=noise)
        for tv, tt in ((v[:, None], t[:, None]), (v[:, None], t)):
            token = run(module, tv, tt, present=PRESENT, noise=noise)
            assert torch.equal(token[0], vector[0])
            assert token[1].keys() == vector[1].keys()
            for k in token[1]:
                assert torch.equal(token[1][k], vector[1][k]), k


def test_attending_rules_read_every_token_not_the_mean():
    s, _, module = build(CASES["simple"])
    v, t = token_inputs(s)
    with torch.no_grad():
        out = run(module, v, t)[0]
        pooled = run(module, v.mean(1, keepdims=True), t.mean(1, keepdims=True))[0]
    assert (out - pooled).abs().max() > 1e-3


def test_a_mask_needs_token_inputs():
    s, _, module = build(CASES["gated"])
    v, t = token_inputs(s)
    with pytest.raises(spec.InputError, match=r"'image_mask' is the padding mask of token sequences"):
        run(module, v[:, 0], t, image_mask=IMAGE_MASK[:, :1])
    with pytest.raises(spec.InputError, match=r"'text_mask' expected booleans \(or 0/1\); received values \[3\]"):
        run(module, v, t, text_mask=np.full(TEXT_MASK.shape, 3))


@pytest.fixture
def recompile_limit():
    """Every rule shares ``FusionModule.forward``: dynamo counts its recompilations
    across the rules of one process."""
    with torch._dynamo.config.patch(recompile_limit=64):
        yield


@pytest.mark.parametrize("case", KIND_CASES)
def test_compiles_fullgraph_with_tokens_and_masks(case, recompile_limit):
    s, _, module = build(CASES[case])
    compiled = torch.compile(module, fullgraph=True, dynamic=False)
    v, t = (torch.from_numpy(x) for x in token_inputs(s))
    masks = {k: torch.from_numpy(m) for k, m in MASKS.items()}
    with torch.no_grad():
        torch.testing.assert_close(compiled(v, t, **masks), module(v, t, **masks),
                                   rtol=1e-5, atol=1e-5)


def _dynamic():
    batch = torch.export.Dim("batch", min=1, max=1024)
    lv, lt = torch.export.Dim("L_v", min=2, max=512), torch.export.Dim("L_t", min=2, max=512)
    return {"v": {0: batch, 1: lv}, "t": {0: batch, 1: lt},
            "image_mask": {0: batch, 1: lv}, "text_mask": {0: batch, 1: lt}}


def _ragged(s, batch, lengths, seed):
    v, t = token_inputs(s, seed=seed, batch=batch, lengths=lengths)
    rng = np.random.default_rng(seed)
    masks = [rng.random((batch, n)) < 0.7 for n in lengths]
    for m in masks:
        m[0] = False  # one sample without this modality's tokens
    return v, t, *masks


@pytest.mark.parametrize("case", KIND_CASES)
def test_torch_export_with_dynamic_lengths(case):
    s, _, module = build(CASES[case])
    if module.routes:
        module.dispatch = "dense"  # export traces the dense dispatch
    v, t, mv, mt = (torch.from_numpy(x) for x in _ragged(s, BATCH, (4, 3), 0))
    program = torch.export.export(
        module, (v, t), {"image_mask": mv, "text_mask": mt}, dynamic_shapes=_dynamic()
    )
    for batch, lengths in ((5, (7, 2)), (3, (16, 9))):
        v, t, mv, mt = (torch.from_numpy(x) for x in _ragged(s, batch, lengths, batch))
        torch.testing.assert_close(
            program.module()(v, t, image_mask=mv, text_mask=mt),
            module(v, t, image_mask=mv, text_mask=mt), rtol=1e-6, atol=1e-6,
        )


@pytest.mark.parametrize("case", KIND_CASES)
def test_onnx_export_with_dynamic_lengths_matches_the_reference(case):
    ort = pytest.importorskip("onnxruntime")
    s, params, module = build(CASES[case])
    if module.routes:
        module.dispatch = "dense"
    v, t, mv, mt = (torch.from_numpy(x) for x in _ragged(s, BATCH, (4, 3), 0))
    program = torch.onnx.export(
        module, (v, t), kwargs={"image_mask": mv, "text_mask": mt}, dynamo=True,
        dynamic_shapes=_dynamic(), verbose=False,
    )
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    assert len(names) == 4, names
    for batch, lengths in ((5, (7, 2)), (3, (16, 9))):
        v, t, mv, mt = _ragged(s, batch, lengths, batch)
        (out,) = session.run(None, dict(zip(names, (v, t, mv, mt), strict=True)))
        ref = fusion_ref.forward(s, params, v, t, image_mask=mv, text_mask=mt)
        np.testing.assert_allclose(out, ref, **tolerance("float32"))
