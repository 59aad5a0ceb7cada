"""The generated tables: in sync with the spec, and the check catches drift."""

from __future__ import annotations

import shutil
import subprocess
import sys

import gen_docs
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
    assert "| `encoder.1.ffn.up.weight` | `(4D, D)` |" in gen_docs.params_block("simple")
    noise = gen_docs.noise_block("modality_dropout")
    assert "| training | `drop_image` | `(1,)` |" in noise
    assert "| training, spec `drop_granularity='sample'` | `drop_image` | `(B,)` |" in noise
    assert "| `energy_loss` | `()` (scalar) |" in gen_docs.aux_block("energy_aware_adaptive")


def test_costs_are_the_spec_macs():
    s = spec.parse({"kind": "cross_attention", "dim": gen_docs.DIM})
    assert "| `all` |" in gen_docs.cost_block("cross_attention")
    assert f"{s.macs()['all']:,} |" in gen_docs.cost_block("cross_attention")
