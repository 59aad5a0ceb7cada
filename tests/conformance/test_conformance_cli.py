"""The CLI, the reports and the expected-failures file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fusion_spec.conformance import __main__ as cli
from fusion_spec.conformance import xfail


def run_cli(tmp_path, *args):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    code = cli.main([*args, "--markdown", str(md), "--json", str(js), "--quiet"])
    return code, md.read_text(), json.loads(js.read_text())


def test_reference_run_writes_matrix_and_reports(tmp_path, capsys):
    code, md, js = run_cli(
        tmp_path, "--backend", "reference", "-k", "gated/*", "--exclude", "*/distribution/*"
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "gated" in out and "reference" in out and "wall time:" in out
    # gradients: the reference is the oracle (n/a), incl. the two gated_missing cases and
    # the three gated_input_norm* cases
    assert "| gated | ✓ 16/16 (6 n/a) |" in md
    assert js["summary"] == {"pass": 16, "n/a": 6}
    assert {r["id"].split("/")[0] for r in js["results"]} == {"gated"}
    first = next(r for r in js["results"] if r["category"] == "forward")
    assert {"max_abs", "max_rel", "max_ulp"} <= set(first["tensors"][0])


def test_broken_backend_fails_with_exit_code_1(tmp_path, capsys):
    code, md, _ = run_cli(
        tmp_path,
        "--backend",
        "fusion_spec.conformance.broken:SwappedInputs",
        "-k",
        "film/forward/film_default",
    )
    assert code == 1
    assert "v and t swapped" in capsys.readouterr().out
    assert "**fail**" in md


def test_xfail_marks_failures_and_warns_about_stale_entries(tmp_path, capsys):
    entries = tmp_path / "xfail.txt"
    entries.write_text(
        "# backend check reason\n"
        "broken-swapped-v-t  film/forward/*  swap fix pending (#1)\n"
        "*  simple/forward/simple_default  long fixed\n"
    )
    code, md, js = run_cli(
        tmp_path,
        "--backend",
        "fusion_spec.conformance.broken:SwappedInputs",
        "-k",
        "film/forward/film_d*",
        "-k",
        "simple/forward/simple_default",
        "--xfail",
        str(entries),
    )
    assert code == 0
    statuses = {r["id"]: r["status"] for r in js["results"]}
    assert statuses["film/forward/film_default"] == "xfail"
    assert statuses["simple/forward/simple_default"] == "xpass"
    assert any("line 3" in w and "stale" in w for w in js["warnings"])
    assert "stale expected-failure entry at line 3" in capsys.readouterr().err


def test_xfail_entry_without_reason_is_an_error():
    with pytest.raises(ValueError, match=r"x.txt:2: expected 'BACKEND CHECK REASON'"):
        xfail.parse("# ok\ntorch shomr/*\n", "x.txt")


def test_list_and_bad_backend(capsys):
    assert cli.main(["list", "-k", "shomr/gradient/*"]) == 0
    assert "shomr/gradient/shomr_route_image" in capsys.readouterr().out.split()
    with pytest.raises(ValueError, match="expected 'module:Adapter'"):
        cli.main(["--backend", "nonsense", "--quiet"])


def test_python_m_conformance_spawns_keras_and_merges(tmp_path):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion_spec.conformance",
            "-k",
            "gated/forward/gated_default",
            "--keras-backends",
            "numpy",
            "--markdown",
            str(md),
            "--json",
            str(js),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    backends = [line.split()[0] for line in proc.stdout.splitlines()[:1]]
    assert backends == ["rule"]
    assert "keras-numpy" in proc.stdout.splitlines()[0]
    assert "[keras-numpy] gated: 1 pass" in proc.stderr
    assert set(json.loads(js.read_text())["backends"]) == {"reference", "torch", "keras-numpy"}


def test_docs_page_catalogue_and_policy_are_current():
    from pathlib import Path

    from fusion_spec.conformance import report

    page = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text()
    assert report._policy_table() in page, (
        "rerun: python -m fusion_spec.conformance --markdown docs/conformance.md"
    )
    assert report._catalogue_table() in page, (
        "rerun: python -m fusion_spec.conformance --markdown docs/conformance.md"
    )


def test_measure_prints_the_worst_scaled_errors(tmp_path, capsys):
    from fusion_spec.conformance import measure

    code, _, _ = run_cli(
        tmp_path, "--backend", "torch", "-k", "film/*", "--exclude", "*/distribution/*"
    )
    assert code == 0
    capsys.readouterr()
    assert measure.main(str(tmp_path / "r.json")) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("torch"))
    forward, _ulp, gradient = (float(x) for x in line.split()[1:4])
    assert 0 < forward < 1e-5 and 0 < gradient < 1e-5
    assert "film/" in line


def test_list_survives_a_closed_pipe():
    proc = subprocess.run(
        f"{sys.executable} -m fusion_spec.conformance list | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout == "simple/forward/simple_default\n"
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr


def test_all_xpass_cell_reads_as_passing_and_marked():
    from fusion_spec.conformance import report

    rows = [{"status": "xpass"}] * 12
    assert report.cell(rows) == "! 12/12 (12 xpass)"
    assert report.cell([{"status": "pass"}] * 3 + [{"status": "fail"}]) == "✗ 3/4 (1 fail)"


def test_headroom_in_markdown_and_json(tmp_path):
    code, md, js = run_cli(tmp_path, "--backend", "torch", "-k", "film/forward/*")
    assert code == 0
    assert "## Headroom" in md
    film = js["headroom"]["torch"]["film"]
    assert 0 < film["tolerance_used"] < 1 and film["where"].startswith("film/forward/")
    assert "| film | " in md.split("## Headroom", 1)[1]


def test_progress_line_puts_the_hint_first_and_keeps_the_whole_message():
    import io

    from fusion_spec.conformance.broken import SwappedInputs
    from fusion_spec.conformance.runner import run_adapter
    from fusion_spec.conformance.suite import all_checks, select

    progress = io.StringIO()
    rows = run_adapter(
        SwappedInputs(), select(all_checks(), ["gated/forward/gated_default"]), progress
    )
    line = next(x for x in progress.getvalue().splitlines() if "FAIL" in x)
    assert line.split(": ", 1)[1].startswith(
        "hint: the output matches the reference with v and t swapped"
    )
    assert rows[0]["message"].split("; hint:")[0] in line  # the tensor report, uncut
