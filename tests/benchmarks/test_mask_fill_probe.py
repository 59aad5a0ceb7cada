"""The mask-fill probe's variants change only what they say (benchmarks/mask_fill_probe.py)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mask_fill_probe as probe  # noqa: E402

torch = pytest.importorskip("torch")

from fusion_spec.backends.torch._layers import RunningStats  # noqa: E402
from fusion_spec.backends.torch.modality_dropout import ModalityDropoutFusion  # noqa: E402
from fusion_spec.spec import FilmSpec  # noqa: E402

SPEC = FilmSpec(dim=3, input_norm_absent="mean")  # the layer the variants patch
X = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.5, 1.0], [0.0, 0.0, 0.0], [5.0, 1.5, 2.0]],
                 dtype=torch.float64)
PRESENT = torch.tensor([True, True, False, True])


def _stats(rows):
    return rows.mean(0), rows.var(0, unbiased=False)


def _call(variant, training=True):
    restore = probe.patch(variant)
    try:
        norm = RunningStats(3).double()
        norm.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))  # eval reads these
        norm.running_var.copy_(torch.tensor([4.0, 1.0, 2.0]))
        norm.train(training)
        return norm, norm(X, PRESENT, SPEC)
    finally:
        restore()


def test_none_is_the_layer_and_every_patch_is_undone():
    before = (RunningStats.forward, RunningStats.__init__)
    _, y = _call("none")
    mean, var = _stats(X[PRESENT])
    np.testing.assert_allclose(y[PRESENT], (X[PRESENT] - mean) / torch.sqrt(var + SPEC.input_norm_eps))
    assert torch.count_nonzero(y[~PRESENT]) == 0
    fuse = ModalityDropoutFusion.fuse
    for variant in probe.VARIANTS:
        _call(variant)
        assert (RunningStats.forward, RunningStats.__init__) == before
        assert ModalityDropoutFusion.fuse is fuse


def test_raw_zero_puts_absent_rows_where_a_raw_zero_lands():
    for training in (True, False):
        norm, y = _call("raw_zero", training)
        mean, var = (_stats(X[PRESENT]) if training else
                     (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 1.0, 2.0])))
        scale = torch.rsqrt(var + SPEC.input_norm_eps)
        np.testing.assert_allclose(y[PRESENT], (X[PRESENT] - mean) * scale)  # as the layer
        np.testing.assert_allclose(y[~PRESENT][0], -mean * scale)
        assert torch.count_nonzero(y[~PRESENT]) == 3


def test_all_row_stats_takes_the_statistics_over_every_row():
    _, y = _call("all_row_stats")
    zeroed = torch.where(PRESENT[:, None], X, 0.0)
    mean, var = _stats(zeroed)
    np.testing.assert_allclose(y[PRESENT], (X[PRESENT] - mean) / torch.sqrt(var + SPEC.input_norm_eps))
    assert torch.count_nonzero(y[~PRESENT]) == 0


def test_learned_fill_is_a_trainable_vector_for_absent_rows():
    norm, y = _call("learned_fill")
    assert isinstance(norm.fill, torch.nn.Parameter) and norm.fill.shape == (3,)
    y.sum().backward()
    np.testing.assert_allclose(norm.fill.grad, [1.0, 1.0, 1.0])  # one absent row
    assert torch.count_nonzero(y[~PRESENT]) == 0  # zero-initialised


def test_compare_pairs_each_probe_run_with_the_towers_runs_of_its_seed():
    def run(fw, rule, scenario, seed, acc, variant=None):
        r = {"framework": fw, "rule": rule, "scenario": scenario, "seed": seed,
             "history": {"accuracy": [acc] * 5, "loss": [1 - acc] * 5}}
        return r if variant is None else {"variant": variant, **r}

    towers_runs = [run("torch", "film", sc, s, a) for s, (m, p) in enumerate([(0.8, 0.9), (0.7, 0.9)])
                   for sc, a in (("missing_mask", m), ("missing_no_mask", p))]
    probe_runs = [run("torch", "film", "missing_mask", s, a, "raw_zero")
                  for s, a in enumerate([0.9, 0.88])]
    text = probe.compare({"results": probe_runs}, {"results": towers_runs})
    assert "raw_zero" in text and "n=2" in text
    assert "variant -0.0100 ± 0.0200, default mask -0.1500 ± 0.1000, variant - default +0.1400" in text


def test_compare_takes_the_earlier_fill_where_the_towers_ran_it(tmp_path, capsys):
    """The variants patch ``input_norm_absent="mean"``: where the towers hold mask runs of
    that label they are the default mask compared against, not the plain label's runs
    (today's default); ``--runs`` compares stored probe runs without training."""
    def run(rule, scenario, seed, acc, variant=None):
        r = {"framework": "torch", "rule": rule, "scenario": scenario, "seed": seed,
             "history": {"accuracy": [acc] * 5, "loss": [1 - acc] * 5}}
        return r if variant is None else {"variant": variant, **r}

    earlier = 'film:input_norm_absent="mean"'
    towers_runs = [run("film", "missing_no_mask", s, 0.9) for s in (0, 1)]
    towers_runs += [run("film", "missing_mask", s, 0.9) for s in (0, 1)]  # today's default
    towers_runs += [run(earlier, "missing_mask", s, a) for s, a in ((0, 0.8), (1, 0.7))]
    probe_runs = [run("film", "missing_mask", s, a, "raw_zero") for s, a in ((0, 0.9), (1, 0.88))]
    (tmp_path / "t.json").write_text(json.dumps({"results": towers_runs}))
    (tmp_path / "p.json").write_text(json.dumps({"results": probe_runs}))
    assert probe.main(["--runs", str(tmp_path / "p.json"), "--compare", str(tmp_path / "t.json")]) == 0
    text = capsys.readouterr().out
    assert "default mask -0.1500 ± 0.1000, variant - default +0.1400" in text


def test_drop_present_only_keeps_an_absent_row_as_the_norm_left_it():
    """``modality_dropout`` under ``drop_present_only``: an absent image enters the MLP as
    the norm's fill (the normalised zero row), not as a dropped row's 0; eval. The layer
    it patches is ``missing_modality="drop"``; today's ``"zero_fill"`` computes it."""
    from fusion_spec.backends.torch import build

    m = build("modality_dropout", dim=3, input_norm_absent="zero", missing_modality="drop")
    m = m.double().eval()
    m.input_norm["image"].running_mean.fill_(2.0)
    v, t = torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    present = torch.tensor([[True, True], [False, True]])
    seen = []
    hook = m.mlp[0].register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    restore = probe.patch("drop_present_only")
    try:
        m(v, t, present)
    finally:
        restore()
    m(v, t, present)
    hook.remove()
    fill = -2.0 / np.sqrt(1.0 + m.spec.input_norm_eps)
    np.testing.assert_allclose(seen[0][1, :3], fill)  # the patched call: the fill
    np.testing.assert_allclose(seen[1][1, :3], 0.0)  # the layer: a dropped row
    default = build("modality_dropout", dim=3, input_norm_absent="zero").double().eval()
    default.load_state_dict(m.state_dict())
    assert default.spec.missing_modality == "zero_fill"
    patched = m.mlp[1](torch.relu(m.mlp[0](seen[0])))  # the MLP on the patched call's input
    torch.testing.assert_close(default(v, t, present), patched, rtol=0, atol=0)


def test_the_earlier_default_is_the_kind_s_own_field_where_it_has_one():
    assert probe._earlier("film") == 'film:input_norm_absent="mean"'
    assert probe._earlier('modality_dropout:input_norm_absent="zero"') == (
        'modality_dropout:missing_modality="drop"'
    )


def test_rule_unmasked_is_the_rule_without_the_mask_on_the_fill():
    """``shomr`` under ``rule_unmasked``, eval: a lone modality's absent row is the norm's
    fill, a zero row normalised with the running statistics, so the masked call computes
    what the unmasked call on zeroed rows computes (the router routes it); restored after."""
    from fusion_spec.backends.torch import MODULES, build

    torch.manual_seed(0)
    m = build("shomr", dim=4, heads=2, input_norm_absent="zero").double().eval()
    for modality in ("image", "text"):
        m.input_norm[modality].running_mean.normal_()
    v, t = torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    present = torch.tensor([[True, True], [True, False], [False, True], [True, False]])
    zeroed_v = torch.where(present[:, :1], v, 0.0)
    zeroed_t = torch.where(present[:, 1:], t, 0.0)
    fuse = MODULES["shomr"].fuse
    restore = probe.patch("rule_unmasked", "shomr")
    try:
        patched = m(v, t, present)
    finally:
        restore()
    assert MODULES["shomr"].fuse is fuse
    torch.testing.assert_close(patched, m(zeroed_v, zeroed_t), rtol=1e-12, atol=1e-12)


def _cross_attention(variant, present, training=False):
    """``cross_attention``'s output and weights under ``variant`` (restored after), and
    the layer's, from the same dropout seed."""
    from fusion_spec.backends.torch import MODULES, build

    torch.manual_seed(0)
    m = build("cross_attention", dim=4, heads=2, input_norm="none").double().train(training)
    m.ffn.eval()  # the attention dropout alone (the FFN's output dropout draws too)
    v, t = torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    fuse = MODULES["cross_attention"].fuse
    restore = probe.patch(variant)
    try:
        torch.manual_seed(1)
        out, aux = m(v, t, present, return_aux=True)
    finally:
        restore()
    assert MODULES["cross_attention"].fuse is fuse
    torch.manual_seed(1)
    return (out, aux["attention_weights"]), m(v, t, present, return_aux=True), m, (v, t)


LONE = torch.tensor([[True, True], [True, False], [False, True], [True, True]])


def test_manual_key_mask_is_the_layer():
    (out, w), (ref, aux), _, _ = _cross_attention("manual_key_mask", LONE)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, aux["attention_weights"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["lone_half", "null_key"])
def test_lone_variants_change_only_a_lone_token_s_weight(variant):
    """Complete rows as the layer; a lone token's weight 1/2 (``lone_half``) or
    ``sigmoid(score)`` beside a zero-score key (``null_key``), its value scaled by it."""
    (out, w), (ref, aux), m, (v, t) = _cross_attention(variant, LONE)
    both = LONE.all(1)
    torch.testing.assert_close(out[both], ref[both], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out[~both], ref[~both])
    a = m.attn
    for row, present in ((1, 0), (2, 1)):
        x = (v, t)[present][row]
        q = a.query(m.norm1(x)).unflatten(-1, (2, 2))
        score = (q * a.key(x).unflatten(-1, (2, 2))).sum(-1) * a.scale  # (h,)
        weight = torch.full_like(score, 0.5) if variant == "lone_half" else torch.sigmoid(score)
        torch.testing.assert_close(w[row, :, present], weight, rtol=1e-12, atol=1e-12)
        assert torch.count_nonzero(w[row, :, 1 - present]) == 0
        z = a.output((weight[:, None] * a.value(x).unflatten(-1, (2, 2))).flatten())
        torch.testing.assert_close(out[row], z + m.ffn(m.norm2(z)), rtol=1e-12, atol=1e-12)


def test_lone_no_dropout_keeps_a_lone_token_s_weight_in_training():
    (out, _), _, m, (v, t) = _cross_attention("lone_no_dropout", LONE, training=True)
    (dropped, _), _, _, _ = _cross_attention("manual_key_mask", LONE, training=True)
    a = m.attn
    for row, present in ((1, 0), (2, 1)):
        z = a.output(a.value((v, t)[present][row]))  # weight exactly 1
        torch.testing.assert_close(out[row], z + m.ffn(m.norm2(z)), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out[1:3], dropped[1:3])  # the control drops some heads there


def test_a_run_sets_the_earlier_default_unless_its_label_does():
    assert probe._run_fields("film") == {"input_norm_absent": "mean"}
    assert probe._run_fields('cross_attention:missing_modality="zero_fill"') == {
        "input_norm_absent": "mean", "lone_gradient": "pass", "missing_modality": "zero_fill"}
    assert probe._run_fields('modality_dropout:input_norm_absent="zero"') == {
        "input_norm_absent": "zero", "missing_modality": "drop"}


def test_the_markdown_table_shows_a_kind_s_variants_with_what_they_change():
    def run(rule, scenario, seed, acc, loss, variant=None):
        r = {"framework": "torch", "rule": rule, "scenario": scenario, "seed": seed,
             "history": {"accuracy": [acc] * 5, "loss": [loss] * 5}}
        return r if variant is None else {"variant": variant, **r}

    # the mask runs of the layer the variants patch (lone_gradient="pass"), and of today's
    # default (which the table must not take as the variants' baseline)
    towers_runs = [run(label, sc, s, a, 0.3) for s in (0, 1)
                   for label, sc, a in (('cross_attention:lone_gradient="pass"', "missing_mask", 0.8),
                                        ("cross_attention", "missing_mask", 0.95),
                                        ("cross_attention", "missing_no_mask", 0.9))]
    probe_runs = [run("cross_attention", "missing_mask", s, a, 0.2, "null_key")
                  for s, a in ((0, 0.85), (1, 0.87))]
    probe_runs.append(run("film", "missing_mask", 0, 0.5, 0.1, "raw_zero"))  # another kind
    table = probe.markdown({"results": probe_runs}, {"results": towers_runs}, "cross_attention")
    assert table.splitlines()[2] == (
        '| `null_key` | `input_norm_absent="mean"`, `lone_gradient="pass"` | torch, 2 | '
        '-0.0400 ± 0.0200 | '
        "+0.0600 ± 0.0200 | -0.1000 ± 0.0000 (2) |")
    assert "film" not in table and len(table.splitlines()) == 3


@pytest.mark.parametrize("variant, image, text", [("lone_detach", True, True),
                                                  ("lone_detach_image", True, False),
                                                  ("lone_detach_text", False, True)])
def test_lone_detach_keeps_the_output_and_stops_a_lone_token_s_gradient(variant, image, text):
    """The layer's output (``lone_gradient="pass"``); the lone samples' outputs pass no
    gradient to the detached modality's lone rows, and the complete rows' unchanged."""
    from fusion_spec.backends.torch import build

    torch.manual_seed(0)
    m = build("cross_attention", dim=4, heads=2, input_norm="none", dropout=0.0,
              lone_gradient="pass").double()
    grads = {}
    for name in ("layer", variant):
        v, t = (torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
                .requires_grad_(True) for i in (1, 2))
        restore = probe.patch(variant) if name == variant else (lambda: None)
        try:
            out = m(v, t, LONE)
        finally:
            restore()
        out.sum().backward()
        grads[name] = (out.detach(), v.grad, t.grad)
    (ref, rv, rt), (got, gv, gt) = grads["layer"], grads[variant]
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    only_v, only_t = LONE[:, 0] & ~LONE[:, 1], LONE[:, 1] & ~LONE[:, 0]
    assert torch.all(gv[only_v] == 0) == image and torch.all(gt[only_t] == 0) == text
    both = LONE.all(1)
    torch.testing.assert_close(gv[both], rv[both], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gt[both], rt[both], rtol=1e-12, atol=1e-12)


def test_no_mask_function_is_the_layer_without_the_mask_on_zeroed_rows():
    """Training: the statistics over every row (the absent ones as zeros), absent rows
    normalised as those zeros, the rule unmasked: the call without the mask on zeroed
    rows, as the towers' ``missing_no_mask`` runs make it."""
    from fusion_spec.backends.torch import build

    torch.manual_seed(0)
    m = build("cross_attention", dim=4, heads=2, dropout=0.0).double().train()
    v, t = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    present = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1], [1, 0], [1, 1]], dtype=torch.bool)
    restore = probe.patch("no_mask_function", "cross_attention")
    try:
        patched = m(v, t, present)
    finally:
        restore()
    plain = m(torch.where(present[:, :1], v, 0.0), torch.where(present[:, 1:], t, 0.0))
    torch.testing.assert_close(patched, plain, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(m(v, t, present), plain)  # the mask changes the function
