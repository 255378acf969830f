"""bench: size, memory and latency against a baseline (`pocketbert bench`), and SQuAD accuracy (`pocketbert eval`)."""
