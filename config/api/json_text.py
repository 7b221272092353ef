"""JSON kept as the client wrote it: numbers with their spelling, keys in their order, any string.

A message's ``item`` must come back with the same ``json.dumps`` output as it went in (agent
frameworks hash it), which jsonb cannot do (it sorts keys, respells numbers, refuses NUL). So an
item is kept as JSON text:

* ``JSONFloat``: what the request parser makes of a JSON number with a fraction or exponent: a
  ``float`` everywhere (``token_count: 5.0`` still validates) that remembers its spelling.
* ``to_text``: a parsed value back to compact JSON text, each number as it was spelled, keys in
  their order, strings escaped as ``json.dumps`` escapes them (so ``\\u0000`` survives as an
  escape, and the text column never holds a NUL). Parsing the text again gives an equal value
  whose ``json.dumps`` is identical to the original's.
* ``RawJSON``: stored text that a response embeds verbatim (``config.api.renderers``).
"""

from __future__ import annotations

import json
import math
from typing import Any

_encode_string = json.encoder.encode_basestring  # the C escaper, as json.dumps(ensure_ascii=False)


class JSONFloat(float):
    """A parsed JSON number with a fraction or exponent, and its spelling (``1.0``, ``1e2``)."""

    text: str

    def __new__(cls, text: str) -> JSONFloat:
        value = super().__new__(cls, text)
        if not math.isfinite(value):
            raise ValueError(f"number {text} is out of range")
        value.text = text
        return value


def to_text(value: Any) -> str:
    """``value`` (as parsed with ``parse_float=JSONFloat``) as compact JSON text."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_encode_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, JSONFloat):
        out.append(value.text)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and Infinity are not JSON")
        out.append(float.__repr__(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_encode_string(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")


class RawJSON:
    """JSON text a response carries verbatim. ``tolist()`` is for renderers that don't know it
    (DRF's encoder calls it): they get the parsed value, equal but not byte for byte."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def tolist(self) -> Any:
        return json.loads(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJSON) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"RawJSON({self.text[:60]!r})"
