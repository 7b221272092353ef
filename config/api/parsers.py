"""The one request parser: JSON bodies only, bounded in size, valid UTF-8, no NaN/Infinity, no
text PostgreSQL cannot store, bounded nesting."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions
from rest_framework.parsers import BaseParser

from config.api.exceptions import PayloadTooLarge
from config.db.text import is_storable

MAX_JSON_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_json_value(value: Any, depth: int = 0) -> None:
    """Refuse what PostgreSQL's jsonb refuses (NUL, unpaired surrogates) and absurd nesting."""
    if depth > MAX_JSON_DEPTH:
        raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)


def _check_text(value: str) -> None:
    if is_storable(value):
        return
    if "\x00" in value:
        raise exceptions.ParseError("JSON strings must not contain NUL (\\u0000) characters")
    raise exceptions.ParseError("JSON strings must not contain unpaired surrogates")


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        try:
            if declared and int(declared) > limit:
                raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        except ValueError:
            raise exceptions.ParseError("Invalid Content-Length header.") from None
        if stream is None:
            return {}
        try:
            raw = stream.read(limit + 1)
        except RequestDataTooBig:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.") from None
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.ParseError("Request body is not valid UTF-8.") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error: {exc}") from None
        check_json_value(data)
        return data
