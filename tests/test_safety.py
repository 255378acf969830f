"""Nothing lost, nothing silently wrong: --force replaces only what pocketbert wrote, one writer per output, bad
output places and bad inputs are one line with nothing left behind, and a changed model file is never scored."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pocketbert.cli import main
from pocketbert.errors import PocketbertError
from pocketbert.fsutil import atomic_dir, written_by_pocketbert

SEQ = 32
CONTEXT = "The bridge over the river reopened in 2021 after four years of work, its engineers said."


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("pocketbert: error: ") and err.count("\n") == 1, err
    return err


def _leftovers(folder: Path) -> list[str]:
    """Hidden temps, old copies and lock files in `folder` (what a failed or refused run must not leave)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _squad(path: Path) -> str:
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": "q1", "question": "When did the bridge reopen?",
         "answers": [{"text": "2021", "answer_start": CONTEXT.index("2021")}]}]}]}]}
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def tiny_artifact(tiny_distilbert_qa, tmp_path_factory, export_once) -> Path:
    folder = tmp_path_factory.mktemp("safety") / "onnx"
    export_once(str(tiny_distilbert_qa), "onnx", folder, seq_lens=(SEQ,))
    return folder


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(tiny_artifact, copy)
    return copy


# --- 1. --force replaces only a folder pocketbert wrote ----------------------------------------------------------

