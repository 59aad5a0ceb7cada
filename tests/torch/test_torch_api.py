"""The module classes as a user meets them: built from keyword fields, ``.spec`` and
``.dim``, the return of ``return_aux``, another rule's or spec's ``state_dict``."""

from __future__ import annotations

import re

import pytest
import torch

from fusion_spec import spec
from fusion_spec.backends import torch as bt
from tests.conftest import make_spec


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_module_class_takes_keyword_fields_as_build_does(kind):
    s = make_spec(kind)
    fields = s.model_dump(exclude={"kind"})
    cls = bt.MODULES[kind]
    params = spec.init_params(s, seed=0)
    by_fields, by_spec = cls(**fields), cls(s)
    assert by_fields.spec == s and by_spec.spec == s and bt.build(kind, **fields).spec == s
    assert type(by_fields) is type(by_spec) is cls
    assert by_fields.dim == s.dim == 12
    by_fields.load_canonical(params)
    by_spec.load_canonical(params)
    v, t = torch.randn(3, 12), torch.randn(3, 12)
    with torch.no_grad():
        assert torch.equal(by_fields.eval()(v, t), by_spec.eval()(v, t))


def test_keyword_fields_override_a_given_spec_and_are_validated():
    s = spec.GatedSpec(dim=8)
    assert bt.GatedFusion(s, dim=4).spec == spec.GatedSpec(dim=4)
    assert bt.GatedFusion({"dim": 8, "kind": "gated"}).dim == 8
    with pytest.raises(spec.SpecError, match="gated: field 'dim' is required and was not given"):
        bt.GatedFusion()
    with pytest.raises(spec.SpecError, match=r"received dropuot=0\.1 \(did you mean 'dropout'\?\)"):
        bt.CrossAttentionFusion(dim=8, heads=2, dropuot=0.1)
    with pytest.raises(spec.InputError, match="GatedFusion: argument 'spec' expected kind 'gated'"):
        bt.GatedFusion(spec.FilmSpec(dim=8))


def test_routing_modules_take_dispatch_besides_fields():
    module = bt.ShomrFusion(dim=8, heads=2, dispatch="dense")
    assert module.dispatch == "dense" and module.spec.heads == 2


def test_return_aux_returns_a_tensor_or_a_tensor_and_a_dict():
    module = bt.GatedFusion(dim=4).eval()
    v, t = torch.randn(2, 4), torch.randn(2, 4)
    fused = module(v, t)
    assert isinstance(fused, torch.Tensor) and fused.shape == (2, 4)
    fused, aux = module(v, t, return_aux=True)
    assert isinstance(fused, torch.Tensor) and set(aux) == {"gate"}


@pytest.mark.parametrize(
    "source, problems",
    [
        (
            lambda: bt.FilmFusion(dim=8),
            r"received missing keys \['gate.weight', 'gate.bias'\]; unexpected keys "
            r"\['beta.bias', 'beta.weight', 'gamma.bias', 'gamma.weight'\] ",
        ),
        (
            lambda: bt.GatedFusion(dim=4),
            r"received 'input_norm.image.running_mean' of shape \(4,\) for \(8,\); .*"
            r"'gate.weight' of shape \(4, 8\) for \(8, 16\); 'gate.bias' of shape "
            r"\(4,\) for \(8,\) ",
        ),
    ],
    ids=["another_rule", "another_dim"],
)
def test_another_rules_or_specs_state_dict_is_a_weights_error_naming_the_keys(source, problems):
    module = bt.GatedFusion(dim=8)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(spec.WeightsError) as info:
        module.load_state_dict(source().state_dict())
    first = (
        r"gated: load_state_dict argument 'state_dict' expected this module's parameters "
        r"\(gated, dim=8\); " + problems + r"\(a state_dict of another rule or spec\?"
    )
    assert re.match(first, str(info.value)), str(info.value)
    assert isinstance(info.value, RuntimeError)  # what torch raised there: still caught
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # untouched


def test_a_fitting_state_dict_loads_strict_or_not():
    source, module = bt.GatedFusion(dim=8), bt.GatedFusion(dim=8)
    result = module.load_state_dict(source.state_dict())
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    assert torch.equal(module.gate.weight, source.gate.weight)
    partial = {"gate.bias": torch.zeros(8), "extra": torch.ones(1)}
    result = module.load_state_dict(partial, strict=False)
    state = ["input_norm.image.running_mean", "input_norm.image.running_var",
             "input_norm.text.running_mean", "input_norm.text.running_var"]
    assert sorted(result.missing_keys) == sorted(["gate.weight", *state])
    assert result.unexpected_keys == ["extra"]
    assert torch.equal(module.gate.bias, torch.zeros(8))


def test_a_misspelt_class_or_kind_gets_a_suggestion_and_the_names():
    with pytest.raises(AttributeError) as info:
        bt.GatedFuson  # noqa: B018
    assert str(info.value).startswith(
        "module 'fusion_spec.backends.torch' has no attribute 'GatedFuson' "
        "(did you mean 'GatedFusion'?); it has: ConcatMlpFusion, CrossAttentionFusion, "
    )
    assert getattr(bt, "missing", None) is None and not hasattr(bt, "__wrapped__")
    with pytest.raises(spec.SpecError, match=r"received the string 'concat-mlp' \(did you mean"):
        bt.build("concat-mlp", dim=8)
    with pytest.raises(spec.InputError, match=r"received 'Gated' \(did you mean 'gated'\?\)$"):
        bt.load_legacy_checkpoint({}, "Gated")
