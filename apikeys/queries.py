"""The hand-written read behind every authenticated request: a key and its owner by the key's hash.

``bench/profile.py`` showed the ORM compiling this lookup on every request costing more than the
round trip itself. The statement is ``APIKey.all_objects.select_related("user").get(key_hash=...)``
(tests/apikeys/test_queries.py holds the two against each other), built once per process.
"""

from __future__ import annotations

import functools

from accounts.models import User
from apikeys.models import APIKey
from config.db.raw_select import ModelColumns, select_one


@functools.cache
def _key_and_owner() -> tuple[str, ModelColumns, ModelColumns]:
    key, owner = ModelColumns(APIKey), ModelColumns(User)
    sql = (
        f"SELECT {key.select_list}, {owner.select_list} "  # noqa: S608 (identifiers from model metadata)
        f"FROM {key.table} JOIN {owner.table} ON {owner.column('id')} = {key.column('user')} "
        f"WHERE {key.column('key_hash')} = %s"
    )
    return sql, key, owner


def key_with_owner(key_hash: str) -> APIKey | None:
    """The key with this hash (revoked and expired ones too: authentication says which) and its
    owner, whatever the owner's state, in one indexed query."""
    sql, key_columns, owner_columns = _key_and_owner()
    row = select_one(sql, [key_hash], [key_columns, owner_columns])
    if row is None:
        return None
    key, owner = row
    APIKey.user.field.set_cached_value(key, owner)
    assert isinstance(key, APIKey)
    return key
