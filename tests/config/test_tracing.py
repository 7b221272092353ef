"""OpenTelemetry traces: off by default, and when on, one tree per request with its request id
on it and the SQL beneath. In process with the SDK's in-memory exporter; then through gunicorn to
a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection

from config.observability import tracing
from tests.conftest import database_url, run_python
from tests.reliability.servers import Gunicorn, http, seed, service_env

pytestmark = pytest.mark.django_db


def test_tracing_is_off_and_imports_nothing_by_default():
    code = (
        "import django, sys; django.setup()\n"
        "from django.test import Client\n"
        "r = Client().get('/health/live', HTTP_HOST='localhost')\n"
        "from django.conf import settings\n"
        "print(r.status_code, any(m.startswith('opentelemetry') for m in sys.modules),"
        " any('opentelemetry' in m for m in settings.MIDDLEWARE))\n"
    )
    result = run_python(code, env={"OTEL_EXPORTER_OTLP_ENDPOINT": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["200", "False", "False"]


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_the_standard_environment_turns_tracing_on(environ, on):
    assert tracing.enabled(environ) is on


@pytest.fixture
def spans() -> Iterator[Any]:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    assert tracing.configure({}, exporter=exporter)
    # The test's connection was opened before: in a server, tracing is on before the first one.
    connection.ensure_connection()
    PsycopgInstrumentor().instrument_connection(connection.connection, tracer_provider=tracing._state["provider"])
    try:
        yield exporter
    finally:
        PsycopgInstrumentor().uninstrument_connection(connection.connection)
        tracing.unconfigure()


def test_a_request_is_one_tree_with_its_request_id_and_the_sql_beneath(alice, spans):
    from rest_framework.test import APIClient

    session = alice.client.post("/api/v1/sessions/", {"agent_id": "a", "title": "t"}, format="json").json()
    spans.clear()
    request_id = str(uuid.uuid4())
    client = APIClient()  # a new handler: it loads the instrumentation's middleware
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice.raw_key}")
    response = client.get(f"/api/v1/sessions/{session['id']}/", HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 200

    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.parent is None]
    assert root.attributes[tracing.REQUEST_ID_ATTRIBUTE] == request_id
    assert root.name == "GET /api/v1/sessions/{id}/"
    assert root.context.trace_id == {s.context.trace_id for s in finished}.pop()
    sql = [s for s in finished if s.attributes.get("db.system") == "postgresql" or "db.statement" in s.attributes]
    assert sql, [s.name for s in finished]
    assert all(s.parent.span_id == root.context.span_id for s in sql)
    for span in finished:
        text = json.dumps(dict(span.attributes), default=str)
        assert alice.raw_key not in text
        assert str(alice.user.pk) not in text  # a statement parameter


# --- a real OTLP/HTTP receiver ------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint on loopback that keeps every span it is sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        assert self.path == "/v1/traces"
        assert self.headers["Content-Type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
            for scope in resource.scope_spans:
                self.server.spans.extend((service, span) for span in scope.spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_gunicorn_exports_each_request_as_one_tree_to_an_otlp_receiver(receiver):
    env = service_env(
        database_url(connection.settings_dict["NAME"]),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_SERVICE_NAME="agent-platform-test",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    made = seed(env)
    server = Gunicorn(env, workers=2)
    server.start()
    try:
        request_id = str(uuid.uuid4())
        reply = http(
            "GET",
            f"{server.url}/api/v1/sessions/{made['session_id']}/",
            key=made["raw_key"],
            headers={"X-Request-ID": request_id},
        )
        assert reply.status == 200, reply.body
        deadline = time.monotonic() + 30
        root = None
        while time.monotonic() < deadline and root is None:
            time.sleep(0.2)
            root = next(
                (
                    span
                    for _, span in list(receiver.spans)
                    if any(a.key == "request_id" and a.value.string_value == request_id for a in span.attributes)
                ),
                None,
            )
        assert root is not None, f"no span with the request id among {len(receiver.spans)}"
        time.sleep(0.5)  # the batch with the SQL spans may come just after
        tree = [(service, span) for service, span in receiver.spans if span.trace_id == root.trace_id]
        assert {service for service, _ in tree} == {"agent-platform-test"}
        assert root.parent_span_id == b""
        sql = [span for _, span in tree if span.span_id != root.span_id]
        assert sql, "no SQL span under the request"
        assert all(span.parent_span_id == root.span_id for span in sql)
        statements = [a.value.string_value for span in sql for a in span.attributes if a.key == "db.statement"]
        assert any("SELECT" in statement for statement in statements), statements
        everything = repr([span for _, span in receiver.spans])
        assert made["raw_key"] not in everything
        assert made["session_id"] not in " ".join(statements)  # parameters are not recorded
    finally:
        output = server.stop()
    assert "Traceback" not in output, output[-3000:]
