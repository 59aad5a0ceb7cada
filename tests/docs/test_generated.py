"""The generated tables: in sync with the spec, and the check catches drift."""

from __future__ import annotations

import shutil
import subprocess
import sys

import gen_docs
import pytest
from docs_support import DOCS, ROOT

from fusion_spec import spec


def test_generated_tables_are_up_to_date():
    result = subprocess.run(
        [sys.executable, "tools/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _copy_docs(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    assert gen_docs.run(docs, check=True) == []
    return docs


def test_check_fails_on_a_stale_table(tmp_path):
    docs = _copy_docs(tmp_path)
    page = docs / "rules" / "shomr.md"
    page.write_text(
        page.read_text().replace(
            "`confidence_threshold` | `float` | `0.6`", "`confidence_threshold` | `float` | `0.5`"
        )
    )
    assert gen_docs.run(docs, check=True) == [
        "rules/shomr.md: generated tables out of date (run python tools/gen_docs.py)"
    ]
    assert gen_docs.run(docs, check=False) == []
    assert gen_docs.run(docs, check=True) == []


def test_check_fails_on_a_missing_block(tmp_path):
    docs = _copy_docs(tmp_path)
    page = docs / "rules" / "film.md"
    text = page.read_text()
    start = text.index("<!-- BEGIN generated:noise -->")
    end = text.index("<!-- END generated:noise -->") + len("<!-- END generated:noise -->")
    page.write_text(text[:start] + text[end:])
    assert gen_docs.run(docs, check=True) == [
        "rules/film.md: block 'noise' missing (add its BEGIN/END markers)"
    ]


def test_tables_follow_the_spec(monkeypatch):
    """A change in the spec (here: a parameter's shape) changes the generated table."""
    before = gen_docs.params_block("gated")

    def widened(self):
        return spec._base.linear("gate", 3 * self.dim, self.dim)

    monkeypatch.setattr(spec.GatedSpec, "params", widened)
    after = gen_docs.params_block("gated")
    assert "`(D, 2D)`" in before and "`(D, 3D)`" in after


def test_shapes_are_written_in_d_and_b():
    assert "| `encoder.{i}.ffn.up.weight` | `(4D, D)` |" in gen_docs.params_block("simple")
    noise = gen_docs.noise_block("modality_dropout")
    assert "| training | `drop_image` | `(1,)` |" in noise
    assert "| training, spec `drop_granularity='sample'` | `drop_image` | `(B,)` |" in noise
    assert "| `energy_loss` | `()` (scalar) |" in gen_docs.aux_block("energy_aware_adaptive")


def test_aux_shapes_are_symbolic():
    """Aux shapes read as D and h, not the numbers of the size the generator evaluates at."""
    assert "| `gate` | `(B, D)` |" in gen_docs.aux_block("gated")
    film = gen_docs.aux_block("film")
    assert "| `gamma` | `(B, D)` |" in film and "| `beta` | `(B, D)` |" in film
    assert "| `attention_weights` | `(B, h, 2)` |" in gen_docs.aux_block("cross_attention")


def test_symbolic_shapes_evaluate_the_spec_at_two_sizes(monkeypatch):
    """A declaration that changes with D, B or heads changes the symbol; a fixed one stays."""
    from fusion_spec.spec import AuxSpec

    def aux(self, batch, *, training=False, **options):
        return [
            AuxSpec("wide", (batch, 3 * self.dim + 1), "value"),
            AuxSpec("per_head", (self.heads, batch), "value"),
            AuxSpec("fixed", (7,), "value"),
        ]

    monkeypatch.setattr(spec.CrossAttentionSpec, "aux", aux)
    shapes = gen_docs.symbolic_shapes("cross_attention", lambda s, b: s.aux(b))
    assert shapes == {"wide": "`(B, 3D+1)`", "per_head": "`(h, B)`", "fixed": "`(7,)`"}

    def tangled(self, batch, *, training=False, **options):
        return [AuxSpec("bad", (batch * self.dim,), "value")]

    monkeypatch.setattr(spec.CrossAttentionSpec, "aux", tangled)
    with pytest.raises(ValueError, match="depends on"):
        gen_docs.symbolic_shapes("cross_attention", lambda s, b: s.aux(b))


def test_encoder_layers_collapse_into_pattern_rows():
    rows = gen_docs.param_rows("transformer_concat")
    s = spec.parse({"kind": "transformer_concat", "dim": gen_docs.DIM})
    assert len(s.params()) == 69  # 1 + 16 x 4 layers + input_norm's 4 running statistics
    assert len(rows) == 21  # the modality embedding, 16 tensors per layer, 4 statistics
    assert all(r["count"] == s.layers for r in rows if "{i}" in r["name"])
    text = gen_docs.params_block("transformer_concat")
    assert "| `encoder.{i}.attn.query.weight` | `(D, D)` |" in text
    assert "encoder.1." not in text
    # the MLP's layers differ in shape: they stay one row each
    assert [r["name"] for r in gen_docs.param_rows("concat_mlp")] == [
        "mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias",
        *(f"input_norm.{m}.running_{x}" for m in ("image", "text") for x in ("mean", "var")),
    ]


def test_init_formulas_are_functions_of_the_sizes():
    assert gen_docs.init_formula("gated", "gate.weight") == (
        r"$\mathcal{U}(-\theta, \theta)$, $\theta = 1/\sqrt{2D}$"
    )
    assert gen_docs.init_formula("simple", "encoder.0.attn.query.weight").endswith(
        r"$\theta = \sqrt{6/(4D)}$"
    )
    assert gen_docs.init_formula("simple", "encoder.0.ffn.down.weight").endswith(
        r"$\theta = 1/\sqrt{4D}$"
    )
    assert gen_docs.init_formula("transformer_concat", "modality_embedding") == (
        r"$\mathcal{N}(0, 0.02^2)$"  # modality_embedding_std; the original's 1.0 is an option
    )
    # beside the number at D = 512
    assert r"($\theta = 0.03125$)" in gen_docs.params_block("gated")


def test_a_float_option_is_labelled_given_not_a_sample_value():
    noise = gen_docs.noise_block("energy_aware_adaptive")
    assert "| training, `progress` given | `output_drop_gate` | `(1,)` |" in noise
    assert "progress=0.5" not in noise


def test_worked_example_is_the_reference_output():
    """The block's expected numbers are the reference's, and the block runs clean."""
    import numpy as np

    for kind in spec.RULES:
        block = gen_docs.example_block(kind)
        code = block.split("```python\n", 1)[1].split("```", 1)[0]
        scope: dict = {}
        exec(compile(code, f"rules/{kind}.md worked example", "exec"), scope)
        s = scope["s"]
        assert 2 <= s.dim <= 4, kind
        assert set(scope["params"]) == {p.name for p in s.params()}, kind
        np.testing.assert_allclose(scope["fused"], scope["expected"], rtol=1e-7, atol=1e-12)


def test_worked_example_fails_on_a_wrong_number(tmp_path):
    """A block whose printed output is off fails when run: the check can fail."""
    block = gen_docs.example_block("gated")
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    line = next(x for x in code.splitlines() if x.startswith("expected = "))
    wrong = code.replace(line, line.replace("[[", "[[1 + ", 1))
    with pytest.raises(AssertionError):
        exec(compile(wrong, "planted", "exec"), {})


def test_costs_are_the_spec_macs():
    s = spec.parse({"kind": "cross_attention", "dim": gen_docs.DIM})
    assert "| `all` |" in gen_docs.cost_block("cross_attention")
    assert f"{s.macs()['all']:,} |" in gen_docs.cost_block("cross_attention")


def test_route_dtypes_stated_are_the_implementations():
    """The type constraints name the dtype each implementation really returns for route."""
    import numpy as np

    from fusion_spec import fusion_ref

    s = spec.parse({"kind": "shomr", "dim": 4, "heads": 1})
    params = spec.init_params(s, seed=0)
    v = t = np.ones((2, 4))
    _, aux = fusion_ref.forward(s, params, v, t, return_aux=True)
    assert str(aux["route"].dtype) == gen_docs.ROUTE_DTYPES["the reference"]
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from fusion_spec.backends import torch as backend

    module = backend.build(s).eval()
    _, aux = module(torch.ones(2, 4), torch.ones(2, 4), return_aux=True)
    assert str(aux["route"].dtype) == "torch." + gen_docs.ROUTE_DTYPES["PyTorch"]


def test_parameters_of_non_default_settings_are_listed():
    """``energy_weight`` exists only with ``energy_weight_trainable=True``: the default
    spec's ``params()`` omits it, yet a backend must name and load it, so the table lists
    it with its condition; the running statistics of the default ``input_norm='batch'``
    say when they are absent."""
    energy = gen_docs.params_block("energy_aware_adaptive")
    assert "| `energy_weight` | `()` (scalar) | $1$ |" in energy  # the field's default
    assert "Only with spec `energy_weight_trainable=True`." in energy
    gated = gen_docs.params_block("gated")
    assert "| `input_norm.text.running_var` | `(D,)` | $1$ |" in gated
    assert (
        "| Running var of the text features (updated in training); absent with spec "
        "`input_norm='none'`; not trained |" in gated
    )


def test_aux_tables_name_the_neither_output():
    """With ``present`` every rule returns ``neither``; a rule without aux of its own does not
    return an empty dict then."""
    assert "an empty dict without `present`, and `neither` alone" in gen_docs.aux_block("simple")
    assert "| `neither` | `(B,)` | decision, float |" in gen_docs.aux_block("gated")
    assert "`neither` with `present`" in gen_docs.io_block("simple")


def _signature_names(text: str, start: str) -> set[str]:
    """The parameter names of the signature that follows ``start`` in ``text``."""
    import ast

    head = text.split(start, 1)[1].split(")\n", 1)[0]
    head = head.split(", ", 1)[1] if start.endswith("build(") else head  # the kind
    tree = ast.parse(f"def f(s, {head}): pass")
    args = tree.body[0].args
    return {a.arg for a in args.args + args.kwonlyargs} - {"s"}


def test_usage_signatures_are_the_backends():
    """The signatures opening each rule page name the parameters the backends take."""
    import inspect

    torch_backend = pytest.importorskip("fusion_spec.backends.torch", reason="no PyTorch")
    for kind in spec.RULES:
        text = gen_docs.usage_block(kind)
        module = torch_backend.MODULES[kind]
        assert module.__name__ == gen_docs._backend_class(kind), kind
        named = _signature_names(text, "fusion_spec.backends.torch.build(")
        fields = set(spec.RULES[kind].model_fields) - {"kind"}
        assert named - fields == {"params", "generator"} | ({"dispatch"} if module.routes else set())
        assert named - fields <= set(inspect.signature(torch_backend.build).parameters), kind
        forward = set(inspect.signature(module.forward).parameters) - {"self", "call_options"}
        options = {o.name for o in spec.RULES[kind].call_options}
        assert _signature_names(text, "module(") == forward | options, kind
