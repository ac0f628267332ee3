"""sera's own error types: one family, so the CLI and the app can show one clear line."""

from __future__ import annotations

from pathlib import Path


class SeraError(Exception):
    """Base class of every error sera raises on purpose (bad input, bad setup)."""


class AudioError(SeraError):
    """An audio file sera cannot use; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CorpusError(SeraError):
    """A corpus folder, manifest or label that does not fit what its reader expects."""


class EncoderError(SeraError):
    """An encoder that cannot be loaded or does not fit the features or checkpoint."""


class CacheError(SeraError):
    """Missing or unreadable cached features."""