def test_force_never_empties_a_folder_pocketbert_did_not_write(tmp_path, capsys, tiny_distilbert_qa, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "m"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    for command in (["export", str(tiny_distilbert_qa), "--format", "onnx", "--out", "m", "--force"],
                    ["data", "make-qa", "--out", "m", "--force"]):
        assert main(command) == 2, command
        err = _one_line_error(capsys)
        assert "not a folder pocketbert wrote" in err and "choose a new --out" in err
    with pytest.raises(PocketbertError, match="not a folder pocketbert wrote"):
        with atomic_dir(mine, force=True):
            pass
    assert (mine / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("record, text", [
    ("manifest.json", '{\n  "schema": "pocketbert.manifest/1",\n  "format": "onnx"\n}'),
    ("results.json", '{"schema": "pocketbert.results/1", "records": []}'),
    ("eval.json", '{"schema": "pocketbert.eval/1", "entries": []}'),
    ("data.json", '{"generator": "pocketbert.data.make_qa", "splits": {}}'),
    ("student.json", '{"generator": "pocketbert.distill.init"}'),
    ("run.json", "{}"),  # a training run
    ("manifest.json", '{"schema": "pocketbert.manifest/1", "form'),  # our record, cut short
])
def test_force_replaces_a_folder_pocketbert_wrote(tmp_path, record, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / record).write_text(text)
    (out / "model.onnx").write_bytes(b"old")
    assert written_by_pocketbert(out) == record
    with pytest.raises(PocketbertError, match="already exists; pass --force"):
        with atomic_dir(out):
            pass
    with atomic_dir(out, force=True) as tmp:
        (tmp / "model.onnx").write_bytes(b"new")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"] and _leftovers(tmp_path) == []


def test_a_lookalike_record_does_not_make_a_folder_pocketbert_s(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"schema": "someone-else/1"}')
    (out / "results.json").write_text('{"records": []}')
    assert written_by_pocketbert(out) is None
    with pytest.raises(PocketbertError, match="not a folder pocketbert wrote"):
        with atomic_dir(out, force=True):
            pass
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "results.json"]


def test_outputs_pocketbert_writes_carry_the_record_that_lets_force_replace_them(tiny_artifact, tmp_path):
    assert written_by_pocketbert(tiny_artifact) == "manifest.json"
    from pocketbert.bench.studies.op_profile import profile_models

    profile_models([str(tiny_artifact)], tmp_path / "profile", seq_len=SEQ, warmup=0, runs=1)
    assert written_by_pocketbert(tmp_path / "profile") is not None  # its results file names pocketbert's schema


def test_an_empty_folder_may_be_replaced_with_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with atomic_dir(out, force=True) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"


# --- 2. one writer per output ------------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from pocketbert import fsutil

    fsutil.current_command = "pocketbert export ckpt --format onnx --out " + sys.argv[1]
    with fsutil.atomic_dir(sys.argv[1]) as tmp:
        (tmp / "partial.bin").write_bytes(b"x" * 1000)
        print("writing", flush=True)
        time.sleep(60)
""")


def _start_holder(out: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    return process


def test_a_second_writer_of_the_same_output_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "artifact"
    holder = _start_holder(out)
    try:
        for force in (False, True):
            with pytest.raises(PocketbertError) as err:
                with atomic_dir(out, force=force):
                    pass
            message = str(err.value)
            assert f"pid {holder.pid}" in message and "pocketbert export ckpt --format onnx" in message
            assert "being written right now" in message and "\n" not in message
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_a_lock_left_by_kill_9_blocks_nobody_and_is_removed_by_the_next_writer(tmp_path):
    out = tmp_path / "artifact"
    holder = _start_holder(out)
    holder.kill()  # SIGKILL: the lock file stays, the kernel drops the lock
    holder.wait(timeout=60)
    assert (tmp_path / ".artifact.lock").exists()
    with atomic_dir(out) as tmp:
        (tmp / "model.bin").write_text("done")
    assert (out / "model.bin").read_text() == "done" and _leftovers(tmp_path) == []


def test_two_exports_to_the_same_out_at_once_do_not_both_succeed(tiny_distilbert_qa, tmp_path):
    """Both start before either has written: the second is refused (or finds the first's output), never a silent
    replacement of one by the other."""
    out = tmp_path / "both"
    command = [sys.executable, "-m", "pocketbert.cli", "export", str(tiny_distilbert_qa), "--format", "onnx",
               "--seq-len", str(SEQ), "--out", str(out)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2).strip().splitlines()[-1]
    assert "being written right now by pid" in refusal or "already exists" in refusal, refusal
    assert (out / "manifest.json").is_file() and _leftovers(tmp_path) == []


# --- 3. output places that cannot be used: one line, nothing left --------------------------------------------------

@pytest.mark.parametrize("given", [".", "..", "./", "sub/..", "/"])
def test_out_that_is_the_current_folder_or_holds_it_is_refused(tmp_path, monkeypatch, capsys, given,
                                                                 tiny_distilbert_qa):
    work = tmp_path / "work"
    work.mkdir()
    (work / "sub").mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(PocketbertError, match="current folder or one that holds it"):
        with atomic_dir(given, force=True):
            pass
    assert main(["export", str(tiny_distilbert_qa), "--format", "onnx", "--out", given, "--force"]) == 2
    assert "current folder" in _one_line_error(capsys)
    assert _leftovers(work) == [] and _leftovers(tmp_path) == [] and sorted(os.listdir(work)) == ["sub"]


def test_a_training_run_never_takes_the_working_folder_as_its_out(tmp_path, monkeypatch):
    from pocketbert.distill.trainer import TrainConfig, prepare_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")  # a finished run: --force would delete it and start over
    monkeypatch.chdir(run)
    with pytest.raises(PocketbertError, match="current folder"):
        prepare_run_dir(".", TrainConfig(force=True))
    assert (run / "run.json").is_file()


def test_a_read_only_output_with_force_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "manifest.json").write_text('{"schema": "pocketbert.manifest/1"}')
    (out / "sub").mkdir()
    real_access = os.access
    if os.geteuid() == 0:  # root writes through permission bits: report the folder read-only the way a user sees it
        monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(out / "sub") else
                            real_access(path, mode))
    else:
        (out / "sub").chmod(0o555)
    try:
        with pytest.raises(PocketbertError, match=r"is read-only; make it writable \(chmod -R u\+w") as err:
            with atomic_dir(out, force=True):
                pass
        assert "\n" not in str(err.value) and str(out / "sub") in str(err.value)
        assert _leftovers(tmp_path) == [] and sorted(p.name for p in out.iterdir()) == ["manifest.json", "sub"]
    finally:
        (out / "sub").chmod(0o755)


def test_a_swap_the_file_system_refuses_puts_everything_back(tmp_path, monkeypatch):
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "manifest.json").write_text('{"schema": "pocketbert.manifest/1"}')
    real_rename = Path.rename

    def rename(self, target):
        if Path(target) == out and ".tmp-" in self.name:  # the new output cannot go in; the old one can go back
            raise PermissionError(13, "Permission denied")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(PocketbertError, match="nothing was changed") as err:
        with atomic_dir(out, force=True) as tmp:
            (tmp / "new.bin").write_text("new")
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] and _leftovers(tmp_path) == []


def test_out_that_is_a_file_or_a_folder_gets_the_hint_that_works(tmp_path, capsys, tiny_distilbert_qa):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["export", str(tiny_distilbert_qa), "--format", "onnx", "--out", str(notes)]) == 2
    err = _one_line_error(capsys)
    assert "is a file, not a folder" in err and "--force" not in err
    folder = tmp_path / "texts"
    folder.mkdir()
    assert main(["data", "text", "--out", str(folder)]) == 2
    err = _one_line_error(capsys)
    assert "is a folder" in err and "text.txt" in err and "--force" not in err
    assert notes.read_text() == "mine" and list(folder.iterdir()) == []


def test_an_output_that_is_a_link_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "manifest.json").write_text('{"schema": "pocketbert.manifest/1"}')
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(PocketbertError, match="symbolic link"):
        with atomic_dir(tmp_path / "link", force=True):
            pass
    assert (tmp_path / "link").is_symlink() and (real / "manifest.json").is_file()


# --- 4. an artifact's sha256 is checked before it is scored, timed or pushed ---------------------------------------

def _change_a_weight(folder: Path) -> Path:
    """Rewrite the ONNX file with one weight changed: it still loads and runs, but is not what was exported."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from pocketbert.manifest import read_manifest

    path = folder / read_manifest(folder)["artifact"]
    model = onnx.load(str(path))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 1.0
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(path))
    return path


def test_a_changed_but_loadable_model_file_is_refused_before_it_is_scored_or_timed(artifact_copy, tmp_path, capsys):
    from pocketbert.manifest import read_manifest

    changed = _change_a_weight(artifact_copy)
    with pytest.raises(PocketbertError, match="is not the file that was exported") as err:
        read_manifest(artifact_copy)
    assert str(changed) in str(err.value) and "re-export" in str(err.value)
    dev = _squad(tmp_path / "dev.json")
    for command in (["eval", str(artifact_copy), "--data", dev, "--max-seq-len", str(SEQ), "--out", str(tmp_path / "e")],
                    ["bench", str(artifact_copy), "--no-baseline", "--seq-len", str(SEQ), "--runs", "1",
                     "--out", str(tmp_path / "b")],
                    ["bench", "op-profile", str(artifact_copy), "--seq-len", str(SEQ), "--out", str(tmp_path / "p")],
                    ["device", "run", str(artifact_copy), "--target", "host", "--out", str(tmp_path / "d")]):
        assert main(command) == 2, command
        err = _one_line_error(capsys)
        assert str(changed) in err and "re-export" in err, err
    assert not any((tmp_path / name).exists() for name in "ebpd")
    # --no-verify: the user's choice to use it as it is.
    assert main(["eval", str(artifact_copy), "--data", dev, "--max-seq-len", str(SEQ), "--no-verify"]) == 0
    assert main(["bench", str(artifact_copy), "--no-baseline", "--seq-len", str(SEQ), "--runs", "1", "--warmup", "0",
                 "--modes", "model", "--out", str(tmp_path / "b"), "--no-verify"]) == 0
    # The fresh-process load probe honours --no-verify too, so the row is timed, not failed.
    timed = json.loads((tmp_path / "b" / "results.json").read_text())["records"]
    assert [r["status"] for r in timed if r["format"] == "onnx"] == ["ok"], timed
    assert read_manifest(artifact_copy, verify=False)["format"] == "onnx"


def test_bench_and_device_run_never_write_into_a_users_own_folder(artifact_copy, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes")
    for command in (["bench", str(artifact_copy), "--no-baseline", "--seq-len", str(SEQ), "--runs", "1",
                     "--warmup", "0", "--modes", "model", "--out", str(mine)],
                    ["device", "run", str(artifact_copy), "--target", "host", "--runs", "1", "--warmup", "0",
                     "--out", str(mine)]):
        assert main(command) == 2, command
        assert "is not a folder pocketbert wrote" in _one_line_error(capsys)
    assert [p.name for p in mine.iterdir()] == ["report.md"] and (mine / "report.md").read_text() == "my own notes"


def test_an_intact_artifact_is_hashed_once_per_process(tiny_artifact, monkeypatch):
    from pocketbert import manifest as manifest_module

    manifest_module.read_manifest(tiny_artifact)
    calls = []
    monkeypatch.setattr(manifest_module, "artifact_digest", lambda path: calls.append(path))
    manifest_module.read_manifest(tiny_artifact)  # unchanged since it was checked: no second hash
    assert calls == []


def test_export_itself_reads_no_manifest(tiny_distilbert_qa, tmp_path, monkeypatch):
    """Export computes the sha256 of the file it just wrote; it never has to verify it (no --no-verify needed)."""
    from pocketbert import manifest as manifest_module
    from pocketbert.export.api import export_model

    monkeypatch.setattr(manifest_module, "verify_artifact", lambda *a: pytest.fail("export verified its own file"))
    assert export_model(str(tiny_distilbert_qa), "onnx", tmp_path / "o", seq_lens=(SEQ,))["sha256"]


# --- 5. a malformed manifest is one line ---------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    lambda m: [],
    lambda m: "manifest",
    lambda m: {k: v for k, v in m.items() if k != "artifact"},
    lambda m: {k: v for k, v in m.items() if k != "sequence"},
    lambda m: {**m, "artifact": 42},
    lambda m: {**m, "artifact": "../../etc/passwd"},
    lambda m: {**m, "sequence": "384"},
    lambda m: {**m, "sequence": {**m["sequence"], "lengths": "384"}},
    lambda m: {**m, "inputs": {"input_ids": "int64"}},
    lambda m: {**m, "format": ["onnx"]},
    lambda m: {**m, "sha256": 5},
], ids=["list", "string", "no-artifact", "no-sequence", "artifact-int", "artifact-escapes", "sequence-string",
        "lengths-string", "inputs-dict", "format-list", "sha-int"])
