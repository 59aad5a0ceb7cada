"""Hypothesis strategies shared by the property-based tests of the reference, torch and Keras.

Profiles (``HYPOTHESIS_PROFILE``, registered in ``tests/conftest.py``):

* ``ci`` (the default): derandomized (a fixed seed: the same examples on every
  run and machine), ``CI_EXAMPLES`` examples per rule, no deadline;
* ``long``: ``LONG_EXAMPLES`` examples per rule, a random seed, for a night run:
  ``HYPOTHESIS_PROFILE=long python -m pytest tests -k hypothesis``.

Specs are drawn from small grids (dims 4 and 6, one or two layers, a few values
per float field, the documented extremes included) so that built modules can be
reused across examples: building is most of an example's cost. Inputs are drawn
as a seed and a magnitude and generated with NumPy (hypothesis shrinks the seed
and the magnitude, not each element), with NaN/inf injected into some samples.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from hypothesis import strategies as st

from fusion_spec import spec

CI_EXAMPLES = 200
LONG_EXAMPLES = 2000
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


def examples(ci: int = CI_EXAMPLES) -> int:
    """Examples per test in the active profile."""
    return LONG_EXAMPLES if PROFILE == "long" else ci


# --- valid specs --------------------------------------------------------------------

_DIMS_HEADS = [(4, 1), (4, 2), (4, 4), (6, 2), (6, 3)]


@st.composite
def valid_specs(draw, kind: str):
    """A valid spec of ``kind`` (dropout 0: training must be reproducible by the reference)."""
    fields = spec.RULES[kind].model_fields
    dim, heads = draw(st.sampled_from(_DIMS_HEADS))
    kw: dict[str, Any] = {"kind": kind, "dim": dim}
    if "heads" in fields:
        kw["heads"] = heads
    if "dropout" in fields:
        kw["dropout"] = 0.0
    if "layers" in fields:
        kw["layers"] = draw(st.sampled_from([1, 2]))
    if kind == "concat_mlp":
        kw["hidden_mult"] = draw(st.sampled_from([1, 3]))
    if kind == "transformer_concat":
        kw["modality_embeddings"] = draw(st.booleans())
    if kind == "modality_dropout":
        kw["p_img"] = draw(st.sampled_from([0.0, 0.3, 1.0]))
        kw["p_txt"] = draw(st.sampled_from([0.0, 0.6, 1.0]))
        kw["drop_granularity"] = draw(st.sampled_from(["batch", "sample"]))
    if kind == "shomr":
        kw["confidence_threshold"] = draw(st.sampled_from([0.0, 0.55, 0.6, 1.0]))
        kw["routing_temperature"] = draw(st.sampled_from([1e-3, 0.5, 1.0, 1e3]))
        kw["fallback"] = draw(st.booleans())
        kw["fallback_threshold"] = draw(st.sampled_from([0.3, 0.6, 1.0]))
        kw["straight_through"] = draw(st.booleans())
        kw["straight_through_routes"] = draw(st.sampled_from(["all", "chosen"]))
    if kind == "energy_aware_adaptive":
        kw["energy_budget_mJ"] = draw(st.sampled_from([0.0, 5.0, 1e6]))
        kw["energy_costs_mJ"] = draw(st.sampled_from([(3.2, 4.1, 9.8), (0.0, 0.0, 0.0), (1e6, 0.0, 1e6)]))
        kw["energy_weight"] = draw(st.sampled_from([0.0, 0.01, 1e6]))
        kw["energy_weight_trainable"] = draw(st.booleans())
        kw["eval_routing"] = draw(st.sampled_from(["argmax", "sample"]))
        kw["straight_through"] = draw(st.booleans())
        kw["straight_through_routes"] = draw(st.sampled_from(["all", "chosen"]))
        kw["output_drop_start"] = draw(st.sampled_from([0.0, 0.1, 1.0]))
        kw["output_drop_flag_p"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    return spec.parse(kw)


def call_options(kind: str):
    if kind == "shomr":
        return st.sampled_from([{}, {"use_hard_routing": True}, {"use_hard_routing": False}])
    if kind == "energy_aware_adaptive":
        return st.sampled_from([{}, {"progress": 0.0}, {"progress": 0.5}, {"progress": 1.0}])
    return st.just({})


#: Input magnitudes: tiny, ordinary, large, and the documented bound (docs/errors.md).
MAGNITUDES = [1e-6, 1e-2, 1.0, 30.0, 1e3, 1e6, 1e12]


@st.composite
def valid_calls(draw, kind: str):
    """``(spec, v, t, training, noise, options)``: a valid call with float32 inputs."""
    s = draw(valid_specs(kind))
    batch = draw(st.integers(0, 4))
    training = draw(st.booleans())
    options = draw(call_options(kind))
    seed = draw(st.integers(0, 2**31 - 1))
    magnitude = draw(st.sampled_from(MAGNITUDES))
    rng = np.random.default_rng(seed)
    v = (rng.standard_normal((batch, s.dim)) * magnitude).astype(np.float32)
    t = (rng.standard_normal((batch, s.dim)) * magnitude).astype(np.float32)
    if batch and draw(st.integers(0, 9)) == 0:  # a sample with a NaN or inf input
        row, col = draw(st.integers(0, batch - 1)), draw(st.integers(0, s.dim - 1))
        (v if draw(st.booleans()) else t)[row, col] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    declared = s.noise(batch, training=training, **options)
    noise = {n.name: rng.uniform(size=n.shape).astype(np.float32) for n in declared} or None
    return s, v, t, training, noise, options


# --- invalid arguments ---------------------------------------------------------------

#: Values that are never a valid array argument.
NOT_ARRAYS = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(-1, 1), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def bad_arrays(draw, dim: int, batch: int):
    """A non-array, a wrong dtype, a wrong rank or a wrong width (rank 3 ``(B, L, D)`` is a
    token sequence, valid)."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(NOT_ARRAYS)
    if choice == 1:
        dtype = draw(st.sampled_from([np.int64, np.int8, np.bool_, np.complex64, object, "U2"]))
        return np.zeros((batch, dim), dtype=dtype)
    if choice == 2:
        shape = draw(st.sampled_from([(), (dim,), (batch, 1, 1, dim), (batch, dim, 1)]))
        return np.zeros(shape, np.float32)
    return np.zeros((batch, draw(st.sampled_from([0, 1, dim + 1, 2 * dim]))), np.float32)


