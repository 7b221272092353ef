"""The user admin: list, filters, forms and actions, every write through accounts.services."""

from __future__ import annotations

from django.test import Client

from accounts.models import User
from apikeys.models import APIKey
from audit.models import AuditLog
from tests.conftest import PASSWORD, messages_of

LIST = "/admin/accounts/user/"


def change_url(user: User) -> str:
    return f"{LIST}{user.pk}/change/"


def user_rows(resource_id: object, **filters: object) -> list[AuditLog]:
    return list(AuditLog.objects.filter(resource_type="user", resource_id=str(resource_id), **filters))


def form_data(user: User, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "email": user.email,
        "name": user.name,
        "provider": user.provider,
        "provider_user_id": user.provider_user_id,
        "roles": list(user.roles),
        "groups": "\n".join(user.groups),
        "_save": "Save",
    }
    for flag in ("is_active", "is_staff", "is_superuser"):
        if getattr(user, flag):
            data[flag] = "on"
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_user_list_shows_the_columns_staff_need(root_client: Client, alice):
    response = root_client.get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    for header in ("column-email_display", "column-name", "column-provider", "column-roles_display"):
        assert header in html
    for header in ("column-active_display", "column-staff_display", "column-created_display"):
        assert header in html
    assert "column-is_deleted_display" in html
    assert "alice@example.com" in html


def test_soft_deleted_users_are_hidden_until_the_filter_asks(root_client: Client, make_user):
    live = make_user("live@example.com")
    gone = make_user("gone@example.com")
    gone.soft_delete()
    default = root_client.get(LIST).content.decode()
    assert live.email in default and gone.email not in default
    deleted = root_client.get(LIST, {"deleted": "yes"}).content.decode()
    assert gone.email in deleted and live.email not in deleted
    everyone = root_client.get(LIST, {"deleted": "all"}).content.decode()
    assert gone.email in everyone and live.email in everyone
    # A deleted user's page still opens (to restore them).
    assert root_client.get(change_url(gone)).status_code == 200


def test_user_search_covers_email_name_and_provider_user_id(root_client: Client, make_user):
    make_user("carol@example.com", name="Carol Jones")
    make_user("dave@example.com", name="Dave", provider="azure_ad", provider_user_id="aad-7788")
    assert "carol@example.com" in root_client.get(LIST, {"q": "carol@"}).content.decode()
    assert "carol@example.com" in root_client.get(LIST, {"q": "jones"}).content.decode()
    by_uid = root_client.get(LIST, {"q": "aad-77"}).content.decode()
    assert "dave@example.com" in by_uid and "carol@example.com" not in by_uid


def test_filters_by_role_provider_active_and_staff(root_client: Client, make_user):
    make_user("dev@example.com", roles=["developer"])
    make_user("plain@example.com", roles=["user"], is_active=False)
    make_user("sso@example.com", provider="aws_cognito", provider_user_id="cog-1")
    by_role = root_client.get(LIST, {"role": "developer"}).content.decode()
    assert "dev@example.com" in by_role and "plain@example.com" not in by_role
    by_provider = root_client.get(LIST, {"provider__exact": "aws_cognito"}).content.decode()
    assert "sso@example.com" in by_provider and "dev@example.com" not in by_provider
    inactive = root_client.get(LIST, {"is_active__exact": "0"}).content.decode()
    assert "plain@example.com" in inactive and "dev@example.com" not in inactive
    staff = root_client.get(LIST, {"is_staff__exact": "1"}).content.decode()
    assert "root@example.com" in staff and "dev@example.com" not in staff