def test_a_malformed_manifest_is_one_line(artifact_copy, tmp_path, capsys, change):
    from pocketbert.manifest import read_manifest

    path = artifact_copy / "manifest.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(PocketbertError) as err:
        read_manifest(artifact_copy)
    assert "\n" not in str(err.value) and "manifest" in str(err.value)
    assert main(["bench", str(artifact_copy), "--no-baseline", "--out", str(tmp_path / "b")]) == 2
    _one_line_error(capsys)
    assert not (tmp_path / "b").exists()


# --- 6. a bad config.json is one line in export, bench and eval -----------------------------------------------------

@pytest.mark.parametrize("damage", ["not json", "dim abc", "negative layers"])
def test_a_bad_config_is_one_line_in_export_bench_and_eval(tiny_distilbert_qa, tmp_path, capsys, damage):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_distilbert_qa, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    if damage == "not json":
        (checkpoint / "config.json").write_text("{not json")
    else:
        config.update({"dim": "abc"} if damage == "dim abc" else {"n_layers": -1})
        (checkpoint / "config.json").write_text(json.dumps(config))
    dev = _squad(tmp_path / "dev.json")
    for command in (["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "x")],
                    ["bench", str(checkpoint), "--no-baseline", "--out", str(tmp_path / "b")],
                    ["eval", str(checkpoint), "--data", dev, "--out", str(tmp_path / "e")]):
        assert main(command) == 2, command
        assert "config.json" in _one_line_error(capsys)
    assert not any((tmp_path / name).exists() for name in "xbe")


# --- 7. a checkpoint's tokenizer is checked before work starts -----------------------------------------------------

def _without_tokenizer(source: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, folder / name)
    return folder


def test_a_checkpoint_without_tokenizer_files_is_refused_not_exported_with_five_tokens(tiny_distilbert_qa, tmp_path,
                                                                                          capsys):
    checkpoint = _without_tokenizer(tiny_distilbert_qa, tmp_path / "no-tokenizer")
    dev = _squad(tmp_path / "dev.json")
    for command in (["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "x")],
                    ["bench", str(checkpoint), "--no-baseline", "--out", str(tmp_path / "b")],
                    ["finetune", "qa", str(checkpoint), "--train", dev, "--dev", dev, "--out", str(tmp_path / "run")]):
        assert main(command) == 2, command
        err = _one_line_error(capsys)
        assert str(checkpoint) in err and "save_pretrained" in err and "[UNK]" in err, err
    assert not any((tmp_path / name).exists() for name in ("x", "b", "run"))


def test_a_tokenizer_larger_than_the_embedding_is_one_line(tiny_distilbert_qa, tmp_path, capsys):
    from transformers import AutoModelForQuestionAnswering

    from pocketbert.modeling import load_config

    config = load_config(tiny_distilbert_qa)
    config.vocab_size = 1000  # the embedded teacher's tokenizer has 30522 tokens
    checkpoint = tmp_path / "small-embedding"
    AutoModelForQuestionAnswering.from_config(config).save_pretrained(str(checkpoint))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_distilbert_qa / name, checkpoint / name)
    dev = _squad(tmp_path / "dev.json")
    capsys.readouterr()  # the save's own progress bar
    for command in (["export", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "x")],
                    ["finetune", "qa", str(checkpoint), "--train", dev, "--dev", dev, "--out", str(tmp_path / "run")]):
        assert main(command) == 2, command
        err = _one_line_error(capsys)
        assert "30522 tokens" in err and "only 1000 rows" in err, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "run").exists()


