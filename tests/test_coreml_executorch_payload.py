"""The ExecuTorch .pte lowered to the Core ML delegate: its payload is an ML Program, extracted and run by the
Core ML reference evaluator, so the .pte is validated numerically off Apple devices too."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("coremltools")
pytest.importorskip("executorch")

from pocketbert.errors import NotRunnableHere  # noqa: E402
from pocketbert.export.api import export_model  # noqa: E402
from pocketbert.export.coreml_mil import EVALUATOR_RUNTIME  # noqa: E402
from pocketbert.export.coreml_mil.executorch_payload import delegate_payloads, extract_core_ml_package, load_delegate_program, whole_program_delegated  # noqa: E402

LENGTH = 32


@pytest.fixture(scope="module")
def coreml_pte(tmp_path_factory, tiny_distilbert_qa):
    out = tmp_path_factory.mktemp("pte") / "coreml-fp16"
    return out, export_model(str(tiny_distilbert_qa), "executorch", out, precision="fp16", backend="coreml",
                             seq_lens=(LENGTH,))


def test_the_payload_is_an_ml_program_package(coreml_pte, tmp_path):
    out, manifest = coreml_pte
    payloads = delegate_payloads(out / manifest["artifact"])
    assert len(payloads) == 1 and len(payloads[0]) > 100_000  # the weights travel inside the payload
    package, metadata = extract_core_ml_package(out / manifest["artifact"], tmp_path / "delegate")
    assert package.name == "model.mlpackage" and (package / "Manifest.json").is_file()
    import coremltools as ct

    assert ct.utils.load_spec(str(package)).WhichOneof("Type") == "mlProgram"


def test_export_validates_the_pte_through_the_evaluator(coreml_pte):
    validation = coreml_pte[1]["validation"]
    assert validation["ran"] is True and validation["runner"]["runtime"] == EVALUATOR_RUNTIME
    assert validation["runner"]["delegate"]["payload"] == "model.mlpackage"
    assert validation["max_abs_diff"] < 0.05 and validation["argmax_agreement"]["start"] >= 0.5


def test_evaluated_delegate_matches_pytorch(coreml_pte, tiny_distilbert_qa):
    from pocketbert.export.task import exportable
    from pocketbert.modeling import load_qa_model
    from pocketbert.reference import torch_reference, validation_inputs

    out, manifest = coreml_pte
    program, info = load_delegate_program(out / manifest["artifact"], manifest)
    assert info["runtime"] == EVALUATOR_RUNTIME and "ExecuTorch builds for iOS/macOS" in info["why"]
    loaded = load_qa_model(str(tiny_distilbert_qa))
    module = exportable(loaded.model)
    inputs = validation_inputs(loaded.tokenizer, module.input_names, LENGTH)
    expected = torch_reference(module, inputs)
    row = {name: inputs[name][:1] for name in program.inputs}  # by name: the delegate orders them its own way
    got = [program(row)[name] for name in program.outputs]
    for ours, theirs in zip(got, expected):
        assert np.abs(ours - theirs[:1]).max() < 0.05


def test_a_split_program_is_not_evaluated_from_its_delegate_alone():
    manifest = {"graph": {"delegate_segments": 2, "non_delegated_ops": 3}}
    assert "2 Core ML delegate segment(s) and 3 op(s)" in whole_program_delegated(manifest)
    with pytest.raises(NotRunnableHere, match="evaluating the delegate alone would not give the program's outputs"):
        load_delegate_program("unused.pte", manifest)
