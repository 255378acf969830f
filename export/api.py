"""`pocketbert export`: checkpoint -> validated artifact folder (artifact + manifest.json + tokenizer)."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from pocketbert.errors import PocketbertError, native_chatter_held_back
from pocketbert.export.base import DEFAULT_SEQ_LENS, ExportOptions, validation_lengths
from pocketbert.export.calibration import check_calibration_file
from pocketbert.export.deployment_targets import check_deployment_target
from pocketbert.export.loader_files import MODEL_CONFIG_NAME, write_loader_files
from pocketbert.export.registry import format_class, format_names, get_format
from pocketbert.export.task import MASK_CONVERSIONS, check_wrapper, exportable, refusal, refusal_reason
from pocketbert.fsutil import atomic_dir, check_replaceable
from pocketbert.manifest import build_manifest, write_manifest
from pocketbert.modeling import ENCODERS, load_model, max_sequence_length, save_tokenizer, tokenizer_contract
from pocketbert.tasks import label_names, task_of_folder


def export_model(model: str, format: str, out: str | Path, precision: str = "fp32",
                 seq_lens: tuple[int, ...] = DEFAULT_SEQ_LENS, dynamic: bool = False, backend: str | None = None,
                 deployment_target: str | None = None, calibration: str | Path | None = None,
                 force: bool = False) -> dict:
    """Export `model` (checkpoint dir, hub id or preset; a question-answering or text-classification head, read from
    its config: pocketbert/tasks.py) and validate it in its runtime; returns the manifest.

    `calibration`: a SQuAD v1.1 file (QA) or a labelled-text file (classification) whose inputs calibrate a
    statically quantized precision (int8-static, a16w8)."""
    exporter = get_format(format)
    if precision not in exporter.precisions:
        raise PocketbertError(f"format {format} has no precision '{precision}'; choose one of {', '.join(exporter.precisions)}")
    if backend is not None and backend not in exporter.backends:
        choices = ", ".join(exporter.backends) or "none (drop --backend)"
        raise PocketbertError(f"format {format} has no backend '{backend}'; choose: {choices}")
    backend = backend or (exporter.backends[0] if exporter.backends else None)
    exporter.check_precision(precision, backend)
    calibration_checked_for = None
    check_deployment_target(format, backend, deployment_target)
    if calibration is not None:
        if precision not in exporter.calibrated_precisions:
            calibrated = [f"{f.name} {p}" for f in map(format_class, format_names()) for p in f.calibrated_precisions]
            raise PocketbertError(f"--calibration applies only to {', '.join(calibrated)}; drop it for "
                                  f"{format} {precision}")
        # The task from a local checkpoint's config.json, so a file of the wrong kind fails before the model loads.
        calibration_checked_for = task_of_folder(model)
        check_calibration_file(calibration, task=calibration_checked_for)
        calibration = str(Path(calibration).resolve())
    if dynamic and not exporter.supports_dynamic_length:
        raise PocketbertError(f"format {format} needs fixed lengths; drop --dynamic and pass --seq-len N ...")
    if not seq_lens or min(seq_lens) < 8:
        raise PocketbertError("sequence lengths must be at least 8 tokens (room for a question and some context)")
    # Before the model loads: new, or with --force a folder pocketbert wrote; never '.', a file, a link or read-only.
    out = check_replaceable(out, force)

    loaded = load_model(model)
    refused = refusal(loaded.model.config, format, precision)
    if refused:
        raise PocketbertError(refused)
    max_positions = max_sequence_length(loaded.model.config)
    if max(seq_lens) > max_positions:
        raise PocketbertError(
            f"sequence length {max(seq_lens)} exceeds what the model's position embeddings allow ({max_positions}); "
            f"use --seq-len {max_positions} or less"
        )
    options = ExportOptions(precision=precision, seq_lens=tuple(sorted(set(seq_lens))), dynamic=dynamic,
                            max_seq_len=max_positions if dynamic else max(seq_lens),
                            backend=backend, deployment_target=deployment_target, calibration=calibration)
    module = exportable(loaded.model)
    task = module.task
    if calibration is not None and calibration_checked_for is None:  # a preset or hub id: its task is known only now
        check_calibration_file(calibration, task=task)
    sequence = {"dynamic": dynamic, "min": options.min_seq_len if dynamic else min(options.seq_lens),
                "max": options.max_seq_len, "lengths": list(options.seq_lens)}
    # Before any conversion: a wrapper that changes the model would make every artifact wrong the same way.
    wrapper_check = check_wrapper(module, loaded.tokenizer, validation_lengths({"sequence": sequence}))

    # The bar closes (ending its line) before any error message is printed below it.
    with tqdm(total=3, desc=f"export {format}/{precision}", unit="step") as steps, \
            atomic_dir(out, force=force) as folder:
        accepted = exporter.accepted_lengths(module, options)
        contract = tokenizer_contract(loaded.tokenizer, exporter.input_names(module), options.max_seq_len,
                                      single_length=single_length(accepted), task=task)
        # Tokenizer and config.json first: platform loaders open the folder as is, and formats that pack the
        # vocabulary into the artifact (TFLite metadata) read it from the folder while exporting.
        checkpoint = Path(loaded.source["checkpoint"])
        save_tokenizer(loaded.tokenizer, folder, contract, source_dir=checkpoint if checkpoint.is_dir() else None)
        write_loader_files(folder, loaded.model.config, exporter.loader_config(options))
        labels = label_names(loaded.model.config) if task.labels_file else None
        if labels is not None:  # the label names in logit order, one per line: what the platforms' loaders read
            (folder / task.labels_file).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
        artifact = folder / exporter.artifact_name(options)
        artifact.parent.mkdir(parents=True, exist_ok=True)
        steps.set_postfix_str("convert")
        with native_chatter_held_back():  # the converters' own logs; shown only if the conversion crashes
            graph = exporter.export(module, options, artifact)
        steps.update()
        inputs, outputs = exporter.io_spec(module, options)
        manifest = build_manifest(
            folder, artifact, format=format, backend=options.backend, precision=precision, inputs=inputs,
            outputs=outputs, sequence=sequence, source=loaded.source, runtime_settings=exporter.runtime_settings,
            task=task.name, **({"labels": labels, "labels_file": task.labels_file} if labels is not None else {}),
            accepted_lengths=accepted,
            attention_mask={
                "input": "attention_mask", "values": "1 = real token, 0 = padding (the tokenizer's own mask)",
                "dtype": exporter.input_dtype, "conversion": MASK_CONVERSIONS[module.mask_kind],
                **({"local_window_half_width": module.local_window} if module.local_window else {}),
            },
            tokenizer_contract=contract, graph=graph, options=options.to_dict())
        steps.set_postfix_str("validate")
        with native_chatter_held_back():  # the runtimes' start-up notes (XNNPACK delegate, cpuinfo)
            manifest["validation"] = exporter.validate(artifact, manifest, module, loaded.tokenizer)
        manifest["validation"]["wrapper_vs_original"] = wrapper_check
        steps.update()
        if manifest["validation"]["passed"] is False:
            raise PocketbertError(validation_failure(manifest))
        manifest["tokenizer"] = sorted(p.name for p in folder.iterdir()
                                       if p.name not in (artifact.relative_to(folder).parts[0], MODEL_CONFIG_NAME))
        manifest["config"] = MODEL_CONFIG_NAME
        write_manifest(folder, manifest)
        steps.update()
    return manifest


def support_table() -> str:
    """Markdown: which architecture exports to which format and precision (`pocketbert export --list-support`).

    Every cell not refused here is exported and compared with the original transformers model by
    tests/test_architectures.py (fp32 everywhere, int8 for a subset); refused cells fail up front with the
    reason in the footnote.
    """

    formats = [format_class(name) for name in format_names()]
    lines = ["| Architecture | mask | " + " | ".join(f"{f.name} ({f.runtime})" for f in formats) + " |",
             "|---" * (len(formats) + 2) + "|"]
    notes: list[str] = []
    for encoder in ENCODERS.values():
        cells = []
        for exporter in formats:
            reasons = {p: refusal_reason(encoder.model_type, exporter.name, p) for p in exporter.precisions}
            for reason in reasons.values():
                if reason is not None and reason not in notes:
                    notes.append(reason)
            if len(set(reasons.values())) == 1 and None not in reasons.values():
                cells.append(f"refused [{notes.index(reasons[exporter.precisions[0]]) + 1}]")
                continue
            cells.append(" ".join(p if reason is None else f"~~{p}~~ [{notes.index(reason) + 1}]"
                                  for p, reason in reasons.items()))
        lines.append(f"| {encoder.display_name} | {encoder.mask} | " + " | ".join(cells) + " |")
    lines += [""] + [f"[{i}] {note}" for i, note in enumerate(notes, 1)] + [
        "", "Every export is compared with the original transformers model in its own runtime; "
        "tests/test_architectures.py exports each architecture to every format (fp32; Core ML fp16), to ONNX and TFLite "
        "a16w8, and to int8 for DeBERTa-v2 and ModernBERT (BERT and DistilBERT int8 in the format tests); ExecuTorch int4 for DistilBERT, "
        "DeBERTa-v2 and ModernBERT in tests/test_executorch_int4.py, ONNX int4 and int8-static for DistilBERT in "
        "tests/test_export_onnx_int4.py and tests/test_onnx_int8_static.py, TFLite int8-static and int4 for DistilBERT "
        "in tests/test_tflite_int_precisions.py, Core ML int4 for DistilBERT in tests/test_coreml_int4.py."]
    return "\n".join(lines).rstrip() + "\n"


def single_length(accepted: dict) -> int | None:
    """The one sequence length the artifact takes, if it takes only one (its tokenizer.json then pads to it)."""
    sequence = accepted["sequence"]
    if sequence["kind"] == "static":
        return sequence["length"]
    lengths = list(sequence.get("signatures", {}).values()) or sequence.get("lengths", [])
    return lengths[0] if len(lengths) == 1 else None


def validation_failure(manifest: dict) -> str:
    """The one line an export that answers unlike its original model fails with."""
    v, source = manifest["validation"], manifest["source"]["architecture"]
    what = f"the {manifest['format']} {manifest['precision']} artifact"
    if v["tolerance"] is not None:
        return (f"{what} differs from the original {source} by {v['max_abs_diff']:.2e} (> {v['tolerance']:.0e}); "
                "nothing was written — report this export as a bug")
    answers = v["confident_answers"]
    return (f"{what} picks the original {source}'s {v.get('choice', 'answer position')} in only "
            f"{answers['agreement']:.0%} of the {answers['confident_positions']} places where that model is confident (at least "
            f"{answers['min_agreement']:.0%} needed); nothing was written — try another precision, or report it")


def describe(manifest: dict) -> str:
    """One line a person reads after an export."""
    v = manifest["validation"]
    if v["ran"]:
        agreement = " ".join(f"{side} {share:.0%}" for side, share in v["argmax_agreement"].items())
        check = f"max |diff| {v['max_abs_diff']:.2e}, argmax agreement {agreement}"
        answers = v.get("confident_answers")
        choice = v.get("choice", "answer position")
        if answers and answers["passed"] is not None:
            check += (f"; same {choice} as the original where it is confident: {answers['agreement']:.0%} of "
                      f"{answers['confident_positions']}")
        elif answers:  # a random-weight model is rarely confident: nothing to judge the answers by
            check += (f"; too few confident choices ({answers['confident_positions']}) to judge the {choice}s: "
                      "`pocketbert eval` measures accuracy")
    else:
        check = f"not run here: {v['reason']}"
    return (f"{manifest.get('task', 'question-answering')} {manifest['format']}/{manifest['backend'] or '-'}/{manifest['precision']}: "
            f"{manifest['file_bytes'] / 1e6:.1f} MB, validated on lengths {v['lengths']} ({check})")


__all__ = ["export_model", "describe", "support_table"]
