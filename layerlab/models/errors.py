"""Errors raised by the model zoo, each naming the spec, file or input at fault and the reason."""

from __future__ import annotations


class ModelError(ValueError):
    """Base class for every model-zoo error (a ValueError so callers can treat it as bad input)."""


class UnknownModelSpec(ModelError):
    """The spec string names no adapter (unknown prefix or unknown hub name)."""


class CheckpointError(ModelError):
    """A checkpoint is missing, unreadable or not in the format its spec prefix promises."""


class RemoteCodeRefused(ModelError):
    """Loading this model would run code from its files (a HyperPyYAML config) and the user has not consented."""


class AudioInputError(ModelError):
    """Audio handed to a model is malformed (shape, dtype, lengths) or at the wrong sample rate."""
