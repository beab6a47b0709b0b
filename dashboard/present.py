"""Turning records into what a person reads: durations, sizes, masked headers, bodies as JSON, text or hex.

Everything here returns plain strings; the templates escape them (autoescape, never |safe).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

BODY_PREVIEW_BYTES = 64 * 1024
SENSITIVE_HEADER = re.compile(r"authorization|cookie|token|secret|password|api[-_]?key|session|signature", re.I)


def duration(ms: int | float | None) -> str:
    if ms is None or ms < 0:
        return "-"
    seconds = ms / 1000
    if seconds < 1:
        return f"{int(ms)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"


def timestamp(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def mask_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Credentials-like values are masked; the dashboard never shows a cookie or a token."""
    masked = []
    for name, value in headers:
        if SENSITIVE_HEADER.search(name):
            value = f"•••••• ({len(value)} characters, masked)"
        masked.append((name, value))
    return masked


@dataclass
class BodyView:
    kind: str  # json | text | binary | empty | not_stored
    text: str  # what to show (pretty JSON, text, or a hex dump)
    truncated: bool
    size: int


def body_view(body: bytes, stored: bool, size_: int, content_type: str = "") -> BodyView:
    if not stored:
        return BodyView("not_stored", "", False, size_)
    if not body:
        return BodyView("empty", "", False, 0)
    preview = body[:BODY_PREVIEW_BYTES]
    truncated = len(body) > BODY_PREVIEW_BYTES
    if not truncated and ("json" in content_type or body[:1] in (b"{", b"[")):
        try:
            pretty = json.dumps(json.loads(body), indent=2, ensure_ascii=False, sort_keys=False)
            return BodyView("json", pretty, False, len(body))
        except ValueError:
            pass
    try:
        text = preview.decode("utf-8")
        if _printable(text):
            return BodyView("text", text, truncated, len(body))
    except UnicodeDecodeError:
        if truncated:  # the cut may have split a character
            try:
                text = preview[:-3].decode("utf-8")
                if _printable(text):
                    return BodyView("text", text, truncated, len(body))
            except UnicodeDecodeError:
                pass
    return BodyView("binary", hexdump(preview[:4096]), len(body) > 4096, len(body))


def _printable(text: str) -> bool:
    return all(c.isprintable() or c in "\n\r\t" for c in text)


def hexdump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        text_part = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hex_part:<47}  {text_part}")
    return "\n".join(lines)


def content_type_of(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "content-type":
            return value
    return ""
