"""Text classification's metric, said once: accuracy, macro-F1 and each label's precision / recall / F1, and the
confusion matrix. Training (`pocketbert finetune classify` / `distill classify` score dev with it), `pocketbert eval`
and the device harness's --eval all score predicted label ids through here. Pure numpy: cheap to import."""
from __future__ import annotations

import numpy as np

# Where `pocketbert eval` cuts a classifier's texts unless told (or the artifact runs only longer lengths): most
# sentences and the opening of a short article fit.
EVAL_LENGTH = 128


def classification_scores(gold: list[int], predicted: list[int], labels: list[str]) -> dict:
    """Accuracy and macro-F1 in percent (F1 averaged over the labels that occur in gold or predictions, as
    scikit-learn's macro average), with each label's precision, recall, F1 and support."""
    gold_ids, predicted_ids = np.asarray(gold), np.asarray(predicted)
    per_label: dict[str, dict] = {}
    f1s: list[float] = []  # of the labels that occur
    for index, name in enumerate(labels):
        true_pos = int(((predicted_ids == index) & (gold_ids == index)).sum())
        n_pred, n_gold = int((predicted_ids == index).sum()), int((gold_ids == index).sum())
        precision = true_pos / n_pred if n_pred else 0.0
        recall = true_pos / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[name] = {"precision": round(100 * precision, 2), "recall": round(100 * recall, 2),
                           "f1": round(100 * f1, 2), "support": n_gold}
        if n_pred or n_gold:
            f1s.append(f1)
    return {"accuracy": 100 * float((gold_ids == predicted_ids).mean()) if len(gold_ids) else 0.0,
            "macro_f1": 100 * float(np.mean(f1s)) if f1s else 0.0, "count": int(len(gold_ids)), "per_label": per_label}


def confusion_matrix(gold: list[int], predicted: list[int], labels: list[str]) -> list[list[int]]:
    """counts[gold label][predicted label], rows and columns in `labels` order (the diagonal is what is right)."""
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(counts, (np.asarray(gold, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return counts.tolist()
