"""The Core ML reference evaluator, op by op: each MIL op our exporter emits, built with coremltools' own MIL
builder, evaluated on random inputs and compared with numpy / torch; fp16 rounding, overflow and NaN edge
cases; weight decompression against coremltools' own decompress code; unknown ops refused in one line."""
from __future__ import annotations

import math

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")

from coremltools.converters.mil.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import Function, types  # noqa: E402

from pocketbert.errors import PocketbertError  # noqa: E402
from pocketbert.export.coreml_mil.evaluator import NonFiniteValue, UnsupportedProgram, prepare  # noqa: E402

RNG = np.random.default_rng(0)
MIL_DTYPES = {"fp16": types.fp16, "fp32": types.fp32, "int32": types.int32, "bool": types.bool}
FP16_MAX = 65504.0


def evaluate(build, inputs: dict[str, tuple[np.ndarray, str]], target=None):
    """Build a MIL function with `build(**input vars)` (coremltools' builder), evaluate it on `inputs`."""
    placeholders = {name: mb.placeholder(shape=value.shape, dtype=MIL_DTYPES[dtype])
                    for name, (value, dtype) in inputs.items()}
    with Function(placeholders, opset_version=target or ct.target.iOS18) as function:
        outputs = build(**function.inputs)
        function.set_outputs(list(outputs) if isinstance(outputs, (list, tuple)) else [outputs])
    program = prepare(function, "test program", "test", 0.0)
    return list(program({name: value for name, (value, _) in inputs.items()}).values())


def fp16(values) -> np.ndarray:
    """Values rounded to fp16, held as float32 (how the evaluator holds fp16 tensors)."""
    return np.asarray(values, dtype=np.float32).astype(np.float16).astype(np.float32)


def rounded_like_fp16(reference: torch.Tensor) -> np.ndarray:
    return reference.to(torch.float32).numpy().astype(np.float16).astype(np.float32)


