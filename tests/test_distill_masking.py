"""Dynamic masking: 15% of real tokens, 80/10/10, never special tokens or padding, rare tokens favoured."""
import torch

from pocketbert.distill.masking import DynamicMasker, count_tokens, token_mask_weights

VOCAB, MASK, CLS, SEP, PAD = 1000, 4, 1, 2, 0


def _batch(generator):
    ids = torch.randint(10, VOCAB, (512, 128), generator=generator)
    mask = torch.ones_like(ids)
    ids[:, 0], ids[:, -1] = CLS, SEP
    mask[:256, 100:] = 0  # half the rows padded after 100 tokens
    ids[:256, 100:] = PAD
    return ids, mask


def test_mask_proportions_and_exclusions():
    generator = torch.Generator().manual_seed(0)
    ids, attention = _batch(generator)
    masker = DynamicMasker(VOCAB, MASK, [PAD, CLS, SEP, MASK])
    masked, labels = masker(ids, attention, generator=generator)
    chosen = labels != -100
    real = attention.bool() & (ids != CLS) & (ids != SEP)
    assert not chosen[~real].any(), "special tokens or padding were chosen"
    assert (masked[~real] == ids[~real]).all()
    assert abs(chosen.sum().item() / real.sum().item() - 0.15) < 0.005
    assert (labels[chosen] == ids[chosen]).all()
    n = chosen.sum().item()
    as_mask = (masked[chosen] == MASK).sum().item() / n
    kept = (masked[chosen] == ids[chosen]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.01
    assert abs(kept - 0.1) < 0.01  # random replacements that hit the same id add ~0.1/1000
    assert abs(1 - as_mask - kept - 0.1) < 0.01


def test_rare_tokens_are_masked_more_often():
    generator = torch.Generator().manual_seed(1)
    frequent, rare = 10, 11
    ids = torch.full((256, 64), frequent)
    ids[:, ::8] = rare  # 1 in 8 tokens is rare
    attention = torch.ones_like(ids)
    weights = token_mask_weights(count_tokens(ids.tolist(), VOCAB))
    masked, labels = DynamicMasker(VOCAB, MASK, [PAD], weights)(ids, attention, generator=generator)
    chosen = labels != -100
    rate_rare = chosen[ids == rare].float().mean().item()
    rate_frequent = chosen[ids == frequent].float().mean().item()
    # counts 7:1, so weights differ by 7^0.7 = 3.9
    assert 3.3 < rate_rare / rate_frequent < 4.6
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
