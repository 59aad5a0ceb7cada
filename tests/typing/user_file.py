"""A user's file: the public API as a type checker sees it.

``tests/typing/test_typing.py`` runs mypy over it (with and without the pydantic
plugin) and runs it. Each ``assert_type`` is checked by mypy (a no-op at run
time); each ``# type: ignore[code]`` marks a mistake mypy must report: with
``warn_unused_ignores`` a mistake it stops reporting fails the check.
"""

from __future__ import annotations

import numpy as np
import torch
from typing_extensions import assert_type

from fusion_spec import fusion_ref, spec
from fusion_spec.backends.torch import (
    CrossAttentionFusion,
    FusionModule,
    GatedFusion,
    ShomrFusion,
    build,
)

# --- specs: defaults type-check, the class follows the kind ------------------------
s = spec.CrossAttentionSpec(dim=8, heads=2)
assert_type(s.heads, int)
assert_type(s.dropout, float)
assert_type(s.replace(heads=4), spec.CrossAttentionSpec)
assert_type(spec.parse("gated", dim=8), spec.GatedSpec)
assert_type(spec.parse(s, dropout=0.0), spec.CrossAttentionSpec)
any_rule = spec.parse({"kind": "film", "dim": 8})  # a dict: some rule's spec
assert_type(any_rule, spec.FusionSpec)
assert any_rule.dim == 8 and isinstance(any_rule, spec.FilmSpec)

try:
    spec.CrossAttentionSpec(dim=8, heads=2, dropuot=0.1)  # type: ignore[call-arg]
except spec.SpecError as e:
    assert str(e).endswith("(did you mean 'dropout'?)")
else:
    raise AssertionError("a misspelt field was accepted")

# --- PyTorch modules: built from fields or a spec, typed calls ---------------------
module = GatedFusion(dim=8).eval()
assert_type(module.spec, spec.GatedSpec)
assert_type(module.dim, int)
v, t = torch.randn(2, 8), torch.randn(2, 8)
fused = module(v, t)
assert_type(fused, torch.Tensor)
fused, aux = module(v, t, return_aux=True)
assert_type(aux, dict[str, torch.Tensor])
assert_type(module.forward(v, t), torch.Tensor)
not_a_tensor: torch.Tensor = module(v, t, return_aux=True)  # type: ignore[assignment]
try:
    CrossAttentionFusion(dim=8, heads=2, dropuot=0.1)  # type: ignore[call-arg]
except spec.SpecError as e:
    assert str(e).endswith("(did you mean 'dropout'?)")
else:
    raise AssertionError("a misspelt field was accepted")

assert_type(build("cross_attention", dim=8, heads=2), CrossAttentionFusion)
assert_type(build(s), CrossAttentionFusion)
assert_type(build("shomr", dim=8, heads=2, dispatch="dense"), ShomrFusion)
assert_type(ShomrFusion(dim=8, heads=2, dispatch="dense").spec.heads, int)


def fuse_with(rule: spec.FusionSpec, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Any rule: ``build`` of the union is some module, its call still a tensor."""
    fusion: FusionModule = build(rule)
    return fusion(v, t)


assert fuse_with(any_rule, v, t).shape == (2, 8)

loaded = module.load_state_dict(build("gated", dim=8).state_dict())
assert loaded.missing_keys == [] and loaded.unexpected_keys == []
try:
    module.load_state_dict(build("film", dim=8).state_dict())
except spec.WeightsError as e:
    assert "unexpected keys ['beta.bias'" in str(e)
else:
    raise AssertionError("another rule's state_dict was loaded")

# --- the NumPy reference ------------------------------------------------------------
params = spec.init_params(s, seed=0)
out = fusion_ref.forward(s, params, v.numpy(), t.numpy())
assert_type(out, np.ndarray)
out, ref_aux = fusion_ref.forward(s, params, v.numpy(), t.numpy(), return_aux=True)
assert_type(ref_aux, dict[str, np.ndarray])
assert out.shape == (2, 8) and set(ref_aux) == {"attention_weights"}
