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
from config.api.json_text import JSONFloat
from config.db.text import is_storable

MAX_JSON_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_json_value(value: Any, depth: int = 0, *, allow_nul: bool = False) -> None:
    """Refuse what PostgreSQL's jsonb refuses (NUL, unpaired surrogates) and absurd nesting.
    ``allow_nul``: for JSON kept as text (an item), where a NUL is stored as its escape."""
    if depth > MAX_JSON_DEPTH:
        raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value, allow_nul)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, allow_nul)
            check_json_value(item, depth + 1, allow_nul=allow_nul)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1, allow_nul=allow_nul)


def _check_text(value: str, allow_nul: bool = False) -> None:
    if is_storable(value):
        return
    if "\x00" in value:
        if allow_nul and is_storable(value.replace("\x00", "")):
            return
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
            data = self.loads(text)
        except RecursionError:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error: {exc}") from None
        self.check(data)
        return data

    def loads(self, text: str) -> Any:
        return json.loads(text, parse_constant=_reject_constant)

    def check(self, data: Any) -> None:
        check_json_value(data)


class ItemJSONParser(StrictJSONParser):
    """The strict parser for bodies that carry message items (``item``, at the top level or in
    each of ``messages``): numbers keep their spelling (``config.api.json_text.JSONFloat``) and an
    item's strings may hold NUL, which it keeps as an escape in text, never in jsonb. Everything
    else is checked as by ``StrictJSONParser``; nesting counts from the body's root."""

    def loads(self, text: str) -> Any:
        return json.loads(text, parse_constant=_reject_constant, parse_float=JSONFloat)

    def check(self, data: Any) -> None:
        if not isinstance(data, dict):
            check_json_value(data)
            return
        for key, value in data.items():
            _check_text(key)
            if key == "item":
                check_json_value(value, 1, allow_nul=True)
            elif key == "messages" and isinstance(value, list):
                for message in value:
                    self._check_message(message)
            else:
                check_json_value(value, 1)

    @staticmethod
    def _check_message(message: Any) -> None:
        if not isinstance(message, dict):
            check_json_value(message, 2)
            return
        for key, value in message.items():
            _check_text(key)
            check_json_value(value, 3, allow_nul=key == "item")
