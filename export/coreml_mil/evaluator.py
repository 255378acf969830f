"""Run a saved Core ML ML Program op by op with numpy: load with coremltools' own milproto loader, evaluate
every op of the main function in order, check every intermediate for inf and NaN.

Precision. Each op is computed in float32 from its inputs' exact values and the result is rounded once to
the dtype the program declares for that op's output (numpy's float32 -> float16 conversion rounds to
nearest, ties to even). For add, sub, mul, div and sqrt this *is* IEEE fp16 arithmetic: float32 carries
more than 2 * 11 + 2 significant bits, so rounding to float32 first and then to float16 cannot round twice
the wrong way. Reductions (matmul, layer_norm, softmax, reduce_*) accumulate in float32 and round the
result once, which is what fp16 kernels with fp32 accumulators do (Apple GPUs and BNNS on the CPU); the
Neural Engine's accumulator is not documented, so its results may differ from ours by a few fp16 ulps.
We accumulate in float32, not float16, on purpose: products of two fp16 values are exact in float32, and
an fp16 accumulator would add an error no Core ML backend is known to make. Transcendentals (exp, erf,
tanh) are float32 then rounded, within one fp16 ulp of the exact result.

Casts are exact: float -> fp16 rounds to nearest even; integer casts must keep their value (a token id
that does not fit the uint16 gather index coremltools inserts is reported, not wrapped).
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pocketbert.errors import NotRunnableHere, PocketbertError, require_module
from pocketbert.export.coreml_mil.ops import OPS, OpError

EVALUATOR_RUNTIME = "reference evaluator (numpy), not Core ML"
WEIGHTS_DIR = Path("Data", "com.apple.CoreML", "weights")
# MIL dtype name -> numpy dtype of the values the evaluator holds (float tensors are held as float32).
STORAGE: dict[str, type[np.generic]] = {"fp16": np.float32, "fp32": np.float32, "fp64": np.float64, "bool": np.bool_, "int8": np.int8,
           "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
           "int64": np.int64, "int4": np.int8, "uint1": np.uint8, "uint2": np.uint8, "uint3": np.uint8,
           "uint4": np.uint8, "uint6": np.uint8}
ROUNDING = {"fp16": np.float16}  # float dtypes narrower than the float32 the evaluator computes in
STRUCTURAL = {"const"}  # ops whose value the loader itself reads from the package
# Ops whose outputs only rearrange or pick their inputs' values, in the same dtype: nothing to round, and no new
# inf or NaN can appear (infinities are carried over from their inputs). Skipping the rounding and the check
# keeps a 384-token fp16 DistilBERT-base call from copying every tensor twice more.
REARRANGING = {"reshape", "transpose", "expand_dims", "squeeze", "tile", "concat", "split", "slice_by_index",
               "gather", "gather_along_axis", "select"}


class UnsupportedProgram(NotRunnableHere):
    """The program uses an op (or a construct) the evaluator does not implement: no numbers at all. The artifact
    may well be right, so callers treat it like a runtime that cannot run here (validation "ran": false)."""


class NonFiniteValue(PocketbertError):
    """An intermediate value is inf or NaN; the message names the op that produced it."""


@dataclass
class Step:
    """One op of the program, ready to run: its function, inputs by MIL name, outputs with their dtypes."""

    name: str
    type: str
    function: Callable[..., Any]
    inputs: dict  # MIL input name -> variable name, or a tuple of names (variadic inputs such as concat's)
    outputs: list[tuple[str, str]]  # (variable name, MIL dtype name)
    passes_dtype: bool
    where: str  # how messages name it: "op 'NAME' (TYPE, i of n)", i counting every op of the function


@dataclass
class MILProgram:
    """The main function of a loaded ML Program: constants evaluated once, the steps to run per call."""

    path: Path
    inputs: dict[str, tuple[str, tuple]]  # input name -> (MIL dtype, declared shape with symbols as None)
    outputs: list[str]
    constants: dict[str, np.ndarray | str]  # str: a string constant (a mode or padding name)
    infinite_constants: dict[str, str]  # constants holding +-inf on purpose (mask sentinels) -> where from
    steps: list[Step]
    opset: str
    op_counts: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0

    def describe(self) -> dict:
        """What a manifest or report records about the evaluation (see the module docstring for the why)."""
        return {"evaluator": "pocketbert.export.coreml_mil: coremltools' milproto loader, each op in numpy",
                "opset": self.opset, "ops_evaluated": len(self.steps), "constants": len(self.constants),
                "arithmetic": "float32 per op from exact input values, result rounded once to the op's declared "
                              "dtype (fp16 ops: IEEE round to nearest even); matmul/softmax/layer_norm accumulate "
                              "in float32",
                "checks": "every intermediate: NaN, and inf made from finite values (fp16 overflow), name the op",
                "load_seconds": round(self.load_seconds, 3)}

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the program on `feed` ({input name: array}); returns {output name: float32/int array}."""
        values, infinite = dict(self.constants), dict(self.infinite_constants)
        for name, (dtype, shape) in self.inputs.items():
            if name not in feed:
                raise PocketbertError(f"the Core ML program needs input '{name}'; got {sorted(feed)}")
            array = np.asarray(feed[name])
            if len(shape) != array.ndim or any(d is not None and d != n for d, n in zip(shape, array.shape)):
                raise PocketbertError(f"input '{name}' has shape {list(array.shape)}, the program declares "
                                      f"{[d if d is not None else '?' for d in shape]}")
            values[name] = convert(array, dtype, f"input '{name}'")
        for step in self.steps:
            run_step(step, values, infinite)
        return {name: np.asarray(values[name]) for name in self.outputs}  # outputs are arrays, never string constants


