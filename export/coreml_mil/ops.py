"""MIL operations in numpy, one function per op type, written from the Core ML ML Program op definitions.

Every function receives the op's inputs by their MIL names: tensors as numpy arrays, scalars and strings
as numpy scalars / str. Float tensors always arrive as float32 arrays holding exactly the values of their
declared dtype (an fp16 tensor is an fp32 array of fp16 values), and each function computes in float32;
the evaluator then rounds the result once to the op's declared output dtype (see evaluator.py for why
that is the fp16 arithmetic Core ML programs declare). Integer and bool tensors keep their own dtype.

A function raises OpError for an input it cannot evaluate faithfully (an unknown mode, an index out of
range): the evaluator names the op in the message. Nothing here guesses.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

OPS: dict[str, Callable] = {}


class OpError(ValueError):
    """An op's inputs that it cannot evaluate as Core ML defines it; the evaluator adds the op's name."""


def op(*names: str):
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn

    return register


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def axis_list(axes, rank: int) -> tuple[int, ...]:
    return tuple(int(a) % rank for a in np.atleast_1d(axes))


# --- elementwise ----------------------------------------------------------------------------------------

def _floatish(x, y) -> bool:
    return np.asarray(x).dtype.kind == "f" or np.asarray(y).dtype.kind == "f"


@op("real_div")
def real_div(x, y):
    if _floatish(x, y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(f32(x), f32(y))
    # Integer real_div is true division cast back to the integer type (truncation), as MIL types it.
    if np.any(np.asarray(y) == 0):
        raise OpError("integer division by zero")
    return np.trunc(np.divide(np.asarray(x, np.float64), np.asarray(y, np.float64)))


def _integer_checked(numpy_op, what: str):
    """A binary op that refuses an integer zero divisor (MIL leaves it undefined) and lets floats give inf/NaN."""
    def run(x, y):
        if not _floatish(x, y) and np.any(np.asarray(y) == 0):
            raise OpError(f"integer {what} by zero")
        with np.errstate(divide="ignore", invalid="ignore"):
            return numpy_op(x, y)

    return run


floor_div = op("floor_div")(_integer_checked(np.floor_divide, "division"))
mod = op("mod")(_integer_checked(np.mod, "modulo"))


@op("pow")
def pow_(x, y):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.power(f32(x), f32(y)) if _floatish(x, y) else np.power(x, y)


ELEMENTWISE: dict[str, Callable] = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
               "minimum": np.minimum,
               "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
               "greater": np.greater, "greater_equal": np.greater_equal,
               "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}
for _name, _fn in ELEMENTWISE.items():
    op(_name)(lambda x, y, _fn=_fn: _fn(x, y))


@op("logical_not")
def logical_not(x):
    return np.logical_not(x)


UNARY: dict[str, Callable] = {"abs": np.abs, "ceil": np.ceil, "floor": np.floor, "sign": np.sign, "square": np.square,
         "exp": np.exp, "exp2": np.exp2, "sqrt": np.sqrt, "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
         "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
         "cosh": np.cosh, "atanh": np.arctanh}
for _name, _fn in UNARY.items():
    def _unary(x, _fn=_fn):
        x = np.asarray(x)
        if x.dtype.kind != "f" and _fn in (np.abs, np.sign, np.square):
            return _fn(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _fn(f32(x))
    op(_name)(_unary)


@op("round")
def round_(x):
    return np.round(f32(x))  # MIL round: to nearest, ties to even, like numpy


@op("erf")
def erf(x):
    from scipy.special import erf as scipy_erf  # lazy: scipy adds ~0.4 s and only the erf op (GELU) needs it

    return scipy_erf(f32(x)).astype(np.float32)


@op("rsqrt")
def rsqrt(x, epsilon=np.float32(1e-12)):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float32(1) / np.sqrt(f32(x) + f32(epsilon))


@op("inverse")
def inverse(x, epsilon=np.float32(1e-4)):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float32(1) / (f32(x) + f32(epsilon))


@op("log")
def log(x, epsilon=np.float32(1e-45)):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(f32(x) + f32(epsilon))


@op("clip")
def clip(x, alpha, beta):
    return np.minimum(np.maximum(f32(x), f32(alpha)), f32(beta))


@op("relu")
def relu(x):
    return np.maximum(f32(x), np.float32(0))


@op("sigmoid")
def sigmoid(x):
    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-f32(x)))


@op("silu")
def silu(x):
    return f32(x) * sigmoid(x)


@op("softplus")
def softplus(x):
    return np.logaddexp(np.float32(0), f32(x))


@op("gelu")
def gelu(x, mode="EXACT"):
    x = f32(x)
    mode = str(mode)
    if mode == "EXACT":
        return np.float32(0.5) * x * (np.float32(1) + erf(x / np.float32(math.sqrt(2.0))))
    if mode == "TANH_APPROXIMATION":
        inner = np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
        return np.float32(0.5) * x * (np.float32(1) + np.tanh(inner))
    if mode == "SIGMOID_APPROXIMATION":
        return x * sigmoid(np.float32(1.702) * x)
    raise OpError(f"gelu mode '{mode}' is not one of EXACT, TANH_APPROXIMATION, SIGMOID_APPROXIMATION")


@op("softmax")
def softmax(x, axis=-1):
    x = f32(x)
    shifted = x - x.max(axis=int(axis), keepdims=True)
    with np.errstate(invalid="ignore"):
        e = np.exp(shifted)
        return e / e.sum(axis=int(axis), keepdims=True)


@op("select")
def select(cond, a, b):
    return np.where(np.asarray(cond).astype(bool), a, b)


@op("cast")
def cast(x, dtype):
    # The evaluator converts to the declared output dtype; integer targets are checked there for range.
    x = np.asarray(x)
    if str(dtype) == "bool":
        return x != 0
    if str(dtype).startswith(("int", "uint")) and x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise OpError(f"casts a non-finite value to {dtype}")
        return np.trunc(x)
    return x


# --- reductions and normalisation -----------------------------------------------------------------------

def _reduce(fn):
    def reduce(x, axes=None, keep_dims=False):
        x = np.asarray(x)
        axis = None if axes is None else axis_list(axes, x.ndim)
        source = f32(x) if x.dtype.kind == "f" else x
        return fn(source, axis=axis, keepdims=bool(keep_dims))
    return reduce


REDUCERS: dict[str, Callable] = {"reduce_sum": np.sum, "reduce_mean": np.mean, "reduce_max": np.max, "reduce_min": np.min,
                                 "reduce_prod": np.prod}
for _name, _fn in REDUCERS.items():
    op(_name)(_reduce(_fn))


@op("layer_norm")
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=np.float32(1e-5)):
    x = f32(x)
    axis = tuple(range(x.ndim)) if axes is None else axis_list(axes, x.ndim)
    mean = x.mean(axis=axis, keepdims=True)
    centered = x - mean
    variance = np.square(centered).mean(axis=axis, keepdims=True)
    out = centered / np.sqrt(variance + f32(epsilon))
    if axes is not None and sorted(axis) != list(range(x.ndim - len(axis), x.ndim)):
        if gamma is not None or beta is not None:
            raise OpError(f"layer_norm with gamma/beta over non-trailing axes {list(axis)}")
    if gamma is not None:
        out = out * f32(gamma)
    if beta is not None:
        out = out + f32(beta)
    return out


# --- linear algebra -------------------------------------------------------------------------------------

@op("linear")
def linear(x, weight, bias=None):
    out = np.matmul(f32(x), f32(weight).T)
    return out if bias is None else out + f32(bias)


@op("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = f32(x), f32(y)
    if bool(transpose_x):
        x = np.swapaxes(x, -1, -2)
    if bool(transpose_y):
        y = np.swapaxes(y, -1, -2)
    # Contiguous operands: numpy hands stacked matmuls to BLAS only then (else a slow loop, 10x at seq 384).
    return np.matmul(np.ascontiguousarray(x), np.ascontiguousarray(y))


# --- shapes and data movement ---------------------------------------------------------------------------

@op("shape")
def shape(x):
    return np.asarray(np.shape(x), dtype=np.int32)


@op("reshape")
def reshape(x, shape):
    x = np.asarray(x)
    target = [int(d) for d in np.atleast_1d(shape)]
    if len(target) == x.ndim:
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        return x.reshape(target)
    except ValueError:
        raise OpError(f"cannot reshape {list(x.shape)} to {target}") from None


@op("expand_dims")
def expand_dims(x, axes):
    x = np.asarray(x)
    rank = x.ndim + len(np.atleast_1d(axes))
    return np.expand_dims(x, axis_list(axes, rank))


@op("squeeze")
def squeeze(x, axes=None):
    x = np.asarray(x)
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=axis_list(axes, x.ndim))


@op("transpose")
def transpose(x, perm):
    return np.transpose(np.asarray(x), [int(p) for p in np.atleast_1d(perm)])


@op("concat")
def concat(values, axis, interleave=False):
    arrays = [np.atleast_1d(v) for v in values]
    axis = int(axis) % arrays[0].ndim
    if not bool(interleave):
        return np.concatenate(arrays, axis=axis)
    # interleave: slices taken one from each input in turn along the axis
    stacked = np.stack(arrays, axis=axis + 1)
    shape = list(arrays[0].shape)
    shape[axis] *= len(arrays)
    return stacked.reshape(shape)


@op("split")
def split(x, axis, num_splits=None, split_sizes=None):
    x = np.asarray(x)
    axis = int(axis) % x.ndim
    if split_sizes is not None:
        sizes = [int(s) for s in np.atleast_1d(split_sizes)]
        if sum(sizes) != x.shape[axis]:
            raise OpError(f"split sizes {sizes} do not add up to axis length {x.shape[axis]}")
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
    if x.shape[axis] % int(num_splits):
        raise OpError(f"axis length {x.shape[axis]} is not divisible into {int(num_splits)} splits")
    return tuple(np.split(x, int(num_splits), axis=axis))


@op("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = np.asarray(x)
    rank = x.ndim
    begin, end = [int(b) for b in np.atleast_1d(begin)], [int(e) for e in np.atleast_1d(end)]
    stride = [1] * rank if stride is None else [int(s) for s in np.atleast_1d(stride)]
    begin_mask = [False] * rank if begin_mask is None else [bool(m) for m in np.atleast_1d(begin_mask)]
    end_mask = [False] * rank if end_mask is None else [bool(m) for m in np.atleast_1d(end_mask)]
    squeeze_mask = [False] * rank if squeeze_mask is None else [bool(m) for m in np.atleast_1d(squeeze_mask)]
    index = []
    for i in range(rank):
        if squeeze_mask[i]:
            if not -x.shape[i] <= begin[i] < x.shape[i]:
                raise OpError(f"index {begin[i]} is out of range for axis {i} of length {x.shape[i]}")
            index.append(begin[i])
        else:
            index.append(slice(None if begin_mask[i] else begin[i], None if end_mask[i] else end[i], stride[i]))
    return x[tuple(index)]


@op("tile")
def tile(x, reps):
    return np.tile(np.asarray(x), [int(r) for r in np.atleast_1d(reps)])


@op("fill_like")
def fill_like(ref_tensor, value=np.float32(0)):
    return np.full(np.shape(ref_tensor), value)


@op("range_1d")
def range_1d(start, end, step):
    return np.arange(start, end, step)


@op("pad")
def pad(x, pad, mode="constant", constant_val=np.float32(0)):
    x = np.asarray(x)
    widths = np.asarray(pad, dtype=np.int64).reshape(-1, 2)
    widths = [(0, 0)] * (x.ndim - len(widths)) + [tuple(w) for w in widths]
    mode = str(mode)
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    if mode in ("reflect", "replicate"):
        return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")
    raise OpError(f"pad mode '{mode}' is not one of constant, reflect, replicate")


@op("cumsum")
def cumsum(x, axis=0, exclusive=False, reverse=False):
    x = np.asarray(x)
    source = f32(x) if x.dtype.kind == "f" else x
    axis = int(axis)
    if bool(reverse):
        source = np.flip(source, axis)
    out = np.cumsum(source, axis=axis)
    if bool(exclusive):
        out = out - source
    return np.flip(out, axis) if bool(reverse) else out


def _check_indices(indices, size: int, negative_allowed: bool) -> np.ndarray:
    indices = np.asarray(indices).astype(np.int64)
    low = -size if negative_allowed else 0
    bad = (indices < low) | (indices >= size)
    if bad.any():
        value = int(indices[bad].flat[0])
        raise OpError(f"index {value} is out of range for an axis of length {size} "
                      f"({int(bad.sum())} of {indices.size} indices); on a device this is undefined behaviour")
    return np.where(indices < 0, indices + size, indices)


def gather_op(negative_allowed: bool):
    def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
        x = np.asarray(x)
        axis = int(axis) % x.ndim
        if int(batch_dims) != 0:
            raise OpError(f"gather with batch_dims {int(batch_dims)} (only 0 is implemented)")
        return np.take(x, _check_indices(indices, x.shape[axis], negative_allowed), axis=axis)
    return gather


def gather_along_axis_op(negative_allowed: bool):
    def gather_along_axis(x, indices, axis=0, validate_indices=False):
        x = np.asarray(x)
        axis = int(axis) % x.ndim
        return np.take_along_axis(x, _check_indices(indices, x.shape[axis], negative_allowed), axis=axis)
    return gather_along_axis


# --- compile-time (constexpr) ops: weight decompression, exactly as the Core ML op definitions state ------

def _dequantize_rounding(value: np.ndarray, dtype) -> np.ndarray:
    """Round an exact float32 intermediate to the op's output dtype, as each MIL arithmetic step does."""
    return value.astype(dtype).astype(np.float32)


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Unsigned `nbits`-wide values packed LSB first into bytes (the iOS16 constexpr storage layout)."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")
    if bits.size < count * nbits:
        raise OpError(f"{bits.size} packed bits hold fewer than {count} values of {nbits} bits")
    rows = bits[:count * nbits].reshape(count, nbits).astype(np.uint32)  # one value's bits per row
    return (rows << np.arange(nbits, dtype=np.uint32)).sum(axis=1)


