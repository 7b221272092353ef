"""Query budgets of the hot endpoints, for an enterprise key (no rate counter), independent of
page size and data size. Transactional tests, so no test-wrapping savepoints are counted."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent_sessions.models import Message, Session
from apikeys.authentication import forget_recent_keys
from config.ratelimit import MAX_LEASE

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def busy_session(alice) -> Session:
    session = Session.objects.create(user=alice.user, agent_id="a", title="busy")
    Message.objects.bulk_create(
        Message(session=session, sequence=i, role="user", content=f"m{i}") for i in range(1, 301)
    )
    Session.objects.filter(pk=session.pk).update(total_messages=300)
    for i in range(30):
        Session.objects.create(user=alice.user, agent_id="a", title=f"s{i}")
    alice.client.get("/api/v1/users/me/")  # this minute's last_used_at write happens here
    return session


def test_detail_get_is_two_queries(alice, busy_session, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        assert alice.client.get(f"/api/v1/sessions/{busy_session.pk}/").status_code == 200


@pytest.mark.parametrize("page_size", [1, 20, 100])
def test_session_list_is_two_queries_at_any_page_size(alice, busy_session, page_size, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        response = alice.client.get(f"/api/v1/sessions/?page_size={page_size}")
    assert response.status_code == 200 and response.json()["count"] == 31


@pytest.mark.parametrize("page_size", [1, 50, 200])
def test_message_page_is_two_queries_at_any_depth(alice, busy_session, page_size, django_assert_max_num_queries):
    url = f"/api/v1/sessions/{busy_session.pk}/messages/?page_size={page_size}"
    with django_assert_max_num_queries(2):
        first = alice.client.get(url).json()
    with CaptureQueriesContext(connection) as deep:
        alice.client.get(first["next"])
    assert len(deep) <= 2
    assert not any("COUNT(" in q["sql"].upper() for q in deep.captured_queries)


def test_api_key_list_is_two_queries(alice, busy_session, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        assert alice.client.get("/api/v1/api-keys/").status_code == 200


def test_append_is_at_most_four_queries(alice, busy_session):
    with CaptureQueriesContext(connection) as queries:
        response = alice.client.post(
            f"/api/v1/sessions/{busy_session.pk}/messages/", {"role": "user", "content": "x"}, format="json"
        )
    assert response.status_code == 201 and response.json()["sequence"] == 301
    statements = [q["sql"] for q in queries.captured_queries]
    # key+owner (unless this worker reuses it: apikeys.authentication.KEY_REUSE_SECONDS), then
    # one statement: UPDATE ... RETURNING the sequence, feeding the INSERT.
    assert len(statements) <= 2, statements
    assert (
        'UPDATE "sessions"' in statements[-1]
        and 'RETURNING "sessions"."id", "sessions"."total_messages"' in statements[-1]
    )
    assert 'INSERT INTO "session_messages"' in statements[-1]


def test_a_repeated_request_within_a_minute_writes_nothing(alice, busy_session):
    with CaptureQueriesContext(connection) as queries:
        alice.client.get(f"/api/v1/sessions/{busy_session.pk}/")
    assert not any(q["sql"].lstrip().upper().startswith("UPDATE") for q in queries.captured_queries)


# --- what a counted tier adds ------------------------------------------------------------------
# The budgets above are for an enterprise key, which touches no counter. A `free` or `pro` key
# counts each request (config.ratelimit): without Redis that is one more statement, an upsert on
# the unlogged rate_limit_counters table in autocommit; with Redis (REDIS_URL) it is no SQL at all
# and one Redis round trip (a cached script: INCRBY, and EXPIRE on the window's first hit); a key
# in heavy use takes its hits in leases, a fraction of a round trip each (config.ratelimit).


def counted_client(make_key, owner) -> object:
    from tests.conftest import make_client

    _, raw = make_key(owner, tier="pro")
    return make_client(raw)


def test_a_counted_tier_adds_one_counter_statement_without_redis(alice, busy_session, make_key):
    client = counted_client(make_key, alice.user)
    url = f"/api/v1/sessions/{busy_session.pk}/"
    assert client.get(url).status_code == 200  # writes last_used_at
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    counting = [sql for sql in statements if "rate_limit_counters" in sql]
    assert len(counting) == 1 and "ON CONFLICT" in counting[0], "\n".join(s[:90] for s in statements)
    assert not any(sql in ("BEGIN", "COMMIT") or "django_cache" in sql for sql in statements)
    assert len(statements) <= 3  # key+owner (unless reused), the counter, the session


REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_or_skip() -> object:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}: the Redis figures need a real server (this machine's runs on 6379)")
    return client


def test_a_counted_tier_adds_no_sql_and_one_redis_round_trip_with_redis(alice, busy_session, make_key, settings):
    redis_client = _redis_or_skip()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"budget-test-{busy_session.pk}",
        }
    }
    client = counted_client(make_key, alice.user)
    url = f"/api/v1/sessions/{busy_session.pk}/"
    assert client.get(url).status_code == 200

    def calls() -> dict[str, int]:
        stats = redis_client.info("commandstats")
        return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("incrby", "evalsha")}

    before = calls()
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    after = calls()
    # One round trip: the counting script (EVALSHA), which INCRBYs (this machine's Redis is shared,
    # so the counts are at least these).
    assert after["evalsha"] - before["evalsha"] >= 1 and after["incrby"] - before["incrby"] >= 1
    # The window's counter holds both hits (the second may have leased a few more numbers:
    # config.ratelimit) and expires with its window (set by the script on the first hit).
    (counter,) = redis_client.keys(f"budget-test-{busy_session.pk}:*rl:*")
    assert 2 <= int(redis_client.get(counter)) <= 1 + MAX_LEASE and 0 < redis_client.ttl(counter) <= 3601
    assert not any("rate_limit_counters" in q["sql"] or "django_cache" in q["sql"] for q in queries.captured_queries)
    assert len(queries) <= 2  # key+owner (unless reused), the session: the counter costs no SQL


def test_an_identity_token_request_costs_what_a_key_request_does(providers, django_assert_max_num_queries):
    from tests.conftest import make_client

    client = make_client(providers.generic_token(name="Token User"))
    assert client.get("/api/v1/users/me/").status_code == 200  # provisions the user, fetches the keys
    session = client.post("/api/v1/sessions/", {"agent_id": "a", "title": "t"}, format="json").json()

    with django_assert_max_num_queries(1):  # the user, by (provider, provider_user_id)
        assert client.get("/api/v1/users/me/").status_code == 200
    with django_assert_max_num_queries(2):  # the user, the object
        assert client.get(f"/api/v1/sessions/{session['id']}/").status_code == 200


# --- the session store (issue 16) ---------------------------------------------------------------


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


def test_a_batch_append_is_one_statement_whatever_its_size(alice, busy_session):
    url = f"/api/v1/sessions/{busy_session.pk}/messages/batch/"
    for size in (1, 100):
        forget_recent_keys()
        messages = [{"item": {"type": "function_call", "n": i}} for i in range(size)]
        with CaptureQueriesContext(connection) as queries:
            response = alice.client.post(url, {"messages": messages, "state_delta": {"k": 1}}, format="json")
        assert response.status_code == 201, response.json()
        statements = _statements(queries)
        assert len(statements) <= 2, statements  # key+owner (unless reused), the append
        assert 'INSERT INTO "session_messages"' in statements[-1] and 'UPDATE "sessions"' in statements[-1]


def test_an_append_with_an_idempotency_key_costs_one_statement_more(alice, busy_session):
    url = f"/api/v1/sessions/{busy_session.pk}/messages/batch/"
    body = {"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}
    with CaptureQueriesContext(connection) as queries:
        response = alice.client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 201
    statements = _statements(queries)
    # key+owner (unless reused), the append claiming the key, the answer recorded; no BEGIN/COMMIT.
    assert len(statements) <= 3, statements
    assert 'INSERT INTO "idempotency_keys"' in statements[-2] and 'INSERT INTO "session_messages"' in statements[-2]
    assert statements[-1].startswith('UPDATE "idempotency_keys"')


def test_the_latest_n_messages_are_one_statement(alice, busy_session):
    with CaptureQueriesContext(connection) as queries:
        body = alice.client.get(f"/api/v1/sessions/{busy_session.pk}/messages/?last=1000").json()
    assert len(body["results"]) == 300 and body["results"][0]["sequence"] == 1
    assert len(_statements(queries)) <= 2  # key+owner (unless reused), the page with the revision
