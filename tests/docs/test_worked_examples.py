"""The worked examples on the rule pages can catch a bug: removing any part of a rule
changes the digits the example prints.

At D = 2 a LayerNorm maps every token to plus or minus its scale, so the ``simple``
example printed the same digits with the attention removed. Here each removal is
planted in the reference (``patched``, as ``conformance/broken.py`` plants its bugs),
and each parameter is zeroed in turn; the printed digits must change every time.
"""

from __future__ import annotations

import gen_docs
import numpy as np
import pytest

from fusion_spec import spec
from fusion_spec.conformance.broken import patched
from fusion_spec.fusion_ref import _layers

_attention = _layers.attention
_linear = _layers.linear


def _attention_removed(p, name, query, keys, heads, key_mask=None):
    out, weights = _attention(p, name, query, keys, heads, key_mask)
    return np.zeros_like(out), weights


#: name -> (the ``fusion_ref`` function replaced, its replacement): each drops one part.
REMOVALS = {
    "attention output zeroed": ("attention", _attention_removed),
    "LayerNorm dropped": ("layer_norm", lambda p, name, x, eps: x),
    "feed-forward dropped": ("feed_forward", lambda p, name, x: np.zeros_like(x)),
    "GELU dropped": ("gelu", lambda x: x),
    "gate fixed at 1/2": ("sigmoid", lambda x: np.full_like(x, 0.5)),
    "ReLU dropped": ("relu", lambda x: x),
    "softmax made uniform": (
        "softmax",
        lambda x, axis=-1: np.full_like(x, 1.0 / x.shape[axis]),
    ),
    "linear bias dropped": ("linear", lambda p, name, x: x @ p[f"{name}.weight"].T),
}

#: (rule, removal) pairs the example cannot show, and why.
CANNOT_SHOW = {
    # relu(mean energy - budget): the identity differs only under the budget, where the
    # loss is 0; over it (the example's case, so that the loss is not 0) they agree
    ("energy_aware_adaptive", "ReLU dropped"),
}


def _used(name: str, kind: str) -> bool:
    """Whether the worked example of ``kind`` calls ``fusion_ref`` function ``name``."""
    calls = []
    original = getattr(_layers, name)

    def spy(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    with patched(name, spy):
        gen_docs.example_outputs(kind)
    return bool(calls)


CASES = [
    (kind, removal)
    for kind in spec.RULES
    for removal, (name, _) in REMOVALS.items()
    if (kind, removal) not in CANNOT_SHOW and _used(name, kind)
]


def test_every_rule_has_removals():
    assert {kind for kind, _ in CASES} == set(spec.RULES)


@pytest.mark.parametrize(("kind", "removal"), CASES, ids=[f"{k}-{r}" for k, r in CASES])
def test_a_removed_part_changes_the_printed_digits(kind, removal):
    printed = gen_docs.example_outputs(kind)
    name, replacement = REMOVALS[removal]
    with patched(name, replacement):
        broken = gen_docs.example_outputs(kind)
    assert broken != printed, f"{kind}: the worked example prints the same with {removal}"


def _softmax_ignores(name: str) -> bool:
    """The key bias shifts every score of a query alike: no output depends on it."""
    return name.endswith("attn.key.bias")


@pytest.mark.parametrize("kind", list(spec.RULES))
def test_a_zeroed_parameter_changes_the_printed_digits(kind):
    s, params, *_ = gen_docs.example_inputs(kind)
    printed = gen_docs.example_outputs(kind)
    same = []
    for name in params:
        if _softmax_ignores(name):
            continue
        zeroed = {**params, name: np.zeros_like(params[name])}
        if gen_docs.example_outputs(kind, zeroed) == printed:
            same.append(name)
    assert not same, f"{kind}: the worked example prints the same with these zeroed: {same}"


def test_the_removals_are_caught_by_the_printed_block():
    """The digits compared are the block's own: a removal makes the block fail when run."""
    block = gen_docs.example_block("simple")
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    with patched("attention", _attention_removed), pytest.raises(AssertionError):
        exec(compile(code, "rules/simple.md worked example", "exec"), {})
