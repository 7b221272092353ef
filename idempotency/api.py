"""``Idempotency-Key`` for API mutations: a retry gets the first answer, and writes nothing.

Two ways to record a key with its mutation, atomically:

* ``idempotent`` (any mutation): the mutation, then the key with the answer it got, in one
  transaction. When the key is already there (a replay), or a concurrent request with the same
  key committed first (the insert waits for it), the transaction is rolled back, so the
  repeated mutation leaves no trace, and the stored answer is sent instead.
* ``idempotent_append`` (the hot path, held to one statement more than a plain append): the
  append statement itself claims the key (``KeyClaim``), in autocommit, and one more statement
  records the answer. A taken key fails the append statement whole; a request that finds the
  key claimed but not yet answered waits for the answer (up to IN_FLIGHT_WAIT_SECONDS, then
  409 ``idempotency_key_in_flight``, which a client retries).

When the mutation itself is refused (the first one completed the session, say), a stored answer
for the key wins over the refusal. Only successful answers are stored: a refused request wrote
nothing, so its retry is judged afresh. The same key with another method, path or body is 422
``idempotency_key_reused``. Keys are per owner (the authenticated user).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.http import Http404, HttpResponse
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.renderers import RawJSONRenderer
from config.errors import DomainError, StateConflict
from idempotency.models import IdempotencyKey, IdempotencyKeyTaken, KeyClaim

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IN_FLIGHT_WAIT_SECONDS = 5.0
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_REFUSALS = (DomainError, exceptions.APIException, Http404, ObjectDoesNotExist)


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with another request (method, path or body)."
    default_code = "idempotency_key_reused"


class IdempotencyKeyInFlight(StateConflict):
    code = "idempotency_key_in_flight"


class _AnsweredBefore(Exception):
    """The key was recorded by an earlier or concurrent request: undo this one, replay that."""


def _claim(request: Request) -> KeyClaim | None:
    """The request's ``Idempotency-Key`` (1 to 255 visible ASCII characters) as a claim, or None."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _VALID_KEY.fullmatch(key):
        raise exceptions.ValidationError({HEADER: ["Must be 1 to 255 visible ASCII characters."]})
    user_id = request.user.pk
    assert user_id is not None, "mutations are authenticated"
    body = json.dumps(request.data, separators=(",", ":"), default=str)
    fingerprint = hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()
    return KeyClaim(user_id=user_id, key=key, fingerprint=fingerprint)


def _stored(claim: KeyClaim) -> IdempotencyKey | None:
    return IdempotencyKey.objects.filter(user_id=claim.user_id, key=claim.key).first()


def _replay(claim: KeyClaim, stored: IdempotencyKey | None = None) -> HttpResponse:
    """The stored answer to ``claim``'s key; waits a little for one that is on its way."""
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    stored = stored or _stored(claim)
    while True:
        assert stored is not None, "a key seen taken is committed"
        if stored.fingerprint != claim.fingerprint:
            raise IdempotencyKeyReused()
        if stored.status_code is not None:
            break
        if time.monotonic() > deadline:
            raise IdempotencyKeyInFlight("A request with this Idempotency-Key is still in progress; retry.")
        time.sleep(0.05)
        stored = _stored(claim)
    response = HttpResponse(stored.response_body, status=stored.status_code, content_type="application/json")
    response[REPLAYED_HEADER] = "true"
    return response


def _rendered(response: Response) -> str:
    return RawJSONRenderer().render(response.data).decode()


def idempotent(request: Request, mutate: Callable[[], Response]) -> Response | HttpResponse:
    """Run ``mutate`` (a view's whole mutation, answering a DRF Response) under the request's
    ``Idempotency-Key``, if it has one; without one, just run it."""
    claim = _claim(request)
    if claim is None:
        return mutate()
    try:
        with transaction.atomic():
            response = mutate()
            body = _rendered(response)
            if not IdempotencyKey.objects.record(
                user_id=claim.user_id,
                key=claim.key,
                fingerprint=claim.fingerprint,
                status_code=response.status_code,
                response_body=body,
            ):
                raise _AnsweredBefore
    except _AnsweredBefore:
        return _replay(claim)
    except _REFUSALS:
        stored = _stored(claim)
        if stored is None:
            raise
        return _replay(claim, stored)
    return HttpResponse(body, status=response.status_code, content_type="application/json")


def idempotent_append(request: Request, append: Callable[[KeyClaim | None], Response]) -> Response | HttpResponse:
    """Run ``append(claim)``, whose one statement records the key (``claim``) with the
    messages, then record its answer: one statement more than the append, no transaction."""
    claim = _claim(request)
    if claim is None:
        return append(None)
    try:
        response = append(claim)
    except IdempotencyKeyTaken:
        return _replay(claim)
    except _REFUSALS:
        stored = _stored(claim)
        if stored is None:
            raise
        return _replay(claim, stored)
    body = _rendered(response)
    IdempotencyKey.objects.filter(user_id=claim.user_id, key=claim.key).update(
        status_code=response.status_code, response_body=body
    )
    return HttpResponse(body, status=response.status_code, content_type="application/json")
