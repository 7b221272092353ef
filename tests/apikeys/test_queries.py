"""apikeys.queries.key_with_owner against its ORM twin, ``select_related("user").get(key_hash=...)``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Model
from django.utils import timezone

from accounts.services import user_soft_delete
from apikeys import keys
from apikeys.models import APIKey
from apikeys.queries import key_with_owner

pytestmark = pytest.mark.django_db


def fields(instance: Model) -> dict[str, object]:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def orm_twin(key_hash: str) -> APIKey | None:
    return APIKey.all_objects.select_related("user").filter(key_hash=key_hash).first()


def test_it_returns_what_the_orm_returns_for_live_revoked_expired_and_orphaned_keys(make_user, make_key, alice):
    live, _ = make_key(alice.user, name="live")
    revoked, _ = make_key(alice.user, name="revoked")
    revoked.revoke()
    expired, _ = make_key(alice.user, name="expiring", expires_at=timezone.now() + timedelta(hours=1))
    APIKey.all_objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    gone_owner = make_user()
    orphan, _ = make_key(gone_owner, name="owner deleted")
    user_soft_delete(actor=None, user=gone_owner)
    other, _ = make_key(make_user(), name="someone else's")

    for key in (live, revoked, expired, orphan, other):
        found, twin = key_with_owner(key.key_hash), orm_twin(key.key_hash)
        assert found is not None and twin is not None
        assert fields(found) == fields(twin), key.name
        assert fields(found.user) == fields(twin.user), key.name
        assert found.state == twin.state
    assert key_with_owner(keys.hash_key(keys.generate().raw)) is None
    assert orm_twin(keys.hash_key(keys.generate().raw)) is None


def test_the_owner_comes_with_the_key_in_one_statement(alice, django_assert_num_queries):
    with django_assert_num_queries(1):
        key = key_with_owner(alice.key.key_hash)
        assert key is not None and key.user.email == "alice@example.com"


def test_loaded_keys_are_ordinary_instances(alice):
    key = key_with_owner(alice.key.key_hash)
    assert key is not None and key._state.adding is False and key._state.db == "default"
    key.name = "renamed"
    key.save(update_fields=["name", "updated_at"])
    assert APIKey.objects.get(pk=key.pk).name == "renamed"
