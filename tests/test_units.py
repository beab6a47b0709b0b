"""Pure functions: key parsing, fingerprints, glob escaping, the public surface."""

from __future__ import annotations

from typing import Any

import pytest

import middleware
from middleware import InvalidKey, parse_key
from middleware.fingerprint import Fingerprint
from middleware.glob import escape_glob, glob_to_regex


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"abc", "abc"),
        (b'"abc"', "abc"),
        (b'  "abc"  ', "abc"),
        (b'"a\\"b"', 'a"b'),
        (b'"a\\\\b"', "a\\b"),
        (b"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        (b"*?[]\\", "*?[]\\"),
        (b"~" * 255, "~" * 255),
    ],
)
def test_parse_key_accepts(raw: bytes, key: str) -> None:
    assert parse_key(raw) == key


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b'""', "empty"),
        (b"x" * 256, "at most 255"),
        (b"a b", "visible ASCII"),
        (b'"a b"', "visible ASCII"),
        (b"\x00", "visible ASCII"),
        (b"\xc3\xa9", "visible ASCII"),
        (b'"abc', "not closed"),
        (b'"a\\nb"', "backslash"),
        (b'"a"b"', "forbids"),
        (b'"\x7f"', "forbids"),
    ],
)
def test_parse_key_rejects(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidKey, match=why):
        parse_key(raw)


def scope(path: str = "/p", query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"method": "POST", "path": path, "raw_path": path.encode(), "query_string": query, "headers": headers or []}


def digest(body_chunks: list[bytes], path: str = "/p", query: bytes = b"") -> str:
    fp = Fingerprint(scope(path, query))
    for chunk in body_chunks:
        fp.update(chunk)
    return fp.hexdigest()


def test_fingerprint_covers_path_query_body_not_chunking() -> None:
    base = digest([b"ab", b"c"])
    assert base == digest([b"abc"])
    assert len(base) == 32
    assert base != digest([b"abd"])
    assert base != digest([b"abc"], path="/q")
    assert base != digest([b"abc"], query=b"x=1")
    # moving bytes between parts never collides: the parts are length-prefixed
    assert digest([b""], path="/pa") != digest([b"a"], path="/p")


def test_fingerprint_headers() -> None:
    a = Fingerprint(scope(headers=[(b"content-type", b"a")]), [b"content-type"]).hexdigest()
    b = Fingerprint(scope(headers=[(b"content-type", b"b")]), [b"content-type"]).hexdigest()
    ignored = Fingerprint(scope(headers=[(b"content-type", b"b")])).hexdigest()
    assert a != b and ignored == Fingerprint(scope()).hexdigest()


@pytest.mark.parametrize("text", ["*", "?", "[a]", "\\", "a-b", "^x", "plain", "k\\*[?]"])
def test_escaped_glob_matches_only_itself(text: str) -> None:
    pattern = glob_to_regex("pre:" + escape_glob(text) + ":*")
    assert pattern.match(f"pre:{text}:tail")
    assert not pattern.match(f"pre:{text}x:tail")
    assert not pattern.match("pre:other:tail") or text == "other"


def test_glob_translation() -> None:
    assert glob_to_regex("a*").match("abc") and not glob_to_regex("a*").match("ba")
    assert glob_to_regex("a?c").match("abc") and not glob_to_regex("a?c").match("ac")
    assert glob_to_regex("[a-c]x").match("bx") and not glob_to_regex("[a-c]x").match("dx")
    assert glob_to_regex("[^a]x").match("bx") and not glob_to_regex("[^a]x").match("ax")


def test_exported_members() -> None:
    assert middleware.__all__ == sorted(middleware.__all__)
    for name in middleware.__all__:
        assert getattr(middleware, name) is not None
