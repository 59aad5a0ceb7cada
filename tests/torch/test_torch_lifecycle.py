"""Module lifecycle: canonical names, initialisation, round trips, errors, gradients, randomness."""

from __future__ import annotations

import ast
import functools
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_cases import (
    BATCH,
    CASES,
    KIND_CASES,
    as_torch,
    inputs,
    make_spec,
    perturbed_params,
    uniform_noise,
)

from fusion_spec import spec
from fusion_spec.backends import torch as bt

TORCH_BACKEND = Path(bt.__file__).parent


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_keys_are_the_canonical_names(case):
    s = make_spec(case)
    module = bt.build(s)
    assert sorted(module.state_dict()) == sorted(p.name for p in s.params())
    assert sorted(n for n, _ in module.named_parameters()) == sorted(
        p.name for p in s.params() if p.trained
    )
    assert sorted(n for n, _ in module.named_buffers()) == sorted(
        p.name for p in s.params() if not p.trained
    )  # input_norm's running statistics
    for p in s.params():
        assert tuple(module.state_dict()[p.name].shape) == p.shape, p.name
        assert module.state_dict()[p.name].dtype == torch.float32


@pytest.mark.parametrize("case", list(CASES))
def test_canonical_params_round_trip(case, tmp_path):
    s = make_spec(case)
    params = perturbed_params(s)
    module = bt.build(s, params)
    back = module.canonical_params()
    assert list(back) == [p.name for p in s.params()]
    for name, value in back.items():
        assert value.dtype == np.float32 and value.flags.c_contiguous, name
        assert value.shape == s.param_shapes()[name], name  # 0-d stays 0-d
        np.testing.assert_array_equal(value, params[name], err_msg=name)
    path = tmp_path / "weights.safetensors"
    spec.save_weights(path, s, back)
    s2, loaded = spec.load_weights(path)
    again = bt.build(s2, loaded)
    for name, value in again.canonical_params().items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_save_load_round_trip(case):
    s = make_spec(case)
    module = bt.build(s, perturbed_params(s)).eval()
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh = bt.build(s, generator=torch.Generator().manual_seed(9)).eval()
    fresh.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
    v, t = (torch.from_numpy(x) for x in inputs(s))
    noise = as_torch(uniform_noise(s, BATCH, training=False))  # eval_routing="sample"
    assert torch.equal(module(v, t, noise=noise), fresh(v, t, noise=noise))


@pytest.mark.parametrize("case", list(CASES))
def test_eval_output_is_identical_across_calls(case):
    s = make_spec(case)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    module = bt.build(s, perturbed_params(s)).eval()
    if s.noise(BATCH, training=False):
        pytest.skip("eval_routing='sample' draws its route in eval by design")
    first = module(v, t)
    assert torch.equal(first, module(v, t))
    assert torch.equal(first, module(v, t))


def test_reset_parameters_draws_the_spec_distributions():
    s = spec.parse(dict(kind="transformer_concat", dim=64, heads=4, layers=3))
    gen = torch.Generator().manual_seed(0)
    params = {n: p.detach() for n, p in bt.build(s, generator=gen).state_dict().items()}
    for p in s.params():
        value, init = params[p.name], p.init
        if init.tied_to is not None:
            assert torch.equal(value, params[init.tied_to]), p.name
        elif init.kind == "uniform":
            assert value.abs().max() <= init.bound, p.name
            if value.numel() >= 1000:  # std of U(-b, b) is b / sqrt(3)
                assert abs(value.std().item() - init.bound / 3**0.5) < 0.1 * init.bound, p.name
        elif init.kind == "normal":
            assert abs(value.std().item() - init.std) < 0.3 * init.std, p.name
        else:
            assert torch.all(value == init.value), p.name
    # layer 1 starts as a copy of layer 0, as the original's deepcopy made it
    assert torch.equal(params["encoder.1.ffn.up.weight"], params["encoder.0.ffn.up.weight"])


def test_generator_makes_initialisation_reproducible():
    s = make_spec("shomr")
    a = bt.build(s, generator=torch.Generator().manual_seed(1)).canonical_params()
    b = bt.build(s, generator=torch.Generator().manual_seed(1)).canonical_params()
    c = bt.build(s, generator=torch.Generator().manual_seed(2)).canonical_params()
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["gate.weight"], c["gate.weight"])


