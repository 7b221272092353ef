"""DRF's content negotiation, remembered: the renderer it picks depends only on the Accept header,
the format asked for (``?format=`` or a suffix) and the view's renderer classes, so the answer
for a combination already seen is looked up instead of parsed again (an eighth of a small GET).
A request DRF would refuse (406) is never remembered: it runs DRF's code every time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

_LIMIT = 256  # Accept headers are the client's to choose; a full table starts over
_chosen: dict[tuple[str, str | None, tuple[type, ...]], tuple[int, str]] = {}
_lock = threading.Lock()


class RememberedContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        format = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        key = (request.META.get("HTTP_ACCEPT", "*/*"), format, tuple(type(r) for r in renderers))
        hit = _chosen.get(key)
        if hit is not None:
            index, media_type = hit
            return renderers[index], media_type
        chosen: Any = super().select_renderer(request, renderers, format_suffix)
        renderer, media_type = chosen
        index = next(i for i, candidate in enumerate(renderers) if candidate is renderer)
        with _lock:
            if len(_chosen) >= _LIMIT:
                _chosen.clear()
            _chosen[key] = (index, media_type)
        return renderer, media_type
