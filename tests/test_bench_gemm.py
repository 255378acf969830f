"""`pocketbert bench gemm`: the same linear layers exported and quantized as each format exports a model, run in every
runtime, checked against torch, and their rates written beside eager PyTorch. Rates are the command's output, never
asserted beyond their bookkeeping."""
from __future__ import annotations

import json

import pytest

from pocketbert.bench.studies.gemm import INT8_RELATIVE_ERROR, PRECISIONS, RUNTIMES, measure_gemm_rates
from pocketbert.cli import main
from pocketbert.errors import PocketbertError

SHAPE = {"rows": 8, "inner": 32, "outer": 64}


def test_every_runtime_runs_the_layers_at_both_precisions_and_agrees_with_torch(tmp_path):
    out = tmp_path / "gemm"
    results = measure_gemm_rates(out, **SHAPE, threads=1, warmup=0, runs=2)
    cells = {(row["runtime"], row["precision"]): row for row in results["rows"]}
    assert set(cells) == {(runtime, precision) for runtime in RUNTIMES for precision in PRECISIONS}
    for (runtime, precision), row in cells.items():
        assert "reason" not in row, f"{runtime} {precision}: {row.get('reason')}"
        # fp32 runtimes compute the same products as torch; int8 ones within their quantization error.
        assert row["relative_error"] < (1e-5 if precision == "fp32" else INT8_RELATIVE_ERROR)
        assert row["rate"] > 0 and row["latency_ms"]["n"] == 2
    assert cells[("pytorch", "fp32")]["vs_reference"] == pytest.approx(1.0)
    assert results["operations"] == 2 * 2 * (2 * 8 * 32 * 64)  # two blocks of an up and a down projection
    assert set(results["peaks"]) >= {"fp32", "int8"}
    assert json.loads((out / "gemm.json").read_text())["rows"] == results["rows"]
    report = (out / "report.md").read_text()
    assert "| litert | int8 |" in report and "vs PyTorch eager fp32" in report
    assert (out / "gemm.png").stat().st_size > 0


def test_the_command_writes_the_report_and_refuses_bad_sizes_in_one_line(tmp_path, capsys):
    out = tmp_path / "gemm"
    assert main(["bench", "gemm", "--rows", "8", "--inner", "32", "--outer", "64", "--runtimes", "onnxruntime",
                 "--threads", "1", "--warmup", "0", "--runs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime int8:" in printed and "x PyTorch eager fp32" in printed
    # The reference runs whichever runtimes are asked for.
    rows = json.loads((out / "gemm.json").read_text())["rows"]
    assert {row["runtime"] for row in rows} == {"pytorch", "onnxruntime"}
    assert main(["bench", "gemm", "--rows", "-3", "--out", str(tmp_path / "bad")]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--rows -3" in error and "must be at least 1" in error
    assert not (tmp_path / "bad").exists()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(PocketbertError, match="not under a file"):  # up front, before any export
        measure_gemm_rates(tmp_path / "a-file" / "gemm", rows=8, inner=32, outer=64, runs=1)
    with pytest.raises(PocketbertError, match="unknown runtime"):
        measure_gemm_rates(tmp_path / "bad", runtimes=("tensorrt",))
