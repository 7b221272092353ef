"""Observability: Prometheus metrics from every gunicorn worker, OpenTelemetry traces.

* ``metrics``: the metric families and the cheap calls that record them where events happen
  (the request, the pool, authentication, rate limits, the append service);
* ``middleware``: records each request by route template, serves ``/metrics``;
* ``gunicorn``: the multiprocess directory's life (cleaned at start, a dead worker's live
  gauges dropped);
* ``tracing``: OpenTelemetry, off unless the standard ``OTEL_*`` environment asks for it.

Plumbing: it knows Django, psycopg and the metric libraries, nothing of the apps.
"""
