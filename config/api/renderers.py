"""The API's JSON renderers: DRF's output, written by orjson, with stored JSON text
(``config.api.json_text.RawJSON``) embedded byte for byte.

``JSONRenderer`` writes what DRF's ``JSONRenderer`` writes (compact, UTF-8, datetimes as DRF's
encoder spells them, ``\\u2028`` and ``\\u2029`` escaped) at a fraction of the cost: the standard
library's encoder, called through DRF's subclass, was most of a message page's rendering
(``bench/README.md``). Whatever orjson does not know natively (datetimes, on purpose: DRF ends a
UTC time with ``Z``; decimals, lazy strings, querysets, bytes) goes through DRF's own encoder. An
indented rendering (``Accept: application/json; indent=4``, the browsable API) is DRF's own, of
the same value.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import orjson
from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder as DRFEncoder

from config.api.json_text import RawJSON

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
_drf_default = DRFEncoder().default
_LINE_SEPARATOR = "\u2028".encode()
_PARAGRAPH_SEPARATOR = "\u2029".encode()


def _default(obj: Any) -> Any:
    if isinstance(obj, RawJSON):
        return orjson.Fragment(obj.text)  # the stored text, verbatim
    return _drf_default(obj)


def dumps(data: Any) -> bytes:
    """``data`` as compact JSON, as DRF's renderer writes it (a NaN or an infinite float is
    written as ``null``: none of our fields holds one)."""
    try:
        rendered = orjson.dumps(data, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # An integer past 64 bits (a client's metadata may hold one; orjson has no big integers):
        # the standard library's encoder, as DRF renders, the stored items spliced in verbatim.
        rendered = _stdlib_dumps(data)
    # As DRF does: output that is also valid JavaScript (stored text included).
    if _LINE_SEPARATOR in rendered:
        rendered = rendered.replace(_LINE_SEPARATOR, b"\\u2028")
    if _PARAGRAPH_SEPARATOR in rendered:
        rendered = rendered.replace(_PARAGRAPH_SEPARATOR, b"\\u2029")
    return rendered


def _stdlib_dumps(data: Any) -> bytes:
    texts: list[str] = []
    prefix = f"raw-json-{uuid.uuid4().hex}-"  # no client string can collide with it

    class Encoder(DRFEncoder):
        def default(self, obj: Any) -> Any:
            if isinstance(obj, RawJSON):
                texts.append(obj.text)
                return f"{prefix}{len(texts) - 1}"
            return super().default(obj)

    rendered = json.dumps(data, cls=Encoder, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if texts:
        marker = re.compile('"' + re.escape(prefix) + r'(\d+)"')
        rendered = marker.sub(lambda match: texts[int(match.group(1))], rendered)
    return rendered.encode()


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        context = renderer_context or {}
        asks_indent = ";" in (accepted_media_type or "") or context.get("indent")
        if asks_indent and self.get_indent(accepted_media_type or "", context) is not None:
            # Rare (people reading JSON, the browsable API): DRF's own rendering of the same value,
            # stored items parsed (their json.dumps is the same; only their spacing changes).
            return super().render(json.loads(dumps(data)), accepted_media_type, renderer_context)
        return dumps(data)


# The message routes named it so; every route now embeds stored text the same way.
RawJSONRenderer = JSONRenderer
