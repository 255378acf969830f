"""bench: statistics, the results schema, and one tiny real run through every runtime that exists here."""
from __future__ import annotations

import json

import pytest

from pocketbert.errors import PocketbertError
from pocketbert.results import (
    RESULTS_SCHEMA,
    baseline_ratios,
    latency_stats,
    load_results,
    make_record,
    merge_results,
    new_results,
    reference_ratios,
    save_results,
    trimmed_mean,
)

TINY_LEN = 32


def test_latency_stats_on_known_samples():
    stats = latency_stats([1, 2, 3, 4, 5, 6, 7, 8, 9, 100], warmup=2)
    assert stats["mean"] == pytest.approx(14.5)
    assert stats["p50"] == pytest.approx(5.5)
    assert stats["p90"] == pytest.approx(18.1)  # linear between the 9th (9) and 10th (100) order statistics
    assert stats["p99"] == pytest.approx(91.81)
    assert stats["trimmed_mean"] == pytest.approx(5.5)  # middle 80%: the outlier 100 and the 1 are dropped
    assert (stats["min"], stats["max"], stats["n"], stats["warmup"]) == (1, 100, 10, 2)


def test_trimmed_mean_keeps_everything_below_ten_samples():
    assert trimmed_mean([1, 2, 30]) == pytest.approx(11.0)


def test_latency_stats_refuses_empty():
    with pytest.raises(PocketbertError, match="no timed runs"):
        latency_stats([])


def _row(model, role, runtime, ms, size, precision="fp32", device=None, fmt="onnx"):
    return dict(model=model, role=role, format=fmt, runtime=runtime, precision=precision, seq_len=384, mode="model",
                threads=2, device=device, file_bytes=size, latency_ms={"mean": ms, "p90": ms, "trimmed_mean": ms})


def test_make_record_fills_defaults_and_refuses_unknown_fields():
    assert make_record(model="m")["status"] == "ok"
    with pytest.raises(PocketbertError, match="latency"):
        make_record(model="m", latency=3)


def test_ratios_use_the_baseline_of_the_same_runtime_precision_and_device():
    phone = {"target": "android", "model": "Pixel 8"}
    records = [make_record(**r) for r in (
        _row("distil", "candidate", "onnxruntime", 50, 60),
        _row("bert", "baseline", "onnxruntime", 100, 100),
        _row("distil", "candidate", "onnxruntime", 10, 60, device=phone),
        _row("bert", "baseline", "onnxruntime", 40, 100, device=phone),
        _row("bert", "baseline", "pytorch-eager", 300, 400, fmt="pytorch"),
        _row("distil8", "candidate", "onnxruntime", 30, 20, precision="int8"),
    )]
    same = baseline_ratios(records)
    assert [(c["device"], c["words"]) for c in same] == [(None, "40% smaller, 2.0x faster"),
                                                        (phone, "40% smaller, 4.0x faster")]
    reference = {c["candidate"]: c for c in reference_ratios(records)}
    assert reference["distil8"]["speedup"] == pytest.approx(10.0)
    assert reference["distil8"]["size_ratio"] == pytest.approx(20.0)
    assert set(reference) == {"distil", "distil8"}  # the phone row has no host eager reference
    assert {c["statistic"] for c in same} == {"trimmed_mean"}
    # benchmark_model reports only an average: such rows compare by their means
    only_mean = [make_record(**{**r, "latency_ms": {"mean": r["latency_ms"]["mean"]}}) for r in records[2:4]]
    assert [(c["statistic"], c["words"]) for c in baseline_ratios(only_mean)] == [("mean", "40% smaller, 4.0x faster")]


def test_merge_adds_device_rows_and_replaces_repeats(tmp_path):
    host = new_results({"runs": 3}, [_row("distil", "candidate", "onnxruntime", 50, 60)])
    phone = {"target": "android", "model": "Pixel 8"}
    device = new_results({"runs": 100}, [_row("distil", "candidate", "onnxruntime", 10, 60, device=phone),
                                         _row("distil", "candidate", "onnxruntime", 45, 60)])
    merged = merge_results(host, device)
    assert len(merged["records"]) == 2
    assert {r["latency_ms"]["mean"] for r in merged["records"]} == {10, 45}
    assert merged["merged"][0]["settings"] == {"runs": 100}
    path = save_results(tmp_path / "results.json", merged)
    assert load_results(path)["records"] == merged["records"]
    with pytest.raises(PocketbertError, match="schema"):
        merge_results(host, {"schema": "other", "records": []})


