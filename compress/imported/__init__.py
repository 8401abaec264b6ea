"""Importing an FP32 model trained elsewhere (an ONNX file from any exporter): gate, compress, publish, serve."""
