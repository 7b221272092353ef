from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apikeys.models import APIKey
from audit.models import AuditLog
from tests.conftest import make_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/api-keys/"


def test_create_shows_the_raw_key_once(alice):
    response = alice.client.post(URL, {"name": "ci", "scopes": ["read"], "rate_limit_tier": "pro"}, format="json")

    assert response.status_code == 201
    body = response.json()
    raw = body["key"]
    assert raw.startswith("sk_live_") and "key_hash" not in body
    assert (body["name"], body["scopes"], body["rate_limit_tier"], body["user"]) == (
        "ci",
        ["read"],
        "pro",
        str(alice.user.pk),
    )
    assert make_client(raw).get("/api/v1/users/me/").status_code == 200

    detail = alice.client.get(f"{URL}{body['id']}/").json()
    listing = alice.client.get(URL).content.decode()
    for shown in (str(detail), listing):
        assert raw not in shown and "key_hash" not in shown
    assert APIKey.objects.get(pk=body["id"]).key_hash not in listing
    row = AuditLog.objects.get(resource_type="api_key", resource_id=body["id"])
    assert row.action == "CREATE" and raw not in str(row.changes) and row.response_status == 201


def test_defaults_are_read_scope_and_free_tier(alice):
    body = alice.client.post(URL, {"name": "defaults"}, format="json").json()
    assert (body["scopes"], body["rate_limit_tier"]) == (["read"], "free")


def test_a_key_cannot_mint_scopes_it_does_not_hold(alice, make_key):
    _, read_only = make_key(alice.user, scopes=("read", "write"))
    response = make_client(read_only).post(URL, {"name": "x", "scopes": ["read", "write", "admin"]}, format="json")
    assert response.status_code == 400 and "scopes" in response.json()


def test_admin_scope_needs_an_admin_owner(admin, alice):
    response = admin.client.post(URL, {"name": "x", "scopes": ["admin"], "user": str(alice.user.pk)}, format="json")
    assert response.status_code == 400 and "scopes" in response.json()
    assert not APIKey.objects.filter(user=alice.user, name="x").exists()


def test_admin_creates_keys_for_others_and_others_cannot(admin, alice, bob):
    response = admin.client.post(URL, {"name": "for bob", "user": str(bob.user.pk)}, format="json")
    assert response.status_code == 201 and response.json()["user"] == str(bob.user.pk)

    # A non-admin's `user` is ignored: the key is always their own.
    response = alice.client.post(URL, {"name": "sneaky", "user": str(bob.user.pk)}, format="json")
    assert response.status_code == 201 and response.json()["user"] == str(alice.user.pk)


def test_expiry_in_the_past_is_refused(alice):
    past = (timezone.now() - timedelta(days=1)).isoformat()
    response = alice.client.post(URL, {"name": "old", "expires_at": past}, format="json")
    assert response.status_code == 400 and "expires_at" in response.json()


def test_list_is_own_keys_and_admin_sees_all_with_user_filter(admin, alice, bob):
    assert {k["id"] for k in alice.client.get(URL).json()["results"]} == {str(alice.key.pk)}
    everyone = {k["user"] for k in admin.client.get(URL).json()["results"]}
    assert {str(alice.user.pk), str(bob.user.pk), str(admin.user.pk)} <= everyone
    only_bob = admin.client.get(f"{URL}?user={bob.user.pk}").json()["results"]
    assert {k["id"] for k in only_bob} == {str(bob.key.pk)}


def test_revoke_is_204_and_the_key_stops(alice, make_key):
    key, raw = make_key(alice.user)
    response = alice.client.delete(f"{URL}{key.pk}/")

    assert response.status_code == 204
    assert make_client(raw).get("/api/v1/users/me/").status_code == 401
    assert alice.client.delete(f"{URL}{key.pk}/").status_code == 404
    row = AuditLog.objects.get(resource_type="api_key", resource_id=str(key.pk), action="DELETE")
    assert row.response_status == 204 and row.request_method == "DELETE"


def test_rotate_without_grace_stops_the_old_key_at_once(alice, make_key):
    key, raw = make_key(alice.user, name="deploy", scopes=("read", "write"), tier="pro")

    response = alice.client.post(f"{URL}{key.pk}/rotate/", {}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["scopes"], body["rate_limit_tier"]) == ("deploy", ["read", "write"], "pro")
    assert body["rotated_from"] == str(key.pk) and body["key"].startswith("sk_live_")
    assert make_client(raw).get("/api/v1/users/me/").status_code == 401
    assert make_client(body["key"]).get("/api/v1/users/me/").status_code == 200
    assert AuditLog.objects.filter(resource_type="api_key", resource_id=str(key.pk), action="UPDATE").count() == 1


def test_rotate_with_grace_keeps_the_old_key_working_then_stops(alice, make_key):
    key, raw = make_key(alice.user)

    response = alice.client.post(f"{URL}{key.pk}/rotate/", {"grace_period_seconds": 1}, format="json")

    assert response.status_code == 201
    assert make_client(raw).get("/api/v1/users/me/").status_code == 200
    time.sleep(1.1)
    assert make_client(raw).get("/api/v1/users/me/").status_code == 401
    assert make_client(response.json()["key"]).get("/api/v1/users/me/").status_code == 200


def test_rotating_an_expired_key_is_a_409(alice, make_key):
    key, _ = make_key(alice.user)
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert alice.client.post(f"{URL}{key.pk}/rotate/", {}, format="json").status_code == 409


def test_create_api_key_command_in_process(alice, capsys):
    from django.core.management import call_command

    call_command(
        "create_api_key",
        "--email",
        "ALICE@example.com",
        "--name",
        "cli",
        "--scopes",
        "read,write",
        "--tier",
        "pro",
        "--expires-in-days",
        "30",
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]

    key = APIKey.objects.get(user=alice.user, name="cli")
    assert last.startswith("sk_live_") and " " not in last
    assert (key.scopes, key.rate_limit_tier) == (["read", "write"], "pro")
    assert timedelta(days=29, hours=23) < key.expires_at - timezone.now() <= timedelta(days=30)
    assert make_client(last).get("/api/v1/users/me/").status_code == 200


def test_create_api_key_command_defaults_to_free_and_refuses_admin_for_non_admins(alice, capsys):
    from django.core.management import CommandError, call_command

    call_command("create_api_key", "--email", "alice@example.com", "--name", "plain")
    assert APIKey.objects.get(user=alice.user, name="plain").rate_limit_tier == "free"
    with pytest.raises(CommandError, match="admin"):
        call_command("create_api_key", "--email", "alice@example.com", "--name", "x", "--scopes", "admin")
