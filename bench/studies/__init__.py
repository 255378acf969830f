"""bench/studies/: the one-off studies behind docs/ (`pocketbert.bench.studies`), each writing its own file names.

- gemm.py (`pocketbert bench gemm`): each runtime's own fp32 and int8 GEMM rate on this CPU -> gemm.json.
- op_profile.py (`pocketbert bench op-profile`): where each model's time goes, per op type -> op_profile.json.
- onnx_int8_settings.py (`pocketbert bench onnx-int8-settings`): ONNX Runtime int8 settings -> onnx_int8_settings.json.
- peers.py (`pocketbert bench peers`): our exports beside optimum-onnx, litert-torch, ExecuTorch's recipe -> peers.json.
- coreml_evaluator_speed.py: how fast the Core ML reference evaluator runs (a script).
- paper_comparison.sh, precision_accuracy.sh: the real-size benchmark and every precision's accuracy (docs/).

They use the other stages only through their public faces (`pocketbert.export`, `pocketbert.bench.measure`).
"""
