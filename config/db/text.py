"""Text PostgreSQL cannot store: the NUL character and unpaired UTF-16 surrogates.

PostgreSQL refuses both in ``text`` and ``jsonb`` (and cannot compare against them), so they are
refused at the door (query strings, paths, JSON bodies) or, where the text is ours to record
(a user agent in an audit row), stripped. One definition, used by all of those.
"""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def storable(text: str | None, limit: int) -> str | None:
    """``text`` without what PostgreSQL cannot store, cut to ``limit`` characters."""
    if text is None:
        return None
    if text.isascii() and "\x00" not in text:  # nearly every path and user agent: nothing to strip
        return text[:limit]
    return _UNSTORABLE.sub("", text)[:limit]