@st.composite
def invalid_calls(draw, kind: str):
    """``(spec, kwargs, argument)``: a call with one bad argument, and its name."""
    s = draw(valid_specs(kind))
    batch = draw(st.integers(1, 3))
    rng = np.random.default_rng(0)
    v = rng.standard_normal((batch, s.dim)).astype(np.float32)
    t = rng.standard_normal((batch, s.dim)).astype(np.float32)
    training = draw(st.booleans())
    options = draw(call_options(kind))
    declared = s.noise(batch, training=training, **options)
    noise = {n.name: np.full(n.shape, 0.5, np.float32) for n in declared} or None
    call = {"v": v, "t": t, "training": training, "noise": noise, "return_aux": False, **options}
    targets = ["v", "t", "batch", "noise", "return_aux", "option"]
    target = draw(st.sampled_from(targets))
    if target in ("v", "t"):
        call[target] = draw(bad_arrays(s.dim, batch))
        return s, call, target
    if target == "batch":
        call["t"] = rng.standard_normal((batch + 1, s.dim)).astype(np.float32)
        return s, call, "'v' and 't'"
    if target == "noise":
        if declared and draw(st.booleans()):
            name = declared[0].name
            bad = draw(
                st.one_of(
                    NOT_ARRAYS,
                    st.sampled_from(
                        [
                            np.full(declared[0].shape, 5.0),
                            np.full(declared[0].shape, np.nan),
                            np.full(declared[0].shape, -0.5),
                            np.zeros(declared[0].shape, np.complex64),
                            np.zeros(declared[0].shape, np.int32),
                            np.zeros((batch + 2,), np.float32),
                        ]
                    ),
                )
            )
            call["noise"] = {**noise, name: bad}
            return s, call, f"noise {name!r}"
        call["noise"] = draw(
            st.one_of(
                NOT_ARRAYS.filter(lambda x: x is not None and not (isinstance(x, dict) and not x and not declared)),
                st.just({"bogus": np.zeros(1, np.float32)}),
            )
        )
        return s, call, "'noise'"
    if target == "return_aux":
        call["return_aux"] = draw(NOT_ARRAYS.filter(lambda x: not isinstance(x, bool)))
        return s, call, "'return_aux'"
    name = draw(st.sampled_from(["progress", "use_hard_routing", "bogus"]))
    value = draw(st.one_of(NOT_ARRAYS, st.just(np.array([0.5]))))
    if name == "progress" and kind == "energy_aware_adaptive":
        value = draw(st.one_of(st.floats(1.01, 1e9), st.floats(-1e9, -0.01), st.just(float("nan")), st.just(np.array([0.5])), st.text(max_size=3)))
    if name == "use_hard_routing" and kind == "shomr":
        value = draw(st.one_of(st.integers(), st.text(max_size=3), st.just(np.array([True]))))
    call[name] = value
    return s, call, name if name != "bogus" else "call option"


def message_names(text: str, argument: str) -> bool:
    """The first line names the argument (``'v'``, ``noise 'route'``, ``progress``...)."""
    first = text.splitlines()[0]
    return f"'{argument}'" in first or argument in first
