"""One error tree for the compress toolkit. The CLI prints ``error: <message>`` and exits non-zero."""

from __future__ import annotations


class CompressError(Exception):
    """Base of every expected failure; the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(CompressError):
    """The config file is missing, malformed, or has unknown / invalid keys."""


class DataError(CompressError):
    """The data file is missing, unreadable, or does not match the declared columns."""


class ExportError(CompressError):
    """The model could not be exported, or its outputs do not match the declared schema."""


class CalibrationError(CompressError):
    """Static quantization calibration failed."""


class GateFailed(CompressError):
    """No candidate (or a required candidate) kept accuracy within the gate."""


class EngineBuildError(CompressError):
    """TensorRT engine build failed on a machine that has TensorRT and a GPU."""


class PublishError(CompressError):
    """The version could not be written to the model repository."""
