"""The CLI, the reports and the expected-failures file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import types

import pytest

from fusion_spec.conformance import __main__ as cli
from fusion_spec.conformance import xfail
from fusion_spec.conformance.adapters.reference import ReferenceAdapter
from fusion_spec.conformance.suite import all_checks, select


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
    # gradients: the reference is the oracle (n/a); every forward and property check passes
    from fusion_spec.conformance.suite import all_checks

    ran = [c for c in all_checks() if c.rule == "gated" and c.category != "distribution"]
    n_gradient = sum(c.category == "gradient" for c in ran)
    n_pass = len(ran) - n_gradient
    assert n_gradient >= 9 and n_pass >= 26  # the catalogue of today, at least
    assert f"| gated | ✓ {n_pass}/{n_pass} ({n_gradient} n/a) |" in md
    assert js["summary"] == {"pass": n_pass, "n/a": n_gradient}
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
    assert cli.main(["--backend", "nonsense", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "python -m fusion_spec.conformance: error: --backend 'nonsense': cannot load the adapter "
        "(ValueError: --backend expected 'module:Adapter' (e.g. "
        "fusion_spec.conformance.adapters.torch:TorchAdapter); received 'nonsense'); "
        "bundled: reference, torch, keras\n"
    )


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


# --- bad arguments: one line on stderr, exit code 2, nothing run, no report written ---------


def _xfail_without_reason(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("torch shomr/*\n")
    return path


def _under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "r.json"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "nothing/*"], "no checks selected: -k/--include ['nothing/*'] and --exclude [] match none of the {n_checks} checks ('python -m fusion_spec.conformance list' prints their ids)"),
        (["list", "-k", "shomr/*", "--exclude", "shomr/*"], "no checks selected: -k/--include ['shomr/*'] and --exclude ['shomr/*'] match none of the {n_checks} checks ('python -m fusion_spec.conformance list' prints their ids)"),
        (["--backend", "no_such_module:Adapter"], "--backend 'no_such_module:Adapter': cannot load the adapter (ModuleNotFoundError: No module named 'no_such_module')"),
        (["--backend", "fusion_spec.conformance.adapters.reference:Nope"], "--backend 'fusion_spec.conformance.adapters.reference:Nope': cannot load the adapter (ValueError: --backend 'fusion_spec.conformance.adapters.reference:Nope': module 'fusion_spec.conformance.adapters.reference' has no 'Nope')"),
        (["--backend", "reference", "--xfail", "{tmp}/absent.txt"], "--xfail {tmp}/absent.txt: cannot read the expected-failures file (No such file or directory)"),
        (["--backend", "reference", "--xfail", "{xfail}"], "--xfail {xfail}:1: expected 'BACKEND CHECK REASON' (a reason is required); received 'torch shomr/*'"),
        (["--backend", "reference", "--json", "{tmp}"], "--json {tmp}: expected a file path; received a directory"),
        (["--backend", "reference", "--json", "{under_file}"], "--json {under_file}: cannot write the report: {tmp}/file is not a directory"),
        (["--backend", "reference", "--markdown", "{tmp}"], "--markdown {tmp}: expected a file path; received a directory"),
        (["--backend", "reference", "--json", "/proc/fusion-spec-report.json"], "--json /proc/fusion-spec-report.json: cannot write the report: No such file or directory"),
        (["--keras-backends", "jax,thenao"], "--keras-backends expected names among ['jax', 'torch', 'tensorflow', 'numpy']; received 'jax,thenao'"),
        (["--backend", "reference", "--jobs", "0"], "--jobs expected a positive int; received 0"),
        (["--timeout", "-1"], "argument --timeout: expected a number of seconds >= 0 (0: no limit); received '-1' (see --help)"),
        (["--device", "gpu"], "argument --device: invalid choice: 'gpu' (choose from 'cpu', 'cuda') (see --help)"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_code_2_before_the_run(tmp_path, capsys, args, message):
    from fusion_spec.conformance.suite import all_checks

    subs = {
        "n_checks": str(len(all_checks())),  # the catalogue's size, which grows with it
        "tmp": str(tmp_path),
        "xfail": str(_xfail_without_reason(tmp_path)),
        "under_file": str(_under_a_file(tmp_path)),
    }
    args = [a.format(**subs) for a in args]
    reports = ["--markdown", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json")]
    if "--json" in args or "--markdown" in args:
        reports = []
    try:
        code = cli.main([*args, *reports, "--quiet"])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err == f"python -m fusion_spec.conformance: error: {message.format(**subs)}\n"
    assert captured.out == ""
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or __import__("torch").cuda.is_available(),
    reason="checks the refusal on a machine with torch and without CUDA",
)
@pytest.mark.parametrize("backend", [[], ["--backend", "torch"]], ids=["default run", "--backend torch"])
def test_device_cuda_without_cuda_is_one_line_and_exit_code_2(tmp_path, capsys, backend):
    code = cli.main([*backend, "--device", "cuda", "-q", "--json", str(tmp_path / "r.json")])
    assert code == 2
    option = "--backend 'torch'" if backend else "--device cuda --precision float32"
    assert capsys.readouterr().err == (
        f"python -m fusion_spec.conformance: error: {option}: cannot load the torch adapter "
        "(RuntimeError: torch adapter: argument 'device' expected a usable device; received "
        "'cuda', but torch.cuda.is_available() is False)\n"
    )
    assert not (tmp_path / "r.json").exists()


# --- a hanging check times out; the run goes on ----------------------------------------------

#: Set at the end of each test that uses HangingAdapter, so that its abandoned threads end.
RELEASE = threading.Event()


class HangingAdapter(ReferenceAdapter):
    """The reference, except that ``forward`` of a gated model blocks until RELEASE is set
    (a deadlocked adapter): every selected gated check hangs, whatever the machine's load."""

    name = "hanging"

    def forward(self, model, v, t, **kwargs):
        if model.spec.kind == "gated":
            # on the thread itself: the runner may import this module a second time
            threading.current_thread().hung = True
            RELEASE.wait()
        return super().forward(model, v, t, **kwargs)


