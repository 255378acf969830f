"""config.json beside every artifact: the platform loaders (optimum, transformers.js) read the architecture
(model_type) and their own settings from it, as they do in a Hugging Face model folder."""
from __future__ import annotations

import json
from pathlib import Path

MODEL_CONFIG_NAME = "config.json"


def write_model_config(folder: Path, config, loader_entries: dict) -> Path:
    """The source model's config.json (what `save_pretrained` writes), plus the format's loader entries."""
    config.save_pretrained(str(folder))
    path = Path(folder) / MODEL_CONFIG_NAME
    if loader_entries:
        data = json.loads(path.read_text())
        data.update(loader_entries)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
