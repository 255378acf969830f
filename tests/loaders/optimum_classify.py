"""Classify texts with optimum + transformers' pipeline, as a Python app would (runs in .venv-optimum).

argv: artifact folder, texts JSON ([str]). Prints {"labels": the model's id2label in id order, "top": the top label
of each text, "logits": each text's logits from ORTModelForSequenceClassification itself} as JSON.
"""
import json
import sys

import torch
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

folder, texts = sys.argv[1], json.loads(open(sys.argv[2]).read())
model = ORTModelForSequenceClassification.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)
with torch.no_grad():
    logits = [model(**tokenizer(text, truncation=True, return_tensors="pt")).logits[0].tolist() for text in texts]
print(json.dumps({"labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
                  "top": [classifier(text)[0]["label"] for text in texts], "logits": logits}))
