"""Training, evaluation, ONNX export and the model registry (needs the `train` extra)."""
