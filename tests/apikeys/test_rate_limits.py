from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_client, redis_counters_or_skip, within_one_window

pytestmark = pytest.mark.django_db
ME = "/api/v1/users/me/"


def test_free_tier_is_limited_with_retry_after(alice, make_key, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "free": "3/min"}
    within_one_window()
    _, raw = make_key(alice.user, tier="free")
    client = make_client(raw)

    statuses = [client.get(ME).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    refused = client.get(ME)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "detail" in refused.json()


def test_limits_are_per_key(alice, make_key, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "pro": "2/hour"}
    _, first = make_key(alice.user, tier="pro")
    _, second = make_key(alice.user, tier="pro")
    for _ in range(2):
        assert make_client(first).get(ME).status_code == 200
    assert make_client(first).get(ME).status_code == 429
    assert make_client(second).get(ME).status_code == 200


def test_the_default_tier_limits_are_the_originals(settings):
    assert settings.RATE_LIMITS == {"free": "100/hour", "pro": "1000/hour", "enterprise": "none"}


def test_enterprise_touches_no_counter(alice, django_assert_max_num_queries):
    alice.client.get(ME)  # the first request of the minute records last_used_at
    # At most the key+owner lookup (none while the worker reuses it): no counter for an unlimited tier.
    with django_assert_max_num_queries(1) as queries:
        assert alice.client.get(ME).status_code == 200
    assert not any("django_cache" in q["sql"] for q in queries.captured_queries)


def test_the_database_cache_counts_atomically_across_connections(db):
    from django.core.cache import cache

    cache.add("counter-test", 0, timeout=60)
    assert [cache.incr("counter-test") for _ in range(3)] == [1, 2, 3]
    with pytest.raises(ValueError):
        cache.incr("missing-counter")


def test_redis_counts_each_window_with_its_expiry_and_survives_a_server_that_forgot_the_script(settings):
    from config import ratelimit

    prefix = f"rl-test-{uuid.uuid4().hex[:8]}"
    server = redis_counters_or_skip(settings, prefix)
    assert [ratelimit.hit("key:x", 3, 60)[0] for _ in range(2)] == [True, True]
    server.script_flush()  # a restarted or flushed Redis: EVALSHA answers NOSCRIPT, redis-py loads it again
    assert ratelimit.hit("key:x", 3, 60)[0] is True
    assert ratelimit.hit("key:x", 3, 60)[0] is False  # the third took the last number
    (counter,) = server.keys(f"{prefix}:*")
    assert int(server.get(counter)) == 3 and 0 < server.ttl(counter) <= 61
    server.delete(counter)
