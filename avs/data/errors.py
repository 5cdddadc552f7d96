"""The one error type for bad input data."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A dataset file is missing, unreadable or inconsistent.

    Attributes:
        path: the file at fault.
        reason: what is wrong with it, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # keeps both fields when sent back from a worker process
        return (DataError, (self.path, self.reason))
