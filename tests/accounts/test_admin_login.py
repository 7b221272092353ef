"""The admin login: throttled per client address against brute force, and audited."""

from __future__ import annotations

import ipaddress
import uuid

from django.test import Client

from audit.models import AuditLog
from tests.conftest import PASSWORD, within_one_window


def attempt(address: str, email: str, password: str) -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=address)
    response = client.post("/admin/login/", {"username": email, "password": password, "next": "/admin/"})
    return client, response


def fresh_address() -> str:
    # Counters live in the shared cache; a fresh address keeps tests from sharing them.
    # Normalised as the audit trail stores it ("::0721" is stored as "::721").
    return str(ipaddress.ip_address(f"2001:db8::{uuid.uuid4().hex[:4]}"))


def test_failed_logins_are_throttled_per_client_address(settings, make_user):
    settings.ADMIN_LOGIN_RATE = "3/min"
    within_one_window()
    make_user("staff@example.com", password=PASSWORD, is_staff=True, roles=["admin"])
    address = fresh_address()
    for _ in range(3):
        _, response = attempt(address, "staff@example.com", "wrong-password")
        assert response.status_code in (200, 429)
    client, blocked = attempt(address, "staff@example.com", PASSWORD)  # even the right password
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) >= 1
    html = blocked.content.decode()
    assert "Too many failed login attempts; try again in" in html and "seconds." in html
    assert client.get("/admin/").status_code == 302  # not logged in
    # Another address is not affected.
    _, elsewhere = attempt(fresh_address(), "staff@example.com", PASSWORD)
    assert elsewhere.status_code == 302


def test_the_limit_counts_failures_not_successes(settings, make_user):
    settings.ADMIN_LOGIN_RATE = "2/min"
    within_one_window()
    make_user("staff@example.com", password=PASSWORD, is_staff=True)
    address = fresh_address()
    for _ in range(4):
        assert attempt(address, "staff@example.com", PASSWORD)[1].status_code == 302


def test_the_third_failure_of_three_already_says_to_wait(settings, make_user):
    settings.ADMIN_LOGIN_RATE = "3/min"
    within_one_window()
    address = fresh_address()
    statuses = [attempt(address, "nobody@example.com", "x")[1].status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_logins_are_audited(make_user):
    staff = make_user("staff@example.com", password=PASSWORD, is_staff=True)
    address = fresh_address()
    attempt(address, "staff@example.com", "wrong-password")
    attempt(address, "ghost@example.com", "wrong-password")
    client, ok = attempt(address, "staff@example.com", PASSWORD)
    assert ok.status_code == 302
    failed = list(AuditLog.objects.filter(action="FAILED_AUTH", metadata__channel="admin").order_by("timestamp"))
    assert [row.user_id for row in failed] == [staff.pk, None]
    assert all(row.ip_address == address and row.request_path == "/admin/login/" for row in failed)
    assert "wrong-password" not in str([(r.changes, r.metadata) for r in failed])
    [login] = AuditLog.objects.filter(action="LOGIN", user_id=staff.pk)
    assert login.response_status == 302
    client.post("/admin/logout/")
    assert AuditLog.objects.filter(action="LOGOUT", user_id=staff.pk).count() == 1
