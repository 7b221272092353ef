"""OpenTelemetry traces of Django and psycopg: off unless the standard environment asks.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, and
neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none``. The SDK reads the rest
itself: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and its
``_ARG``, ``OTEL_BSP_*``, the exporter's headers and timeout. Spans go out over OTLP/HTTP.

Off, nothing from ``opentelemetry`` is imported and no middleware is added: the request path is
exactly what it is without this module.

Each request's span carries ``request_id``, the id of its JSON log line and audit rows; the
SQL statements it runs are its children. Statement parameters are not recorded (only the SQL
text with its placeholders), and no header is captured, so no key, token, password or message
content reaches a span.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

REQUEST_ID_ATTRIBUTE = "request_id"
DEFAULT_SERVICE_NAME = "agent-platform"
# Probes and scrapes would be most of the spans and say nothing.
DEFAULT_EXCLUDED_URLS = "/metrics$,/health"

_state: dict[str, Any] = {}


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _response_hook(span: Any, request: Any, response: Any) -> None:
    if not span.is_recording():
        return
    request_id = getattr(request, "request_id", None)  # set by config.middleware.EdgeMiddleware
    if request_id is not None:
        span.set_attribute(REQUEST_ID_ATTRIBUTE, str(request_id))
    match = getattr(request, "resolver_match", None)
    if match is not None:
        # The metrics' route template, not the resolver's regular expression.
        from config.observability.middleware import route_template

        route = route_template(match.route)
        span.set_attribute("http.route", route)
        span.update_name(f"{request.method} {route}")


def configure(environ: Mapping[str, str] = os.environ, *, exporter: Any = None) -> bool:
    """Instrument Django and psycopg when the environment asks (or with ``exporter``, the
    tests' in-memory one, synchronously). Before the WSGI handler loads its middleware: the
    Django instrumentation adds its own, outermost."""
    if _state or (exporter is None and not enabled(environ)):
        return bool(_state)
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from config.observability.metrics import VERSION

    attributes: dict[str, str] = {"service.version": VERSION}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # Batched in a background thread (re-made in each forked worker by the SDK).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    DjangoInstrumentor().instrument(
        tracer_provider=provider,
        response_hook=_response_hook,
        excluded_urls=environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS),
    )
    PsycopgInstrumentor().instrument(tracer_provider=provider, enable_commenter=False, capture_parameters=False)
    _state["provider"] = provider
    return True


def unconfigure() -> None:
    """Undo ``configure`` (the tests' in-memory run)."""
    provider = _state.pop("provider", None)
    if provider is None:
        return
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    DjangoInstrumentor().uninstrument()
    PsycopgInstrumentor().uninstrument()
    provider.shutdown()
