"""A JSON renderer that embeds stored JSON text (``config.api.json_text.RawJSON``) byte for byte."""

from __future__ import annotations

import re
import uuid
from typing import Any

from rest_framework.renderers import JSONRenderer

from config.api.json_text import RawJSON


class RawJSONRenderer(JSONRenderer):
    """DRF's JSON renderer, except that each ``RawJSON`` in the data is written as its text.

    The encoder turns each one into a marker string unique to this rendering (a fresh UUID, so
    no client string can collide with it), and the markers, quoted, are then replaced by the
    texts: one pass of the C encoder, whatever the size of the items.
    """

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        texts: list[bytes] = []
        prefix = f"raw-json-{uuid.uuid4().hex}-"
        base = self.encoder_class

        class Encoder(base):  # type: ignore[valid-type,misc]
            def default(self, obj: Any) -> Any:
                if isinstance(obj, RawJSON):
                    texts.append(obj.text.encode())
                    return f"{prefix}{len(texts) - 1}"
                return super().default(obj)

        self.encoder_class = Encoder  # type: ignore[misc]  # renderers are instantiated per response
        try:
            rendered = super().render(data, accepted_media_type, renderer_context)
        finally:
            self.encoder_class = base  # type: ignore[misc]
        if not texts:
            return rendered
        marker = re.compile(b'"' + re.escape(prefix.encode()) + rb'(\d+)"')
        return marker.sub(lambda match: texts[int(match.group(1))], rendered)
