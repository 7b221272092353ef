"""OpenAPI helpers: the error responses every endpoint documents, so the schema says what the
endpoints really answer (schemathesis checks it)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """``{"detail": ..., "code": ...}``, or ``{"<field>": ["<problem>", ...]}`` for invalid input."""

    detail = serializers.CharField(required=False)
    code = serializers.CharField(required=False)


DESCRIPTIONS = {
    400: "Invalid input; the body names the field or the problem.",
    401: "Missing, malformed, unknown, expired or revoked API key, or an inactive owner.",
    403: "The key lacks the scope or the role this needs.",
    404: "No such object, or not yours; on a list, a page past the last one.",
    409: "The object's state forbids this (a session that is not active, say).",
    413: "Request body too large.",
    415: "Request body is not JSON.",
    422: "The Idempotency-Key was used with another request (idempotency_key_reused).",
    429: "Rate limit exceeded; see Retry-After.",
    503: "Database unavailable or overloaded; retry.",
}


# Refused by gunicorn before the application sees the request (a request line over its
# limit_request_line of 4,094 bytes): any operation can answer it, with gunicorn's own
# plain-text body, so the schema documents the status without a JSON body.
URI_TOO_LONG = OpenApiResponse(description="Request line (URL and query string) too long; refused by the server.")


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    if 415 in codes and 413 not in codes:
        # An operation that reads a JSON body refuses one over API_MAX_BODY_BYTES.
        codes = (*codes, 413)
    responses = {code: OpenApiResponse(ErrorSerializer, description=DESCRIPTIONS[code]) for code in (*codes, 503)}
    return {**responses, 414: URI_TOO_LONG}


def document_empty_query_values(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: optional query parameters admit an empty value.

    django-filter, DRF's search and ordering filters and our paginators all read ``?user=`` as
    the parameter left out, as HTML forms send it. Without ``allowEmptyValue`` the schema says
    ``?user=`` is not a UUID and so should be refused; schemathesis holds the API to that.
    """
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result
