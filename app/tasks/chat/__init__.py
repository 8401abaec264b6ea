"""The chat task's serving half: request schemas, task class and its helpers."""
