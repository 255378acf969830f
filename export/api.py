"""`pocketbert export`: checkpoint -> validated artifact folder (artifact + manifest.json + tokenizer)."""
from __future__ import annotations

import datetime
from pathlib import Path

from tqdm import tqdm

from pocketbert.errors import PocketbertError
from pocketbert.export.base import ExportOptions
from pocketbert.export.registry import get_format
from pocketbert.export.task import OUTPUT_NAMES, exportable_qa
from pocketbert.fsutil import atomic_dir
from pocketbert.manifest import MANIFEST_SCHEMA, artifact_digest, tool_versions, write_manifest
from pocketbert.modeling import load_qa_model, save_tokenizer


def export_model(model: str, format: str, out: str | Path, precision: str = "fp32",
                 seq_lens: tuple[int, ...] = (128, 384), dynamic: bool = False, backend: str | None = None,
                 deployment_target: str | None = None, force: bool = False) -> dict:
    """Export `model` (checkpoint dir, hub id or preset) and validate it in its runtime; returns the manifest."""
    exporter = get_format(format)
    if precision not in exporter.precisions:
        raise PocketbertError(f"format {format} has no precision '{precision}'; choose one of {', '.join(exporter.precisions)}")
    if backend is not None and backend not in exporter.backends:
        choices = ", ".join(exporter.backends) or "none (drop --backend)"
        raise PocketbertError(f"format {format} has no backend '{backend}'; choose: {choices}")
    if dynamic and not exporter.supports_dynamic_length:
        raise PocketbertError(f"format {format} needs fixed lengths; drop --dynamic and pass --seq-len N ...")
    if not seq_lens or min(seq_lens) < 8:
        raise PocketbertError("sequence lengths must be at least 8 tokens (room for a question and some context)")
    out = Path(out)
    if out.exists() and not force:
        raise PocketbertError(f"output '{out}' already exists; pass --force to overwrite it")

    loaded = load_qa_model(model)
    max_positions = loaded.model.config.max_position_embeddings
    if max(seq_lens) > max_positions:
        raise PocketbertError(
            f"sequence length {max(seq_lens)} exceeds the model's max_position_embeddings ({max_positions}); "
            f"use --seq-len {max_positions} or less"
        )
    options = ExportOptions(precision=precision, seq_lens=tuple(sorted(set(seq_lens))), dynamic=dynamic,
                            max_seq_len=max_positions if dynamic else max(seq_lens),
                            backend=backend or (exporter.backends[0] if exporter.backends else None),
                            deployment_target=deployment_target)
    module = exportable_qa(loaded.model)

    # The bar closes (ending its line) before any error message is printed below it.
    with tqdm(total=3, desc=f"export {format}/{precision}", unit="step") as steps, \
            atomic_dir(out, force=force) as folder:
        artifact = folder / f"model{exporter.suffix}"
        steps.set_postfix_str("convert")
        graph = exporter.export(module, options, artifact)
        steps.update()
        inputs, outputs = exporter.io_spec(module, options)
        size, sha256 = artifact_digest(artifact)
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "task": "question-answering",
            "format": format,
            "backend": options.backend,
            "precision": precision,
            "artifact": artifact.name,
            "inputs": inputs,
            "outputs": outputs,
            "sequence": {"dynamic": dynamic, "min": options.min_seq_len if dynamic else min(options.seq_lens),
                         "max": options.max_seq_len, "lengths": list(options.seq_lens)},
            "parameters": loaded.source["parameters"],
            "file_bytes": size,
            "sha256": sha256,
            "source": loaded.source,
            "graph": graph,
            "options": options.to_dict(),
            "versions": tool_versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        steps.set_postfix_str("validate")
        manifest["validation"] = exporter.validate(artifact, manifest, module, loaded.tokenizer)
        steps.update()
        if manifest["validation"]["passed"] is False:
            raise PocketbertError(
                f"the {format} fp32 artifact differs from PyTorch by {manifest['validation']['max_abs_diff']:.2e} "
                f"(> {manifest['validation']['tolerance']:.0e}); nothing was written — report this export as a bug"
            )
        save_tokenizer(loaded.tokenizer, folder)
        manifest["tokenizer"] = sorted(p.name for p in folder.iterdir() if p != artifact)
        write_manifest(folder, manifest)
        steps.update()
    return manifest


def describe(manifest: dict) -> str:
    """One line a person reads after an export."""
    v = manifest["validation"]
    if v["ran"]:
        check = f"max |diff| {v['max_abs_diff']:.2e}, argmax agreement start {v['argmax_agreement']['start']:.0%} " \
                f"end {v['argmax_agreement']['end']:.0%}"
    else:
        check = f"not run here: {v['reason']}"
    return (f"{manifest['format']}/{manifest['backend'] or '-'}/{manifest['precision']}: "
            f"{manifest['file_bytes'] / 1e6:.1f} MB, validated on lengths {v['lengths']} ({check})")


__all__ = ["export_model", "describe", "OUTPUT_NAMES"]
