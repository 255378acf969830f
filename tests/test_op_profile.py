"""`pocketbert bench op-profile`: each runtime's own profiler read per op type (ONNX Runtime, ExecuTorch's ETDump,
torch.profiler), matrix multiplies split from other ops; runtimes without a readable profiler are rows saying why.
Times are the command's output, never asserted beyond their bookkeeping."""
from __future__ import annotations

import json

import pytest

from pocketbert.bench.studies.op_profile import MATRIX_OP, profile_models
from pocketbert.cli import main

LENGTH = 32


@pytest.fixture(scope="module")
def artifacts(tiny_distilbert_qa, tmp_path_factory, export_once):
    root = tmp_path_factory.mktemp("op-profile")
    made = {}
    # ExecuTorch over a range of lengths: profiled at a length between its ends, which it was not exported at.
    for name, format_name, precision, lengths in (("onnx-int8", "onnx", "int8", (LENGTH,)),
                                                  ("executorch-fp32", "executorch", "fp32", (16, 48)),
                                                  ("tflite-fp32", "tflite", "fp32", (LENGTH,))):
        made[name] = root / name
        export_once(str(tiny_distilbert_qa), format_name, made[name], precision=precision, seq_lens=lengths)
    return made


def test_each_runtime_profile_is_split_into_matrix_multiplies_and_other_ops(artifacts, tiny_distilbert_qa, tmp_path):
    out = tmp_path / "profile"
    results = profile_models([artifacts["onnx-int8"], artifacts["executorch-fp32"], artifacts["tflite-fp32"],
                              tiny_distilbert_qa], out, seq_len=LENGTH, warmup=1, runs=3, threads=1)
    rows = {row["runtime"]: row for row in results["rows"]}
    assert set(rows) == {"onnxruntime", "executorch", "litert", "pytorch-eager"}
    assert "no per-op profiler" in rows["litert"]["reason"]
    expected_matrix_op = {"onnxruntime": "DynamicQuantizeMatMul", "executorch": "Fully Connected (NC, F32) GEMM",
                          "pytorch-eager": "aten::addmm"}
    for runtime, op in expected_matrix_op.items():
        row = rows[runtime]
        assert op in row["ops_ms"] and MATRIX_OP.search(op), (runtime, sorted(row["ops_ms"]))
        assert row["matrix_ms"] > 0 and row["other_ms"] > 0 and row["wall_ms"] > 0
        assert row["matrix_ms"] + row["other_ms"] <= 1.1 * row["wall_ms"]  # op times are parts of the call
        assert row["matrix_ms"] + row["other_ms"] == pytest.approx(sum(row["ops_ms"].values()))
    assert not any(MATRIX_OP.search(op) for op in ("Softmax", "Add (ND)", "aten::gelu", "LayerNormalization"))
    assert {p.name for p in out.iterdir()} == {"op_profile.json", "report.md", "op_profile.png"}
    assert json.loads((out / "op_profile.json").read_text())["seq_len"] == LENGTH
    report = (out / "report.md").read_text()
    assert "| tflite-fp32 | litert | fp32 | not profiled:" in report and "## onnx-int8 (onnxruntime, int8)" in report


def test_a_length_the_artifact_does_not_take_is_a_row_saying_so(artifacts, tmp_path):
    results = profile_models([artifacts["executorch-fp32"], artifacts["tflite-fp32"]], tmp_path / "out", seq_len=64,
                             warmup=0, runs=1)
    assert [row["reason"] for row in results["rows"]] == ["the artifact does not take length 64"] * 2


def test_cli_prints_one_line_per_model_and_refuses_bad_input_in_one_line(artifacts, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["bench", "op-profile", str(artifacts["onnx-int8"]), "--seq-len", str(LENGTH), "--runs", "2",
                 "--warmup", "0", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnx-int8 [onnxruntime/int8]:" in printed and "matrix multiplies" in printed
    for bad in ([str(tmp_path / "missing")], [str(artifacts["onnx-int8"]), "--runs", "0"]):
        assert main(["bench", "op-profile", *bad, "--out", str(tmp_path / "refused")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pocketbert: error:") and "\n" not in err
        assert not (tmp_path / "refused").exists()
