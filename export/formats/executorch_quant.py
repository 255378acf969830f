"""Quantized weights for ExecuTorch/XNNPACK: TorchAO source transforms on the eager model, applied before torch.export.

int8: linear layers get 8-bit dynamic activations and 8-bit per-output-channel weights (XNNPACK's dynamically
quantized GEMM); embeddings 8-bit per-row weights, gathered as int8 and scaled after the gather, so only the
looked-up rows are dequantized.
int4: linear layers get 8-bit dynamic activations and 4-bit symmetric weights in groups of 32 along the input
(torchao 8da4w, XNNPACK's blockwise 4-bit GEMM); embeddings 4-bit in groups of 32, two values per byte, unpacked
after the gather. A layer whose width is not a multiple of 32 keeps the int8 form (the manifest counts them).
This route avoids the PT2E XNNPACKQuantizer, whose scalar-to-tensor pass breaks integer index arithmetic in
executorch 1.5.1 (executorch #22062).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pocketbert.errors import require_module

INT4_GROUP_SIZE = 32
INT4_OFFSET = 8  # a signed 4-bit value v in [-8, 7] is stored as v + 8 in [0, 15]


class Int8RowEmbedding(nn.Module):
    """An nn.Embedding stored as int8 rows with one fp32 scale per row (symmetric, zero point 0).

    torchao's weight-only embedding leaves a whole-table dequantize_affine op that the ExecuTorch
    runtime has no kernel for; gathering int8 rows with the stock embedding op and scaling them
    runs on every ExecuTorch build and dequantizes only the rows a sequence uses.
    """

    rows: torch.Tensor  # buffers, registered in __init__
    row_scales: torch.Tensor

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        weight = embedding.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        self.register_buffer("rows", torch.round(weight / scale).clamp(-127, 127).to(torch.int8))
        self.register_buffer("row_scales", scale)

    @property
    def weight(self) -> torch.Tensor:
        """The whole table, dequantized: for code that reads embedding.weight instead of calling it (DeBERTa-v2's
        relative-position embeddings)."""
        return self.rows.to(torch.float32) * self.row_scales

    def forward(self, ids):
        return F.embedding(ids, self.rows).to(torch.float32) * F.embedding(ids, self.row_scales)


class Int4GroupEmbedding(nn.Module):
    """An nn.Embedding stored as 4-bit values (symmetric, groups of 32 per row, one fp16 scale per group).

    Byte j of a row holds column j in its low nibble and column j + width/2 in its high one. Like
    Int8RowEmbedding it gathers with the stock embedding op (uint8 rows, fp16 scales); the nibbles are split
    with float floor/multiply/subtract, which XNNPACK runs, because the runtime has no kernel for torchao's
    4-bit dequantize op.
    """

    packed: torch.Tensor  # buffers, registered in __init__
    group_scales: torch.Tensor

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        weight = embedding.weight.detach().float()
        rows, width = weight.shape
        groups = weight.reshape(rows, width // INT4_GROUP_SIZE, INT4_GROUP_SIZE)
        # Rounded to fp16 before quantizing, so the stored scale is the one the values were divided by; an all-zero
        # group (a padding row) gets scale 0 and dequantizes to 0.
        scale = (groups.abs().amax(dim=-1, keepdim=True) / 7.0).half().float()
        levels = torch.round(groups / torch.where(scale > 0, scale, 1.0)).clamp(-8, 7) + INT4_OFFSET
        levels = levels.reshape(rows, width).to(torch.uint8)
        half = width // 2
        self.register_buffer("packed", levels[:, :half] + levels[:, half:] * 16)
        self.register_buffer("group_scales", scale.reshape(rows, -1).half())
        self.width = width

    @classmethod
    def fits(cls, embedding: nn.Embedding) -> bool:
        return embedding.embedding_dim % INT4_GROUP_SIZE == 0

    def _dequantize(self, packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        nibbles = packed.to(torch.float32)
        high = torch.floor(nibbles * (1.0 / 16))
        levels = torch.cat([nibbles - high * 16, high], dim=-1) - INT4_OFFSET
        grouped = levels.reshape(*levels.shape[:-1], -1, INT4_GROUP_SIZE) * scales.to(torch.float32).unsqueeze(-1)
        return grouped.reshape(*levels.shape[:-1], self.width)

    @property
    def weight(self) -> torch.Tensor:
        """The whole table, dequantized (see Int8RowEmbedding.weight)."""
        return self._dequantize(self.packed, self.group_scales)

    def forward(self, ids):
        return self._dequantize(F.embedding(ids, self.packed), F.embedding(ids, self.group_scales))


def replace_embeddings(module: nn.Module, bits: int = 8) -> dict[str, int]:
    """Swap every nn.Embedding under `module` for its quantized form; return {"int4": n, "int8": n} swapped.

    With bits=4, tables whose width is not a multiple of the group size get int8 rows instead."""
    swapped = {"int4": 0, "int8": 0}
    for name, child in module.named_children():
        if isinstance(child, nn.Embedding):
            four = bits == 4 and Int4GroupEmbedding.fits(child)
            setattr(module, name, Int4GroupEmbedding(child) if four else Int8RowEmbedding(child))
            swapped["int4" if four else "int8"] += 1
        else:
            for kind, count in replace_embeddings(child, bits).items():
                swapped[kind] += count
    return swapped


def quantize_weights(module: nn.Module, precision: str) -> dict:
    """Quantize `module` in place for `precision` ("int8" or "int4", see the module docstring); return the facts."""
    quantization = require_module("torchao.quantization", "torchao")
    granularity = require_module("torchao.quantization.granularity", "torchao")

    def config(bits: int):
        return quantization.Int8DynamicActivationIntxWeightConfig(
            # torch.int4 exists at runtime; torch's _C stubs omit the sub-byte int dtypes
            weight_dtype=torch.int4 if bits == 4 else torch.int8,  # type: ignore[attr-defined]
            weight_granularity=granularity.PerGroup(INT4_GROUP_SIZE) if bits == 4 else granularity.PerAxis(0))

    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    four = {id(m) for m in linears if precision == "int4" and m.in_features % INT4_GROUP_SIZE == 0}
    with torch.no_grad():
        for bits, chosen in ((4, four), (8, {id(m) for m in linears} - four)):
            if chosen:
                quantization.quantize_(module, config(bits), filter_fn=lambda m, fqn, chosen=chosen: id(m) in chosen)
    embeddings = replace_embeddings(module, bits=4 if precision == "int4" else 8)
    if precision == "int8":
        return {"linear": "int8 dynamic activations, int8 per-channel weights (torchao 8da8w)",
                "linear_layers": len(linears), "embedding": "int8 per-row weights, scaled after the gather",
                "embedding_layers": embeddings["int8"]}
    return {
        "linear": f"int8 dynamic activations, int4 symmetric weights in groups of {INT4_GROUP_SIZE} along the input "
                  "(torchao 8da4w, XNNPACK blockwise 4-bit GEMM)",
        "linear_layers": len(four), "linear_layers_int8": len(linears) - len(four),
        "embedding": f"int4 symmetric weights in groups of {INT4_GROUP_SIZE} (fp16 scales), two per byte, gathered "
                     "as bytes and unpacked after the gather",
        "embedding_layers": embeddings["int4"], "embedding_layers_int8": embeddings["int8"],
        "group_size": INT4_GROUP_SIZE,
    }
