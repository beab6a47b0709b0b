"""Redis glob patterns (as SCAN MATCH reads them): escaping user input, and matching for the MemoryStore."""

from __future__ import annotations

import re
from functools import lru_cache

_SPECIAL = re.compile(r"([*?\[\]\\^-])")


def escape_glob(text: str) -> str:
    """Make `text` match only itself in a Redis glob pattern."""
    return _SPECIAL.sub(r"\\\1", text)


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Translate a Redis glob (`*`, `?`, `[...]`, `[^...]`, `\\x`) into an anchored regular expression."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "*":
            out.append(".*")
            i += 1
        elif c == "?":
            out.append(".")
            i += 1
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            members: list[str] = []
            while j < n and pattern[j] != "]":
                if pattern[j] == "\\" and j + 1 < n:
                    members.append(re.escape(pattern[j + 1]))
                    j += 2
                elif j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    lo, hi = sorted((pattern[j], pattern[j + 2]))
                    members.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    j += 3
                else:
                    members.append(re.escape(pattern[j]))
                    j += 1
            body = "".join(members)
            out.append(f"[^{body}]" if negate else (f"[{body}]" if body else "(?!)"))
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)
