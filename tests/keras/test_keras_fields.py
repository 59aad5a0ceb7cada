"""Keras layers built from spec fields, as the PyTorch modules are: ``GatedFusion(dim=32)``."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_cases import inputs, to_numpy

from fusion_spec import spec
from fusion_spec.backends import keras as bk


def test_a_layer_builds_from_fields_with_spec_and_dim():
    layer = bk.CrossAttentionFusion(dim=8, heads=2, dropout=0.1)
    assert layer.spec == spec.parse("cross_attention", dim=8, heads=2, dropout=0.1)
    assert layer.dim == 8 and layer.spec.heads == 2 and layer.spec.dropout == 0.1
    v, t = inputs(layer.spec)
    assert tuple(layer(v, t).shape) == (v.shape[0], 8)
    gated = bk.GatedFusion(dim=32)
    assert gated.spec == spec.GatedSpec(dim=32) and gated.dim == 32


def test_fields_override_a_given_spec_as_in_pytorch():
    s = spec.parse("shomr", dim=8, heads=2)
    layer = bk.ShomrFusion(s, heads=4, monitor=True)
    assert layer.spec == s.replace(heads=4) and layer.monitor is True
    assert bk.ShomrFusion(s).spec == s  # a spec alone, positionally, as before


def test_layer_arguments_still_go_to_keras():
    layer = bk.EnergyAwareAdaptiveFusion(
        dim=8, heads=2, name="fusion", trainable=False, energy_loss=False
    )
    assert (layer.name, layer.trainable, layer.energy_loss) == ("fusion", False, False)
    assert layer.spec == spec.parse("energy_aware_adaptive", dim=8, heads=2)


def test_a_misspelt_field_is_a_spec_error_with_a_suggestion():
    with pytest.raises(spec.SpecError) as info:
        bk.CrossAttentionFusion(dim=8, heads=2, dropuot=0.1)
    first = str(info.value).splitlines()[0]
    assert first.startswith("cross_attention: unknown field 'dropuot'; expected one of 'dim', ")
    assert first.endswith("received dropuot=0.1 (did you mean 'dropout'?)")
    with pytest.raises(spec.SpecError, match=r"^gated: field 'dim' is required and was not given$"):
        bk.GatedFusion()
    with pytest.raises(
        spec.SpecError,
        match=r"^concat_mlp: field 'layers': input should be less than or equal to 128; "
        r"received layers=1000000000$",
    ):
        bk.ConcatMlpFusion(dim=8, layers=10**9)
    with pytest.raises(
        spec.InputError, match=r"^GatedFusion: argument 'spec' expected kind 'gated'; "
    ):
        bk.GatedFusion(spec.FilmSpec(dim=8))


def test_a_layer_from_fields_round_trips_its_config_and_a_keras_file(tmp_path):
    layer = bk.GatedFusion(dim=8, missing_modality="zero_fill", seed=3, name="fusion")
    config = layer.get_config()
    assert config["spec"] == spec.GatedSpec(dim=8, missing_modality="zero_fill").model_dump(
        mode="json"
    )
    again = bk.GatedFusion.from_config(config)
    assert again.spec == layer.spec and again.dim == 8 and again.name == "fusion"
    v_in, t_in = keras.Input((8,)), keras.Input((8,))
    model = keras.Model([v_in, t_in], layer(v_in, t_in))
    v, t = inputs(layer.spec, seed=2)
    path = tmp_path / "fields.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        to_numpy(loaded.predict_on_batch([v, t])), to_numpy(model.predict_on_batch([v, t]))
    )
    assert next(x for x in loaded.layers if isinstance(x, bk.FusionLayer)).spec == layer.spec
