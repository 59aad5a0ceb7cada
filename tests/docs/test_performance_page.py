"""docs/performance.md: its measured figures are the benchmark JSON's, generated."""

from __future__ import annotations

import json

import gen_docs
from docs_support import DOCS

PAGE = DOCS / "performance.md"


def _rows(path):
    return json.loads(path.read_text())["rows"]


def test_noise_floor_is_the_json_range():
    """The A/A range the page states is the run's own (it once said 0.95x to 1.05x beside
    cells of 0.94x and 1.06x)."""
    text = PAGE.read_text()
    for path in (gen_docs.BENCH_JSON, gen_docs.HOST_JSON):
        aa = [r["speedup"]["original_again"] for r in _rows(path)]
        assert f"{min(aa):.2f}x to {max(aa):.2f}x" in text, path.name


def test_timing_cells_are_the_json():
    text = PAGE.read_text()
    for r in _rows(gen_docs.BENCH_JSON):
        ms, ratio = r["ms"]["ours"], r["speedup"]["ours"]
        assert f"{ms:.3g} ({ratio:.2f}x)" in text, (r["rule"], r["mode"], r["batch"])


def test_run_conditions_are_the_json():
    """Date, threads and load averages come from the JSON's machine record (the page once
    called the machine idle where the JSON recorded a load of 2.03)."""
    text = PAGE.read_text()
    for path in (gen_docs.BENCH_JSON, gen_docs.HOST_JSON,
                 *(p for p, _ in gen_docs.RETRAIN_JSON.values())):
        m = json.loads(path.read_text())["machine"]
        assert m["date"] in text
        for loads in (m["load_average_at_start"], m["load_average_at_end"]):
            assert " / ".join(f"{x:.2f}" for x in loads) in text
    assert "idle" not in text


def test_losses_list_every_cell_below_parity():
    losses = gen_docs.perf_losses_block()
    count = 0
    retrained = [path for path, _ in gen_docs.RETRAIN_JSON.values()]
    for path in (gen_docs.BENCH_JSON, gen_docs.HOST_JSON, *retrained):
        for r in _rows(path):
            if round(r["speedup"]["ours"], 2) < 1:
                count += 1
                assert f"| {r['batch']} | {r['speedup']['ours']:.2f}x |" in losses
    assert losses.count("\n") == count + 2  # header and rule line


def test_no_figure_without_a_data_file():
    """Figures the issue found with no JSON behind them stay off the page."""
    text = PAGE.read_text()
    for gone in ("GFLOP/s", "µs", "0.45 to 0.76", "8 minutes", "0.95x or"):
        assert gone not in text, gone
