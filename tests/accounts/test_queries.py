"""accounts.queries.identity_owner against its ORM twin,
``filter(provider=..., provider_user_id=...).order_by(deleted_at nulls first).first()``."""

from __future__ import annotations

import pytest
from django.db.models import F, Model

from accounts.models import User
from accounts.queries import identity_owner
from accounts.services import user_soft_delete

pytestmark = pytest.mark.django_db


def fields(instance: Model) -> dict[str, object]:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def orm_twin(provider: str, provider_user_id: str) -> User | None:
    return (
        User.all_objects.filter(provider=provider, provider_user_id=provider_user_id)
        .order_by(F("deleted_at").asc(nulls_first=True))
        .first()
    )


def test_it_returns_what_the_orm_returns_for_live_deleted_and_unknown_identities(make_user, alice):
    live = make_user(provider="azure_ad", provider_user_id="oid-live", roles=["admin"], groups=["g"])
    gone = make_user(provider="aws_cognito", provider_user_id="sub-gone")
    user_soft_delete(actor=None, user=gone)
    # The same subject deleted once and back as a new live user: the live one wins.
    again_old = make_user(provider="oidc", provider_user_id="sub-again")
    user_soft_delete(actor=None, user=again_old)
    again_new = make_user(provider="oidc", provider_user_id="sub-again")
    inactive = make_user(provider="oidc", provider_user_id="sub-inactive", is_active=False)

    for provider, subject, expected in [
        ("azure_ad", "oid-live", live),
        ("aws_cognito", "sub-gone", gone),
        ("oidc", "sub-again", again_new),
        ("oidc", "sub-inactive", inactive),
        ("local", alice.user.provider_user_id, alice.user),
    ]:
        found, twin = identity_owner(provider, subject), orm_twin(provider, subject)
        assert found is not None and twin is not None
        assert found.pk == twin.pk == expected.pk
        assert fields(found) == fields(twin)
    for provider, subject in [("azure_ad", "oid-unknown"), ("oidc", "oid-live"), ("azure_ad", "OID-LIVE")]:
        assert identity_owner(provider, subject) is None and orm_twin(provider, subject) is None


def test_it_is_one_statement(make_user, django_assert_num_queries):
    make_user(provider="oidc", provider_user_id="one")
    with django_assert_num_queries(1):
        assert identity_owner("oidc", "one") is not None
