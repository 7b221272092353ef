from __future__ import annotations

import pytest

from accounts.models import User
from apikeys.models import APIKey
from audit.models import AuditLog
from tests.conftest import make_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/users/"


def test_admin_creates_a_user(admin):
    response = admin.client.post(
        URL,
        {
            "email": "new@example.com",
            "name": "New",
            "roles": ["developer"],
            "groups": ["eng"],
            "password": "a sturdy passphrase 7",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["email"] == "new@example.com" and body["roles"] == ["developer"] and body["groups"] == ["eng"]
    assert "password" not in body and "hashed_password" not in body
    user = User.objects.get(pk=body["id"])
    assert user.check_password("a sturdy passphrase 7")
    row = AuditLog.objects.get(resource_type="user", resource_id=body["id"])
    assert row.action == "CREATE" and row.user_id == admin.user.pk and row.response_status == 201
    assert row.changes["password"] == {"old": "***", "new": "***"}
    assert "sturdy" not in str(row.changes)


def test_duplicate_email_in_any_case_is_a_400_naming_the_field(admin, alice):
    response = admin.client.post(URL, {"email": "ALICE@example.com", "name": "Again"}, format="json")
    assert response.status_code == 400
    assert "email" in response.json()


def test_weak_password_is_refused(admin):
    response = admin.client.post(URL, {"email": "weak@example.com", "name": "W", "password": "123"}, format="json")
    assert response.status_code == 400 and "password" in response.json()
    assert not User.objects.with_email("weak@example.com").exists()


def test_unknown_role_is_a_400(admin):
    response = admin.client.post(URL, {"email": "r@example.com", "name": "R", "roles": ["emperor"]}, format="json")
    assert response.status_code == 400 and "roles" in response.json()


def test_list_filters_and_search(admin, alice, bob, make_user):
    make_user(
        "carol@example.com",
        name="Carol",
        roles=["developer"],
        groups=["ml"],
        provider="azure_ad",
        provider_user_id="c1",
    )

    def emails(query: str) -> set[str]:
        response = admin.client.get(URL + query)
        assert response.status_code == 200, response.json()
        return {u["email"] for u in response.json()["results"]}

    assert emails("?role=developer") == {"carol@example.com"}
    assert emails("?group=ml") == {"carol@example.com"}
    assert emails("?provider=azure_ad") == {"carol@example.com"}
    assert emails("?search=ALIC") == {"alice@example.com"}
    assert "bob@example.com" in emails("?is_active=true")


def test_an_invalid_filter_value_is_a_400(admin):
    response = admin.client.get(URL + "?role=nonsense")
    assert response.status_code == 400 and "role" in response.json()


def test_partial_update_and_its_audit_row(admin, alice):
    response = admin.client.patch(
        f"{URL}{alice.user.pk}/", {"name": "Alice Liddell", "roles": ["user", "viewer"]}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["name"] == "Alice Liddell"
    row = AuditLog.objects.get(resource_type="user", resource_id=str(alice.user.pk), action="UPDATE")
    assert row.changes == {
        "name": {"old": "Alice", "new": "Alice Liddell"},
        "roles": {"old": ["user"], "new": ["user", "viewer"]},
    }


def test_delete_soft_deletes_revokes_keys_and_restore_brings_back(admin, alice):
    response = admin.client.delete(f"{URL}{alice.user.pk}/")
    assert response.status_code == 204
    assert alice.client.get(URL + "me/").status_code == 401
    assert APIKey.all_objects.get(pk=alice.key.pk).deleted_at is not None
    assert {u["email"] for u in admin.client.get(URL + "?deleted=true").json()["results"]} == {"alice@example.com"}

    response = admin.client.post(f"{URL}{alice.user.pk}/restore/")
    assert response.status_code == 200 and response.json()["is_active"] is True
    actions = list(
        AuditLog.objects.filter(resource_id=str(alice.user.pk)).order_by("timestamp").values_list("action", flat=True)
    )
    assert actions[-2:] == ["DELETE", "UPDATE"]


def test_restoring_a_live_user_is_a_409(admin, alice):
    assert admin.client.post(f"{URL}{alice.user.pk}/restore/").status_code == 409


def test_me_works_for_any_caller(alice):
    response = alice.client.get(URL + "me/")
    assert response.status_code == 200 and response.json()["id"] == str(alice.user.pk)


def test_non_admins_cannot_use_the_user_endpoints(alice, bob):
    assert alice.client.get(URL).status_code == 403
    assert alice.client.get(f"{URL}{bob.user.pk}/").status_code == 403
    assert alice.client.post(URL, {"email": "x@example.com", "name": "X"}, format="json").status_code == 403
    assert alice.client.delete(f"{URL}{bob.user.pk}/").status_code == 403
    assert User.objects.filter(pk=bob.user.pk).exists()


def test_an_admin_user_without_an_admin_scoped_key_is_not_admin(admin, make_key):
    _, raw = make_key(admin.user, scopes=("read", "write"))
    assert make_client(raw).get(URL).status_code == 403


def test_admin_scope_is_not_enough_without_the_admin_role(alice, admin):
    # A key can't even be made with admin scope for a non-admin (see api key tests);
    # and if the admin role is removed later, the key's admin scope stops counting.
    admin.user.remove_role("admin")
    assert admin.client.get(URL).status_code == 403


def test_an_admin_cannot_delete_themselves(admin):
    response = admin.client.delete(f"{URL}{admin.user.pk}/")
    assert response.status_code == 400
    assert User.objects.filter(pk=admin.user.pk).exists()


def test_an_admin_cannot_deactivate_themselves_through_patch_either(admin):
    # The same rule as the admin's deactivate action: it lives in accounts.services.user_update.
    response = admin.client.patch(f"{URL}{admin.user.pk}/", {"is_active": False}, format="json")
    assert response.status_code == 400
    assert response.json() == {"is_active": ["You cannot deactivate your own account."]}
    assert User.objects.get(pk=admin.user.pk).is_active
    assert not AuditLog.objects.filter(resource_id=str(admin.user.pk), action="UPDATE").exists()
