"""``Idempotency-Key`` for API mutations: a retry gets the first answer, and writes nothing.

How: the mutation, then the key with the answer it got (``IdempotencyKey.objects.record``), in
one transaction. When the key is already there (a replay), or another request with the same
key committed first (a race: the insert waits for it), the transaction is rolled back, so the
repeated mutation leaves no trace, and the stored answer is sent instead. When the mutation
itself is refused (the first one completed the session, say), a stored answer for the key wins
over the refusal. So the happy path costs one statement more than the mutation alone, and a
replay, which is rare, pays for the work it undoes.

Only successful answers are stored: a refused request wrote nothing, so its retry is judged
afresh. The same key with another method, path or body is 422 ``idempotency_key_reused``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.http import Http404, HttpResponse
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.renderers import RawJSONRenderer
from config.errors import DomainError
from idempotency.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with another request (method, path or body)."
    default_code = "idempotency_key_reused"


class _AnsweredBefore(Exception):
    """The key was recorded by an earlier or concurrent request: undo this one, replay that."""


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (1 to 255 visible ASCII characters), or None."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _VALID_KEY.fullmatch(key):
        raise exceptions.ValidationError({HEADER: ["Must be 1 to 255 visible ASCII characters."]})
    return key


def _fingerprint(request: Request) -> str:
    body = json.dumps(request.data, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _replay(stored: IdempotencyKey, fingerprint: str) -> HttpResponse:
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    response = HttpResponse(stored.response_body, status=stored.status_code, content_type="application/json")
    response[REPLAYED_HEADER] = "true"
    return response


def _stored(user_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    return IdempotencyKey.objects.filter(user_id=user_id, key=key).first()


def idempotent(request: Request, mutate: Callable[[], Response]) -> Response | HttpResponse:
    """Run ``mutate`` (a view's whole mutation, answering a DRF Response) under the request's
    ``Idempotency-Key``, if it has one; without one, just run it."""
    key = idempotency_key(request)
    if key is None:
        return mutate()
    user_id = request.user.pk
    assert user_id is not None, "mutations are authenticated"
    fingerprint = _fingerprint(request)
    try:
        with transaction.atomic():
            response = mutate()
            body = RawJSONRenderer().render(response.data).decode()
            if not IdempotencyKey.objects.record(
                user_id=user_id,
                key=key,
                fingerprint=fingerprint,
                status_code=response.status_code,
                response_body=body,
            ):
                raise _AnsweredBefore
    except _AnsweredBefore:
        stored = _stored(user_id, key)
        assert stored is not None, "a recorded key is committed once the insert saw it"
        return _replay(stored, fingerprint)
    except (DomainError, exceptions.APIException, Http404, ObjectDoesNotExist):
        stored = _stored(user_id, key)
        if stored is None:
            raise
        return _replay(stored, fingerprint)
    return HttpResponse(body, status=response.status_code, content_type="application/json")
