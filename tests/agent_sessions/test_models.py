from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import DataError, connection
from django.utils import timezone

from agent_sessions.models import Message, MessageLimitReached, Session, SessionNotActive
from agent_sessions.services import session_append_message, session_stats

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(make_user) -> Session:
    return Session.objects.create(user=make_user(), agent_id="code-assistant", title="Debugging")


def test_messages_are_rows_with_sequences_and_counters(session):
    first = session.add_message("user", "hello", token_count=3)
    second = session.add_message(
        "assistant", "hi there", token_count=5, tool_calls=[{"name": "search"}], metadata={"model": "m"}
    )

    assert (first.sequence, second.sequence) == (1, 2)
    stored = Session.objects.get(pk=session.pk)
    assert (stored.total_messages, stored.total_tokens) == (2, 8)
    assert (session.total_messages, session.total_tokens) == (2, 8)
    assert list(stored.messages.order_by("sequence").values_list("role", "content")) == [
        ("user", "hello"),
        ("assistant", "hi there"),
    ]
    assert Message.objects.get(pk=second.pk).tool_calls == [{"name": "search"}]
    assert stored.last_activity_at >= stored.created_at


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_get_sequences_one_to_n(make_user):
    session = Session.objects.create(user=make_user(), agent_id="a", title="busy")
    threads_count, per_thread = 20, 10
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                session_append_message(session_id=session.pk, role="user", content=f"{worker}:{i}", token_count=1)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append, args=(w,)) for w in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    total = threads_count * per_thread
    sequences = list(Message.objects.filter(session=session).order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, total + 1))
    stored = Session.objects.get(pk=session.pk)
    assert (stored.total_messages, stored.total_tokens) == (total, total)


def test_a_failed_insert_leaves_no_gap(session):
    session.add_message("user", "one")
    with pytest.raises(DataError):
        session.add_message("user", "nul \x00 byte")  # PostgreSQL refuses it after the sequence was allocated
    session.add_message("user", "two")

    assert list(session.messages.values_list("sequence", flat=True).order_by("sequence")) == [1, 2]
    assert Session.objects.get(pk=session.pk).total_messages == 2


def test_context_and_metadata_merges_persist(session):
    session.update_context(language="python")
    session.update_context(framework="django")
    session.update_metadata(source="test")

    stored = Session.objects.get(pk=session.pk)
    assert stored.context == {"language": "python", "framework": "django"}
    assert stored.metadata == {"source": "test"}


def test_mark_completed(session):
    session.mark_completed()
    stored = Session.objects.get(pk=session.pk)
    assert stored.status == "completed"
    assert not stored.is_active


def test_mark_failed_keeps_the_error(session):
    session.mark_failed("tool crashed")
    stored = Session.objects.get(pk=session.pk)
    assert (stored.status, stored.metadata["error"]) == ("failed", "tool crashed")


def test_mark_cancelled_keeps_the_reason(session):
    session.mark_cancelled("user left")
    stored = Session.objects.get(pk=session.pk)
    assert (stored.status, stored.metadata["cancellation_reason"]) == ("cancelled", "user left")


@pytest.mark.parametrize("finish", ["mark_completed", "mark_failed", "mark_cancelled"])
def test_only_an_active_session_changes_status_or_takes_messages(session, finish):
    session.mark_completed()

    with pytest.raises(SessionNotActive):
        getattr(session, finish)()
    with pytest.raises(SessionNotActive):
        session.add_message("user", "too late")
    assert Session.objects.get(pk=session.pk).total_messages == 0


def test_an_expired_session_is_not_active_and_takes_no_messages(session):
    # The original's is_active ignored expiry.
    Session.objects.filter(pk=session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    session.refresh_from_db()

    assert session.is_expired and not session.is_active
    with pytest.raises(SessionNotActive, match="expired"):
        session.add_message("user", "hello?")


def test_message_limit(session, settings):
    settings.SESSION_MAX_MESSAGES = 2
    session.add_message("user", "1")
    session.add_message("user", "2")
    with pytest.raises(MessageLimitReached, match="2 messages"):
        session.add_message("user", "3")


def test_stats_in_one_query(make_user, django_assert_num_queries):
    user = make_user()
    a = Session.objects.create(user=user, agent_id="a", title="a")
    b = Session.objects.create(user=user, agent_id="a", title="b")
    Session.objects.create(user=user, agent_id="a", title="gone").soft_delete()
    a.add_message("user", "x", token_count=4)
    a.add_message("user", "y", token_count=6)
    b.add_message("user", "z", token_count=1)
    b.mark_completed()

    with django_assert_num_queries(1):
        stats = session_stats(user=user)

    assert (stats.total_sessions, stats.active_sessions) == (2, 1)
    assert (stats.total_messages, stats.total_tokens) == (3, 11)
    assert stats.avg_messages_per_session == 1.5
