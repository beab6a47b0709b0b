"""Exceptions raised by the stores."""

from __future__ import annotations


class IdempotencyError(Exception):
    """Base class for idemscope errors."""


class StoreError(IdempotencyError):
    """The store could not be reached or answered with an error; the request's fate is unknown to it."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(f"idempotency store failed during {operation}: {cause.__class__.__name__}: {cause}")
        self.operation = operation
        self.cause = cause
