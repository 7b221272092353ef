from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from agent_sessions.models import Message, Session
from apikeys.models import APIKey
from audit.models import AuditLog

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, ...]:
    return (
        User.objects.count(),
        APIKey.objects.count(),
        Session.objects.count(),
        Message.objects.count(),
        AuditLog.objects.count(),
    )


def test_seed_demo_fills_and_reruns_without_duplicates():
    first = StringIO()
    call_command("seed_demo", stdout=first)
    counts = _counts()

    assert counts[:4] == (3, 3, 4, 10)
    assert counts[4] >= 3 + 3 + 4  # one audit row per user, key and session created
    assert first.getvalue().count("sk_live_") == 3

    again = StringIO()
    call_command("seed_demo", stdout=again)
    assert _counts() == counts
    assert "sk_live_" not in again.getvalue()
    assert "nothing to do" in again.getvalue()
