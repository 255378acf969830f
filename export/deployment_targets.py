"""--deployment-target checked before any model is loaded or converted (a bad name used to fail only after the
conversion, 13-16 s in). The targets themselves are defined where they are used: formats/coreml.py (Core ML,
`deployment_targets`) and formats/executorch.py (ExecuTorch's Core ML backend, any coremltools target); this
module only asks them.

Whether a valid target is too old for the export's features (iOS18 for int4, or for enumerated lengths on several
inputs) depends on the model's inputs and stays with the Core ML exporter."""
from __future__ import annotations

from pocketbert.errors import PocketbertError, require_module
from pocketbert.export.formats.coreml import deployment_targets

# The (format, backend) pairs that read --deployment-target; backend None: the format's only route.
TAKES_DEPLOYMENT_TARGET = (("coreml", None), ("executorch", "coreml"))


def check_deployment_target(format: str, backend: str | None, deployment_target: str | None) -> None:
    """One line when --deployment-target is given to an export that does not read it, or names no target the
    export knows; nothing when it is None."""
    if deployment_target is None:
        return
    if (format, None) not in TAKES_DEPLOYMENT_TARGET and (format, backend) not in TAKES_DEPLOYMENT_TARGET:
        raise PocketbertError(f"--deployment-target applies to Core ML only (--format coreml, or --format executorch "
                              f"--backend coreml); drop it for --format {format}"
                              + (f" --backend {backend}" if backend else ""))
    ct = require_module("coremltools", "coremltools")
    if format == "coreml":
        known = list(deployment_targets(ct))
        if deployment_target not in known:
            raise PocketbertError(f"unknown Core ML deployment target '{deployment_target}'; choose one of "
                                  f"{', '.join(known)}")
    elif getattr(ct.target, deployment_target, None) is None:
        raise PocketbertError(f"unknown Core ML deployment target '{deployment_target}'; use e.g. iOS17, iOS18 or "
                              "macOS14")
