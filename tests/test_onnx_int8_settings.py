"""`pocketbert bench onnx-int8-settings`: one fp32 ONNX artifact quantized each way, timed and scored for answer
agreement in ONNX Runtime (timings are the benchmark's output, never asserted)."""
from __future__ import annotations

import json

import pytest

from pocketbert.bench.studies.onnx_int8_settings import compare_int8_settings
from pocketbert.errors import PocketbertError
from pocketbert.export.api import export_model

SQUAD = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
    {"context": "The museum reopened in June after a two-year renovation led by the architect Lena Holm.",
     "qas": [{"id": "a", "question": "Who led the renovation?", "answers": [{"text": "Lena Holm", "answer_start": 75}]},
             {"id": "b", "question": "When did the museum reopen?", "answers": [{"text": "June", "answer_start": 29}]}]}]}]}


@pytest.fixture(scope="module")
def onnx_fp32(tiny_distilbert_qa, tmp_path_factory, export_once):
    out = tmp_path_factory.mktemp("settings") / "onnx-fp32"
    export_once(str(tiny_distilbert_qa), "onnx", out, seq_lens=(32,))
    return out


def test_every_setting_is_quantized_timed_and_scored(onnx_fp32, tmp_path):
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(SQUAD))
    results = compare_int8_settings(onnx_fp32, data, tmp_path / "out", seq_len=32, runs=2, warmup=1, threads=1)
    rows = {r["setting"]: r for r in results["rows"]}
    assert set(rows) == {"fp32", "dynamic s8 per-channel", "dynamic s8 per-tensor", "dynamic u8 per-channel",
                         "dynamic u8 per-tensor", "dynamic s8 per-channel reduce_range", "static QDQ"}
    assert rows["fp32"]["start"] == rows["fp32"]["end"] == 1.0 and results["windows"] == 2
    assert all(r["ms"] > 0 and r["mb"] < rows["fp32"]["mb"] for name, r in rows.items() if name != "fp32")
    assert results["machine"]["cpu"]
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"onnx_int8_settings.json", "report.md", "settings.png"}
    assert "| dynamic s8 per-channel | pocketbert --precision int8 |" in (tmp_path / "out" / "report.md").read_text()


def test_refuses_an_artifact_that_is_not_onnx_fp32(tiny_distilbert_qa, tmp_path):
    int8 = tmp_path / "onnx-int8"
    export_model(str(tiny_distilbert_qa), "onnx", int8, precision="int8", seq_lens=(32,))
    with pytest.raises(PocketbertError, match="pass an ONNX fp32 artifact folder"):
        compare_int8_settings(int8, tmp_path / "dev.json", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_data_is_refused_in_one_line_before_any_work(onnx_fp32, tmp_path, capsys):
    from pocketbert.cli import main

    assert main(["bench", "onnx-int8-settings", str(onnx_fp32), "--data", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pocketbert: error: data file") and "\n" not in err
    assert not (tmp_path / "out").exists()
