"""Android and iOS targets without phones: fake `adb`, `xcrun` and `xcodebuild` on PATH replay recorded output.

That is the harness's real code path (argument construction, quoting, parsing, failure handling); only
the device is simulated. Where each recorded format comes from:
- tests/data/device/benchmark_model_android.txt: the log lines of TFLite's benchmark tool, as written by
  tensorflow/lite/tools/benchmark/benchmark_model.cc (BenchmarkLoggingListener::OnBenchmarkEnd: "Inference
  timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..", then "Memory footprint
  delta from the start of the tool (MB): init=.. overall=..") and Stat::OutputToStream ("count=.. first=..
  curr=.. min=.. max=.. avg=.. std=.. p5=.. median=.. p95=..").
- tests/data/device/executor_runner_android.txt: ExecuTorch's examples/portable/executor_runner/executor_runner.cpp
  ET_LOG lines ("Model loaded in %f ms.", "Iteration %u of %u: %f ms", "Model executed successfully %u time(s)
  in %f ms.") in the posix PAL's "I HH:MM:SS.us executorch:FILE:LINE] message" layout.
- getprop_pixel.txt / df_android*.txt: `adb shell getprop` ("[key]: [value]") and toybox `df -k` layouts.
- devicectl_list_devices.json: `xcrun devicectl list devices --json-output` (result.devices[] with
  hardwareProperties / deviceProperties / connectionProperties).
- xcodebuild_test_coreml.txt: an `xcodebuild test` log around the record our Swift test prints.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from pocketbert import rules
from pocketbert.errors import PocketbertError
from pocketbert.manifest import MANIFEST_SCHEMA, write_manifest
from pocketbert.mobile_harness import bundle as bundle_module
from pocketbert.mobile_harness.android import AndroidTarget, elf_abi, parse_benchmark_model, parse_executor_runner
from pocketbert.mobile_harness.ios_target import IosTarget, parse_devicectl_list, parse_xctest_output
from pocketbert.mobile_harness.run import run_on_device
from pocketbert.mobile_harness.targets import DeviceLost, parse_target
from pocketbert.results import load_results

DATA = Path(__file__).parent / "data" / "device"
SERIAL = "38011FDJH00AB3"
UDID = "00008130-001A2B3C4D5E6F70"
WORKDIR = "/data/local/tmp/pocket bert's"  # a space and a quote: adb shell must get them quoted
SEQ = 32

FAKE_ADB = r'''
import json, os, shlex, shutil, sys
from pathlib import Path
import numpy as np

root, data = Path(os.environ["FAKE_DEVICE_ROOT"]), Path(os.environ["FAKE_DATA"])
args = sys.argv[1:]
def local(remote): return root / remote.lstrip("/")
def lost():
    print(f"error: device '{os.environ['FAKE_SERIAL']}' not found", file=sys.stderr); sys.exit(1)
if args == ["devices"]:
    state = os.environ.get("FAKE_ADB_STATE", "device")
    print("List of devices attached")
    if state != "none":
        print(f"{os.environ['FAKE_SERIAL']}\t{state}")
    sys.exit(0)
if (root / ".lost").exists():
    lost()
assert args[:2] == ["-s", os.environ["FAKE_SERIAL"]], args
verb, rest = args[2], args[3:]
if verb == "push":
    local(rest[1]).parent.mkdir(parents=True, exist_ok=True); shutil.copy(rest[0], local(rest[1])); sys.exit(0)
if verb == "pull":
    shutil.copy(local(rest[0]), rest[1]); sys.exit(0)
argv = shlex.split(rest[0])
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\n")
program = os.path.basename(argv[0])
flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
if program == "getprop":
    print((data / "getprop_pixel.txt").read_text(), end="")
elif program == "df":
    print((data / os.environ.get("FAKE_DF", "df_android.txt")).read_text(), end="")
elif program == "mkdir":
    local(argv[-1]).mkdir(parents=True, exist_ok=True)
elif program == "rm":
    shutil.rmtree(local(argv[-1]), ignore_errors=True)
elif program == "chmod":
    pass
elif program == "cat":
    print("schedutil")
elif program == "dumpsys":
    print("IsStatusOverride: false\nThermal Status: 0")
elif program in ("benchmark_model", "executor_runner"):
    runs = root / ".runs"
    count = int(runs.read_text()) if runs.exists() else 0
    if count >= int(os.environ.get("FAKE_LOSE_AFTER", "99")):
        (root / ".lost").touch(); lost()
    runs.write_text(str(count + 1))
    if program == "benchmark_model":
        print((data / "benchmark_model_android.txt").read_text(), end="")
    else:
        bundle = local(flags["model_path"]).parent
        for i, name in enumerate(("start_logits", "end_logits")):
            np.load(bundle / f"expected_{name}.npy").astype(np.float32).tofile(local(f"{flags['output_file']}-{i}.bin"))
        print((data / "executor_runner_android.txt").read_text(), end="", file=sys.stderr)
else:
    print(f"/system/bin/sh: {program}: inaccessible or not found", file=sys.stderr); sys.exit(127)
'''

FAKE_XCRUN = r'''
import os, shutil, sys
args = sys.argv[1:]
assert args[:4] == ["devicectl", "list", "devices", "--json-output"], args
if os.environ.get("FAKE_IOS_NONE"):
    open(args[4], "w").write('{"result": {"devices": []}}')
else:
    shutil.copy(os.path.join(os.environ["FAKE_DATA"], "devicectl_list_devices.json"), args[4])
'''

FAKE_XCODEBUILD = r'''
import json, os, sys
with open(os.environ["FAKE_XCODE_LOG"], "w") as log:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, log)
print(open(os.path.join(os.environ["FAKE_DATA"], "xcodebuild_test_coreml.txt")).read())
'''


def install_tool(bin_dir: Path, name: str, source: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in (("adb", FAKE_ADB), ("xcrun", FAKE_XCRUN), ("xcodebuild", FAKE_XCODEBUILD)):
        install_tool(bin_dir, name, source)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    env = {"FAKE_DEVICE_ROOT": tmp_path / "device", "FAKE_DATA": DATA, "FAKE_SERIAL": SERIAL,
           "FAKE_ADB_LOG": tmp_path / "adb.log", "FAKE_XCODE_LOG": tmp_path / "xcode.json"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    (tmp_path / "device").mkdir()
    return tmp_path


def elf(machine: int) -> bytes:
    return b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + bytes(44)


@pytest.fixture
def runners(tmp_path):
    folder = tmp_path / "runners"
    folder.mkdir()
    (folder / "benchmark_model").write_bytes(elf(183))
    (folder / "executor_runner").write_bytes(elf(183))
    (folder / "executor_runner_x86_64").write_bytes(elf(62))
    return {"tflite": folder / "benchmark_model", "executorch": folder / "executor_runner"}


@pytest.fixture
def artifact_factory(tmp_path, monkeypatch):
    """Artifact folders as `pocketbert export` writes them (the runtime file is a stand-in: the phone is fake)."""
    from pocketbert.modeling import embedded_teacher_dir, load_tokenizer

    tokenizer = load_tokenizer(embedded_teacher_dir())
    # The reference outputs would come from the source model; these stand-in folders have none.
    def reference_outputs(folder, manifest, feeds):
        rows = [len(feed["attention_mask"]) for feed in feeds]
        return [[np.tile(np.linspace(-1, 1, SEQ, dtype=np.float32), (n, 1)),
                 np.tile(np.linspace(1, -1, SEQ, dtype=np.float32), (n, 1))] for n in rows], "test"

    monkeypatch.setattr(bundle_module, "reference_outputs", reference_outputs)

    def make(name: str, fmt: str, suffix: str, role_checkpoint: str = "runs/student") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"model{suffix}").write_bytes(b"stand-in artifact " * 100)
        tokenizer.save_pretrained(str(folder))
        io = [{"name": n, "dtype": "int32" if fmt in ("tflite", "coreml") else "int64", "shape": [1, SEQ]}
              for n in ("input_ids", "attention_mask")]
        write_manifest(folder, {
            "schema": MANIFEST_SCHEMA, "task": "question-answering", "format": fmt, "backend": None,
            "precision": "fp32", "artifact": f"model{suffix}", "inputs": io,
            "outputs": [{"name": n, "dtype": "float32", "shape": [1, SEQ]} for n in ("start_logits", "end_logits")],
            "sequence": {"dynamic": False, "min": SEQ, "max": SEQ, "lengths": [SEQ]}, "parameters": 1000,
            "file_bytes": 1800, "source": {"checkpoint": role_checkpoint, "preset": None, "random_weights": True},
        })
        return folder

    return make


def adb_log(fake_tools) -> list[list[str]]:
    return [json.loads(line) for line in (fake_tools / "adb.log").read_text().splitlines()]


def test_parse_benchmark_model_output():
    parsed = parse_benchmark_model((DATA / "benchmark_model_android.txt").read_text(), warmup=1)
    assert parsed["load_ms"] == pytest.approx(412.318) and parsed["first_ms"] == pytest.approx(231.578)
    latency = parsed["latency_ms"]
    assert latency["mean"] == pytest.approx(205.893) and latency["p50"] == pytest.approx(205.696)
    assert (latency["min"], latency["max"], latency["n"], latency["warmup"]) == (204.870, 207.113, 3, 1)
    assert parsed["peak_rss_bytes"] == int(318.5 * 2**20)
    with pytest.raises(PocketbertError, match="no 'Inference timings in us' line"):
        parse_benchmark_model("ERROR: Could not open 'model.tflite'.\n", warmup=1)


def test_parse_executor_runner_output():
    parsed = parse_executor_runner((DATA / "executor_runner_android.txt").read_text(), warmup=1)
    assert parsed["load_ms"] == pytest.approx(186.291) and parsed["first_ms"] == pytest.approx(231.402)
    assert parsed["latency_ms"]["n"] == 3 and parsed["latency_ms"]["min"] == pytest.approx(205.129)
    assert parsed["latency_ms"]["mean"] == pytest.approx((206.004 + 205.129 + 206.871) / 3)
    with pytest.raises(PocketbertError, match="fewer than"):
        parse_executor_runner((DATA / "executor_runner_android.txt").read_text(), warmup=10)


def test_elf_abi(tmp_path):
    for machine, abi in ((183, "arm64-v8a"), (40, "armeabi-v7a"), (62, "x86_64")):
        (tmp_path / "bin").write_bytes(elf(machine))
        assert elf_abi(tmp_path / "bin") == abi
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(PocketbertError, match="not an ELF"):
        elf_abi(tmp_path / "script")


def test_android_executorch_and_tflite_end_to_end(fake_tools, runners, artifact_factory, tmp_path):
    student = artifact_factory("student pte", "executorch", ".pte")
    baseline = artifact_factory("bert-base tflite", "tflite", ".tflite", "runs/bert-base")
    target = parse_target(f"android:{SERIAL}", workdir=WORKDIR)
    records = run_on_device(target, [student], tmp_path / "out", baseline=baseline, warmup=1, runs=3, threads=4,
                            runners=runners)
    pte, tflite = records
    assert pte["status"] == "ok" and pte["runtime"] == "executorch" and pte["latency_ms"]["n"] == 3
    assert tflite["status"] == "ok" and tflite["latency_ms"]["mean"] == pytest.approx(205.893)
    assert "outputs not checked" in tflite["reason"]
    device = pte["device"]
    assert (device["model"], device["soc"], device["os"], device["abi"]) == (
        "Google Pixel 8 Pro", "Tensor G3", "Android 14 (SDK 34)", "arm64-v8a")
    assert device["governor"] == "schedutil" and device["thermal"] == {"status": 0} and device["threads"] == 4

    calls = {argv[0].rsplit("/", 1)[-1]: argv for argv in adb_log(fake_tools)}
    bundle = f"{WORKDIR}/00-candidate-executorch-fp32"
    assert calls["executor_runner"] == [
        f"{WORKDIR}/bin/executor_runner", f"--model_path={bundle}/model.pte",
        f"--inputs={bundle}/input_input_ids.bin,{bundle}/input_attention_mask.bin", "--num_executions=5",
        f"--output_file={bundle}/output", "--cpu_threads=4"]
    tflite_bundle = f"{WORKDIR}/01-baseline-tflite-fp32"
    assert f"--graph={tflite_bundle}/model.tflite" in calls["benchmark_model"]
    assert "--input_layer_shape=1,32:1,32" in calls["benchmark_model"] and "--num_threads=4" in calls["benchmark_model"]
    assert not (fake_tools / "device" / tflite_bundle.lstrip("/")).exists(), "bundles are removed after each run"
    results = load_results(tmp_path / "out")
    assert len(results["records"]) == 2


def test_android_device_lost_keeps_what_was_measured(fake_tools, runners, artifact_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_LOSE_AFTER", "1")
    first = artifact_factory("a", "executorch", ".pte")
    second = artifact_factory("b", "tflite", ".tflite")
    target = parse_target(f"android:{SERIAL}", workdir=WORKDIR)
    with pytest.raises(DeviceLost, match=r"is gone.*keeps the 1 measured.*missing: .*/b"):
        run_on_device(target, [first, second], tmp_path / "out", warmup=1, runs=3, runners=runners)
    kept = load_results(tmp_path / "out")["records"]
    assert [r["format"] for r in kept] == ["executorch"]


@pytest.mark.parametrize("state, message", [("none", "no android device"), ("unauthorized", "unauthorized"),
                                            ("offline", "is offline")])
def test_android_device_states(fake_tools, monkeypatch, state, message):
    monkeypatch.setenv("FAKE_ADB_STATE", state)
    with pytest.raises(PocketbertError, match=message):
        AndroidTarget(f"android:{SERIAL}").check()


def test_android_runner_and_storage_failures(fake_tools, runners, artifact_factory, tmp_path, monkeypatch):
    student = artifact_factory("s", "executorch", ".pte")
    target = parse_target(f"android:{SERIAL}", workdir=WORKDIR)
    with pytest.raises(PocketbertError, match="built for x86_64 but device .* is arm64-v8a"):
        run_on_device(target, [student], tmp_path / "o", runners={"executorch": runners["executorch"].with_name(
            "executor_runner_x86_64")})
    with pytest.raises(PocketbertError, match="does not exist"):
        run_on_device(target, [student], tmp_path / "o", runners={"executorch": tmp_path / "nowhere"})
    with pytest.raises(PocketbertError, match="pass --runner executorch=PATH"):
        run_on_device(target, [student], tmp_path / "o", runners={})
    monkeypatch.setenv("FAKE_DF", "df_android_full.txt")
    with pytest.raises(PocketbertError, match="has 0 MB free in .* needs"):
        run_on_device(target, [student], tmp_path / "o", runners=runners)
    assert not (tmp_path / "o" / "results.json").exists()


def test_devicectl_and_xctest_parsing():
    devices = parse_devicectl_list(json.loads((DATA / "devicectl_list_devices.json").read_text()))
    assert devices == [{"udid": UDID, "name": "Ana's iPhone", "model": "iPhone 15 Pro", "soc": "arm64e",
                        "os": "iOS 18.2 (22C152)", "state": "connected"}]
    record = parse_xctest_output((DATA / "xcodebuild_test_coreml.txt").read_text())
    assert record["latency_ms"]["n"] == 50 and record["runtime"] == "coreml" and len(record["logits"]) == 2
    with pytest.raises(PocketbertError, match="no POCKETBERT_RESULT"):
        parse_xctest_output("** TEST FAILED **")
    with pytest.raises(PocketbertError, match="unknown fields"):
        parse_xctest_output('POCKETBERT_RESULT_BEGIN {"runtime": "coreml", "speed": 1} POCKETBERT_RESULT_END')


def test_ios_end_to_end_through_xcodebuild(fake_tools, artifact_factory, tmp_path, monkeypatch):
    student = artifact_factory("student coreml", "coreml", ".mlpackage")
    target = parse_target(f"ios:{UDID}")
    records = run_on_device(target, [student], tmp_path / "out", warmup=10, runs=50)
    assert not Path(target.workdir).exists(), "the staged Swift package folder is removed after the run"
    record = records[0]
    assert record["status"] == "ok" and record["latency_ms"]["mean"] == pytest.approx(9.81)
    # The app's logits are judged on the host by the rulebook, against the source model's.
    check, = load_results(tmp_path / "out")["settings"]["output_checks"].values()
    assert check["passed"] is True and check["rule"] == rules.rule_for("fp32") and check["judged_on"] == "expected"
    assert record["device"]["model"] == "iPhone 15 Pro" and record["device"]["thermal"] == "nominal"
    call = json.loads((fake_tools / "xcode.json").read_text())
    assert call["argv"][:5] == ["test", "-scheme", "PocketbertBench", "-destination", f"platform=iOS,id={UDID}"]
    monkeypatch.setenv("FAKE_IOS_NONE", "1")
    with pytest.raises(PocketbertError, match="no iOS device"):
        IosTarget(f"ios:{UDID}").check()


def test_ios_package_is_complete():
    package = Path(bundle_module.__file__).with_name("ios")
    swift = (package / "Package.swift").read_text()
    assert "PocketbertBenchTests" in swift and ".copy(\"Bundle\")" in swift
    test = (package / "Tests" / "PocketbertBenchTests" / "PocketbertBenchTests.swift").read_text()
    assert "POCKETBERT_RESULT_BEGIN" in test and "POCKETBERT_RESULT_END" in test
    for key in ("trimmed_mean", "p99", "load_ms", "first_ms", "peak_rss_bytes"):
        assert key in test
