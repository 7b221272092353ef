"""The hand-written read behind every identity-provider token request: the user of an identity.

The token benchmark (bench/run.py, ``GET users/me/`` with a token beside the same with a key)
and an in-process timing showed the ORM compiling this lookup on every request costing more
than the round trip, as it did for the API key's (apikeys.queries). The statement is
``User.all_objects.filter(provider=..., provider_user_id=...).order_by(F("deleted_at").asc(
nulls_first=True)).first()`` (tests/accounts/test_queries.py holds the two against each other),
built once per process.
"""

from __future__ import annotations

import functools

from accounts.models import User
from config.db.raw_select import ModelColumns, select_one


@functools.cache
def _identity_owner() -> tuple[str, ModelColumns]:
    user = ModelColumns(User)
    sql = (
        f"SELECT {user.select_list} FROM {user.table} "  # noqa: S608 (identifiers from model metadata)
        f"WHERE {user.column('provider')} = %s AND {user.column('provider_user_id')} = %s "
        # A live user first; a deleted one is returned so that it stays locked out.
        f"ORDER BY {user.column('deleted_at')} ASC NULLS FIRST LIMIT 1"
    )
    return sql, user


def identity_owner(provider: str, provider_user_id: str) -> User | None:
    """The user with this (provider, provider_user_id): the live one, else a soft-deleted one,
    else None; one query on ix_users_provider_uid."""
    sql, columns = _identity_owner()
    row = select_one(sql, [provider, provider_user_id], [columns])
    if row is None:
        return None
    user = row[0]
    assert isinstance(user, User)
    return user
