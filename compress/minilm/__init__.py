"""MiniLM building blocks shared by the text tasks (chat, search): the encoder, its ONNX optimisation, torch runs.

Not a task: the task packages import from here, never from each other."""
