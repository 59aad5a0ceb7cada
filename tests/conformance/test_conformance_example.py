"""The backend author's guide: its example adapter passes, under both runners, and the
code in docs/writing-a-backend.md is the file CI runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fusion_spec.conformance.cases import all_cases
from fusion_spec.conformance.examples.minimal_adapter import MinimalAdapter
from fusion_spec.conformance.suite import NO_PRESENT, NO_TOKENS, all_checks, run_check

ROOT = Path(__file__).resolve().parents[2]


def test_example_passes_gated_and_film_and_says_why_not_the_rest():
    """The example takes no presence mask and no tokens: its missing-modality and token
    checks are n/a, saying why."""
    adapter = MinimalAdapter()
    masked = {c.name for c in all_cases() if c.present is not None}
    tokens = {c.name for c in all_cases() if c.v.ndim == 3 or c.t.ndim == 3} - masked
    normed = {c.name for c in all_cases() if c.spec.input_norm != "none"}
    widths = {c.name for c in all_cases() if c.spec.projected()} - normed
    assert normed & {c.name for c in all_cases() if c.rule == "gated"}  # the example meets them
    assert widths & {c.name for c in all_cases() if c.rule == "gated"}
    for check in all_checks():
        outcome = run_check(adapter, check)
        if check.rule in ("gated", "film") and check.name in normed:
            assert outcome.status == "n/a", (check.id, outcome.status, outcome.message)
            assert "input_norm" in outcome.message
        elif check.rule in ("gated", "film") and check.name in widths:  # before the mask check
            assert outcome.status == "n/a", (check.id, outcome.status, outcome.message)
            assert "image_dim" in outcome.message
        elif check.rule in ("gated", "film") and check.name in masked:
            assert (outcome.status, outcome.message) == ("n/a", NO_PRESENT), check.id
        elif check.rule in ("gated", "film") and check.name in tokens:
            assert (outcome.status, outcome.message) == ("n/a", NO_TOKENS), check.id
        elif check.rule in ("gated", "film") and check.category != "distribution":
            assert outcome.status == "pass", (check.id, outcome.message)
        else:
            assert outcome.status == "n/a", (check.id, outcome.status, outcome.message)
            assert outcome.message


def test_guide_embeds_the_example_verbatim():
    guide = (ROOT / "docs" / "writing-a-backend.md").read_text()
    code = (ROOT / "conformance" / "examples" / "minimal_adapter.py").read_text()
    assert "```python\n" + code + "```" in guide


def test_example_under_the_pytest_plugin(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "fusion_spec.conformance.pytest_plugin",
            "--fusion-adapter=fusion_spec.conformance.examples.minimal_adapter:MinimalAdapter",
            "--fusion-include=gated/*",
            "--fusion-include=shomr/forward/shomr_default",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),  # fusion_spec as installed (or as PYTHONPATH says)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # skipped: shomr (not implemented), gated's missing-modality checks (the example
    # takes no presence mask) and its input_norm checks; the plugin agrees with the
    # suite's own verdicts check by check
    gated = [c for c in all_checks() if c.id.startswith("gated/")]
    verdicts = [run_check(MinimalAdapter(), c).status for c in gated]
    passed, skipped = verdicts.count("pass"), verdicts.count("n/a") + 1
    assert passed >= 12 and skipped >= 5, verdicts
    assert f"{passed} passed, {skipped} skipped" in proc.stdout
    assert "tiny-numpy implements only gated and film" in proc.stdout
    assert "does not take a presence mask" in proc.stdout
    assert "does not implement input_norm='batch'" in proc.stdout


def test_plugin_reports_a_failing_check(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "fusion_spec.conformance.pytest_plugin",
            "--fusion-adapter=fusion_spec.conformance.broken:SwappedInputs",
            "--fusion-include=film/forward/film_default",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),  # fusion_spec as installed (or as PYTHONPATH says)
    )
    assert proc.returncode == 1
    assert "conformance[film/forward/film_default]" in proc.stdout
    assert "v and t swapped" in proc.stdout


def test_fusion_only_runs_just_the_conformance_items_from_the_repository_root():
    """From the root, pytest would also collect ``testpaths``; ``--fusion-only`` collects nothing else."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "fusion_spec.conformance.pytest_plugin",
            "--fusion-adapter=fusion_spec.conformance.examples.minimal_adapter:MinimalAdapter",
            "--fusion-include=film/forward/*",
            "--fusion-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    film = [c for c in all_checks() if c.id.startswith("film/forward/")]
    verdicts = [run_check(MinimalAdapter(), c).status for c in film]
    assert verdicts.count("pass") >= 7, verdicts
    assert proc.stdout.strip().splitlines()[-1].startswith(
        f"{verdicts.count('pass')} passed, {verdicts.count('n/a')} skipped"
    )
