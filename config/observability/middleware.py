"""Request metrics by route template, and ``/metrics`` itself.

``MetricsMiddleware`` is the outermost middleware. It answers ``GET /metrics`` before anything
else runs, so a scrape is neither counted in the request metrics nor written to the request log;
a request that may not see the metrics goes on down the stack like any unknown path and gets the
same 404. Every other request is timed and counted under its route template
(``/api/v1/sessions/{id}/``), never its raw path or query string.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from config.context import client_ip
from config.observability import metrics

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"  # no route: 404s on unknown paths, bounded to one label value

_PATH_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")  # path("sessions/<uuid:pk>/")
_REGEX_PARAM = re.compile(r"\(\?P<([^>]+)>[^)]*\)")  # DRF routers: ^sessions/(?P<pk>[^/.]+)/$
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_templates: dict[str, str] = {}
# The labelled children, looked up once: labels() takes a lock and builds its key every call.
_counters: dict[tuple[str, str, int], Any] = {}
_histograms: dict[tuple[str, str], Any] = {}


def _param(name: str) -> str:
    if name == "pk":
        return "{id}"
    return "{" + (name[:-3] + "_id" if name.endswith("_pk") else name) + "}"


def route_template(route: str) -> str:
    """A resolver route (``api/v1/^sessions/(?P<pk>[^/.]+)/$``) as ``/api/v1/sessions/{id}/``."""
    template = _templates.get(route)
    if template is None:
        text = _REGEX_PARAM.sub(lambda m: _param(m.group(1)), route)
        text = _PATH_PARAM.sub(lambda m: _param(m.group(1)), text)
        text = text.replace("^", "").replace("$", "").replace("\\", "")
        template = _templates[route] = "/" + text.lstrip("/")
    return template


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = settings.METRICS_ALLOWED_NETWORKS
    return networks  # parsed once, in settings


def may_read_metrics(request: HttpRequest) -> bool:
    """From an address in METRICS_ALLOWED_IPS, or with ``Authorization: Bearer <METRICS_TOKEN>``."""
    token = settings.METRICS_TOKEN
    if token:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode()):
            return True
    address = client_ip(request)
    if not address:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in _allowed_networks())


def serve_metrics(request: HttpRequest) -> HttpResponse | None:
    """``GET /metrics`` for a caller that may read it; None for anything else."""
    if request.path_info == METRICS_PATH and request.method == "GET" and may_read_metrics(request):
        return HttpResponse(
            metrics.exposition(),
            content_type="text/plain; version=0.0.4; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )
    return None


def record_request(request: HttpRequest, response: HttpResponseBase, seconds: float) -> None:
    """Count one answered request and its duration under its route template."""
    match = request.resolver_match
    route = route_template(match.route) if match is not None else UNMATCHED
    method = request.method if request.method in METHODS else "other"
    status = response.status_code // 100
    counter = _counters.get((method, route, status))
    if counter is None:
        counter = _counters[(method, route, status)] = metrics.http_requests.labels(method, route, f"{status}xx")
    counter.inc()
    histogram = _histograms.get((method, route))
    if histogram is None:
        histogram = _histograms[(method, route)] = metrics.http_request_duration.labels(method, route)
    histogram.observe(seconds)


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not settings.METRICS_ENABLED:
            raise MiddlewareNotUsed("METRICS_ENABLED is off")
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        scrape = serve_metrics(request)
        if scrape is not None:
            return scrape
        if not metrics.sampling:
            metrics.start_sampler()
        started = time.perf_counter()
        response = self.get_response(request)
        record_request(request, response, time.perf_counter() - started)
        return response
