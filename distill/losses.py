"""DistilBERT's loss terms (Sanh et al. 2019), each a small pure function on tensors.

    L_mlm-distill = a_ce * L_ce + a_mlm * L_mlm + a_cos * L_cos
    L_qa-distill  = a_ce * (KL_start + KL_end) / 2 * T^2 + a_task * (CE_start + CE_end) / 2 + a_cos * L_cos
    L_cls-distill = a_ce * KL * T^2 + a_cls * CE
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) averaged over rows, times T^2 (Hinton: keeps gradients T-independent).

    Both inputs are [rows, classes]; select the rows that count (real tokens) before calling.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * temperature ** 2


def masked_lm_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the masked positions only (labels are -100 elsewhere)."""
    return F.cross_entropy(student_logits.reshape(-1, student_logits.size(-1)), labels.reshape(-1), ignore_index=-100)


def hidden_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                       attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(h_s, h_t) over real (attended) tokens: aligns the directions of the hidden states."""
    keep = attention_mask.bool()
    cos = F.cosine_similarity(student_hidden[keep], teacher_hidden[keep], dim=-1)
    return (1.0 - cos).mean()


def mlm_distillation_loss(terms: dict[str, torch.Tensor], alphas: dict[str, float]) -> torch.Tensor:
    """L = a_ce * L_ce + a_mlm * L_mlm + a_cos * L_cos over the terms that were computed (alpha > 0)."""
    loss = sum(alphas[name] * value for name, value in terms.items())
    if not isinstance(loss, torch.Tensor):  # sum() of no terms is the int 0, which cannot be backpropagated
        raise ValueError("no MLM distillation term was computed: at least one of a_ce, a_mlm, a_cos must be > 0")
    return loss


def qa_distillation_loss(student_start: torch.Tensor, student_end: torch.Tensor,
                         teacher_start: torch.Tensor | None, teacher_end: torch.Tensor | None,
                         start_positions: torch.Tensor, end_positions: torch.Tensor,
                         temperature: float, alpha_ce: float, alpha_task: float,
                         hidden_cosine: torch.Tensor | None = None, alpha_cos: float = 0.0) -> tuple[torch.Tensor, dict]:
    """a_ce * mean(KL_start, KL_end) * T^2 + a_task * mean(CE_start, CE_end) + a_cos * L_cos (computed by the
    caller with `hidden_cosine_loss`); returns (loss, the terms)."""
    terms: dict[str, torch.Tensor] = {}
    if alpha_ce > 0:
        if teacher_start is None or teacher_end is None:
            raise ValueError("a_ce > 0 needs the teacher's start and end logits")
        terms["ce"] = (soft_target_kl(student_start, teacher_start, temperature)
                       + soft_target_kl(student_end, teacher_end, temperature)) / 2
    if alpha_task > 0:
        terms["task"] = (F.cross_entropy(student_start, start_positions) + F.cross_entropy(student_end, end_positions)) / 2
    if alpha_cos > 0:
        if hidden_cosine is None:
            raise ValueError("a_cos > 0 needs L_cos (hidden_cosine_loss of the student and teacher hidden states)")
        terms["cos"] = hidden_cosine
    zero = student_start.new_zeros(())  # a term left out (its alpha is 0) adds nothing
    loss = alpha_ce * terms.get("ce", zero) + alpha_task * terms.get("task", zero) + alpha_cos * terms.get("cos", zero)
    return loss, {name: float(value.detach()) for name, value in terms.items()}


def classification_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                                     labels: torch.Tensor, temperature: float, alpha_ce: float,
                                     alpha_cls: float) -> tuple[torch.Tensor, dict]:
    """a_ce * KL(teacher at T || student at T) * T^2 + a_cls * CE(student, gold label), on [batch, labels] logits;
    returns (loss, the terms). Without teacher logits (fine-tuning) set alpha_ce to 0."""
    terms: dict[str, torch.Tensor] = {}
    if alpha_ce > 0:
        if teacher_logits is None:
            raise ValueError("a_ce > 0 needs the teacher's logits")
        terms["ce"] = soft_target_kl(student_logits, teacher_logits, temperature)
    if alpha_cls > 0:
        terms["cls"] = F.cross_entropy(student_logits, labels)
    zero = student_logits.new_zeros(())  # a term left out (its alpha is 0) adds nothing
    loss = alpha_ce * terms.get("ce", zero) + alpha_cls * terms.get("cls", zero)
    return loss, {name: float(value.detach()) for name, value in terms.items()}
