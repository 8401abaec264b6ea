"""Pure pre/post-processing per task (no I/O). Shared by training (``compress``) and serving."""
