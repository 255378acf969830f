"""The files beside every artifact that platform loaders (optimum, transformers.js) read, as in a Hugging Face
model folder: config.json (the architecture, model_type, and the loaders' own settings) and a tokenizer_config.json
without the call-time state some checkpoints carry."""
from __future__ import annotations

import json
from pathlib import Path

MODEL_CONFIG_NAME = "config.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
# Settings of some earlier tokenizer call or of where it was loaded from, saved along by save_pretrained
# (the embedded teacher's says max_length 128, stride 0): they contradict tokenizer.json's truncation and
# model_max_length, and loaders that read them would cut windows differently from the artifact's contract.
CALL_STATE_KEYS = ("max_length", "stride", "truncation_strategy", "pad_to_multiple_of", "is_local",
                   "local_files_only")


def write_loader_files(folder: Path, config, loader_entries: dict) -> None:
    """The source model's config.json (what `save_pretrained` writes) plus the format's loader entries; the call-time
    state dropped from the already saved tokenizer_config.json."""
    folder = Path(folder)
    config.save_pretrained(str(folder))
    _rewrite_json(folder / MODEL_CONFIG_NAME, add=loader_entries)
    if (folder / TOKENIZER_CONFIG_NAME).is_file():
        _rewrite_json(folder / TOKENIZER_CONFIG_NAME, drop=CALL_STATE_KEYS)


def _rewrite_json(path: Path, add: dict | None = None, drop: tuple[str, ...] = ()) -> None:
    data = {key: value for key, value in json.loads(path.read_text()).items() if key not in drop}
    data.update(add or {})
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
