"""Answer questions with the TFLite Task Library's BertQuestionAnswerer, as an Android / iOS app would (runs in
.venv-tflite-support), and read the file's metadata back with tflite-support's own reader.

argv: .tflite file, questions JSON ([{id, question, context}]).
Prints {"answers": {id: best answer}, "metadata": <the metadata as JSON>, "packed_files": [...]}.
"""
import json
import sys

from tflite_support import metadata
from tflite_support.task import text

model, questions = sys.argv[1], json.loads(open(sys.argv[2]).read())
displayer = metadata.MetadataDisplayer.with_model_file(model)
answerer = text.BertQuestionAnswerer.create_from_file(model)
answers = {q["id"]: answerer.answer(q["context"], q["question"]).answers[0].text for q in questions}
print(json.dumps({"answers": answers, "metadata": json.loads(displayer.get_metadata_json()),
                  "packed_files": displayer.get_packed_associated_file_list()}))
