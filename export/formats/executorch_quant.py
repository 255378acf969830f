"""int8 for ExecuTorch/XNNPACK: TorchAO source transforms on the eager model, applied before torch.export.

Linear layers: 8-bit dynamic activations, 8-bit per-output-channel weights (XNNPACK's dynamically
quantized GEMM). Embeddings: 8-bit per-row weights, gathered as int8 and scaled after the gather, so
only the looked-up rows are dequantized. This route avoids the PT2E XNNPACKQuantizer, whose
scalar-to-tensor pass breaks integer index arithmetic in executorch 1.5.1 (executorch #22062).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pocketbert.errors import require_module


class Int8RowEmbedding(nn.Module):
    """An nn.Embedding stored as int8 rows with one fp32 scale per row (symmetric, zero point 0).

    torchao's weight-only embedding leaves a whole-table dequantize_affine op that the ExecuTorch
    runtime has no kernel for; gathering int8 rows with the stock embedding op and scaling them
    runs on every ExecuTorch build and dequantizes only the rows a sequence uses.
    """

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


def replace_embeddings(module: nn.Module) -> int:
    """Swap every nn.Embedding under `module` for an Int8RowEmbedding; return how many were swapped."""
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Embedding):
            setattr(module, name, Int8RowEmbedding(child))
            swapped += 1
        else:
            swapped += replace_embeddings(child)
    return swapped


def quantize_int8(module: nn.Module) -> dict:
    """Quantize `module` in place (linears 8da8w per channel, embeddings int8 per row); return the facts."""
    quantization = require_module("torchao.quantization", "torchao")
    granularity = require_module("torchao.quantization.granularity", "torchao")
    linears = sum(isinstance(m, nn.Linear) for m in module.modules())
    with torch.no_grad():
        quantization.quantize_(
            module,
            quantization.Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8,
                                                                weight_granularity=granularity.PerAxis(0)),
            filter_fn=lambda m, fqn: isinstance(m, nn.Linear),
        )
    embeddings = replace_embeddings(module)
    return {"linear": "int8 dynamic activations, int8 per-channel weights (torchao 8da8w)", "linear_layers": linears,
            "embedding": "int8 per-row weights, scaled after the gather", "embedding_layers": embeddings}
