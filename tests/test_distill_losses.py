"""The distillation losses against numbers worked by hand."""
import math

import pytest
import torch

from pocketbert.distill.losses import hidden_cosine_loss, masked_lm_loss, mlm_distillation_loss, qa_distillation_loss, soft_target_kl


def test_soft_target_kl_is_kl_times_t_squared():
    # One row, two classes. T=2: student logits [0, 0] -> p_s = [1/2, 1/2];
    # teacher logits [2 ln 3, 0] -> /T = [ln 3, 0] -> p_t = [3/4, 1/4].
    # KL(p_t || p_s) = 3/4 ln(3/2) + 1/4 ln(1/2); times T^2 = 4.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])
    expected = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert soft_target_kl(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_soft_target_kl_averages_rows_and_is_zero_on_agreement():
    logits = torch.randn(5, 7)
    assert soft_target_kl(logits, logits, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0], [0.0, 0.0]])  # second row agrees: KL 0
    expected = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    assert soft_target_kl(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_hidden_cosine_loss_ignores_padding():
    student = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [-1.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # Token 0: cos 1 -> 0; token 1: cos 0 -> 1; token 2 is padding. Mean over real tokens = 0.5.
    assert hidden_cosine_loss(student, teacher, mask).item() == pytest.approx(0.5, abs=1e-6)


def test_masked_lm_loss_counts_only_labelled_positions():
    logits = torch.tensor([[[math.log(3.0), 0.0], [9.0, -9.0]]])  # position 0: p(class 0) = 3/4
    labels = torch.tensor([[0, -100]])
    assert masked_lm_loss(logits, labels).item() == pytest.approx(-math.log(0.75), rel=1e-6)


def test_mlm_distillation_loss_is_the_weighted_sum():
    terms = {"ce": torch.tensor(1.5), "mlm": torch.tensor(2.0), "cos": torch.tensor(0.25)}
    assert mlm_distillation_loss(terms, {"ce": 5.0, "mlm": 2.0, "cos": 1.0}).item() == pytest.approx(7.5 + 4.0 + 0.25)
    assert mlm_distillation_loss({"mlm": torch.tensor(2.0)}, {"mlm": 2.0, "ce": 5.0}).item() == pytest.approx(4.0)


def test_qa_distillation_loss_by_hand():
    # Two positions. Student start/end logits [0, 0]: p_s = [1/2, 1/2] for both.
    student_start = student_end = torch.tensor([[0.0, 0.0]])
    teacher_start = torch.tensor([[2 * math.log(3.0), 0.0]])  # T=2 -> [3/4, 1/4]
    teacher_end = torch.tensor([[0.0, 0.0]])  # agrees with the student: KL 0
    gold_start, gold_end = torch.tensor([0]), torch.tensor([1])
    kl_start = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    ce = math.log(2.0)  # -log 1/2 for both start and end
    loss, terms = qa_distillation_loss(student_start, student_end, teacher_start, teacher_end, gold_start, gold_end,
                                       temperature=2.0, alpha_ce=0.5, alpha_task=0.5)
    assert terms["ce"] == pytest.approx(kl_start / 2, rel=1e-6)
    assert terms["task"] == pytest.approx(ce, rel=1e-6)
    assert loss.item() == pytest.approx(0.5 * kl_start / 2 + 0.5 * ce, rel=1e-6)
    loss, terms = qa_distillation_loss(student_start, student_end, None, None, gold_start, gold_end,
                                       temperature=2.0, alpha_ce=0.0, alpha_task=1.0)
    assert set(terms) == {"task"} and loss.item() == pytest.approx(ce, rel=1e-6)
