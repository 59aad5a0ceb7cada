"""PyTorch with per-modality widths: the reference's numbers, export, training, weight files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance

KINDS = list(spec.RULES)


def _spec(kind: str):
    heads = {"heads": 2} if "heads" in spec.RULES[kind].model_fields else {}
    return spec.parse(kind, dim=8, image_dim=12, text_dim=6, **heads)


def _inputs(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 12)).astype(np.float32),
            rng.standard_normal((batch, 6)).astype(np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_matches_the_reference_and_the_projections_learn(kind):
    s = _spec(kind)
    params = spec.init_params(s, seed=4)
    module = bt.build(s, params).eval()
    v, t = _inputs(5)
    out = module(torch.from_numpy(v), torch.from_numpy(t))
    np.testing.assert_allclose(
        out.detach().numpy(), fusion_ref.forward(s, params, v, t), **tolerance("float32")
    )
    out.square().sum().backward()
    for name in ("input_proj.image.weight", "input_proj.text.weight"):
        grad = module.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["gated", "cross_attention", "shomr"])
def test_export_with_dynamic_batch(kind):
    s = _spec(kind)
    module = bt.build(s, spec.init_params(s, seed=1)).eval()
    if module.routes:
        module.dispatch = "dense"
    v, t = (torch.from_numpy(x) for x in _inputs(4))
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(module, (v, t), dynamic_shapes=({0: batch}, {0: batch}))
    for b in (7, 2):
        v, t = (torch.from_numpy(x) for x in _inputs(b, seed=b))
        assert torch.equal(program.module()(v, t), module(v, t))


def test_state_dict_and_weight_file_round_trip(tmp_path):
    s = _spec("film")
    module = bt.build(s)
    assert module.state_dict()["input_proj.text.weight"].shape == (8, 6)
    spec.save_weights(tmp_path / "f.safetensors", s, module.canonical_params())
    s2, params = spec.load_weights(tmp_path / "f.safetensors")
    again = bt.build(s2, params)
    v, t = (torch.from_numpy(x) for x in _inputs(3))
    assert torch.equal(again(v, t), module(v, t))


def test_another_widths_state_dict_is_refused_with_the_names():
    module = bt.build(_spec("gated"))
    other = bt.build(spec.parse("gated", dim=8))
    with pytest.raises(RuntimeError, match="input_proj"):
        other.load_state_dict(module.state_dict())
