"""Classify texts with the TFLite Task Library's BertNLClassifier, as an Android / iOS app would (runs in
.venv-tflite-support), and read the file's metadata back with tflite-support's own reader.

argv: .tflite file, texts JSON ([str]).
Prints {"scores": [{label: score} per text], "top": [the best-scoring label per text], "metadata": <the metadata as
JSON>, "packed_files": [...]}. The library returns every label's score in the output's order, unsorted.
"""
import json
import sys

from tflite_support import metadata
from tflite_support.task import text

model, texts = sys.argv[1], json.loads(open(sys.argv[2]).read())
displayer = metadata.MetadataDisplayer.with_model_file(model)
classifier = text.BertNLClassifier.create_from_file(model)
scores = [{c.category_name: c.score for c in classifier.classify(t).classifications[0].categories} for t in texts]
print(json.dumps({"scores": scores, "top": [max(s, key=s.get) for s in scores],
                  "metadata": json.loads(displayer.get_metadata_json()),
                  "packed_files": displayer.get_packed_associated_file_list()}))