def test_build_accepts_dicts_and_json_and_prints_the_spec():
    module = bt.build('{"kind": "film", "dim": 6}')
    assert isinstance(module, bt.FilmFusion) and module.spec == spec.FilmSpec(dim=6)
    assert "kind='film'" in repr(module) and "dim=6" in repr(module)
    assert isinstance(bt.build({"kind": "gated", "dim": 4}), bt.GatedFusion)
    with pytest.raises(ValueError, match="expected kind 'gated'; received kind 'film'"):
        bt.GatedFusion({"kind": "film", "dim": 4})


def test_wrong_params_are_a_weights_error():
    s = make_spec("gated").replace(input_norm="none")  # only gate.bias missing
    params = perturbed_params(s)
    with pytest.raises(spec.WeightsError, match=r"missing \['gate.bias'\]"):
        bt.build(s, {"gate.weight": params["gate.weight"]})
    params["gate.weight"] = params["gate.weight"].T  # (2D, D): a forgotten transpose
    with pytest.raises(spec.WeightsError, match=r"'gate.weight': expected shape \(12, 24\)"):
        bt.build(s, params)


def test_input_errors_name_rule_argument_expectation_and_received():
    module = bt.build(make_spec("film"))
    v = torch.zeros(3, 12)
    with pytest.raises(
        ValueError, match=r"film: argument 't' expected shape \(B, 12\) or \(B, L_t, 12\); received shape \(3, 5\)"
    ):
        module(v, torch.zeros(3, 5))
    with pytest.raises(
        ValueError, match=r"argument 'v' expected shape \(B, 12\) or \(B, L_v, 12\); received shape \(12,\)"
    ):
        module(torch.zeros(12), v)
    with pytest.raises(
        ValueError, match=r"expected equal batch sizes; received v \(3, 12\) and t \(4, 12\)"
    ):
        module(v, torch.zeros(4, 12))
    with pytest.raises(ValueError, match=r"argument 'v' expected a floating dtype; received int64"):
        module(torch.zeros(3, 12, dtype=torch.int64), v)


