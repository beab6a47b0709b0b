"""Reading the Idempotency-Key header value and the caller's scope."""

from __future__ import annotations

import hashlib
import re

from .types import Scope

MAX_KEY_LENGTH = 255


class InvalidKey(ValueError):
    """The header value is not a valid idempotency key; the message says why, for the 400 response."""


_VISIBLE_ASCII = re.compile(rb"[\x21-\x7e]+")


def parse_key(raw: bytes) -> str:
    """Accept a Structured-Field string (`"abc"`, draft-ietf-httpapi-idempotency-key-header) or a bare token.

    The key itself must be 1-255 visible ASCII characters (0x21-0x7E). Glob and regex characters are ordinary.
    """
    value = raw.strip(b" \t")
    if value[:1] == b'"':
        value = _unquote_sf_string(value)
    if not value:
        raise InvalidKey("the Idempotency-Key header is empty")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidKey(f"the idempotency key is {len(value)} characters long; at most {MAX_KEY_LENGTH} are allowed")
    if _VISIBLE_ASCII.fullmatch(value) is None:
        raise InvalidKey("the idempotency key may contain only visible ASCII characters (no spaces or controls)")
    return value.decode("ascii")


def _unquote_sf_string(value: bytes) -> bytes:
    # RFC 8941 section 4.2.5: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE
    if len(value) < 2 or value[-1:] != b'"':
        raise InvalidKey("the quoted Idempotency-Key is not closed by a double quote")
    out = bytearray()
    i, end = 1, len(value) - 1
    while i < end:
        byte = value[i]
        if byte == 0x5C:  # backslash
            if i + 1 >= end or value[i + 1] not in (0x22, 0x5C):
                raise InvalidKey('a backslash in a quoted Idempotency-Key may only escape " or \\')
            out.append(value[i + 1])
            i += 2
            continue
        if byte == 0x22 or not 0x20 <= byte <= 0x7E:
            raise InvalidKey("the quoted Idempotency-Key contains a character a Structured-Field string forbids")
        out.append(byte)
        i += 1
    return bytes(out)


def authorization_scope(scope: Scope) -> str:
    """The default key scope: a hash of the Authorization header, so one client cannot replay another's response.

    Requests without credentials share the scope `anonymous`: pass `scope=` to the middleware when clients are
    identified otherwise (a session cookie, a tenant header set by a gateway, an mTLS identity).
    """
    for name, value in scope["headers"]:
        if name == b"authorization":
            return "auth:" + hashlib.sha256(value).hexdigest()[:16]
    return "anonymous"
