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
        h = hashlib.sha256()
        _part(h, scope["method"].encode())
        _part(h, scope.get("raw_path") or scope["path"].encode())
        _part(h, scope.get("query_string", b""))
        wanted = tuple(headers)
        if wanted:
            for name in wanted:
                values = b"\n".join(v for k, v in scope["headers"] if k == name)
                _part(h, name + b":" + values)
        self._hash = h

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:32]  # 128 bits: plenty to tell two requests apart, and compact to store


def _part(h: hashlib._Hash, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)
