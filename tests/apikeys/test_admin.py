"""The API key admin: the raw key shown once, the hash never; revoke and rotate via services."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from apikeys.keys import hash_key
from apikeys.models import APIKey
from audit.models import AuditLog
from tests.conftest import make_client, messages_of

LIST = "/admin/apikeys/apikey/"


def create_key(client: Client, owner, **overrides: object):
    data = {"user": str(owner.pk), "name": "admin-made", "scopes": ["read"], "rate_limit_tier": "pro", "_save": "Save"}
    data.update(overrides)
    return client.post(f"{LIST}add/", data)


def test_key_list_shows_hint_owner_scopes_tier_and_state(root_client: Client, alice, make_key):
    revoked, _ = make_key(alice.user, name="old one")
    revoked.soft_delete()
    expired, _ = make_key(alice.user, name="short-lived", expires_at=timezone.now() + timedelta(seconds=1))
    APIKey.all_objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    html = root_client.get(LIST).content.decode()
    assert alice.key.key_hint in html and "alice@example.com" in html and "read, write" in html
    assert "enterprise" in html.lower()
    assert "key-state-active" in html and "key-state-revoked" in html and "key-state-expired" in html
    for column in ("column-last_used_display", "column-expires_display", "column-state_display"):
        assert column in html
    assert alice.key.key_hash not in html


def test_filters_by_state_and_tier(root_client: Client, alice, bob, make_key):
    revoked, _ = make_key(alice.user, name="gone key")
    revoked.soft_delete()
    expired, _ = make_key(bob.user, name="stale key", tier="free", expires_at=timezone.now() + timedelta(seconds=1))
    APIKey.all_objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    active = root_client.get(LIST, {"state": "active"}).content.decode()
    assert alice.key.key_hint in active and revoked.key_hint not in active and expired.key_hint not in active
    assert revoked.key_hint in root_client.get(LIST, {"state": "revoked"}).content.decode()
    only_expired = root_client.get(LIST, {"state": "expired"}).content.decode()
    assert expired.key_hint in only_expired and alice.key.key_hint not in only_expired
    free = root_client.get(LIST, {"rate_limit_tier__exact": "free"}).content.decode()
    assert expired.key_hint in free and alice.key.key_hint not in free


def test_search_by_name_owner_email_and_hint(root_client: Client, alice, bob, make_key):
    named, _ = make_key(bob.user, name="billing-worker")
    assert named.key_hint in root_client.get(LIST, {"q": "billing"}).content.decode()
    by_owner = root_client.get(LIST, {"q": "alice@"}).content.decode()
    assert alice.key.key_hint in by_owner and bob.key.key_hint not in by_owner
    by_hint = root_client.get(LIST, {"q": alice.key.key_hint[-4:]}).content.decode()
    assert alice.key.key_hint in by_hint


def test_adding_a_key_shows_the_raw_key_once(root, alice):
    root_user, client = root
    response = create_key(client, alice.user)
    assert response.status_code == 302
    reveal_url = response["Location"]
    assert reveal_url.startswith(f"{LIST}revealed/")
    key = APIKey.objects.get(name="admin-made")
    assert key.user == alice.user and key.scopes == ["read"] and key.rate_limit_tier == "pro"
    page = client.get(reveal_url)
    html = page.content.decode()
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    raw = html.split('id="raw-key">')[1].split("</code>")[0]
    assert hash_key(raw) == key.key_hash and raw.startswith("sk_live_")
    assert "will not be shown again" in html
    # The key works.
    assert make_client(raw).get("/api/v1/users/me/").status_code == 200
    # A reload finds it gone; it never went into a message, the audit row or a cookie.
    again = client.get(reveal_url).content.decode()
    assert raw not in again and "no longer available" in again
    assert raw not in str(list(AuditLog.objects.values_list("changes", "metadata")))
    assert all(raw not in m for m in messages_of(page))
    assert all(raw not in morsel.value for morsel in client.cookies.values())
    [row] = AuditLog.objects.filter(resource_type="api_key", resource_id=str(key.pk), action="CREATE")
    assert row.user_id == root_user.pk and row.response_status == 302


def test_the_hash_is_never_displayed_or_editable(root_client: Client, alice):
    for url in (LIST, f"{LIST}{alice.key.pk}/change/", f"{LIST}add/"):
        html = root_client.get(url).content.decode()
        assert alice.key.key_hash not in html and "key_hash" not in html
    # The change page edits nothing: no save buttons, and a forged POST changes nothing.
    change = root_client.get(f"{LIST}{alice.key.pk}/change/").content.decode()
    assert 'name="_save"' not in change
    root_client.post(f"{LIST}{alice.key.pk}/change/", {"key_hash": "0" * 64, "name": "renamed", "_save": "Save"})
    alice.key.refresh_from_db()
    assert alice.key.key_hash != "0" * 64 and alice.key.name == "test key"


def test_revoke_asks_first_then_revokes_each_key_through_the_service(root, alice, bob):
    root_user, client = root
    ids = [alice.key.pk, bob.key.pk]
    confirm = client.post(LIST, {"action": "revoke_keys", "_selected_action": ids, "index": 0})
    assert confirm.status_code == 200 and "Yes, revoke" in confirm.content.decode()
    assert APIKey.objects.filter(pk__in=ids).count() == 2
    done = client.post(LIST, {"action": "revoke_keys", "_selected_action": ids, "confirm": "yes"})
    assert done.status_code == 302 and "Revoked 2 API keys." in messages_of(done)
    assert not APIKey.objects.filter(pk__in=ids).exists()
    for pk in ids:
        [row] = AuditLog.objects.filter(resource_type="api_key", resource_id=str(pk), action="DELETE")
        assert row.user_id == root_user.pk
    assert alice.client.get("/api/v1/users/me/").status_code == 401
    again = client.post(f"{LIST}?state=revoked", {"action": "revoke_keys", "_selected_action": ids, "confirm": "yes"})
    assert any("already revoked" in m for m in messages_of(again))


def test_rotate_shows_the_new_keys_once_and_retires_the_old(root_client: Client, alice):
    confirm = root_client.post(LIST, {"action": "rotate_keys", "_selected_action": [alice.key.pk], "index": 0})
    assert confirm.status_code == 200 and 'name="grace_period"' in confirm.content.decode()
    done = root_client.post(
        LIST, {"action": "rotate_keys", "_selected_action": [alice.key.pk], "confirm": "yes", "grace_period": "0"}
    )
    assert done.status_code == 302 and done["Location"].startswith(f"{LIST}revealed/")
    html = root_client.get(done["Location"]).content.decode()
    raw = html.split('id="raw-key">')[1].split("</code>")[0]
    new = APIKey.objects.get(key_hash=hash_key(raw))
    assert new.user == alice.user and new.name == alice.key.name
    assert "Replaces" in html and alice.key.key_hint in html
    alice.key.refresh_from_db()
    assert alice.key.state == "revoked"
    assert "no longer available" in root_client.get(done["Location"]).content.decode()


def test_rotate_with_a_grace_period_keeps_the_old_key_working(root_client: Client, alice):
    root_client.post(
        LIST, {"action": "rotate_keys", "_selected_action": [alice.key.pk], "confirm": "yes", "grace_period": "3600"}
    )
    alice.key.refresh_from_db()
    assert alice.key.state == "active" and alice.key.expires_at is not None
    assert alice.client.get("/api/v1/users/me/").status_code == 200


def test_a_scope_the_owner_cannot_hold_is_shown_on_the_form(root_client: Client, alice):
    response = create_key(root_client, alice.user, scopes=["read", "admin"])
    assert response.status_code == 200
    assert "The owner cannot use scope(s): admin" in response.content.decode()
    assert not APIKey.objects.filter(name="admin-made").exists()


def test_a_key_needs_an_active_owner(root_client: Client, make_user):
    inactive = make_user("inactive@example.com", is_active=False)
    response = create_key(root_client, inactive)
    assert response.status_code == 200 and not APIKey.objects.filter(name="admin-made").exists()


def test_a_developer_makes_keys_for_themselves_only(make_staff, alice):
    developer, client = make_staff("dev@example.com", roles=["developer"])
    refused = create_key(client, alice.user)
    assert refused.status_code == 200 and not APIKey.objects.filter(name="admin-made").exists()
    own = create_key(client, developer)
    assert own.status_code == 302
    assert APIKey.objects.get(name="admin-made").user == developer
    rotate = client.post(
        LIST, {"action": "rotate_keys", "_selected_action": [alice.key.pk], "confirm": "yes", "grace_period": "0"}
    )
    assert any("only a platform admin" in m.lower() for m in messages_of(rotate))
    alice.key.refresh_from_db()
    assert alice.key.state == "active"


def test_the_key_page_offers_revoke_and_rotate(root_client: Client, alice):
    html = root_client.get(f"{LIST}{alice.key.pk}/change/").content.decode()
    assert 'value="revoke_keys"' in html and 'value="rotate_keys"' in html


def test_someone_elses_reveal_token_shows_nothing(root, make_staff, alice):
    _, client = root
    reveal_url = create_key(client, alice.user)["Location"]
    _, other = make_staff("other@example.com", is_superuser=True)
    html = other.get(reveal_url).content.decode()
    assert "no longer available" in html and 'id="raw-key"' not in html
