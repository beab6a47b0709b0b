"""How RedisStore lays a record out in Redis: one string, readable with `redis-cli GET`.

In flight (small; rewritten by each heartbeat)::

    F <fp> <token> <lease ms> <created ms> <renewed ms> <renewals> <owner>
    <place>

Completed (the response headers as HTTP-style lines, a blank line, then the body bytes)::

    C <fp> <created ms> <held ms> <status> <size> <stored>
    <place>
    content-type: application/json
    content-length: 97

    {"id": ...}

`place` is the scope, the route template and, when it differs from the route, the path; method and key are in the
record's name. Fields are separated by one space; `%`, whitespace and (in header names) `:` are percent-escaped.
`stored` is 1 when the body is kept, 0 when it was over the size limit (and the record holds no body).
The Lua scripts in `scripts/` write these lines; this module writes the parts Python supplies and reads them all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from .records import COMPLETED, IN_FLIGHT, Claim, Record, RequestInfo, StoredResponse

HEAD_BYTES = 2048  # what a listing reads of each record: enough for the first two lines in all usual cases


def _escaper(chars: bytes) -> Callable[[bytes], bytes]:
    pattern = re.compile(b"[" + re.escape(chars) + b"]")

    def escape(data: bytes) -> bytes:
        return pattern.sub(lambda m: b"%%%02X" % m.group()[0], data) if pattern.search(data) else data

    return escape


FIELD_UNSAFE = "% \t\r\n\x0b\x0c"  # escaped in space-separated fields (Lua's %s counts \v and \f as space too)
_escape_field = _escaper(FIELD_UNSAFE.encode())
_FIELD_UNSAFE = re.compile(f"[{re.escape(FIELD_UNSAFE)}]")
_escape_name = _escaper(b"%:\r\n")
_escape_value = _escaper(b"%\r\n")


def _unescape(data: bytes) -> bytes:
    return unquote_to_bytes(data) if b"%" in data else data


def field(text: str) -> bytes:
    """One space-free field (owner, scope, route, path)."""
    return _escape_field(text.encode())


def place_line(request: RequestInfo) -> bytes:
    scope, route, path = request.scope, request.route, request.path
    parts = [scope, route] if path == route else [scope, route, path]
    if _FIELD_UNSAFE.search(scope + route + path) is None:  # the usual case: nothing to escape
        return " ".join(parts).encode()
    return b" ".join(field(part) for part in parts)


def in_flight(request: RequestInfo, token: str, lease_ms: int, now_ms: int, owner: bytes) -> bytes:
    """A new in-flight record (`owner` already escaped with `field`)."""
    status = f"F {request.fingerprint} {token} {lease_ms} {now_ms} {now_ms} 0 ".encode()
    return b"%b%b\n%b\n" % (status, owner, place_line(request))


def claim_answer(record: bytes, fingerprint: str, now_ms: int) -> Claim:
    """What a claim finds when the key is taken: another request's record (mismatch), a request still running
    (Retry-After: the rest of its lease) or a stored response."""
    status = record[: record.index(b"\n")].split(b" ", 6)
    if status[1].decode() != fingerprint:
        return Claim("mismatch")
    if status[0] == b"F":
        renewed, lease = int(status[5]), int(status[3])
        return Claim("in_flight", retry_after_ms=max(0, renewed + lease - now_ms))
    response, completed_ms = replay(record)
    return Claim("completed", response=response, age_ms=max(0, now_ms - completed_ms))


def header_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The response headers as `name: value` lines, ended by a blank line."""
    return b"".join([_escape_name(k) + b": " + _escape_value(v) + b"\n" for k, v in headers]) + b"\n"


def _split(value: bytes) -> tuple[list[bytes], list[bytes], bytes]:
    first = value.index(b"\n")
    second = value.index(b"\n", first + 1)
    return value[:first].split(b" "), value[first + 1 : second].split(b" "), value[second + 1 :]


def _response(rest: bytes, status: int, size: int, stored: bool) -> StoredResponse:
    if rest.startswith(b"\n"):
        block, body = b"", rest[1:]
    else:
        end = rest.index(b"\n\n")
        block, body = rest[:end], rest[end + 2 :]
    headers = []
    if block:
        for line in block.split(b"\n"):
            name, _, value = line.partition(b": ")
            headers.append((_unescape(name), _unescape(value)))
    return StoredResponse(status, headers, body, stored, size)


def replay(value: bytes) -> tuple[StoredResponse, int]:
    """A completed record's response, and when it was stored (ms since the epoch)."""
    line, _, rest = _split(value)
    created, held = int(line[2]), int(line[3])
    return _response(rest, int(line[4]), int(line[5]), line[6] == b"1"), created + held


def _text(data: bytes) -> str:
    return _unescape(data).decode("utf-8", "replace")


def _method_and_key(redis_key: str, route: str) -> tuple[str, str]:
    """`<prefix>:{<tag>}:<METHOD>:<route>:<key>`: the prefix has no braces and the tag is hex, so the first `}:`
    ends the tag; the method has no `:`; the route is known, so the key is what follows it (colons and all)."""
    rest = redis_key[redis_key.find("}:") + 2 :]
    method, _, rest = rest.partition(":")
    key = rest[len(route) + 1 :] if rest.startswith(route + ":") else rest.rpartition(":")[2]
    return method, key


def record(redis_key: str, value: bytes, pttl_ms: int, *, whole: bool = True) -> Record:
    """Decode a record. `whole=False`: `value` may be only the first HEAD_BYTES (a listing), so the response
    headers and body are left out."""
    line, place, rest = _split(value)
    route = _text(place[1])
    method, key = _method_and_key(redis_key, route)
    found = Record(
        redis_key,
        IN_FLIGHT if line[0] == b"F" else COMPLETED,
        key=key,
        method=method,
        route=route,
        path=_text(place[2]) if len(place) > 2 else route,
        scope=_text(place[0]),
        fingerprint=line[1].decode(),
        pttl_ms=pttl_ms,
    )
    if found.state == IN_FLIGHT:
        found.token, found.owner = line[2].decode(), _text(line[7])
        found.lease_ms, found.created_ms, found.renewed_ms, found.renewals = map(int, line[3:7])
        return found
    found.created_ms, held, found.status, found.size = map(int, line[2:6])
    found.completed_ms = found.created_ms + held
    found.stored = line[6] == b"1"
    if whole:
        response = _response(rest, found.status, found.size, found.stored)
        found.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
        found.body = response.body
    return found


def head_is_whole(head: bytes) -> bool:
    """Whether a listing's read of HEAD_BYTES holds the first two lines (else it reads the whole record)."""
    return len(head) < HEAD_BYTES or head.count(b"\n", 0, HEAD_BYTES) >= 2
