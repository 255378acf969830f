"""Dynamic MLM masking as in DistilBERT: fresh masks every batch, rare tokens masked more often.

Which positions are masked is sampled with probabilities proportional to count(token)^-0.7 (the
HF reference distiller's smoothing), scaled so that 15% of the real tokens are masked on average;
the chosen positions become [MASK] 80%, stay 10%, and become a random token 10% of the time.
Special tokens and padding are never chosen. No next-sentence prediction.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

MASK_FRACTION = 0.15
MASK_KEEP_RANDOM = (0.8, 0.1, 0.1)
COUNT_SMOOTHING = 0.7


def token_mask_weights(token_counts: torch.Tensor, smoothing: float = COUNT_SMOOTHING) -> torch.Tensor:
    """Per-vocabulary-id weights count^-smoothing (unseen ids count as 1)."""
    return torch.clamp(token_counts.float(), min=1.0) ** -smoothing


def count_tokens(token_id_lists: Iterable[Iterable[int]], vocab_size: int) -> torch.Tensor:
    """How often each vocabulary id occurs in the training text: the counts `token_mask_weights` smooths."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for ids in token_id_lists:
        counts += torch.bincount(torch.as_tensor(list(ids), dtype=torch.long), minlength=vocab_size)
    return counts


class DynamicMasker:
    """Masks a batch afresh on every call (never a fixed mask per example), favouring rare tokens by `token_weights`."""

    def __init__(self, vocab_size: int, mask_token_id: int, special_token_ids: Iterable[int],
                 token_weights: torch.Tensor | None = None, mask_fraction: float = MASK_FRACTION,
                 mask_keep_random: tuple[float, float, float] = MASK_KEEP_RANDOM):
        self.vocab_size = vocab_size
        self.mask_token_id = mask_token_id
        self.special_token_ids = torch.as_tensor(sorted(set(special_token_ids)), dtype=torch.long)
        self.token_weights = token_weights if token_weights is not None else torch.ones(vocab_size)
        self.mask_fraction = mask_fraction
        self.mask_keep_random = mask_keep_random

    @classmethod
    def for_tokenizer(cls, tokenizer, token_weights: torch.Tensor | None = None) -> DynamicMasker:
        """A masker with the tokenizer's vocabulary size, [MASK] id and special ids (never masked)."""
        return cls(len(tokenizer), tokenizer.mask_token_id, tokenizer.all_special_ids, token_weights)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids, labels with -100 on positions that were not chosen)."""
        maskable = attention_mask.bool() & ~torch.isin(input_ids, self.special_token_ids)
        weights = self.token_weights[input_ids] * maskable
        # Scale per sequence so the expected number chosen is 15% of its maskable tokens.
        n_maskable = maskable.sum(dim=1, keepdim=True).clamp(min=1)
        probs = weights * (self.mask_fraction * n_maskable / weights.sum(dim=1, keepdim=True).clamp(min=1e-12))
        chosen = torch.bernoulli(probs.clamp(max=1.0), generator=generator).bool() & maskable

        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        p_mask, p_keep, _ = self.mask_keep_random
        action = torch.rand(input_ids.shape, generator=generator)
        random_ids = torch.randint(self.vocab_size, input_ids.shape, generator=generator)
        masked = input_ids.clone()
        masked[chosen & (action < p_mask)] = self.mask_token_id
        replace = chosen & (action >= p_mask + p_keep)
        masked[replace] = random_ids[replace]
        return masked, labels
