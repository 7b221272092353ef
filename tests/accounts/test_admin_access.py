"""Who gets into the admin and what each role may see and do there."""

from __future__ import annotations

from django.test import Client

from apikeys.models import APIKey
from tests.conftest import PASSWORD

OUR_MODELS = (
    "/admin/accounts/user/",
    "/admin/apikeys/apikey/",
    "/admin/agent_sessions/session/",
    "/admin/audit/auditlog/",
)


def login(email: str, password: str = PASSWORD) -> tuple[Client, int]:
    client = Client()
    response = client.post("/admin/login/", {"username": email, "password": password, "next": "/admin/"})
    return client, response.status_code


def test_a_non_staff_user_cannot_log_into_the_admin(make_user):
    make_user("customer@example.com", password=PASSWORD, roles=["admin"])
    client, status = login("customer@example.com")
    assert status == 200  # the form again, with the error
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_staff_log_in_with_their_password(make_user):
    make_user("staff@example.com", password=PASSWORD, is_staff=True, roles=["viewer"])
    client, status = login("staff@example.com")
    assert status == 302
    assert client.get("/admin/").status_code == 200


def test_inactive_or_deleted_staff_cannot_log_in(make_user):
    make_user("off@example.com", password=PASSWORD, is_staff=True, is_active=False)
    gone = make_user("gone@example.com", password=PASSWORD, is_staff=True)
    gone.soft_delete()
    assert login("off@example.com")[1] == 200
    assert login("gone@example.com")[1] == 200


def test_staff_without_roles_or_permissions_see_none_of_our_apps(make_staff, alice):
    _, client = make_staff("nobody@example.com")
    index = client.get("/admin/").content.decode()
    for url in OUR_MODELS:
        assert url not in index
        assert client.get(url).status_code == 403
    assert client.get(f"/admin/apikeys/apikey/{alice.key.pk}/change/").status_code == 403
    assert client.get(f"/admin/accounts/user/{alice.user.pk}/password/").status_code == 403


def test_a_viewer_can_view_api_keys_but_not_change_them(make_staff, alice):
    _, client = make_staff("viewer@example.com", roles=["viewer"])
    assert client.get("/admin/apikeys/apikey/").status_code == 200
    page = client.get(f"/admin/apikeys/apikey/{alice.key.pk}/change/")
    assert page.status_code == 200 and 'value="revoke_keys"' not in page.content.decode()
    assert client.get("/admin/apikeys/apikey/add/").status_code == 403
    listing = client.get("/admin/apikeys/apikey/").content.decode()
    assert "revoke_keys" not in listing and "rotate_keys" not in listing
    # Posting the action anyway does nothing: the admin only runs actions the user may use.
    client.post(
        "/admin/apikeys/apikey/", {"action": "revoke_keys", "_selected_action": [alice.key.pk], "confirm": "yes"}
    )
    assert APIKey.objects.filter(pk=alice.key.pk).exists()


def test_a_viewer_sees_users_and_sessions_read_only(make_staff, alice):
    _, client = make_staff("viewer@example.com", roles=["viewer"])
    for url in OUR_MODELS:
        assert client.get(url).status_code == 200
    user_page = client.get(f"/admin/accounts/user/{alice.user.pk}/change/").content.decode()
    assert 'name="_save"' not in user_page
    assert client.post(f"/admin/accounts/user/{alice.user.pk}/change/", {"name": "X"}).status_code == 403
    assert client.get("/admin/accounts/user/add/").status_code == 403
    assert client.get(f"/admin/accounts/user/{alice.user.pk}/password/").status_code == 403
    assert "deactivate_users" not in client.get("/admin/accounts/user/").content.decode()


def test_a_developer_manages_keys_but_only_views_users(make_staff, alice):
    _, client = make_staff("dev@example.com", roles=["developer"])
    assert client.get("/admin/apikeys/apikey/add/").status_code == 200
    assert "revoke_keys" in client.get("/admin/apikeys/apikey/").content.decode()
    assert client.get("/admin/accounts/user/add/").status_code == 403


def test_explicit_permissions_add_to_roles(make_staff, alice):
    from django.contrib.auth.models import Permission

    user, client = make_staff("helper@example.com")
    user.user_permissions.add(Permission.objects.get(codename="view_session", content_type__app_label="agent_sessions"))
    assert client.get("/admin/agent_sessions/session/").status_code == 200
    assert client.get("/admin/apikeys/apikey/").status_code == 403
