from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apikeys import keys
from apikeys.models import APIKey
from apikeys.services import api_key_create, api_key_rotate
from config.errors import InvalidInput

pytestmark = pytest.mark.django_db


def test_generated_keys_have_the_live_prefix_and_a_valid_checksum():
    generated = keys.generate()

    assert generated.raw.startswith("sk_live_")
    assert generated.prefix == "sk_live"
    assert keys.is_well_formed(generated.raw)
    assert generated.key_hash == hashlib.sha256(generated.raw.encode()).hexdigest()
    assert len({keys.generate().raw for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # checksum typo
        lambda k: k[:12] + ("x" if k[12] != "x" else "y") + k[13:],  # body typo
        lambda k: k[:-2],  # truncated
        lambda k: k.replace("sk_live_", "sk_"),
        lambda k: k + "A",
        lambda k: "",
        lambda k: "sk_live_" + "A" * 38,
    ],
)
def test_mistyped_or_forged_keys_fail_the_checksum(mangle):
    assert not keys.is_well_formed(mangle(keys.generate().raw))


def test_only_the_hash_is_stored(make_user):
    user = make_user()
    api_key, raw = APIKey.objects.create_key(user=user, name="ci", scopes=["read"])

    assert api_key.key_hash == keys.hash_key(raw)
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(k)::text FROM api_keys k WHERE id = %s", [api_key.pk])
        stored = cursor.fetchone()[0]
    assert raw not in stored
    assert raw[8:20] not in stored
    assert api_key.key_hint.startswith("sk_live_") and "…" in api_key.key_hint
    assert raw not in repr(api_key) and raw not in str(api_key)


def test_scope_helpers(make_user, make_key):
    key, _ = make_key(make_user(), scopes=("read", "write"))
    assert key.has_scope("read") and not key.has_scope("admin")
    assert key.has_any_scope(["admin", "write"]) and not key.has_any_scope(["admin"])
    assert key.has_all_scopes(["read", "write"]) and not key.has_all_scopes(["read", "admin"])


def test_expiry_and_validity(make_user, make_key):
    key, _ = make_key(make_user(), expires_at=timezone.now() + timedelta(hours=1))
    assert not key.is_expired and key.is_active and key.state == "active"

    key.expires_at = timezone.now() - timedelta(seconds=1)
    assert key.is_expired and not key.is_active and key.state == "expired"

    key.soft_delete()
    assert not key.is_active and key.state == "revoked"
    assert not APIKey.objects.filter(pk=key.pk).exists()


def test_last_used_is_written_at_most_once_a_minute(make_user, make_key):
    key, _ = make_key(make_user())
    now = timezone.now()

    assert key.update_last_used(now=now) is True
    assert key.update_last_used(now=now + timedelta(seconds=30)) is False
    stale = APIKey.objects.get(pk=key.pk)  # another worker's copy, read before the write
    stale.last_used_at = None
    assert stale.update_last_used(now=now + timedelta(seconds=30)) is False  # the UPDATE is conditional
    assert key.update_last_used(now=now + timedelta(seconds=61)) is True
    assert APIKey.objects.get(pk=key.pk).last_used_at == now + timedelta(seconds=61)


@pytest.mark.django_db(transaction=True)
def test_concurrent_uses_write_last_used_once(make_user, make_key):
    key, _ = make_key(make_user())
    writes = []
    barrier = threading.Barrier(10)

    def use() -> None:
        try:
            copy = APIKey.objects.get(pk=key.pk)
            barrier.wait()
            writes.append(copy.update_last_used())
        finally:
            connection.close()

    threads = [threading.Thread(target=use) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert writes.count(True) == 1


def test_rotation_keeps_prefix_scopes_tier_and_exact_lifetime(make_user, make_key):
    # The original turned sk_live into sk and lost at least a day per rotation.
    user = make_user()
    old, _ = make_key(user, scopes=("read",), tier="pro", expires_at=timezone.now() + timedelta(days=30))
    lifetime = old.expires_at - old.created_at

    new, raw, retired = api_key_rotate(actor=None, api_key=old)

    assert raw.startswith("sk_live_") and new.key_prefix == "sk_live"
    assert (new.name, new.scopes, new.rate_limit_tier) == (old.name, ["read"], "pro")
    assert abs((new.expires_at - new.created_at) - lifetime) < timedelta(seconds=1)
    assert retired.deleted_at is not None


def test_rotation_with_grace_keeps_the_old_key_until_the_grace_ends(make_user, make_key):
    old, _ = make_key(make_user())
    before = timezone.now()

    _, _, retired = api_key_rotate(actor=None, api_key=old, grace_period=timedelta(minutes=10))

    assert retired.deleted_at is None
    assert before + timedelta(minutes=10) <= retired.expires_at <= timezone.now() + timedelta(minutes=10)
    assert retired.is_active


def test_each_state_in_the_database_is_the_state_on_the_row(make_user, make_key):
    owner = make_user()
    make_key(owner, name="active", expires_at=timezone.now() + timedelta(hours=1))
    make_key(owner, name="forever")
    expired, _ = make_key(owner, name="expired", expires_at=timezone.now() + timedelta(hours=1))
    APIKey.all_objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, _ = make_key(owner, name="revoked")
    revoked.revoke()
    rows = {key.name: key.state for key in APIKey.all_objects.filter(user=owner)}
    assert rows == {"active": "active", "forever": "active", "expired": "expired", "revoked": "revoked"}
    for state in APIKey.State.values:
        in_database = set(APIKey.all_objects.filter(user=owner).in_state(state).values_list("name", flat=True))
        assert in_database == {name for name, row_state in rows.items() if row_state == state}, state
    assert set(APIKey.objects.usable().filter(user=owner).values_list("name", flat=True)) == {"active", "forever"}
    owner.deactivate()
    assert not APIKey.objects.usable().filter(user=owner).exists()


def test_only_the_owner_or_a_platform_admin_makes_a_key_and_never_with_more_than_it_holds(make_user, make_key):
    alice, bob = make_user(), make_user()
    root = make_user(roles=["admin"])
    key, _ = make_key(alice)
    with pytest.raises(InvalidInput, match="Only a platform admin may create"):
        api_key_create(actor=bob, owner=alice, name="x")
    with pytest.raises(InvalidInput, match="Only a platform admin may rotate"):
        api_key_rotate(actor=bob, api_key=key)
    with pytest.raises(InvalidInput, match="cannot grant scopes it does not hold: write"):
        api_key_create(actor=alice, owner=alice, name="x", scopes=["read", "write"], actor_scopes=["read"])
    made, _ = api_key_create(actor=root, owner=alice, name="by admin", scopes=["read"])
    new, _, _ = api_key_rotate(actor=root, api_key=made)
    assert made.user == new.user == alice
    assert api_key_create(actor=None, owner=bob, name="by a command")[0].user == bob
