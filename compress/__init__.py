"""Offline compression toolkit: train/export FP32, build INT8 / pruned / embedding-compressed candidates,
gate them on held-out accuracy against FP32, and publish winners into the versioned model repository.

Heavy dependencies (torch, onnxruntime quantization, TensorRT) are imported by the modules that need them.
"""
