"""Typed errors of lmdesk (the engine's and the converter's).

Every error raised on purpose by lmdesk carries, as its message, one sentence
that a student can read in the window: what went wrong and, where possible,
what to do about it. Anything else reaching the user is a bug.
"""

from __future__ import annotations


class LmdeskError(Exception):
    """Base of all errors meant to be shown to a person as they are."""


class ModelImportError(LmdeskError):
    """A model file could not be converted into a model folder."""


class ModelNotFoundError(LmdeskError):
    """No usable model folder where one was expected."""


class ModelPrepareError(LmdeskError):
    """The default model could not be fetched or prepared."""


class ModelLoadError(LmdeskError):
    """A model folder exists but cannot be loaded."""


class Cancelled(LmdeskError):
    """Long work was stopped because the user asked for it."""

    def __init__(self, message: str = "Stopped on request.") -> None:
        super().__init__(message)