def convert(value, dtype: str, what: str) -> np.ndarray:
    """`value` as the evaluator holds MIL dtype `dtype`: floats rounded to it, integers checked for range."""
    value = np.asarray(value)
    if dtype in ROUNDING:
        with np.errstate(over="ignore", invalid="ignore"):
            return value.astype(np.float32).astype(ROUNDING[dtype]).astype(np.float32)
    stored_as = STORAGE.get(dtype)
    if stored_as is None:
        raise UnsupportedProgram(f"{what} has MIL dtype {dtype}, which the evaluator does not hold")
    storage = np.dtype(stored_as)
    if storage.kind in "iu" and value.dtype.kind in "iuf" and value.size:
        low, high = np.iinfo(storage).min, np.iinfo(storage).max
        if value.min() < low or value.max() > high:
            bad = value[(value < low) | (value > high)].flat[0]
            raise PocketbertError(f"{what}: value {bad} does not fit {dtype} [{low}, {high}]; on a device it "
                                  "would be silently wrong")
    return value.astype(storage)


def run_step(step: Step, values: dict, infinite: dict) -> None:
    kwargs = {key: [values[name] for name in source] if isinstance(source, tuple) else values[source]
              for key, source in step.inputs.items()}
    if step.passes_dtype:
        kwargs["out_dtype"] = ROUNDING.get(step.outputs[0][1], np.float32)
    where = step.where
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = step.function(**kwargs)
    except OpError as problem:
        raise PocketbertError(f"Core ML reference evaluator: {where}: {problem}") from None
    results = result if isinstance(result, tuple) else (result,)
    if len(results) != len(step.outputs):
        raise PocketbertError(f"Core ML reference evaluator: {where} gave {len(results)} outputs, "
                              f"the program declares {len(step.outputs)}")
    infinite_inputs = {name: infinite[name] for source in step.inputs.values()
                       for name in (source if isinstance(source, tuple) else (source,)) if name in infinite}
    if step.type in REARRANGING:
        for (name, _), value in zip(step.outputs, results):
            values[name] = value
            if infinite_inputs and value.dtype.kind == "f":
                infinite[name] = next(iter(infinite_inputs.values()))
        return
    for (name, dtype), value in zip(step.outputs, results):
        held = convert(value, dtype, where)
        if check_finite(held, np.asarray(value), dtype, where, infinite_inputs):
            infinite[name] = next(iter(infinite_inputs.values()))
        values[name] = held


def check_finite(held: np.ndarray, computed: np.ndarray, dtype: str, where: str, infinite_inputs: dict) -> bool:
    """False if `held` is finite; True if it carries infinities forward from an infinite input (a deliberate
    -inf sentinel, such as a mask constant). Raises NonFiniteValue naming the op for any NaN, and for an
    infinity made from finite inputs: an fp16 overflow (finite in float32, too large for fp16) or worse."""
    if held.dtype.kind != "f" or np.isfinite(held).all():
        return False
    nan = np.isnan(held)
    if not nan.any() and infinite_inputs:
        return True
    bad = nan if nan.any() else ~np.isfinite(held)
    kinds = [k for k, present in (("NaN", nan.any()), ("+inf", np.isposinf(held).any()),
                                  ("-inf", np.isneginf(held).any())) if present]
    share = f"{int(bad.sum())} of {held.size} values"
    exact = computed.astype(np.float64) if computed.dtype.kind == "f" else None
    if dtype in ROUNDING and exact is not None and np.isfinite(exact[bad]).all():
        largest = float(np.abs(exact[bad]).max())
        limit = float(np.finfo(ROUNDING[dtype]).max)
        raise NonFiniteValue(
            f"Core ML reference evaluator: {where} overflows {dtype}: it computes values up to {largest:.4g}, "
            f"beyond the largest {dtype} {limit:g}, so {share} become {'/'.join(kinds)} on the device")
    cause = ("from finite inputs" if not infinite_inputs else
             "from infinite inputs (" + "; ".join(f"'{n}' from {origin}" for n, origin in infinite_inputs.items()) + ")")
    raise NonFiniteValue(f"Core ML reference evaluator: {where} produces {'/'.join(kinds)} ({share}) {cause}")


def dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types  # lazy: coremltools takes seconds to import; only loaded programs need it

    return types.builtin_to_string(var.dtype)


def op_family(op) -> str | None:
    """"iOS15" ... "iOS18": the opset an op class comes from (the same op name differs between them)."""
    for part in type(op).__module__.split("."):
        if part.startswith("iOS"):
            return part
    return None


def function_for(op):
    """The numpy implementation of an op at its opset version, or None."""
    family = op_family(op)
    return OPS.get(f"{op.op_type}@{family}") or OPS.get(op.op_type)


def load_program(path: str | Path) -> MILProgram:
    """Load an .mlpackage's ML Program with coremltools' milproto loader and prepare it for evaluation.

    Every op type is checked before anything runs: an op the evaluator does not implement is refused in
    one line naming it, so no number is ever produced by guessing. Constants and constexpr (compressed
    weight) ops are evaluated here, once, and checked for inf/NaN like every other value.
    """
    ct = require_module("coremltools", "coremltools")
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto  # lazy: coremltools, as above

    path = Path(path)
    started = time.perf_counter()
    spec = ct.utils.load_spec(str(path))
    if spec.WhichOneof("Type") != "mlProgram":
        raise UnsupportedProgram(f"'{path}' is a Core ML {spec.WhichOneof('Type')} model, not an ML Program; the "
                                 "reference evaluator runs ML Programs only")
    weights = path / WEIGHTS_DIR
    program = load_milproto(spec, spec.specificationVersion, file_weights_dir=str(weights))
    if "main" not in program.functions:
        raise UnsupportedProgram(f"'{path}' has no main function (functions: {sorted(program.functions)})")
    return prepare(program.functions["main"], path, spec.mlProgram.functions["main"].opset, started)


def prepare(function, path: Path, opset: str, started: float) -> MILProgram:
    operations = list(function.operations)
    counts: dict[str, int] = {}
    for operation in operations:
        counts[operation.op_type] = counts.get(operation.op_type, 0) + 1
    missing = sorted({o.op_type for o in operations if o.op_type not in STRUCTURAL and function_for(o) is None})
    if missing:
        raise UnsupportedProgram(
            f"the Core ML reference evaluator does not implement MIL op{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (in '{path}'); it gives no numbers rather than wrong ones — the artifact is "
            "not numerically checked")
    for operation in operations:
        if any(block for block in getattr(operation, "blocks", []) or []):
            raise UnsupportedProgram(f"op '{operation.name}' ({operation.op_type}) has nested blocks (control flow), "
                                     "which the Core ML reference evaluator does not run")

    inputs = {name: (dtype_name(var), tuple(d if isinstance(d, (int, np.integer)) else None for d in var.shape))
              for name, var in function.inputs.items()}
    constants: dict[str, np.ndarray | str] = {}
    infinite: dict[str, str] = {}
    steps: list[Step] = []
    total = len(operations)
    for index, operation in enumerate(operations):
        where = f"op '{operation.name}' ({operation.op_type}, {index + 1} of {total})"
        if operation.op_type == "const":
            out = operation.outputs[0]
            value = out.val
            if isinstance(value, str):
                constants[out.name] = value
                continue
            held = convert(np.asarray(value), dtype_name(out), where)
            if held.dtype.kind == "f" and np.isnan(held).any():
                raise NonFiniteValue(f"Core ML reference evaluator: {where} holds NaN ({int(np.isnan(held).sum())} "
                                     f"of {held.size} values): the package's weights are corrupt")
            if held.dtype.kind == "f" and not np.isfinite(held).all():
                infinite[out.name] = where
            constants[out.name] = held
            continue
        function_ = function_for(operation)
        step = Step(name=operation.name, type=operation.op_type, function=function_,
                    inputs={key: source_of(var) for key, var in operation.inputs.items()},
                    outputs=[(out.name, dtype_name(out)) for out in operation.outputs],
                    passes_dtype="out_dtype" in inspect.signature(function_).parameters, where=where)
        if operation.op_type.startswith("constexpr_"):
            run_step(step, constants, infinite)  # compile-time: all inputs are constants
        else:
            steps.append(step)
    outputs = [var.name for var in function.outputs]
    return MILProgram(path=path, inputs=inputs, outputs=outputs, constants=constants, infinite_constants=infinite,
                      steps=steps, opset=opset,
                      op_counts=dict(sorted(counts.items())), load_seconds=time.perf_counter() - started)


def source_of(var):
    if isinstance(var, (list, tuple)):
        return tuple(v.name for v in var)
    return var.name