def test_presets_keep_the_embedded_teachers_tokenizer():
    from pocketbert.modeling import load_qa_model

    loaded = load_qa_model("distilbert-base")
    assert len(loaded.tokenizer) == 30522 and loaded.source["random_weights"]


# --- 8. eval of several models writes its output folder as a whole ------------------------------------------------

def test_eval_with_a_bad_model_leaves_no_half_written_output(artifact_copy, tiny_artifact, tmp_path, capsys):
    dev = _squad(tmp_path / "dev.json")
    out = tmp_path / "new"
    assert main(["eval", str(tiny_artifact), str(tmp_path / "missing"), "--data", dev, "--max-seq-len", str(SEQ),
                 "--out", str(out)]) == 2
    _one_line_error(capsys)
    assert not out.exists()
    model = artifact_copy / json.loads((artifact_copy / "manifest.json").read_text())["artifact"]
    model.write_bytes(model.read_bytes()[:1000])  # cut short
    for verify in ([], ["--no-verify"]):  # refused up front by its sha256; or, unchecked, when it fails to load
        assert main(["eval", str(tiny_artifact), str(artifact_copy), "--data", dev, "--max-seq-len", str(SEQ),
                     "--out", str(out), *verify]) == 2
        err = capsys.readouterr().err  # unchecked, the good model runs first: its progress bars come before the error
        assert err.count("pocketbert: error: ") == 1 and str(model) in err.splitlines()[-1]
        assert err.splitlines()[-1].startswith("pocketbert: error: ") and "Traceback" not in err
        assert not out.exists() and _leftovers(tmp_path) == []


