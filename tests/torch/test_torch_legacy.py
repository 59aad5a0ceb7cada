"""Checkpoints of the original modules load through ``load_legacy_checkpoint``.

The originals are the PyTorch transcriptions in ``tests/legacy_original.py``,
perturbed so that zero biases and unit LayerNorm weights hide nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_cases import BATCH, assert_matches_reference, inputs, to_numpy

from fusion_spec import fusion_ref, spec
from fusion_spec.backends import torch as bt
from fusion_spec.spec.tolerance import tolerance
from tests.backend_cases import LEGACY
from tests.legacy_original import build_original, perturb_

#: What the weights cannot tell: the original's heads.
GIVEN = {kind: {k: v for k, v in kw.items() if k == "heads"} for kind, kw in LEGACY.items()}
#: The original computes deterministically in eval (energy_aware_adaptive samples;
#: transformer_concat's forward raises).
ORIGINAL_RUNS = {"simple", "concat_mlp", "gated", "film", "modality_dropout"}
ORIGINAL_RUNS |= {"cross_attention", "shomr"}


def original_state_dict(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return perturb_(build_original(kind, **LEGACY[kind]), seed=seed).state_dict()


def layouts(kind: str, state: dict[str, torch.Tensor]) -> dict[str, dict]:
    """The checkpoint layouts the loader accepts, for the same fusion weights."""
    full = {"img_proj.weight": torch.zeros(3, 3), **{f"fusion.{k}": v for k, v in state.items()}}
    full["classifier.bias"] = torch.zeros(2)
    return {
        "bare": dict(state),
        "full": full,
        "nested_state_dict": {"state_dict": full, "epoch": 3},
        "nested_model": {"model": dict(state)},
        "only_fusion": {f"fusion.{k}": v for k, v in state.items()},
    }


@pytest.mark.parametrize(
    "layout", ["bare", "full", "nested_state_dict", "nested_model", "only_fusion"]
)
@pytest.mark.parametrize("kind", list(LEGACY))
def test_checkpoint_file_matches_reference_and_original(kind, layout, tmp_path):
    state = original_state_dict(kind)
    path = tmp_path / "checkpoint.pt"
    torch.save(layouts(kind, state)[layout], path)
    module = bt.load_legacy_checkpoint(path, kind, **GIVEN[kind]).eval()

    s, params = spec.from_legacy(kind, state, **GIVEN[kind])
    assert module.spec == s
    for name, value in module.canonical_params().items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)

    v, t = inputs(s, seed=5)
    out, aux = module(torch.from_numpy(v), torch.from_numpy(t), return_aux=True)
    ref, ref_aux = fusion_ref.forward(s, params, v, t, return_aux=True)
    assert_matches_reference(s, out, aux, ref, ref_aux, training=False)
    if kind in ORIGINAL_RUNS:
        original = build_original(kind, **LEGACY[kind]).eval()
        original.load_state_dict(state)
        with torch.no_grad():
            expected = original(torch.from_numpy(v), torch.from_numpy(t))
        np.testing.assert_allclose(to_numpy(out), to_numpy(expected), **tolerance("float32"))


@pytest.mark.parametrize("kind", list(LEGACY))
def test_float64_legacy_params_match_reference(kind):
    state = original_state_dict(kind, seed=1)
    module = bt.load_legacy_checkpoint(state, kind, **GIVEN[kind]).double().eval()
    s, params = spec.from_legacy(kind, state, **GIVEN[kind])
    v, t = inputs(s, seed=6)
    out, aux = module(torch.from_numpy(v).double(), torch.from_numpy(t).double(), return_aux=True)
    ref, ref_aux = fusion_ref.forward(s, params, v, t, return_aux=True)
    assert_matches_reference(s, out, aux, ref, ref_aux, training=False, dtype="float64")


def test_energy_weight_comes_from_lambda_energy():
    state = original_state_dict("energy_aware_adaptive")
    state["lambda_energy"] = torch.tensor(0.25)
    module = bt.load_legacy_checkpoint(state, "energy_aware_adaptive", heads=4)
    assert module.spec.energy_weight == pytest.approx(0.25)
    trainable = bt.load_legacy_checkpoint(
        state, "energy_aware_adaptive", heads=4, energy_weight_trainable=True
    )
    assert float(trainable.energy_weight.detach()) == pytest.approx(0.25)


def test_simple_model_prefix_is_unambiguous():
    """A full model holding ``simple`` has ``fusion.fusion.layers...``; a bare one ``fusion.layers``."""
    state = original_state_dict("simple")
    bare = bt.load_legacy_checkpoint(state, "simple", heads=3)
    doubled = bt.load_legacy_checkpoint(
        {f"fusion.{k}": v for k, v in state.items()}, "simple", heads=3
    )
    for name, value in bare.canonical_params().items():
        np.testing.assert_array_equal(value, doubled.canonical_params()[name])


def test_wrong_checkpoint_names_the_keys():
    state = {"backbone.weight": torch.zeros(2, 2), "head.bias": torch.zeros(2)}
    with pytest.raises(spec.WeightsError, match=r"'gated'.*received keys \['backbone.weight'"):
        bt.load_legacy_checkpoint(state, "gated")


def test_mismatched_checkpoint_is_a_weights_error():
    state = original_state_dict("film")
    del state["mlp_beta.bias"]
    with pytest.raises(spec.WeightsError, match="mlp_beta.bias"):
        bt.load_legacy_checkpoint(state, "film")


def test_unknown_kind():
    with pytest.raises(ValueError, match=r"argument 'kind' expected one of .*received 'nope'"):
        bt.load_legacy_checkpoint({}, "nope")


def test_batch_of_one_keeps_shapes():
    module = bt.load_legacy_checkpoint(original_state_dict("shomr"), "shomr", heads=4).eval()
    for batch in (1, BATCH):
        v, t = torch.randn(batch, 16), torch.randn(batch, 16)
        assert module(v, t).shape == (batch, 16)