class _UntilDoneOrHung(threading.Thread):
    """The runner's check thread, whose ``join(timeout)`` returns when the check ends or
    HangingAdapter has blocked it, however long either takes: which checks time out
    does not depend on how fast a loaded machine runs the others."""

    def join(self, timeout=None):
        while self.is_alive() and not getattr(self, "hung", False):
            super().join(0.05)


@pytest.fixture
def released():
    RELEASE.clear()
    yield
    RELEASE.set()


def test_a_hanging_check_times_out_and_the_run_goes_on(tmp_path, capsys, released, monkeypatch):
    from fusion_spec.conformance import runner

    monkeypatch.setattr(runner, "threading", types.SimpleNamespace(Thread=_UntilDoneOrHung))
    code, md, js = run_cli(
        tmp_path,
        "--backend",
        "tests.conformance.test_conformance_cli:HangingAdapter",
        "-k", "gated/forward/gated_default",
        "-k", "gated/forward/gated_missing*",
        "-k", "film/forward/film_default",
        "--timeout", "0.5",
    )
    assert code == 1
    status = {r["id"]: (r["status"], r["message"]) for r in js["results"]}
    assert status["film/forward/film_default"] == ("pass", "")
    gated = [v for k, v in status.items() if k.startswith("gated/")]
    # each hangs in turn: an abandoned check does not stop the run
    assert len(gated) == len(select(all_checks(), ["gated/forward/gated_default", "gated/forward/gated_missing*"])) > 1
    assert set(gated) == {(
        "error",
        "timed out after 0.5 s (--timeout): the check was abandoned, still running in a "
        "background thread",
    )}
    assert "timed out after 0.5 s" in capsys.readouterr().out


def test_check_timeout_zero_means_no_limit(released):
    from fusion_spec.conformance.runner import run_check_within

    (check,) = select(all_checks(), ["film/forward/film_default"])
    assert run_check_within(ReferenceAdapter(), check, 0).status == "pass"
    assert run_check_within(ReferenceAdapter(), check, None).status == "pass"
    assert cli._parser().parse_args([]).timeout == 120.0


def test_the_plugin_times_out_a_hanging_check(tmp_path):
    (tmp_path / "hang_adapter.py").write_text(
        "import threading\n"
        "from fusion_spec.conformance.adapters.reference import ReferenceAdapter\n"
        "class Hanging(ReferenceAdapter):\n"
        "    name = 'hanging'\n"
        "    def forward(self, model, v, t, **kwargs):\n"
        "        threading.Event().wait()  # never set: the thread is abandoned, a daemon\n"
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "fusion_spec.conformance.pytest_plugin"]
    cmd += ["--fusion-adapter=hang_adapter:Hanging", "--fusion-only", "--fusion-timeout=0.5"]
    cmd += ["--fusion-include=film/forward/film_default", "-p", "no:cacheprovider"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: timed out after 0.5 s (--timeout)" in done.stdout and "1 failed" in done.stdout


@pytest.mark.parametrize(
    "option, message",
    [
        ("--fusion-adapter=no_such_module:Adapter", "ERROR: --fusion-adapter 'no_such_module:Adapter': cannot load the adapter (ModuleNotFoundError: No module named 'no_such_module')"),
        ("--fusion-adapter=nonsense", "ERROR: --fusion-adapter 'nonsense': cannot load the adapter (ValueError: --backend expected 'module:Adapter' (e.g. fusion_spec.conformance.adapters.torch:TorchAdapter); received 'nonsense'); bundled: reference, torch, keras"),
    ],
)
def test_the_plugin_on_a_bad_adapter_is_a_usage_error(tmp_path, option, message):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "fusion_spec.conformance.pytest_plugin"]
    cmd += [option, "--fusion-only", "-p", "no:cacheprovider"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4  # pytest's ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in done.stdout + done.stderr
    assert done.stderr.strip() == message


def test_a_run_whose_stdout_is_closed_ends_quietly(tmp_path):
    """`run | head`: the reader is gone before the summary is printed; the exit code is
    the run's verdict and stderr holds no BrokenPipeError."""
    cmd = [sys.executable, "-m", "fusion_spec.conformance", "--backend", "reference", "-q"]
    cmd += ["-k", "gated/*", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child has imported anything, let alone printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0
    assert err == ""
    from fusion_spec.conformance.suite import all_checks, select

    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    # every gated check ran to its verdict: passed, or not applicable to the reference
    assert set(summary) == {"pass", "n/a"} and summary["pass"] > 0, summary
    assert sum(summary.values()) == len(select(all_checks(), ["gated/*"], []))
