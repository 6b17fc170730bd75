"""What a contributor name may be: one rule, checked wherever names enter (a manifest, any loader's market).

A name is data, kept exactly as written: two names that differ in any character are two contributors, so a
name that would be easy to merge by accident is refused instead of silently cleaned up. The rule
(``NAME_RULE``): 1 to ``MAX_NAME_LENGTH`` characters; no whitespace at either end; no control characters
except tab and line breaks inside; no two names that differ only in Unicode normalization (they look the
same). Commas, quotes, line breaks, emoji and any script are fine: names travel as data (JSON, CSV cells,
one MLflow param each), never inside a joined string.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_NAME_LENGTH", "NAME_RULE", "name_problem", "same_looking"]

MAX_NAME_LENGTH = 1000
NAME_RULE = (f"a contributor name is kept exactly as written: 1 to {MAX_NAME_LENGTH} characters, no spaces or other "
             "whitespace at either end, no control characters except tabs and line breaks inside")
_INSIDE = frozenset("\t\n\r")


def name_problem(name: object) -> str | None:
    """What breaks ``NAME_RULE`` in ``name`` (e.g. "ends with whitespace"), or None when it is a valid name."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name or not name.strip():
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"has {len(name)} characters"
    if name != name.lstrip():
        return "starts with whitespace"
    if name != name.rstrip():
        return "ends with whitespace"
    bad = sorted({c for c in name if unicodedata.category(c) == "Cc" and c not in _INSIDE})
    if bad:
        return f"holds the control character(s) {', '.join(f'U+{ord(c):04X}' for c in bad)}"
    return None


def same_looking(names: tuple[str, ...] | list[str]) -> tuple[str, str] | None:
    """The first two names that are equal or differ only in Unicode normalization (they look the same), or None."""
    seen: dict[str, str] = {}
    for name in names:
        key = unicodedata.normalize("NFC", name)
        if key in seen:
            return seen[key], name
        seen[key] = name
    return None