def test_eval_into_an_existing_output_changes_it_all_at_once(tiny_artifact, artifact_copy, tmp_path, capsys):
    dev = _squad(tmp_path / "dev.json")
    out = tmp_path / "scores"
    assert main(["eval", str(tiny_artifact), "--data", dev, "--max-seq-len", str(SEQ), "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "my-notes.md").write_text("kept")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    model = artifact_copy / json.loads((artifact_copy / "manifest.json").read_text())["artifact"]
    model.write_bytes(model.read_bytes()[:1000])
    assert main(["eval", str(tiny_artifact), str(artifact_copy), "--data", dev, "--max-seq-len", str(SEQ),
                 "--out", str(out), "--no-verify"]) == 2
    capsys.readouterr()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["eval", str(tiny_artifact), "--data", dev, "--max-seq-len", str(SEQ), "--out", str(out)]) == 0
    assert (out / "my-notes.md").read_text() == "kept" and (out / "eval.json").is_file()
    assert _leftovers(tmp_path) == []


def test_eval_does_not_add_to_a_folder_pocketbert_did_not_write(tiny_artifact, tmp_path, capsys):
    dev = _squad(tmp_path / "dev.json")
    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    assert main(["eval", str(tiny_artifact), "--data", dev, "--max-seq-len", str(SEQ), "--out", str(mine)]) == 2
    assert "not a folder pocketbert wrote" in _one_line_error(capsys)
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


# --- kill -9 in the middle of a real export ------------------------------------------------------------------------

def test_an_export_killed_mid_way_leaves_nothing_the_next_export_does_not_clear(tiny_distilbert_qa, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "pocketbert.cli", "export", str(tiny_distilbert_qa), "--format", "onnx",
               "--seq-len", str(SEQ), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(tmp_path.glob(".killed.tmp-*")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (out / "manifest.json").exists()
    assert main(command[3:]) == 0
    assert (out / "manifest.json").is_file() and _leftovers(tmp_path) == []
