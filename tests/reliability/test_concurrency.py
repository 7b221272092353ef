"""Concurrency with real threads, real HTTP (gunicorn) and real, committed transactions.

Where a test needs to see inside the database (how many times a row was written, a failure
after a sequence was allocated), it installs a trigger for the length of the test: the fault or
the counter lives in PostgreSQL itself, nothing in Python is replaced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import User
from agent_sessions.models import Message, Session
from apikeys.authentication import KEY_REUSE_SECONDS
from apikeys.models import APIKey
from tests.reliability.servers import Reply, http

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Start ``count`` threads at once (a barrier), wait for all, re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(n: int) -> None:
        try:
            barrier.wait()
            target(n)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    if errors:
        raise errors[0]


@contextmanager
def database_objects(create: str, drop: str) -> Iterator[None]:
    """DDL for one test (triggers, a counter table), removed afterwards whatever happens.

    The flush between transactional tests empties tables but leaves triggers in place.
    """
    with connection.cursor() as cursor:
        cursor.execute(create)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(drop)


# --- appends -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_32_threads_x_50_appends_give_sequences_1_to_1600_in_each_threads_order(app_server, alice):
    session = Session.objects.create(user=alice.user, agent_id="a", title="hot")
    url = f"{app_server.url}/api/v1/sessions/{session.pk}/messages/"
    threads, per_thread = 32, 50
    replies: dict[int, list[Reply]] = {n: [] for n in range(threads)}

    def client(n: int) -> None:
        for i in range(per_thread):
            body = {"role": "user", "content": f"{n}:{i}", "token_count": n + 1}
            replies[n].append(http("POST", url, key=alice.raw_key, body=body, timeout=60))

    run_threads(threads, client)

    total = threads * per_thread
    statuses = [r.status for rs in replies.values() for r in rs]
    assert statuses == [201] * total, (
        {s: statuses.count(s) for s in set(statuses)},
        {r.error for rs in replies.values() for r in rs},
    )
    rows = list(Message.objects.filter(session=session).order_by("sequence").values_list("sequence", "content"))
    assert [sequence for sequence, _ in rows] == list(range(1, total + 1)), "a gap or a duplicate sequence"
    # The sequence each response reported is the one stored.
    reported = sorted(r.json()["sequence"] for rs in replies.values() for r in rs)
    assert reported == list(range(1, total + 1))
    for n in range(threads):
        sent = [int(content.split(":")[1]) for _, content in rows if content.split(":")[0] == str(n)]
        assert sent == list(range(per_thread)), f"thread {n}'s messages are stored out of order"
    stored = Session.objects.get(pk=session.pk)
    assert stored.total_messages == total
    assert stored.total_tokens == sum((n + 1) * per_thread for n in range(threads))


def test_a_failure_after_the_sequence_is_allocated_leaves_no_gap(app_server, alice):
    """The INSERT fails after the UPDATE took the next sequence (a statement cancelled mid-way,
    raised here by a trigger): the whole statement rolls back, counters included."""
    session = Session.objects.create(user=alice.user, agent_id="a", title="faulty")
    url = f"{app_server.url}/api/v1/sessions/{session.pk}/messages/"
    threads, per_thread = 8, 20
    results: list[tuple[str, int]] = []

    with database_objects(
        """
        CREATE FUNCTION rel_test_fail_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.content LIKE 'boom%' THEN
                RAISE EXCEPTION 'injected failure after allocation' USING ERRCODE = 'query_canceled';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER rel_test_fail_insert BEFORE INSERT ON session_messages
            FOR EACH ROW EXECUTE FUNCTION rel_test_fail_insert();
        """,
        "DROP TRIGGER IF EXISTS rel_test_fail_insert ON session_messages;"
        "DROP FUNCTION IF EXISTS rel_test_fail_insert();",
    ):

        def client(n: int) -> None:
            for i in range(per_thread):
                content = f"boom {n}:{i}" if i % 4 == 3 else f"ok {n}:{i}"
                reply = http(
                    "POST", url, key=alice.raw_key, body={"role": "user", "content": content, "token_count": 3}
                )
                results.append((content, reply.status))

        run_threads(threads, client)

    failed = [c for c, s in results if c.startswith("boom")]
    assert {s for c, s in results if c.startswith("boom")} == {503}
    assert {s for c, s in results if c.startswith("ok")} == {201}
    stored_ok = threads * per_thread - len(failed)
    sequences = list(Message.objects.filter(session=session).order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, stored_ok + 1)), "a failed append left a gap"
    assert not Message.objects.filter(content__startswith="boom").exists()
    stored = Session.objects.get(pk=session.pk)
    assert (stored.total_messages, stored.total_tokens) == (stored_ok, 3 * stored_ok)
    # And the session takes appends again once the fault is gone.
    assert http("POST", url, key=alice.raw_key, body={"role": "user", "content": "after"}).json()["sequence"] == (
        stored_ok + 1
    )


# --- keys ----------------------------------------------------------------------------------------


def test_no_request_with_a_key_succeeds_after_its_revocation_commits(app_server, alice, make_key):
    victim, victim_raw = make_key(alice.user, scopes=("read", "write"), name="victim")
    url = f"{app_server.url}/api/v1/users/me/"
    revoked_at: list[float] = []
    stop = threading.Event()
    seen: list[tuple[float, int]] = []

    def client(n: int) -> None:
        if n == 0:
            time.sleep(0.5)  # let the users get going
            reply = http("DELETE", f"{app_server.url}/api/v1/api-keys/{victim.pk}/", key=alice.raw_key)
            assert reply.status == 204, reply.body
            revoked_at.append(time.monotonic())  # the revoke has committed: its response is here
            time.sleep(KEY_REUSE_SECONDS + 1.0)
            stop.set()
            return
        while not stop.is_set():
            sent = time.monotonic()
            seen.append((sent, http("GET", url, key=victim_raw).status))

    run_threads(9, client)

    (cutoff,) = revoked_at
    before = [status for sent, status in seen if sent < cutoff]
    # The revoking worker refuses it at once, the others once their copy is KEY_REUSE_SECONDS
    # old (apikeys.authentication); past that, nobody accepts it.
    after = [status for sent, status in seen if sent > cutoff + KEY_REUSE_SECONDS]
    assert 200 in before, "the key never worked, so the race was not exercised"
    # Refused: 401, or 429 once the failures from this address pass AUTH_FAILURE_RATE.
    assert after and set(after) <= {401, 429}, {s: after.count(s) for s in set(after)}
    assert 401 in [status for sent, status in seen if sent > cutoff], "refused, then throttled"
    assert set(before) <= {200, 401, 429}


def test_50_concurrent_requests_with_one_key_write_last_used_at_at_most_once(app_server, alice, make_key):
    key, raw = make_key(alice.user, name="busy")
    url = f"{app_server.url}/api/v1/users/me/"
    with database_objects(
        """
        CREATE TABLE rel_test_last_used_writes (key_id uuid, written_at timestamptz);
        CREATE FUNCTION rel_test_count_last_used() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.last_used_at IS DISTINCT FROM OLD.last_used_at THEN
                INSERT INTO rel_test_last_used_writes VALUES (NEW.id, NEW.last_used_at);
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER rel_test_count_last_used AFTER UPDATE ON api_keys
            FOR EACH ROW EXECUTE FUNCTION rel_test_count_last_used();
        """,
        "DROP TRIGGER IF EXISTS rel_test_count_last_used ON api_keys;"
        "DROP FUNCTION IF EXISTS rel_test_count_last_used();"
        "DROP TABLE IF EXISTS rel_test_last_used_writes;",
    ):

        def writes() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM rel_test_last_used_writes WHERE key_id = %s", [key.pk])
                return cursor.fetchone()[0]

        def burst() -> list[int]:
            statuses: list[int] = []
            run_threads(50, lambda n: statuses.append(http("GET", url, key=raw).status))
            return statuses

        # A never-used key.
        assert burst() == [200] * 50
        assert writes() == 1
        assert APIKey.objects.get(pk=key.pk).last_used_at is not None

        # A key last used long ago: again one write, not fifty (once the workers' copies of the
        # key, reused for KEY_REUSE_SECONDS, have expired and they read the old date).
        APIKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
        time.sleep(KEY_REUSE_SECONDS + 0.2)
        before = writes()
        assert burst() == [200] * 50
        assert writes() - before == 1


# --- users ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_creates_with_one_email_make_one_user_and_400s_never_500(app_server, admin, round_):
    url = f"{app_server.url}/api/v1/users/"
    spellings = [f"twin{round_}@example.com", f"TWIN{round_}@example.com", f"Twin{round_}@Example.com"] * 3
    replies: list[Reply] = []

    run_threads(
        len(spellings),
        lambda n: replies.append(http("POST", url, key=admin.raw_key, body={"email": spellings[n], "name": "Twin"})),
    )

    statuses = sorted(r.status for r in replies)
    assert statuses == [201] + [400] * (len(spellings) - 1), statuses
    for reply in replies:
        if reply.status == 400:
            assert "email" in reply.json(), reply.body
    assert User.objects.filter(email__iexact=f"twin{round_}@example.com").count() == 1
