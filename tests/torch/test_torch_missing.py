"""The PyTorch backend with a presence mask: reference, bit-exactness, NaN, gradients,
compile, export and ONNX (the mask an ordinary input)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch_cases import BATCH, CASES, KIND_CASES, inputs, perturbed_params

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance
from tests.backend_cases import MISSING_VARIANTS, PRESENT, garbage_in_absent_rows

ALL = {case: CASES[case] for case in CASES} | MISSING_VARIANTS
TOL = tolerance("float32")


def build(fields, training=False):
    s = spec.parse(fields)
    params = perturbed_params(s)
    return s, params, bt.build(s, params).train(training)


def noise_for(s, training, seed=0, **options):
    rng = np.random.default_rng(seed)
    declared = s.noise(BATCH, training=training, **options)
    return {n.name: rng.uniform(size=n.shape).astype(np.float32) for n in declared} or None


def run(module, v, t, present, noise, **options):
    noise = None if noise is None else {k: torch.from_numpy(u) for k, u in noise.items()}
    present = None if present is None else torch.from_numpy(present)
    return module(torch.from_numpy(v), torch.from_numpy(t), present, noise=noise,
                  return_aux=True, **options)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("case", list(ALL))
def test_matches_reference_for_every_presence_pattern(case, training):
    s, params, module = build(ALL[case], training)
    v, t = inputs(s)
    noise = noise_for(s, training)
    with torch.no_grad():
        out, aux = run(module, v, t, PRESENT, noise)
    ref, ref_aux = fusion_ref.forward(
        s, params, v, t, PRESENT, training=training, noise=noise, return_aux=True
    )
    # decisions near a float32 flip would change a row: the routing rules' margins
    sure = np.ones(BATCH, bool)
    for a in s.call_aux(BATCH, training=training, present=True):
        if a.role == "decision" and a.margin:
            sure &= np.broadcast_to(ref_aux[a.margin] >= 1e-4, (BATCH,))
    np.testing.assert_allclose(out.numpy()[sure], ref[sure], **TOL)
    for name, value in aux.items():
        np.testing.assert_allclose(
            value.numpy()[sure] if value.ndim else value.numpy(),
            ref_aux[name][sure] if value.ndim else ref_aux[name],
            **TOL,
            err_msg=name,
        )


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("case", list(ALL))
def test_all_true_is_bit_identical_and_absent_rows_never_matter(case, training):
    s, params, module = build(ALL[case], training)
    v, t = inputs(s)
    noise = noise_for(s, training)
    with torch.no_grad():
        out, aux = run(module, v, t, None, noise)
        out_true, aux_true = run(module, v, t, np.ones((BATCH, 2), bool), noise)
        masked, masked_aux = run(module, v, t, PRESENT, noise)
        nan, nan_aux = run(module, *garbage_in_absent_rows(v, t, PRESENT), PRESENT, noise)
    assert torch.equal(out, out_true)
    assert set(aux_true) == set(aux) | {"neither"}
    for name, value in aux.items():
        assert torch.equal(value, aux_true[name]), name
    assert torch.equal(masked, nan)
    for name, value in masked_aux.items():
        assert torch.equal(value, nan_aux[name]), name
    assert torch.isfinite(masked).all() and (masked[3] == 0).all()


@pytest.mark.parametrize("case", list(ALL))
def test_no_gradient_reaches_an_absent_row_and_nothing_is_nan(case):
    s, params, module = build(ALL[case], training=True)
    v, t = (torch.from_numpy(x) for x in garbage_in_absent_rows(*inputs(s), PRESENT))
    v.requires_grad_(True)
    t.requires_grad_(True)
    noise = noise_for(s, True)
    noise = None if noise is None else {k: torch.from_numpy(u) for k, u in noise.items()}
    out = module(v, t, torch.from_numpy(PRESENT), noise=noise)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert torch.all(v.grad[~torch.from_numpy(PRESENT[:, 0])] == 0)
    assert torch.all(t.grad[~torch.from_numpy(PRESENT[:, 1])] == 0)
    assert torch.isfinite(v.grad).all() and torch.isfinite(t.grad).all()
    for name, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kind", ["shomr", "energy_aware_adaptive"])
def test_training_draws_never_route_to_an_absent_modality(kind):
    s, _, module = build(CASES[kind], training=True)
    present = np.tile(PRESENT, (32, 1))  # 256 samples, every pattern
    rng = np.random.default_rng(0)
    v, t = (rng.standard_normal((len(present), s.dim)).astype(np.float32) for _ in range(2))
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(8):
            _, aux = module(torch.from_numpy(v), torch.from_numpy(t), torch.from_numpy(present),
                            return_aux=True)
            route = aux["route"].numpy()
            assert np.all(route[present[:, 0] & ~present[:, 1]] == 0)
            assert np.all(route[present[:, 1] & ~present[:, 0]] == 1)
            assert np.all(route[~present.any(1)] == -1)
            assert set(route[present.all(1)].tolist()) <= {0, 1, 2}


def test_integer_mask_and_errors():
    s, _, module = build(CASES["gated"])
    v, t = (torch.from_numpy(x) for x in inputs(s))
    expected = module(v, t, torch.from_numpy(PRESENT))
    assert torch.equal(module(v, t, torch.from_numpy(PRESENT.astype(np.int32))), expected)
    with pytest.raises(spec.InputError, match=r"gated: argument 'present' expected shape \(B, 2\)"):
        module(v, t, torch.ones(8, 3, dtype=torch.bool))
    with pytest.raises(spec.InputError, match=r"expected a bool or an integer dtype; .*float32"):
        module(v, t, torch.ones(8, 2))


@pytest.fixture(scope="module")
def recompile_limit():
    with torch._dynamo.config.patch(recompile_limit=64):
        yield


@pytest.mark.parametrize("case", ["modality_dropout", "shomr", "energy_aware_adaptive"])
def test_compiles_with_the_mask_fullgraph(case, recompile_limit):
    """Training mode (noise and mask) of the rules whose training graph differs with the
    mask; every rule's eval graph with the mask is traced whole by torch.export below
    (the other rules' training graphs equal their eval graphs at dropout 0)."""
    s, _, module = build(CASES[case], training=True)
    compiled = torch.compile(module, fullgraph=True, dynamic=False)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    present = torch.from_numpy(PRESENT)
    for training in (True,):
        noise = noise_for(s, training)
        noise = None if noise is None else {k: torch.from_numpy(u) for k, u in noise.items()}
        expected, expected_aux = module(v, t, present, noise=noise, return_aux=True)
        actual, aux = compiled(v, t, present, noise=noise, return_aux=True)
        torch.testing.assert_close(actual, expected, **TOL)
        for name, value in aux.items():
            torch.testing.assert_close(value, expected_aux[name], **TOL)


def _dynamic():
    batch = torch.export.Dim("batch", min=1, max=1024)
    return ({0: batch}, {0: batch}, {0: batch})


@pytest.mark.parametrize("case", KIND_CASES)
def test_torch_export_with_the_mask_as_an_input(case):
    s, _, module = build(CASES[case])
    v, t = (torch.from_numpy(x) for x in inputs(s))
    present = torch.from_numpy(PRESENT)
    program = torch.export.export(module, (v, t, present), dynamic_shapes=_dynamic())
    for batch in (8, 3):
        v, t = (torch.from_numpy(x) for x in inputs(s, seed=batch, batch=batch))
        mask = torch.from_numpy(np.resize(PRESENT[::-1], (batch, 2)).copy())
        # the exported graph is the dense dispatch; eager "auto" may sort the routing
        # rules' samples into buckets (another summation order), so compare dense to dense
        eager = module
        if hasattr(module, "dispatch"):
            eager = copy.deepcopy(module)
            eager.dispatch = "dense"
        assert torch.equal(program.module()(v, t, mask), eager(v, t, mask))


@pytest.mark.parametrize("case", KIND_CASES)
def test_onnx_export_with_the_mask_runs_in_onnxruntime_and_matches_reference(case):
    ort = pytest.importorskip("onnxruntime")
    s, params, module = build(CASES[case])
    v, t = (torch.from_numpy(x) for x in inputs(s))
    program = torch.onnx.export(
        module, (v, t, torch.from_numpy(PRESENT)), dynamo=True, dynamic_shapes=_dynamic(),
        verbose=False,
    )
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [i.name for i in session.get_inputs()]
    assert len(names) == 3
    for batch in (8, 5):
        v, t = inputs(s, seed=batch, batch=batch)
        mask = np.resize(PRESENT[::-1], (batch, 2)).copy()
        v, t = garbage_in_absent_rows(v, t, mask)
        (out,) = session.run(None, {names[0]: v, names[1]: t, names[2]: mask})
        ref = fusion_ref.forward(s, params, v, t, mask)
        np.testing.assert_allclose(out, ref, **TOL)


@pytest.mark.parametrize("input_norm", ["none", "batch"])
def test_lone_gradient_stop_cuts_a_lone_sample_s_input_gradient_not_the_rule_s(input_norm):
    """``cross_attention``'s ``lone_gradient``: "stop" and "pass" compute the same output;
    under "stop" a lone sample's present row gets no gradient from its own output (exactly
    0 in eval; in training only the other rows' gradient through the batch statistics),
    and the rule's parameters get the same gradient as under "pass"."""
    lone = PRESENT[:, 0] ^ PRESENT[:, 1]
    seen = {}
    for value in ("stop", "pass"):
        s, params, module = build({**ALL["cross_attention"], "lone_gradient": value,
                                   "input_norm": input_norm, "dropout": 0.0})
        v, t = (torch.from_numpy(x).requires_grad_(True)
                for x in garbage_in_absent_rows(*inputs(s), PRESENT))
        out = module(v, t, torch.from_numpy(PRESENT))
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
        cot[~torch.from_numpy(lone)] = 0.0  # the lone samples' outputs alone
        (out * cot).sum().backward()
        seen[value] = (out.detach(), v.grad, t.grad,
                       {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    (out_s, gv_s, gt_s, p_s), (out_p, gv_p, gt_p, p_p) = seen["stop"], seen["pass"]
    assert torch.equal(out_s, out_p)
    assert torch.all(gv_s == 0) and torch.all(gt_s == 0)  # eval: batch statistics not used
    assert gv_p[torch.from_numpy(lone & PRESENT[:, 0])].abs().max() > 0
    assert gt_p[torch.from_numpy(lone & PRESENT[:, 1])].abs().max() > 0
    assert p_s.keys() == p_p.keys() and p_s
    for name in p_s:
        torch.testing.assert_close(p_s[name], p_p[name], rtol=0, atol=0, msg=name)


def test_lone_gradient_stop_in_training_leaves_the_statistics_path():
    """Training with ``input_norm="batch"``: a lone row still gets the complete samples'
    gradient through the batch statistics, and no gradient from its own output."""
    s, params, module = build({**ALL["cross_attention"], "input_norm": "batch", "dropout": 0.0},
                              training=True)
    lone = torch.from_numpy(PRESENT[:, 0] ^ PRESENT[:, 1])
    grads = {}
    for rows in ("lone", "others"):
        v, t = (torch.from_numpy(x).requires_grad_(True)
                for x in garbage_in_absent_rows(*inputs(s), PRESENT))
        out = module(v, t, torch.from_numpy(PRESENT))
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        cot[~lone if rows == "lone" else lone] = 0.0
        (out * cot).sum().backward()
        grads[rows] = v.grad
    assert torch.all(grads["lone"] == 0)  # a lone output reaches no input row
    image_lone = torch.from_numpy(PRESENT[:, 0]) & lone
    assert grads["others"][image_lone].abs().max() > 0  # the statistics' path stays
