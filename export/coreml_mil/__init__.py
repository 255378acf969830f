"""A numpy reference evaluator for Core ML ML Programs, so Core ML artifacts are checked numerically off macOS.

Not a format module (those live in export/formats/ and register themselves); the Core ML format uses it to
load and run an .mlpackage on any OS. Its results are labelled EVALUATOR_RUNTIME wherever they are reported:
they say what the saved program computes, not how fast Core ML computes it.
"""
from pocketbert.export.coreml_mil.evaluator import EVALUATOR_RUNTIME, MILProgram, NonFiniteValue, UnsupportedProgram, load_program

__all__ = ["EVALUATOR_RUNTIME", "MILProgram", "NonFiniteValue", "UnsupportedProgram", "load_program"]
