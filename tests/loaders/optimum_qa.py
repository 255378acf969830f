"""Answer questions with optimum + transformers' pipeline, as a Python app would (runs in .venv-optimum).

argv: artifact folder, questions JSON ([{id, question, context}]). Prints {id: answer} as JSON.
"""
import json
import sys

from optimum.onnxruntime import ORTModelForQuestionAnswering
from transformers import AutoTokenizer, pipeline

folder, questions = sys.argv[1], json.loads(open(sys.argv[2]).read())
answerer = pipeline("question-answering", model=ORTModelForQuestionAnswering.from_pretrained(folder),
                    tokenizer=AutoTokenizer.from_pretrained(folder))
print(json.dumps({q["id"]: answerer(question=q["question"], context=q["context"])["answer"] for q in questions}))
