"""The request fingerprint: SHA-256 (first 128 bits, hex) over method, path, query, chosen headers and the raw body.

Each part is length-prefixed, so no two different requests can be made to hash the same input by moving bytes
between parts. The body is fed in chunks as it arrives and is never parsed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .types import Scope


class Fingerprint:
    __slots__ = ("_hash",)

    def __init__(self, scope: Scope, headers: Iterable[bytes] = ()) -> None:
        parts = [
            scope["method"].encode(),
            scope.get("raw_path") or scope["path"].encode(),
            scope.get("query_string", b""),
        ]
        for name in headers:
            parts.append(name + b":" + b"\n".join(v for k, v in scope["headers"] if k == name))
        self._hash = hashlib.sha256(b"".join([len(part).to_bytes(8, "big") + part for part in parts]))

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:32]  # 128 bits: plenty to tell two requests apart, and compact to store