def test_call_option_and_noise_errors():
    shomr = bt.build(make_spec("shomr"))
    v = torch.zeros(3, 16)
    with pytest.raises(TypeError, match=r"unexpected call option\(s\) \['progress'\]"):
        shomr(v, v, progress=0.5)
    with pytest.raises(
        TypeError, match="use_hard_routing' expected None, True or False; received str 'yes'"
    ):
        shomr(v, v, use_hard_routing="yes")
    shomr.train()
    with pytest.raises(
        ValueError,
        match=r"argument 'noise' expected names \['route'\] for this call; received \['rout'\]",
    ):
        shomr(v, v, noise={"rout": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"noise 'route' expected shape \(3,\); received \(4,\)"):
        shomr(v, v, noise={"route": torch.zeros(4)})
    energy = bt.build(make_spec("energy_aware_adaptive"))
    with pytest.raises(spec.InputError, match="call option .progress. expected None or a float in"):
        energy(v, v, progress=2.0)


def test_training_without_noise_draws_from_the_generator():
    s = make_spec("shomr")
    v, t = (torch.from_numpy(x) for x in inputs(s))
    params = perturbed_params(s)

    def routes(seed):
        module = bt.build(s, params, generator=torch.Generator().manual_seed(seed)).train()
        return [module(v, t, return_aux=True, use_hard_routing=True)[1]["route"] for _ in range(3)]

    first, again, other = routes(0), routes(0), routes(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert not torch.equal(first[0], first[1]) or not torch.equal(first[1], first[2])


def test_elementwise_dropout_in_training_only():
    s = spec.parse(dict(kind="cross_attention", dim=16, heads=4, dropout=0.5))
    module = bt.build(s, perturbed_params(s))
    v, t = (torch.from_numpy(x) for x in inputs(s))
    torch.manual_seed(0)
    module.train()
    a, b = module(v, t), module(v, t)
    assert not torch.equal(a, b)
    torch.manual_seed(0)
    assert torch.equal(a, module(v, t))  # PyTorch's global generator
    module.eval()
    assert torch.equal(module(v, t), module(v, t))


def test_modality_dropout_per_batch_drops_every_sample_alike():
    s = make_spec("modality_dropout")
    module = bt.build(s).train()
    v, t = torch.randn(BATCH, 12), torch.randn(BATCH, 12)
    _, aux = module(
        v,
        t,
        noise={"drop_image": torch.tensor([0.1]), "drop_text": torch.tensor([0.9])},
        return_aux=True,
    )
    assert torch.equal(aux["keep_image"], torch.zeros(BATCH))
    assert torch.equal(aux["keep_text"], torch.ones(BATCH))


# --- gradients ---------------------------------------------------------------------------


def _gradient_calls(s):
    """Calls that together take every path: eval and training, every forced routing mode,
    route draws spread over ``[0, 1)`` so that every route is taken."""
    gen = torch.Generator().manual_seed(0)
    forced = [{"use_hard_routing": True}, {"use_hard_routing": False}]
    for training in (False, True):
        for options in forced if s.kind == "shomr" else [{}]:
            noise = {
                n.name: torch.linspace(0.01, 0.99, n.shape[0])
                if n.name == "route"
                else torch.rand(n.shape, generator=gen)
                for n in s.noise(BATCH, training=training, **options)
            }
            yield training, options, noise or None


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_reach_every_trained_parameter(case):
    """Every parameter but ``s.no_output_gradient()`` gets a gradient from the output; those
    get none (routers without straight-through, the energy weight); attention key biases
    get zero up to rounding."""
    s = make_spec(case)
    module = bt.build(s, perturbed_params(s))
    v, t = (torch.from_numpy(x) for x in inputs(s))
    for training, options, noise in _gradient_calls(s):
        out = module.train(training)(v, t, noise=noise, **options)
        (out * torch.linspace(-1, 1, s.dim)).sum().backward()
    silent = s.no_output_gradient()
    # the attention key bias shifts every score of a query alike, which softmax
    # ignores: its gradient is zero up to rounding (spec.attention's docstring)
    invariant = {n for n, _ in module.named_parameters() if n.endswith("attn.key.bias")}
    scale = max(float(p.grad.abs().max()) for p in module.parameters() if p.grad is not None)
    for name, p in module.named_parameters():
        if name in invariant:
            assert p.grad is None or float(p.grad.abs().max()) <= 1e-5 * scale, name
            continue
        reached = p.grad is not None and bool(torch.any(p.grad != 0))
        assert reached == (name not in silent), (name, reached)
    if getattr(s, "straight_through", False):
        assert not any(n.startswith("router.") for n in silent)
    elif s.kind in ("shomr", "energy_aware_adaptive"):
        assert any(n.startswith("router.") for n in silent)


@pytest.mark.parametrize("case", KIND_CASES)
def test_input_gradients_match_finite_differences(case):
    """``torch.autograd.gradcheck`` in float64, eval and training with injected noise
    (straight-through off: its router gradient is by design not a derivative)."""
    s = make_spec(case)
    if "straight_through" in type(s).model_fields:
        s = spec.parse(s, straight_through=False)
    module = bt.build(s, perturbed_params(s)).double()
    v, t = (torch.from_numpy(x).double().requires_grad_() for x in inputs(s, batch=3))
    for training in (False, True):
        noise = as_torch(uniform_noise(s, 3, training=training), torch.float64)
        module.train(training)
        fused = functools.partial(module, noise=noise)
        assert torch.autograd.gradcheck(fused, (v, t), fast_mode=True)


def test_energy_loss_reaches_router_and_trainable_weight():
    s = make_spec("energy_aware_adaptive_variant")
    module = bt.build(s, perturbed_params(s)).train()
    v, t = (torch.from_numpy(x) for x in inputs(s))
    _, aux = module(v, t, noise={"route": torch.rand(BATCH)}, return_aux=True)
    aux["energy_loss"].backward()
    assert module.energy_weight.grad is not None and module.energy_weight.grad != 0
    assert torch.any(module.router.out.weight.grad != 0)


# --- no host synchronisation ------------------------------------------------------------------

HOST_SYNC = re.compile(r"\.item\(|\.any\(|\.all\(|\.nonzero\(|\.tolist\(|\.cpu\(\)|torch\.nonzero")
#: The host reads of CPU tensors in eager calls (never while compiling, exporting,
#: capturing a CUDA graph, nor on CUDA; tested below): the sparse dispatch's bucket
#: sizes and ``modality_dropout``'s one draw per batch.
SYNC_ALLOWED = {("_layers.py", "bucket_sizes"), ("_layers.py", "batch_values")}


def _allowed_lines(path: Path) -> set[int]:
    lines = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and (path.name, node.name) in SYNC_ALLOWED:
            lines |= set(range(node.body[0].lineno, node.end_lineno + 1))
    return lines


def test_forward_code_never_synchronises_with_the_host():
    """No ``.item()``, ``.any()``, ``.nonzero()``, ... in the backend's source,
    except in the bodies of ``bucket_sizes`` and ``batch_values``."""
    offenders, exempted = [], []
    for path in sorted(TORCH_BACKEND.glob("*.py")):
        allowed = _allowed_lines(path)
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if HOST_SYNC.search(line):
                (exempted if i in allowed else offenders).append(f"{path.name}:{i}: {line.strip()}")
    assert not offenders, offenders
    assert len(exempted) == 2, exempted  # the one host read of each
    assert {f"{kind}.py" for kind in spec.RULES} <= {p.name for p in TORCH_BACKEND.glob("*.py")}


def _refuse_host_reads(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host: the forward synchronises")

    monkeypatch.setattr(torch, "nonzero", refuse)
    for name in ("nonzero", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("case", list(CASES))
def test_dense_forward_never_reads_the_host(case, monkeypatch):
    """Routing by torch.where only: a forward with host reads disabled still runs (eval, training).

    ``modality_dropout`` reads its batch draw in eager CPU calls only: here as when compiling.
    """
    if case.startswith("modality_dropout"):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    _refuse_host_reads(monkeypatch)
    s = make_spec(case)
    module = bt.build(s, dispatch="dense") if bt.MODULES[s.kind].routes else bt.build(s)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    for training in (False, True):
        module.train(training)(v, t, return_aux=True)


@pytest.mark.parametrize("case", ["shomr", "energy_aware_adaptive_variant"])
def test_auto_dispatch_is_dense_where_shapes_must_be_static(case, monkeypatch):
    """The default ("auto") goes sparse on the CPU in eager mode, dense while compiling;
    a call that carries the router's every-route straight-through gradient (the default
    ``straight_through_routes="all"``) is dense: it reads every route's output on every
    routed row. With ``"chosen"`` the grad-enabled call goes sparse too."""
    s = make_spec(case)
    module = bt.build(s)
    v, t = (torch.from_numpy(x) for x in inputs(s))
    calls = []
    rule_module = sys.modules[type(module).__module__]
    monkeypatch.setattr(rule_module, "bucket_sizes", lambda *a: calls.append(a) or _sizes(*a))
    with torch.no_grad():
        module(v, t)
    assert len(calls) == 1  # eager, CPU: sparse
    module(v, t)
    assert len(calls) == 1  # grad enabled, every route in the router's gradient: dense
    chosen = bt.build(s.replace(straight_through_routes="chosen"))
    chosen(v, t)
    assert len(calls) == 2  # the chosen route's factor alone: sparse
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    _refuse_host_reads(monkeypatch)
    calls.clear()
    module(v, t)
    assert not calls  # "compiling": dense, no host read


_sizes = bt._layers.bucket_sizes


def test_routing_makes_no_host_transfer_under_a_sync_debug_mode():
    """Eager forward of the routed rules does not synchronise (checked by PyTorch itself on CUDA)."""
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda.set_sync_debug_mode needs a CUDA device")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for case in ("shomr", "energy_aware_adaptive_variant", "modality_dropout"):
            s = make_spec(case)
            module = bt.build(s).cuda().train()
            v = torch.randn(BATCH, s.dim, device="cuda")
            module(v, v, return_aux=True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
