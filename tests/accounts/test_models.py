from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from accounts.models import User
from accounts.services import user_set_active, user_soft_delete
from agent_sessions.models import Session
from config.db.soft_delete import AmbiguousDelete
from config.errors import InvalidInput

pytestmark = pytest.mark.django_db


def test_role_and_group_helpers(make_user):
    user = make_user(roles=["user", "developer"], groups=["eng", "ml"])

    assert user.has_role("developer") and not user.has_role("admin")
    assert user.has_any_role(["admin", "user"]) and not user.has_any_role(["admin"])
    assert user.has_all_roles(["user", "developer"]) and not user.has_all_roles(["user", "admin"])
    assert user.has_all_roles([])
    assert user.is_in_group("ml") and user.is_in_any_group(["x", "eng"]) and not user.is_in_any_group(["x"])


def test_role_and_group_changes_persist(make_user):
    # The original mutated the JSON list in place and lost every change on commit.
    user = make_user(roles=["user"])

    user.add_role("admin")
    user.add_group("platform")
    user.add_role("admin")  # idempotent
    user.remove_role("user")
    stored = User.objects.get(pk=user.pk)

    assert stored.roles == ["admin"]
    assert stored.groups == ["platform"]
    assert user.roles == stored.roles

    user.remove_group("platform")
    assert User.objects.get(pk=user.pk).groups == []


def test_unknown_role_is_refused(make_user):
    user = make_user()
    with pytest.raises(ValueError, match="unknown role"):
        user.add_role("emperor")
    assert User.objects.get(pk=user.pk).roles == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_role_additions_all_land(make_user):
    user = make_user()
    roles = ["viewer", "user", "developer", "admin", "super_admin"]
    barrier = threading.Barrier(len(roles))

    def add(role: str) -> None:
        try:
            barrier.wait()
            User.objects.get(pk=user.pk).add_role(role)
        finally:
            connection.close()

    threads = [threading.Thread(target=add, args=(r,)) for r in roles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(User.objects.get(pk=user.pk).roles) == sorted(roles)


def test_password_is_hashed_with_argon2(make_user):
    user = make_user(password="a sturdy passphrase 42")
    assert user.password.startswith("argon2")
    assert user.check_password("a sturdy passphrase 42")
    assert "sturdy" not in repr(user)


def test_oauth_users_cannot_have_a_usable_password(make_user):
    user = make_user(provider="azure_ad", provider_user_id="aad-123")

    assert user.is_oauth_user
    assert not user.has_usable_password()
    with pytest.raises(ValueError, match="OAuth"):
        user.set_password("anything at all")
    user.password = "argon2$forged"
    user.save()
    assert not User.objects.get(pk=user.pk).has_usable_password()


def test_email_is_unique_case_insensitively_among_live_users(make_user):
    make_user("Carol@Example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="carol@example.COM", name="Imposter")


def test_a_deleted_users_email_can_be_registered_again(make_user):
    first = make_user("dave@example.com")
    first.soft_delete()

    second = make_user("DAVE@example.com")

    assert second.pk != first.pk
    assert User.all_objects.with_email("dave@example.com").count() == 2


def test_provider_user_id_is_unique_per_provider_among_live_users(make_user):
    make_user(provider="aws_cognito", provider_user_id="cog-1")
    make_user(provider="azure_ad", provider_user_id="cog-1")  # another provider: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="x@example.com", name="X", provider="aws_cognito", provider_user_id="cog-1")


def test_soft_delete_deactivates_and_revokes_keys_but_keeps_sessions(make_user, make_key):
    user = make_user()
    key, _ = make_key(user)
    Session.objects.create(user=user, agent_id="a", title="kept")

    user.soft_delete()

    stored = User.all_objects.get(pk=user.pk)
    assert stored.deleted_at is not None and not stored.is_active
    assert not User.objects.filter(pk=user.pk).exists()
    assert key.__class__.all_objects.get(pk=key.pk).deleted_at is not None
    assert Session.objects.filter(user=user).count() == 1


def test_queryset_delete_is_a_soft_delete_that_cascades_to_keys(make_user, make_key):
    users = [make_user() for _ in range(3)]
    keys = [make_key(u)[0] for u in users]

    deleted = User.objects.filter(pk__in=[u.pk for u in users[:2]]).soft_delete()

    assert deleted == 2
    assert User.all_objects.filter(pk__in=[u.pk for u in users]).count() == 3
    revoked = {k.pk for k in keys[0].__class__.all_objects.filter(deleted_at__isnull=False)}
    assert revoked == {keys[0].pk, keys[1].pk}


def test_restore_reactivates_but_keys_stay_revoked(make_user, make_key):
    user = make_user()
    key, _ = make_key(user)
    user.soft_delete()

    user.restore()

    stored = User.objects.get(pk=user.pk)
    assert stored.is_active and stored.deleted_at is None
    assert key.__class__.all_objects.get(pk=key.pk).deleted_at is not None


def test_activate_and_deactivate_persist(make_user):
    user = make_user()
    user.deactivate()
    assert not User.objects.get(pk=user.pk).is_active
    user.activate()
    assert User.objects.get(pk=user.pk).is_active


def test_roles_grant_admin_permissions(make_user):
    admin = make_user(roles=["admin"], is_staff=True)
    viewer = make_user(roles=["viewer"], is_staff=True)
    nobody = make_user(roles=["user"], is_staff=True)

    assert admin.has_perm("apikeys.change_apikey") and admin.has_perm("accounts.delete_user")
    assert viewer.has_perm("audit.view_auditlog") and not viewer.has_perm("apikeys.change_apikey")
    assert not nobody.has_perm("audit.view_auditlog")
    assert not nobody.has_module_perms("audit")


def test_explicit_user_permissions_still_work(make_user):
    user = make_user(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_session", content_type__app_label="agent_sessions"))
    user = User.objects.get(pk=user.pk)  # permission caches are per instance
    assert user.has_perm("agent_sessions.view_session")
    assert not user.has_perm("agent_sessions.change_session")


def test_createsuperuser_runs_non_interactively(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "root@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-sturdy-root-passphrase")
    monkeypatch.setenv("DJANGO_SUPERUSER_NAME", "Root")

    call_command("createsuperuser", interactive=False, verbosity=0)

    root = User.objects.get_by_natural_key("ROOT@example.com")
    assert root.is_superuser and root.is_staff and root.name == "Root"
    assert root.check_password("a-sturdy-root-passphrase")
    assert root.is_platform_admin


def test_delete_is_refused_by_name_soft_delete_and_hard_delete_say_what_they_do(make_user):
    user = make_user()
    with pytest.raises(AmbiguousDelete, match="soft_delete"):
        user.delete()
    with pytest.raises(AmbiguousDelete):
        User.objects.filter(pk=user.pk).delete()
    assert User.objects.filter(pk=user.pk).soft_delete() == 1
    assert User.all_objects.filter(pk=user.pk).hard_delete()[0] >= 1
    assert not User.all_objects.filter(pk=user.pk).exists()


def test_the_services_refuse_self_deletion_and_self_deactivation_for_every_caller(make_user):
    user = make_user()
    with pytest.raises(InvalidInput, match="delete your own account"):
        user_soft_delete(actor=user, user=user)
    with pytest.raises(InvalidInput, match="deactivate your own account"):
        user_set_active(actor=user, user=user, active=False)
    other = make_user()
    user_set_active(actor=other, user=user, active=False)
    user_soft_delete(actor=other, user=user)
    assert User.all_objects.get(pk=user.pk).deleted_at is not None