def test_load_results_names_a_wrong_file(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema": "nope"}))
    with pytest.raises(PocketbertError, match=RESULTS_SCHEMA):
        load_results(tmp_path)


# --- one tiny real run ------------------------------------------------------------------------------------

def _tiny_artifacts(checkpoint, root, export_once):
    """A tiny fp32 artifact per format that exports here (ONNX always; others when their exporter exists)."""
    from pocketbert.export.registry import format_names

    artifacts = {}
    for name in format_names():
        try:
            export_once(str(checkpoint), name, root / name, seq_lens=(TINY_LEN,))
        except PocketbertError as err:  # a runtime package missing here: the harness is tested without it
            print(f"skipping {name}: {err}")
            continue
        artifacts[name] = root / name
    assert "onnx" in artifacts
    return artifacts


@pytest.fixture(scope="module")
def tiny_run(tiny_distilbert_qa, tiny_bert_qa, tmp_path_factory, export_once):
    from pocketbert.bench.measure import Baseline, BenchSettings, run_bench

    root = tmp_path_factory.mktemp("bench")
    artifacts = _tiny_artifacts(tiny_distilbert_qa, root / "artifacts", export_once)
    out = root / "out"
    settings = BenchSettings(seq_lens=(TINY_LEN,), sweep=(16,), warmup=1, runs=3, threads=1, modes=("model", "e2e"))
    results = run_bench([*map(str, artifacts.values()), str(tiny_distilbert_qa)], out, settings,
                        Baseline(str(tiny_bert_qa)))
    return artifacts, out, results


def test_bench_writes_results_report_and_plots(tiny_run):
    artifacts, out, results = tiny_run
    assert load_results(out)["schema"] == RESULTS_SCHEMA
    assert results["settings"]["interleaved"] is True and results["settings"]["threads"] == 1
    report = (out / "report.md").read_text()
    for heading in ("## Size and start-up", "## Latency", "## Against the baseline", "## Sequence-length sweep"):
        assert heading in report
    for plot in ("latency.png", "size.png", "sweep.png"):
        assert (out / plot).stat().st_size > 1000


def test_bench_measures_every_candidate_against_its_baseline(tiny_run):
    artifacts, out, results = tiny_run
    records = results["records"]
    runnable = {r["format"] for r in records if r["status"] == "ok"}
    assert {"onnx", "pytorch"} <= runnable
    for r in records:
        if r["status"] == "ok" and r["seq_len"] == TINY_LEN:
            assert r["latency_ms"]["n"] == 3 and r["latency_ms"]["warmup"] == 1
            assert r["file_bytes"] > 0 and r["gzip_bytes"] > 0 and r["parameters"] > 0
        if r["status"] == "ok" and r["mode"] == "model" and r["load_ms"] is not None:
            assert r["peak_rss_bytes"] >= r["import_rss_bytes"] > 0 and r["first_ms"] > 0
        if r["format"] == "coreml":  # converts on Linux, predicts only on macOS: the evaluator's check is reported
            assert r["status"] == "not_measurable" and "check against the original model: max |diff|" in r["reason"]
    for mode in ("model", "e2e"):
        compared = {(c["runtime"], c["precision"]) for c in baseline_ratios(records)
                    if c["mode"] == mode and c["seq_len"] == TINY_LEN}
        assert ("onnxruntime", "fp32") in compared and ("pytorch-eager", "fp32") in compared
    baselines = [r for r in records if r["role"] == "baseline" and r["status"] == "ok"]
    assert {r["format"] for r in baselines} >= {"pytorch", "onnx"}
    efficiency = [r["efficiency"] for r in records if r["status"] == "ok" and r["mode"] == "model"]
    assert all(e is not None and e > 0 for e in efficiency)


def test_missing_artifact_and_unknown_runtime_are_one_line_errors(tmp_path, tiny_run):
    from pocketbert.bench.measure import Baseline, run_bench
    from pocketbert.manifest import read_manifest, write_manifest

    with pytest.raises(PocketbertError, match="neither an artifact folder nor a checkpoint") as err:
        run_bench([str(tmp_path / "missing")], tmp_path / "out", baseline=Baseline(None))
    assert "\n" not in str(err.value)
    artifacts = tiny_run[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = read_manifest(artifacts["onnx"])
    (broken / manifest["artifact"]).parent.mkdir(parents=True, exist_ok=True)  # ONNX keeps its file in onnx/
    (broken / manifest["artifact"]).write_bytes(b"")
    write_manifest(broken, {**manifest, "format": "nosuchruntime"})
    with pytest.raises(PocketbertError, match="unknown export format 'nosuchruntime'"):
        run_bench([str(broken)], tmp_path / "out", baseline=Baseline(None))


def test_cli_bench_reports_errors_without_traceback(tmp_path, capsys):
    from pocketbert.cli import main

    assert main(["bench", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-baseline"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_settings_are_checked_once_with_one_line_errors():
    from pocketbert.bench.measure import BenchSettings

    settings = BenchSettings(seq_lens=(64,), sweep=(16, 64), modes=("model", "e2e")).checked()
    assert settings.threads >= 1 and settings.lengths == [16, 64]
    assert settings.plan() == [("model", 16), ("model", 64), ("e2e", 64)]
    for bad, message in ((dict(runs=0), "--runs"), (dict(modes=("fast",)), "unknown mode"), (dict(seq_lens=(4,)), "8 tokens")):
        with pytest.raises(PocketbertError, match=message):
            BenchSettings(**bad).checked()


def test_each_precision_is_judged_against_its_own_gemm_peak():
    from pocketbert.bench.measure import peak_matmul_gflops, peak_precision

    assert [peak_precision(p) for p in ("fp32", "fp16", "int8", "palette4", "bf16")] == ["fp32", "fp32", "int8", "fp32", "bf16"]
    import torch

    engine = torch.backends.quantized.engine
    for precision in ("fp32", "bf16", "int8"):  # small sizes: this checks the kernels run, not how fast
        assert peak_matmul_gflops(1, precision, max_size=256, repeats=1) > 0
    assert torch.backends.quantized.engine == engine  # int8 tries each quantized engine and puts the user's back


def test_cpu_instruction_sets_are_read_from_cpuinfo():
    from pocketbert.results import cpu_features

    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni amx_tile amx_int8\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm asimddp i8mm sve\n"
    assert cpu_features(x86) == ["avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]
    assert cpu_features(arm) == ["asimd", "asimddp", "i8mm", "sve"]
    assert cpu_features("no such line\n") is None


def test_goals_come_from_the_settings_the_user_chose():
    from pocketbert.bench.report import render_report

    records = [make_record(**{**_row(model, role, "onnxruntime", ms, size), "latency_ms": latency_stats([ms] * 3)})
               for model, role, ms, size in (("distil", "candidate", 50, 60), ("bert", "baseline", 100, 100))]
    default = render_report(new_results({"seq_lens": [384]}, records))
    assert "2.00x faster (meets the 1.9x goal)" in default
    stricter = render_report(new_results({"seq_lens": [384], "goals": {"distil_speedup": 2.5}}, records))
    assert "2.00x faster (misses the 2.5x goal)" in stricter
    elsewhere = render_report(new_results({"seq_lens": [384], "goals": {"seq_len": 128}}, records))
    assert "No measurement matches a goal's conditions (fp32 / int8 at seq 128" in elsewhere


def test_bench_on_bad_input_leaves_no_output_folder(tmp_path, capsys):
    from pocketbert.cli import main

    broken = tmp_path / "broken-artifact"
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    for model in (str(tmp_path / "missing"), str(broken)):
        out = tmp_path / "bench-out"
        assert main(["bench", model, "--no-baseline", "--out", str(out)]) == 2
        assert capsys.readouterr().err.count("\n") == 1 and not out.exists()