def random(*shape, scale=1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# --- float ops against torch: fp32 to float32 rounding, fp16 to one fp16 rounding of the float32 result ---

FLOAT_CASES = {
    "add": (lambda x, y: mb.add(x=x, y=y), lambda x, y: x + y),
    "sub": (lambda x, y: mb.sub(x=x, y=y), lambda x, y: x - y),
    "mul": (lambda x, y: mb.mul(x=x, y=y), lambda x, y: x * y),
    "real_div": (lambda x, y: mb.real_div(x=x, y=y), lambda x, y: x / y),
    "maximum": (lambda x, y: mb.maximum(x=x, y=y), torch.maximum),
    "minimum": (lambda x, y: mb.minimum(x=x, y=y), torch.minimum),
    "pow": (lambda x, y: mb.pow(x=mb.abs(x=x), y=y), lambda x, y: torch.abs(x) ** y),
    "matmul": (lambda x, y: mb.matmul(x=x, y=y, transpose_y=True), lambda x, y: x @ y.transpose(-1, -2)),
    "matmul_transpose_x": (lambda x, y: mb.matmul(x=x, y=y, transpose_x=True), lambda x, y: x.transpose(-1, -2) @ y),
}
UNARY_CASES = {
    "gelu_exact": (lambda x: mb.gelu(x=x, mode="EXACT"), lambda x: torch.nn.functional.gelu(x)),
    "gelu_tanh": (lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"),
                  lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    "gelu_sigmoid": (lambda x: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"), lambda x: x * torch.sigmoid(1.702 * x)),
    "softmax": (lambda x: mb.softmax(x=x, axis=-1), lambda x: torch.softmax(x, -1)),
    "layer_norm": (lambda x: mb.layer_norm(x=x, axes=[-1], epsilon=1e-5),
                   lambda x: torch.nn.functional.layer_norm(x, x.shape[-1:], eps=1e-5)),
    "tanh": (lambda x: mb.tanh(x=x), torch.tanh),
    "erf": (lambda x: mb.erf(x=x), torch.erf),
    "exp": (lambda x: mb.exp(x=x), torch.exp),
    "sigmoid": (lambda x: mb.sigmoid(x=x), torch.sigmoid),
    "relu": (lambda x: mb.relu(x=x), torch.relu),
    "sqrt": (lambda x: mb.sqrt(x=mb.abs(x=x)), lambda x: torch.sqrt(torch.abs(x))),
    "rsqrt": (lambda x: mb.rsqrt(x=mb.abs(x=x), epsilon=1e-3), lambda x: torch.rsqrt(torch.abs(x) + 1e-3)),
    "reduce_mean": (lambda x: mb.reduce_mean(x=x, axes=[-1], keep_dims=True), lambda x: x.mean(-1, keepdim=True)),
    "reduce_sum": (lambda x: mb.reduce_sum(x=x, axes=[0, 2]), lambda x: x.sum((0, 2))),
    "reduce_max": (lambda x: mb.reduce_max(x=x, axes=[1]), lambda x: x.amax(1)),
    "cast_to_fp32": (lambda x: mb.cast(x=x, dtype="fp32"), lambda x: x),
}


def compare_float(build, reference, arrays, dtype):
    feed = {f"in{i}": (fp16(a) if dtype == "fp16" else a, dtype) for i, a in enumerate(arrays)}
    got = evaluate(lambda **xs: build(*xs.values()), feed)[0]
    expected = reference(*(torch.from_numpy(value) for value, _ in feed.values()))
    if dtype == "fp16":
        return got, rounded_like_fp16(expected)
    return got, expected.numpy()


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("case", sorted(FLOAT_CASES))
def test_binary_float_ops_match_torch(case, dtype):
    build, reference = FLOAT_CASES[case]
    x, y = random(2, 3, 8), random(2, 3, 8)
    if case == "real_div":
        y = np.where(np.abs(y) < 0.1, 0.5, y).astype(np.float32)
    if case == "pow":
        y = np.round(y * 2) / 2  # small exact exponents
    if case == "matmul_transpose_x":
        x, y = random(2, 8, 3), random(2, 8, 4)
    got, expected = compare_float(build, reference, [x, y], dtype)
    if dtype == "fp16" and case in ("add", "sub", "mul", "real_div", "maximum", "minimum"):
        np.testing.assert_array_equal(got, expected)  # IEEE fp16 arithmetic: correctly rounded, exactly
    else:  # accumulation order (matmul) and float32 transcendentals: within an fp16 / fp32 ulp or two
        np.testing.assert_allclose(got, expected, rtol=2e-3 if dtype == "fp16" else 1e-5, atol=1e-3 if dtype == "fp16" else 1e-5)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_linear_matches_torch(dtype):
    weight, bias = random(5, 8), random(5)
    if dtype == "fp16":
        weight, bias = weight.astype(np.float16), bias.astype(np.float16)
    build = lambda x: mb.linear(x=x, weight=weight, bias=bias)  # noqa: E731  (weights are compile-time constants)
    reference = lambda x: torch.nn.functional.linear(x, torch.from_numpy(weight).float(), torch.from_numpy(bias).float())  # noqa: E731
    got, expected = compare_float(build, reference, [random(3, 8)], dtype)
    np.testing.assert_allclose(got, expected, rtol=2e-3 if dtype == "fp16" else 1e-5, atol=2e-3 if dtype == "fp16" else 1e-5)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("case", sorted(UNARY_CASES))
def test_unary_float_ops_match_torch(case, dtype):
    build, reference = UNARY_CASES[case]
    x = random(2, 4, 16, scale=2.0)
    got, expected = compare_float(build, reference, [x], dtype)
    np.testing.assert_allclose(got, expected, rtol=2e-3 if dtype == "fp16" else 2e-6, atol=2e-3 if dtype == "fp16" else 2e-6)


NUMPY_UNARY = {  # MIL op -> numpy, on inputs in (-0.9, 0.9) where every one of them is defined
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "sign": np.sign, "square": np.square, "exp2": np.exp2,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "atanh": np.arctanh, "round": np.round, "softplus": np.logaddexp.outer
    if False else (lambda x: np.log1p(np.exp(x))), "silu": lambda x: x / (1 + np.exp(-x)),
}


@pytest.mark.parametrize("name", sorted(NUMPY_UNARY))
def test_elementwise_unary_ops_match_numpy(name):
    x = (RNG.random((3, 5)) * 1.8 - 0.9).astype(np.float32)
    x[0, :2] = [0.5, -0.5]  # round's ties go to even
    got = evaluate(lambda a: getattr(mb, name)(x=a), {"a": (x, "fp32")})[0]
    np.testing.assert_allclose(got, NUMPY_UNARY[name](x.astype(np.float64)), rtol=2e-6, atol=2e-7)


def test_elementwise_ops_with_parameters_match_numpy():
    x = (RNG.random((3, 5)) * 4 - 2).astype(np.float32)
    y = np.where(np.abs(x) < 0.25, 1.5, x).astype(np.float32)

    def build(x, y):
        return (mb.log(x=mb.abs(x=x), epsilon=0.5), mb.inverse(x=mb.abs(x=x), epsilon=0.5),
                mb.clip(x=x, alpha=-1.0, beta=0.5), mb.floor_div(x=x, y=y), mb.mod(x=x, y=y),
                mb.reduce_min(x=x, axes=[1]), mb.reduce_prod(x=x, axes=[0], keep_dims=True),
                mb.less(x=x, y=y), mb.less_equal(x=x, y=y), mb.greater(x=x, y=y), mb.greater_equal(x=x, y=y),
                mb.not_equal(x=x, y=y), mb.logical_and(x=mb.less(x=x, y=0.0), y=mb.greater(x=y, y=-1.0)),
                mb.logical_or(x=mb.less(x=x, y=0.0), y=mb.greater(x=y, y=1.0)),
                mb.logical_xor(x=mb.less(x=x, y=0.0), y=mb.greater(x=y, y=0.0)))

    got = evaluate(build, {"x": (x, "fp32"), "y": (y, "fp32")})
    expected = [np.log(np.abs(x) + 0.5), 1 / (np.abs(x) + 0.5), np.clip(x, -1, 0.5), np.floor_divide(x, y),
                np.mod(x, y), x.min(1), x.prod(0, keepdims=True), x < y, x <= y, x > y, x >= y, x != y,
                (x < 0) & (y > -1), (x < 0) | (y > 1), (x < 0) ^ (y > 0)]
    for ours, theirs in zip(got, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_position_ops_match_numpy():
    mask = np.array([[1, 1, 1, 0, 0]], dtype=np.int32)
    table = random(2, 6)
    index = np.array([[2, 0, 1], [5, 5, 4]], dtype=np.int32)

    def build(mask, table, index):  # RoBERTa's position ids, ModernBERT's rotary angles, MobileBERT's padding
        return (mb.cumsum(x=mask, axis=1), mb.cumsum(x=mask, axis=1, exclusive=True, reverse=True),
                mb.range_1d(start=0, end=mb.gather(x=mb.shape(x=mask), indices=1, axis=0), step=1),
                mb.gather_along_axis(x=table, indices=index, axis=1),
                mb.pad(x=table, pad=[1, 0, 0, 2], mode="constant", constant_val=0.0),
                mb.pad(x=table, pad=[0, 0, 1, 1], mode="replicate"), mb.pad(x=table, pad=[0, 0, 1, 1], mode="reflect"))

    got = evaluate(build, {"mask": (mask, "int32"), "table": (table, "fp32"), "index": (index, "int32")})
    reversed_exclusive = np.flip(np.cumsum(np.flip(mask, 1), 1), 1) - mask
    expected = [np.cumsum(mask, 1), reversed_exclusive, np.arange(5), np.take_along_axis(table, index, 1),
                np.pad(table, [(1, 0), (0, 2)]), np.pad(table, [(0, 0), (1, 1)], mode="edge"),
                np.pad(table, [(0, 0), (1, 1)], mode="reflect")]
    for ours, theirs in zip(got, expected):
        np.testing.assert_array_equal(ours, theirs)


def test_fp16_rounding_edge_cases_are_exact():
    # halfway between two fp16 values rounds to even; subnormals survive; -0.0 stays negative
    halfway = np.float32(1.0 + 2.0 ** -11)  # between 1.0 and the next fp16 (1 + 2^-10): ties to 1.0
    above = np.float32(1.0 + 3 * 2.0 ** -11)  # between 1 + 2^-10 and 1 + 2^-9: ties to even 1 + 2^-9
    subnormal = np.float32(2.0 ** -20)
    x = np.array([[halfway, above, subnormal, -0.0]], dtype=np.float32)
    got = evaluate(lambda a: mb.cast(x=mb.cast(x=a, dtype="fp16"), dtype="fp32"), {"a": (x, "fp32")})[0]
    assert got[0, 0] == 1.0 and got[0, 1] == np.float32(1.0 + 2.0 ** -9)
    assert got[0, 2] == subnormal and np.signbit(got[0, 3])
    # a sum that is exact in float32 but not in fp16 rounds once, to nearest even
    a, b = fp16([[2048.0]]), fp16([[1.0]])
    assert evaluate(lambda x, y: mb.add(x=x, y=y), {"x": (a, "fp16"), "y": (b, "fp16")})[0][0, 0] == 2048.0


def test_fp16_softmax_of_large_scores_is_stable():
    scores = fp16([[60000.0, 59000.0, -60000.0, 0.0]])
    got = evaluate(lambda x: mb.softmax(x=x, axis=-1), {"x": (scores, "fp16")})[0]
    assert np.isfinite(got).all() and got[0, 0] == 1.0 and got[0, 2] == 0.0


def test_fp16_overflow_names_the_op():
    x = fp16([[60000.0, 1.0]])
    with pytest.raises(NonFiniteValue, match=r"op 'too_big' \(mul, \d+ of \d+\) overflows fp16: it computes values up to "
                                             r"1\.2e\+05, beyond the largest fp16 65504, so 1 of 2 values become \+inf"):
        evaluate(lambda x: mb.mul(x=x, y=np.float16(2.0), name="too_big"), {"x": (x, "fp16")})


def test_nan_from_finite_inputs_names_the_op():
    x = np.array([[0.0, 1.0]], dtype=np.float32)
    with pytest.raises(NonFiniteValue, match=r"op 'zero_by_zero' \(real_div, \d+ of \d+\) produces NaN/\+inf \(1 of 2 "
                                             r"values\) from finite inputs"):
        evaluate(lambda x: mb.real_div(x=x, y=mb.mul(x=x, y=0.0), name="zero_by_zero"), {"x": (x, "fp32")})


def test_an_infinite_mask_sentinel_may_flow_but_nan_from_it_is_named():
    scores = random(1, 4)
    keep = np.array([[1, 1, 0, 0]], dtype=np.int32)

    def masked(s, m):  # where(mask, scores, -inf) then softmax: fine, -inf only where it is meant
        return mb.softmax(x=mb.select(cond=mb.cast(x=m, dtype="bool"), a=s, b=np.float32(-np.inf)), axis=-1)

    got = evaluate(masked, {"s": (scores, "fp32"), "m": (keep, "int32")})[0]
    expected = np.concatenate([torch.softmax(torch.tensor(scores[:, :2]), -1).numpy(), np.zeros((1, 2))], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)

    def multiplied(m):  # (1 - mask) * -inf: 0 * -inf is NaN at every real token (the finfo.min mask failure)
        return mb.mul(x=mb.sub(x=np.float32(1), y=mb.cast(x=m, dtype="fp32")), y=np.float32(-np.inf), name="mask_mul")

    with pytest.raises(NonFiniteValue, match=r"op 'mask_mul' \(mul, \d of \d\) produces NaN/-inf \(2 of 4 values\) "
                                             r"from infinite inputs \('.*' from op '.*' \(const"):
        evaluate(multiplied, {"m": (keep, "int32")})


# --- shapes, integers, data movement ---------------------------------------------------------------------

def test_shape_ops_match_numpy():
    x = random(2, 3, 4)
    ids = np.array([[3, 0, 2]], dtype=np.int32)

    def build(x, ids):
        table = mb.reshape(x=x, shape=[6, 4])
        return (mb.gather(x=table, indices=ids, axis=0),
                mb.transpose(x=x, perm=[2, 0, 1]),
                mb.expand_dims(x=x, axes=[1]),
                mb.squeeze(x=mb.expand_dims(x=x, axes=[0]), axes=[0]),
                mb.concat(values=[x, x], axis=-1),
                mb.concat(values=[x, x], axis=1, interleave=True),
                mb.slice_by_index(x=x, begin=[0, 1, 0], end=[2, 3, 4], stride=[1, 1, 2], end_mask=[True, False, False]),
                mb.slice_by_index(x=x, begin=[1, 0, 2], end=[0, 0, 0], squeeze_mask=[True, False, True],
                                  end_mask=[False, True, False]),
                mb.tile(x=x, reps=[1, 2, 1]),
                mb.shape(x=x),
                mb.fill_like(ref_tensor=x, value=7),
                mb.reshape(x=x, shape=[0, -1, 2]),
                *mb.split(x=x, split_sizes=[1, 3], axis=-1))

    out = evaluate(build, {"x": (x, "fp32"), "ids": (ids, "int32")})
    table = x.reshape(6, 4)
    expected = [table[ids], x.transpose(2, 0, 1), x[:, None], x, np.concatenate([x, x], -1),
                np.stack([x, x], 2).reshape(2, 6, 4), x[:, 1:3, 0:4:2], x[1, :, 2], np.tile(x, (1, 2, 1)),
                np.array([2, 3, 4]), np.full((2, 3, 4), 7), x.reshape(2, 6, 2), x[..., :1], x[..., 1:]]
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got, want)


def test_integer_and_logic_ops_match_numpy():
    a = np.array([[7, -3, 4, 0]], dtype=np.int32)
    b = np.array([[2, 2, 4, 5]], dtype=np.int32)

    def build(a, b):
        equal = mb.equal(x=a, y=b)
        return (mb.real_div(x=a, y=b), equal, mb.logical_not(x=equal), mb.select(cond=equal, a=a, b=b),
                mb.reduce_max(x=a, axes=[-1], keep_dims=True), mb.cast(x=mb.cast(x=a, dtype="fp16"), dtype="int32"),
                mb.sub(x=a, y=b), mb.mul(x=a, y=b), mb.add(x=a, y=b), mb.cast(x=a, dtype="bool"))

    out = evaluate(build, {"a": (a, "int32"), "b": (b, "int32")})
    expected = [np.trunc(a / b), a == b, a != b, np.where(a == b, a, b), a.max(-1, keepdims=True), a, a - b, a * b,
                a + b, a != 0]
    for got, want in zip(out, expected):
        np.testing.assert_array_equal(got, want)
    assert out[0].dtype == np.int32


def test_a_gather_index_out_of_range_is_reported_not_wrapped():
    table = random(5, 2)
    with pytest.raises(PocketbertError, match=r"op 'lookup' \(gather, \d+ of \d+\): index 9 is out of range for an axis "
                                              r"of length 5"):
        evaluate(lambda t, i: mb.gather(x=t, indices=i, axis=0, name="lookup"),
                 {"t": (table, "fp32"), "i": (np.array([1, 9], dtype=np.int32), "int32")})


def test_an_integer_cast_that_cannot_hold_the_value_is_reported():
    ids = np.array([[70000]], dtype=np.int32)
    with pytest.raises(PocketbertError, match=r"op 'narrow' \(cast, \d+ of \d+\): value 70000 does not fit uint16"):
        evaluate(lambda i: mb.cast(x=i, dtype="uint16", name="narrow"), {"i": (ids, "int32")},
                 target=ct.target.iOS17)


# --- weight decompression: our implementation against coremltools' own --------------------------------

def test_blockwise_shift_scale_matches_coremltools():
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_blockwise_shift_scale as op

    data = RNG.integers(-128, 128, (8, 6)).astype(np.int8)
    scale = (RNG.random((4, 3)) * 0.01 + 1e-4).astype(np.float16)
    offset = RNG.integers(-4, 4, (4, 3)).astype(np.int8)

    def build():
        return mb.constexpr_blockwise_shift_scale(data=data, scale=scale, offset=offset)

    got = evaluate_constant(build)
    np.testing.assert_array_equal(got, op.decompress(data, scale, offset).astype(np.float32))


def test_affine_dequantize_matches_coremltools():
    from coremltools.converters.mil.mil.ops.defs.iOS16.constexpr_ops import constexpr_affine_dequantize as op

    data = RNG.integers(0, 256, (5, 4)).astype(np.uint8)
    scale = (RNG.random(4) * 0.1).astype(np.float16)
    zero_point = RNG.integers(0, 256, 4).astype(np.uint8)

    def build():
        return mb.constexpr_affine_dequantize(quantized_data=data, zero_point=zero_point, scale=scale, axis=1)

    got = evaluate_constant(build, target=ct.target.iOS16)
    np.testing.assert_array_equal(got, op.decompress(data, zero_point, scale, 1).astype(np.float32))


@pytest.mark.parametrize("nbits, vector_size", [(4, 1), (6, 1), (2, 2)])
def test_lut_to_dense_matches_coremltools(nbits, vector_size):
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_lut_to_dense as op

    indices = RNG.integers(0, 2 ** nbits, (4, 6)).astype(types.nptype_from_builtin(types.string_to_builtin(f"uint{nbits}")))
    lut = RNG.standard_normal((2, 1, 2 ** nbits, vector_size)).astype(np.float16)  # a table per row group
    vector_axis = 1 if vector_size > 1 else None

    def build():
        return mb.constexpr_lut_to_dense(indices=indices, lut=lut, vector_axis=vector_axis)

    got = evaluate_constant(build)
    np.testing.assert_array_equal(got, op.decompress(indices, lut, vector_axis).astype(np.float32))


def test_ios16_lut_to_dense_unpacks_bits_like_coremltools():
    from coremltools.converters.mil.mil.ops.defs.iOS16.constexpr_ops import constexpr_lut_to_dense as op

    lut = RNG.standard_normal(16).astype(np.float16)
    packed = RNG.integers(0, 256, 15).astype(np.uint8)  # 30 4-bit indices
    shape = np.array([5, 6], dtype=np.uint32)
    got = evaluate_constant(lambda: mb.constexpr_lut_to_dense(lut=lut, indices=packed, shape=shape),
                            target=ct.target.iOS16)
    np.testing.assert_array_equal(got, op.decompress(lut, packed, shape).astype(np.float32))


def test_sparse_to_dense_matches_coremltools():
    from coremltools.converters.mil.mil.ops.defs.iOS18.compression import constexpr_sparse_to_dense as op

    mask = (RNG.random((4, 5)) > 0.5).astype(types.nptype_from_builtin(types.uint1))
    data = RNG.standard_normal(int(mask.sum())).astype(np.float16)
    got = evaluate_constant(lambda: mb.constexpr_sparse_to_dense(nonzero_data=data, mask=mask))
    np.testing.assert_array_equal(got, op.decompress(data, mask).astype(np.float32))


def evaluate_constant(build, target=None):
    """A compile-time op's value, fed through a runtime op (add 0) so the program has an output."""
    zero = np.zeros((1,), np.float32)
    return evaluate(lambda z: mb.add(x=mb.cast(x=build(), dtype="fp32"), y=z), {"z": (zero, "fp32")}, target)[0]


# --- what the evaluator refuses ------------------------------------------------------------------------

def test_an_unimplemented_op_is_named_in_one_line():
    x = random(1, 1, 4, 4)
    with pytest.raises(UnsupportedProgram) as refused:
        evaluate(lambda x: mb.max_pool(x=x, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid"), {"x": (x, "fp32")})
    message = str(refused.value)
    assert "does not implement MIL op max_pool" in message and "\n" not in message


def test_an_unknown_gelu_mode_is_refused():
    from pocketbert.export.coreml_mil.ops import OpError, gelu

    with pytest.raises(OpError, match="gelu mode 'CUBIC'"):
        gelu(np.zeros(2, np.float32), mode="CUBIC")


def test_gelu_tanh_constant_is_the_standard_one():
    from pocketbert.export.coreml_mil.ops import gelu

    x = np.array([1.0], np.float32)
    expected = 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (1 + 0.044715)))
    assert gelu(x, mode="TANH_APPROXIMATION")[0] == pytest.approx(expected, rel=1e-6)
