"""distill/: a DistilBERT student from teacher layers, trained with the triple loss (general) and on QA (task-specific)."""
