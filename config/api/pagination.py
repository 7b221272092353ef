"""Pagination: page numbers for small owned lists, cursors for messages and the audit trail.

Page-number lists take their total from ``COUNT(*) OVER ()`` in the page query itself, so a
list costs one query, not a page query plus a COUNT. Cursor lists never count. A page size
that is not a positive integer is a 400 naming ``page_size``; one over the list's maximum is
clamped to it, and one past a 32-bit integer is refused as garbage.
"""

from __future__ import annotations

from base64 import b64decode
from typing import Any
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import InvalidPage
from django.db.models import BigIntegerField, QuerySet
from django.db.models.expressions import RawSQL
from rest_framework import exceptions
from rest_framework.pagination import BasePagination, Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

# Beyond a 32-bit integer a page number or size is not a request but garbage: refused, not clamped.
LARGEST_QUERY_INT = 2**31 - 1


def parse_positive_int(request: Request, param: str, default: int, maximum: int | None = None) -> int:
    raw = request.query_params.get(param)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise exceptions.ValidationError({param: ["Must be a positive integer."]}) from None
    if not 1 <= value <= LARGEST_QUERY_INT:
        raise exceptions.ValidationError({param: [f"Must be a positive integer up to {LARGEST_QUERY_INT}."]})
    return min(value, maximum) if maximum is not None else value


# COUNT(*) OVER () as raw SQL: the same column as Window(Count("*")), but Django hashes a
# Window expression's identity for every ORDER BY term it compiles (a tenth of a list
# request's time in bench/profile.py); a constant RawSQL costs nothing to compile.
WINDOW_TOTAL = RawSQL("COUNT(*) OVER ()", (), output_field=BigIntegerField())


class WindowCountPagination(BasePagination):
    page_size = 20
    max_page_size = 100
    page_query_param = "page"
    page_size_query_param = "page_size"
    # Deep OFFSETs are linear; beyond this, clients should filter instead.
    max_page = 10_000

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Any]:
        self.request = request
        self.size = parse_positive_int(request, self.page_size_query_param, self.page_size, self.max_page_size)
        self.number = parse_positive_int(request, self.page_query_param, 1, None)
        if self.number > self.max_page:
            raise exceptions.NotFound(f"Invalid page: beyond page {self.max_page}; filter the list instead.")
        offset = (self.number - 1) * self.size
        rows = list(queryset.annotate(_window_total=WINDOW_TOTAL)[offset : offset + self.size])
        if rows:
            self.count = rows[0]._window_total
        elif self.number == 1:
            self.count = 0
        else:
            raise exceptions.NotFound("Invalid page: past the last page.")
        return rows

    def _page_link(self, number: int | None) -> str | None:
        if number is None:
            return None
        url = self.request.build_absolute_uri()
        if number == 1:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, number)

    def get_paginated_response(self, data: Any) -> Response:
        has_next = self.number * self.size < self.count
        return Response(
            {
                "count": self.count,
                "next": self._page_link(self.number + 1 if has_next else None),
                "previous": self._page_link(self.number - 1 if self.number > 1 else None),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer", "example": 123},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "A page number within the paginated result set.",
                "schema": {"type": "integer", "minimum": 1, "maximum": LARGEST_QUERY_INT},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page (default {self.page_size}; larger values are clamped to {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": LARGEST_QUERY_INT},
            },
        ]


class ValidatedCursorPagination(CursorPagination):
    """DRF's cursor pagination with strict page sizes and cursors whose position is type-checked.

    DRF trusts the decoded position and hands it to the ORM; a tampered cursor with a position
    of the wrong type then fails inside the query as a 500. Here it is a 400 naming ``cursor``.
    """

    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int:
        assert self.page_size is not None, "a cursor list names its page size"
        return parse_positive_int(request, str(self.page_size_query_param), self.page_size, self.max_page_size)

    def decode_cursor(self, request: Request) -> Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        invalid = exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]})
        try:
            querystring = b64decode(encoded.encode("ascii")).decode("ascii")
            tokens = parse.parse_qs(querystring, keep_blank_values=True, strict_parsing=False)
            offset = int(tokens.get("o", ["0"])[0])
            reverse = int(tokens.get("r", ["0"])[0])
            if not 0 <= offset <= self.offset_cutoff or reverse not in (0, 1):
                raise ValueError  # no cursor of ours carries these
            reverse = bool(reverse)
            position = tokens.get("p", [None])[0]
        except (TypeError, ValueError, UnicodeError):
            raise invalid from None
        if position is not None:
            field_name = (
                self.ordering[0].lstrip("-") if isinstance(self.ordering, (list, tuple)) else self.ordering.lstrip("-")
            )
            model = self._model
            try:
                field = model._meta.get_field(field_name)
                field.to_python(position)
                if "\x00" in position:
                    raise ValueError
            except (DjangoValidationError, ValueError, TypeError, OverflowError):
                raise invalid from None
        return Cursor(offset=offset, reverse=reverse, position=position)  # type: ignore[arg-type]  # DRF keeps it a string

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Any] | None:
        self._model = queryset.model
        try:
            return super().paginate_queryset(queryset, request, view)
        except InvalidPage:
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.page_size_query_param:
                param["schema"] = {"type": "integer", "minimum": 1, "maximum": LARGEST_QUERY_INT}
        return params
