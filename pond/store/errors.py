"""Exceptions raised by the storage layer."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base class for every storage error."""


class StoreCorrupt(StoreError):
    """A data file cannot be read. The message tells the operator what to do.

    The file is never reset or overwritten: the process must stop until a human has
    looked at it (restored the ``.bak``, fixed it, or moved it away).
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
