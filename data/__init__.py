"""Data generation stage: a SQuAD v1.1 QA set and unlabeled text from English text that ships in packages."""