def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    """iOS16: output = scale * (quantized_data - zero_point), scale/zero_point scalar or 1-D along `axis`."""
    data = np.asarray(quantized_data)
    axis = int(axis) % data.ndim
    shape = [1] * data.ndim
    zero_point, scale = np.asarray(zero_point), np.asarray(scale)
    if zero_point.ndim:
        shape[axis] = -1
    centered = data.astype(np.float32) - zero_point.astype(np.float32).reshape(shape if zero_point.ndim else ())
    # int8/uint8 minus an int8/uint8 zero point is exact in float32, and so is its product with an fp16
    # scale (at most 9 + 11 significant bits): the one rounding is to the output dtype.
    return centered * f32(scale).reshape(shape if scale.ndim else ())


def constexpr_blockwise_shift_scale(data, scale, offset=None, out_dtype=np.float32):
    """iOS18: output[i] = scale[i // block] * (data[i] - offset[i // block]), block = data.shape / scale.shape."""
    data, scale = np.asarray(data), f32(scale)
    repeats = [d // s for d, s in zip(data.shape, scale.shape)]
    if any(d % s for d, s in zip(data.shape, scale.shape)):
        raise OpError(f"scale shape {list(scale.shape)} does not divide data shape {list(data.shape)}")

    def blocks(values):
        for axis, n in enumerate(repeats):
            if n > 1:
                values = np.repeat(values, n, axis=axis)
        return values

    values = data.astype(np.float32)
    if offset is not None:
        offset = np.asarray(offset)
        # An integer offset has the data's dtype: the difference is exact. A float offset is subtracted in
        # the output dtype, so that step rounds like the multiply after it.
        values = values - blocks(offset.astype(np.float32))
        if offset.dtype.kind == "f":
            values = _dequantize_rounding(values, out_dtype)
    return values * blocks(scale)


def constexpr_lut_to_dense_ios16(lut, indices, shape):
    """iOS16: `indices` packs log2(len(lut))-bit entries LSB first; output = lut[indices].reshape(shape)."""
    lut = np.asarray(lut)
    shape = [int(d) for d in np.atleast_1d(shape)]
    nbits = int(round(math.log2(lut.size)))
    return lut[_unpack_bits(indices, nbits, int(np.prod(shape)))].reshape(shape)


def constexpr_lut_to_dense_ios18(indices, lut, vector_axis=None):
    """iOS18: lut [*blocks, 2^nbits, VECTOR_SIZE]; each index block reads its own table (per-grouped LUTs)."""
    indices, lut = np.asarray(indices).astype(np.int64), np.asarray(lut)
    rank = indices.ndim
    if lut.ndim != rank + 2 or any(i % b for i, b in zip(indices.shape, lut.shape[:rank])):
        raise OpError(f"lut shape {list(lut.shape)} does not fit indices shape {list(indices.shape)}")
    if int(indices.max(initial=0)) >= lut.shape[-2]:
        raise OpError(f"palette index {int(indices.max())} is out of range for {lut.shape[-2]} entries")
    block_index = tuple(
        (np.arange(n) // (n // b)).reshape([-1 if a == axis else 1 for a in range(rank)])
        for axis, (n, b) in enumerate(zip(indices.shape, lut.shape[:rank])))
    out = lut[block_index + (indices,)]  # indices.shape + [VECTOR_SIZE]
    vector = lut.shape[-1]
    if vector == 1:
        return out[..., 0]
    if vector_axis is None:
        raise OpError("a vector lut (VECTOR_SIZE > 1) needs vector_axis")
    axis = int(vector_axis) % rank
    out = np.moveaxis(out, -1, axis + 1)
    shape = list(indices.shape)
    shape[axis] *= vector
    return out.reshape(shape)


def constexpr_sparse_to_dense_ios16(nonzero_data, mask, shape):
    """iOS16: `mask` has one bit per output element (LSB first); set bits take nonzero_data in order."""
    shape = [int(d) for d in np.atleast_1d(shape)]
    count = int(np.prod(shape))
    bits = np.unpackbits(np.asarray(mask, dtype=np.uint8), bitorder="little")[:count].astype(bool)
    return _scatter_nonzero(np.asarray(nonzero_data), bits).reshape(shape)


def constexpr_sparse_to_dense_ios18(nonzero_data, mask):
    """iOS18: `mask` is a uint1 tensor of the output's shape; set bits take nonzero_data in row-major order."""
    mask = np.asarray(mask).astype(bool)
    return _scatter_nonzero(np.asarray(nonzero_data), mask.reshape(-1)).reshape(mask.shape)


def _scatter_nonzero(nonzero_data: np.ndarray, bits: np.ndarray) -> np.ndarray:
    if int(bits.sum()) != nonzero_data.size:
        raise OpError(f"the mask sets {int(bits.sum())} bits for {nonzero_data.size} stored values")
    dense = np.zeros(bits.size, dtype=nonzero_data.dtype)
    dense[bits] = nonzero_data.reshape(-1)
    return dense


# iOS15/16 gathers wrap negative indices; from iOS17 on a negative index is out of range.
for _family, _negative in (("iOS15", True), ("iOS16", True), (None, False)):
    _suffix = f"@{_family}" if _family else ""
    op(f"gather{_suffix}")(gather_op(_negative))
    op(f"gather_along_axis{_suffix}")(gather_along_axis_op(_negative))
op("constexpr_affine_dequantize")(constexpr_affine_dequantize)
op("constexpr_blockwise_shift_scale")(constexpr_blockwise_shift_scale)
op("constexpr_lut_to_dense@iOS16")(constexpr_lut_to_dense_ios16)
op("constexpr_lut_to_dense")(constexpr_lut_to_dense_ios18)
op("constexpr_sparse_to_dense@iOS16")(constexpr_sparse_to_dense_ios16)
op("constexpr_sparse_to_dense")(constexpr_sparse_to_dense_ios18)
