"""`pocketbert bench peers` on a tiny checkpoint: the ONNX peer route (optimum-onnx's `optimum-cli` in .venv-optimum,
built by `make setup`) makes an artifact that bench opens, times beside ours and checks against the original model;
a missing peer venv is a row saying so, not a crash."""
from __future__ import annotations

import json
from pathlib import Path

from pocketbert.bench.studies.peers import DEFAULTS_ROUTE, NOT_INSTALLED, OPTIMUM_VENV

SEQ_LEN = 64


def rows_by_route(out: Path) -> dict:
    return {(r["format"], r["precision"], r["route"]): r for r in json.loads((out / "peers.json").read_text())["rows"]}


def test_onnx_peer_route_is_timed_beside_ours_and_validated(tiny_distilbert_qa, tmp_path, capsys):
    from pocketbert.cli import main

    assert (OPTIMUM_VENV / "bin" / "optimum-cli").is_file(), f"optimum's venv is missing at {OPTIMUM_VENV}: run `make setup`"
    out = tmp_path / "peers"
    assert main(["bench", "peers", str(tiny_distilbert_qa), "--formats", "onnx", "--precisions", "fp32",
                 "--seq-len", str(SEQ_LEN), "--warmup", "1", "--runs", "2", "--threads", "1", "--out", str(out)]) == 0
    rows = rows_by_route(out)
    theirs, ours = rows[("onnx", "fp32", "optimum-onnx")], rows[("onnx", "fp32", "pocketbert")]
    for row in (theirs, ours, rows[("pytorch", "fp32", "transformers eager (the checkpoint)")]):
        assert row["status"] == "ok", row
        assert row["latency_ms"]["n"] == 2 and row["ms"] > 0
    # Checked like ours: against the unmodified transformers model, in onnxruntime, at real tokens.
    assert theirs["max_abs_diff"] < 1e-4 and theirs["validation_passed"] is True
    assert theirs["argmax_agreement"] == {"start": 1.0, "end": 1.0}
    assert theirs["time_over_ours"] == theirs["ms"] / ours["ms"]
    manifest = json.loads((Path(theirs["artifact"]) / "manifest.json").read_text())
    # Opened with our settings, so the rows compare the files; our own file under ONNX Runtime's defaults is its own row.
    assert manifest["runtime_settings"] == json.loads((Path(ours["artifact"]) / "manifest.json").read_text())["runtime_settings"]
    defaults = rows[("onnx", "fp32", DEFAULTS_ROUTE)]
    assert defaults["status"] == "ok" and defaults["time_over_ours"] == defaults["ms"] / ours["ms"]
    under_defaults = json.loads((Path(defaults["artifact"]) / "manifest.json").read_text())["runtime_settings"]
    assert under_defaults["config_entries"] == {"session.intra_op.allow_spinning": "0"}
    assert "disabled_optimizers" not in under_defaults
    assert manifest["route"]["tool"].startswith("optimum-onnx ")
    assert manifest["route"]["command"].startswith("optimum-cli export onnx --task question-answering")
    bench = json.loads((out / "bench" / "results.json").read_text())
    assert {r["runtime"] for r in bench["records"]} == {"onnxruntime", "pytorch-eager"}
    report = (out / "report.md").read_text()
    assert bench["machine"]["cpu"] in report and "| format | precision | route | ms | vs ours |" in report
    assert (out / "peers.png").stat().st_size > 0
    assert "onnx/fp32 optimum-onnx:" in capsys.readouterr().out


def test_missing_peer_venv_is_a_row_not_a_crash(tiny_distilbert_qa, tmp_path, capsys):
    from pocketbert.cli import main

    out = tmp_path / "peers"
    assert main(["bench", "peers", str(tiny_distilbert_qa), "--formats", "onnx", "--optimum-venv",
                 str(tmp_path / "no-venv"), "--out", str(out)]) == 0
    rows = rows_by_route(out)
    for route in ("optimum-onnx", "optimum-onnx --avx2", "optimum-onnx --avx512_vnni"):
        row = rows[("onnx", "fp32" if route == "optimum-onnx" else "int8", route)]
        assert row["status"] == "not_installed" and row["reason"].startswith(NOT_INSTALLED), row
    # With no peer beside it, ours is not exported or timed.
    assert rows[("onnx", "fp32", "pocketbert")]["status"] == "skipped"
    assert rows[("onnx", "fp32", DEFAULTS_ROUTE)]["status"] == "skipped"
    assert NOT_INSTALLED in (out / "report.md").read_text()
    assert f"onnx/fp32 optimum-onnx: {NOT_INSTALLED}" in capsys.readouterr().out


def test_peers_on_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    from pocketbert.cli import main

    out = tmp_path / "peers"
    assert main(["bench", "peers", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pocketbert: error: ") and err.count("\n") == 1
    assert not out.exists()


def test_executorch_documented_recipe_on_the_unmodified_model(tiny_distilbert_qa, tmp_path):
    from pocketbert.bench.studies.peers import PeerRun, executorch_documented_xnnpack
    from pocketbert.manifest import read_manifest

    folder = tmp_path / "executorch-fp32-documented"
    command = executorch_documented_xnnpack(PeerRun(str(tiny_distilbert_qa), 32, tmp_path), folder)
    manifest = read_manifest(folder)
    assert "XnnpackPartitioner" in command and manifest["route"]["tool"].startswith("executorch ")
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert manifest["validation"]["ran"] and manifest["validation"]["max_abs_diff"] < 1e-4