def test_adding_a_user_goes_through_the_service_and_is_audited(root):
    root_user, client = root
    response = client.post(
        f"{LIST}add/",
        {
            "email": "carol@example.com",
            "name": "Carol",
            "provider": "local",
            "provider_user_id": "",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "roles": ["developer", "viewer"],
            "groups": "CN=Eng,OU=Groups\n  research  \n\nresearch",
            "is_active": "on",
            "is_staff": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    carol = User.objects.get(email="carol@example.com")
    assert carol.roles == ["developer", "viewer"]
    assert carol.groups == ["CN=Eng,OU=Groups", "research"]
    assert carol.is_staff and carol.check_password(PASSWORD)
    [row] = user_rows(carol.pk, action="CREATE")
    assert row.user_id == root_user.pk
    assert row.request_path == f"{LIST}add/" and row.response_status == 302
    assert row.changes["password"] == {"old": "***", "new": "***"}
    assert PASSWORD not in str(row.changes)


def test_a_user_added_without_a_password_has_no_usable_password(root_client: Client):
    data = {"email": "nopass@example.com", "name": "N", "provider": "local", "is_active": "on", "_save": "Save"}
    assert root_client.post(f"{LIST}add/", data).status_code == 302
    assert not User.objects.get(email="nopass@example.com").has_usable_password()


def test_a_duplicate_email_shows_the_services_reason_on_the_form(root_client: Client, alice):
    before = AuditLog.objects.count()
    response = root_client.post(
        f"{LIST}add/",
        {"email": "ALICE@example.com", "name": "Other", "provider": "local", "is_active": "on", "_save": "Save"},
    )
    assert response.status_code == 200
    assert "A user with this email address already exists." in response.content.decode()
    assert User.objects.with_email("alice@example.com").count() == 1
    assert AuditLog.objects.count() == before


def test_editing_roles_and_groups_writes_one_audit_row_with_the_changes(root, alice):
    root_user, client = root
    data = form_data(alice.user, roles=["user", "developer"], groups="eng\nops")
    response = client.post(change_url(alice.user), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    alice.user.refresh_from_db()
    assert alice.user.roles == ["user", "developer"] and alice.user.groups == ["eng", "ops"]
    [row] = user_rows(alice.user.pk, action="UPDATE")
    assert row.user_id == root_user.pk
    assert row.changes == {
        "roles": {"old": ["user"], "new": ["user", "developer"]},
        "groups": {"old": [], "new": ["eng", "ops"]},
    }


def test_saving_an_unchanged_user_writes_no_audit_row(root_client: Client, alice):
    assert root_client.post(change_url(alice.user), form_data(alice.user)).status_code == 302
    assert user_rows(alice.user.pk, action="UPDATE") == []


def test_the_change_form_shows_roles_as_checkboxes_and_groups_one_per_line(root_client: Client, make_user):
    user = make_user("grouped@example.com", roles=["viewer"], groups=["eng", "ops"])
    html = root_client.get(change_url(user)).content.decode()
    assert 'type="checkbox" name="roles" value="viewer"' in html and "checked" in html
    assert "eng\nops</textarea>" in html


def test_actions_call_the_service_once_per_user(root, make_user):
    root_user, client = root
    one, two = make_user("one@example.com"), make_user("two@example.com")
    response = client.post(LIST, {"action": "deactivate_users", "_selected_action": [one.pk, two.pk], "index": 0})
    assert response.status_code == 302
    assert "Deactivated 2 users." in messages_of(response)
    for user in (one, two):
        user.refresh_from_db()
        assert not user.is_active
        [row] = user_rows(user.pk, action="UPDATE")
        assert row.changes == {"is_active": {"old": True, "new": False}} and row.user_id == root_user.pk
    response = client.post(LIST, {"action": "activate_users", "_selected_action": [one.pk], "index": 0})
    assert "Activated 1 user." in messages_of(response)
    one.refresh_from_db()
    assert one.is_active


def test_staff_cannot_deactivate_or_delete_themselves(root):
    root_user, client = root
    for action in ("deactivate_users", "soft_delete_users"):
        response = client.post(LIST, {"action": action, "_selected_action": [root_user.pk], "index": 0})
        assert any("your own account" in m for m in messages_of(response))
    root_user.refresh_from_db()
    assert root_user.is_active and root_user.deleted_at is None


def test_soft_delete_and_restore_actions(root_client: Client, alice):
    response = root_client.post(LIST, {"action": "soft_delete_users", "_selected_action": [alice.user.pk], "index": 0})
    assert "Soft-deleted 1 user." in messages_of(response)
    alice.user.refresh_from_db()
    assert alice.user.deleted_at is not None and not alice.user.is_active
    assert not APIKey.objects.filter(user=alice.user).exists()  # keys revoked with the user
    assert len(user_rows(alice.user.pk, action="DELETE")) == 1
    # Restoring works on the deleted list (the default list hides deleted users).
    response = root_client.post(
        f"{LIST}?deleted=yes", {"action": "restore_users", "_selected_action": [alice.user.pk], "index": 0}
    )
    assert "Restored 1 user." in messages_of(response)
    alice.user.refresh_from_db()
    assert alice.user.deleted_at is None and alice.user.is_active


def test_a_refused_action_is_a_warning_not_an_error(root_client: Client, alice, bob):
    response = root_client.post(
        f"{LIST}?deleted=all", {"action": "restore_users", "_selected_action": [alice.user.pk], "index": 0}
    )
    assert response.status_code == 302
    assert any("The user is not deleted." in m for m in messages_of(response))


def test_the_password_page_sets_the_password_through_the_service(root, alice):
    root_user, client = root
    url = f"{LIST}{alice.user.pk}/password/"
    assert client.get(url).status_code == 200
    response = client.post(url, {"password1": "a-new-long-passphrase-42", "password2": "a-new-long-passphrase-42"})
    assert response.status_code == 302
    assert "Password changed successfully." in messages_of(response)
    alice.user.refresh_from_db()
    assert alice.user.check_password("a-new-long-passphrase-42")
    [row] = user_rows(alice.user.pk, action="UPDATE")
    assert row.changes == {"password": {"old": "***", "new": "***"}} and row.user_id == root_user.pk
    assert Client().login(email="alice@example.com", password="a-new-long-passphrase-42")


def test_a_weak_or_mismatched_password_is_refused_on_the_form(root_client: Client, alice):
    url = f"{LIST}{alice.user.pk}/password/"
    weak = root_client.post(url, {"password1": "12345678", "password2": "12345678"})
    assert weak.status_code == 200 and "too common" in weak.content.decode()
    mismatch = root_client.post(url, {"password1": "a-new-long-passphrase-42", "password2": "another-phrase-43"})
    assert mismatch.status_code == 200 and "didn’t match" in mismatch.content.decode()
    assert user_rows(alice.user.pk, action="UPDATE") == []


def test_oauth_users_cannot_get_a_usable_password(root_client: Client, make_user):
    sso = make_user("sso@example.com", provider="azure_ad", provider_user_id="aad-1")
    response = root_client.get(f"{LIST}{sso.pk}/password/")
    assert response.status_code == 302 and response["Location"] == change_url(sso)
    assert any("cannot have a password" in m for m in messages_of(response))
    assert "an OAuth user cannot have a password" in root_client.get(change_url(sso)).content.decode()
    added = root_client.post(
        f"{LIST}add/",
        {
            "email": "sso2@example.com",
            "name": "S",
            "provider": "aws_cognito",
            "provider_user_id": "cog-2",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "is_active": "on",
            "_save": "Save",
        },
    )
    assert added.status_code == 200 and "cannot have a password" in added.content.decode()
    assert not User.objects.filter(email="sso2@example.com").exists()


def test_only_a_superuser_makes_superusers(make_staff, alice):
    _, client = make_staff("ops@example.com", roles=["admin"])
    html = client.get(change_url(alice.user)).content.decode()
    assert 'name="is_superuser"' not in html  # shown read-only
    response = client.post(change_url(alice.user), form_data(alice.user, is_superuser="on"))
    assert response.status_code == 302
    alice.user.refresh_from_db()
    assert not alice.user.is_superuser
    assert 'name="is_superuser"' not in client.get(f"{LIST}add/").content.decode()


def test_a_non_superuser_cannot_set_a_superusers_password(make_staff, root):
    root_user, _ = root
    _, client = make_staff("ops@example.com", roles=["admin"])
    assert client.get(f"{LIST}{root_user.pk}/password/").status_code == 403


def test_hard_delete_is_not_offered(root_client: Client, alice):
    assert root_client.get(f"{LIST}{alice.user.pk}/delete/").status_code == 403
    assert "delete_selected" not in root_client.get(LIST).content.decode()


def test_djangos_permission_groups_are_not_in_the_admin(root_client: Client):
    assert root_client.get("/admin/auth/group/").status_code == 404
