"""The remembered content negotiation answers exactly what DRF's own does, for every Accept
header and format, the first time and from memory, and refuses what DRF refuses."""

from __future__ import annotations

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from config.api import negotiation
from config.api.negotiation import RememberedContentNegotiation

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "text/html",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/json; indent=4",
    "application/json;q=0.1, text/html;q=0.9",
    "text/*",
    "application/*",
    "application/json, text/plain, */*",
]
FORMATS = [None, "json", "api"]


def _request(accept: str | None, format: str | None) -> Request:
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    query = {} if format is None else {"format": format}
    return Request(APIRequestFactory().get("/api/v1/users/me/", query, **headers))


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_it_picks_what_drf_picks_first_time_and_from_memory(accept, format):
    negotiation._chosen.clear()
    renderers = [JSONRenderer(), BrowsableAPIRenderer()]
    try:
        expected = DefaultContentNegotiation().select_renderer(_request(accept, format), renderers)
    except NotAcceptable:
        for _ in range(2):
            with pytest.raises(NotAcceptable):
                RememberedContentNegotiation().select_renderer(_request(accept, format), renderers)
        assert negotiation._chosen == {}
        return
    for attempt in ("parsed", "remembered"):
        chosen = RememberedContentNegotiation().select_renderer(_request(accept, format), renderers)
        assert chosen == expected, attempt
    assert len(negotiation._chosen) == 1


def test_the_same_header_on_a_view_with_other_renderers_is_negotiated_afresh():
    negotiation._chosen.clear()
    html_first = [BrowsableAPIRenderer(), JSONRenderer()]
    json_first = [JSONRenderer(), BrowsableAPIRenderer()]
    conneg = RememberedContentNegotiation()
    assert isinstance(conneg.select_renderer(_request("*/*", None), json_first)[0], JSONRenderer)
    assert isinstance(conneg.select_renderer(_request("*/*", None), html_first)[0], BrowsableAPIRenderer)


@pytest.mark.parametrize("accept, format, refusal", [("image/png", None, NotAcceptable), ("*/*", "xml", Http404)])
def test_what_drf_refuses_is_refused_every_time_and_never_remembered(accept, format, refusal):
    negotiation._chosen.clear()
    renderers = [JSONRenderer(), BrowsableAPIRenderer()]
    with pytest.raises(refusal):
        DefaultContentNegotiation().select_renderer(_request(accept, format), renderers)
    for _ in range(2):
        with pytest.raises(refusal):
            RememberedContentNegotiation().select_renderer(_request(accept, format), renderers)
    assert negotiation._chosen == {}


def test_a_client_choosing_many_accept_headers_cannot_grow_the_table_past_its_limit():
    negotiation._chosen.clear()
    renderers = [JSONRenderer(), BrowsableAPIRenderer()]
    for i in range(negotiation._LIMIT * 3):
        RememberedContentNegotiation().select_renderer(_request(f"application/json; v={i}", None), renderers)
    assert 0 < len(negotiation._chosen) <= negotiation._LIMIT
