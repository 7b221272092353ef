"""The hand-written session statements against their ORM twins: the live-session lookup, message
pages through DRF's own cursor pagination, the append, and the agent-id scan."""

from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db.models import Model
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from agent_sessions.models import (
    ACTIVE,
    Message,
    MessageLimitReached,
    NewMessage,
    RevisionMismatch,
    Session,
    SessionNotActive,
)
from agent_sessions.queries import MessagePage, agent_ids, live_session
from agent_sessions.views import MessagePagination

pytestmark = pytest.mark.django_db


def fields(instance: Model | None) -> dict[str, object] | None:
    if instance is None:
        return None
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


@pytest.fixture
def cast(alice, bob):
    """Sessions in every state the statements must tell apart."""

    def make(owner, title: str, **fields: object) -> Session:
        return Session.objects.create(user=owner.user, agent_id=f"agent-{title}", title=title, **fields)

    sessions = {
        "live": make(alice, "live"),
        "deleted": make(alice, "deleted"),
        "expired": make(alice, "expired", expires_at=timezone.now() - timedelta(minutes=1)),
        "completed": make(alice, "completed", status=Session.Status.COMPLETED),
        "bobs": make(bob, "bobs"),
    }
    sessions["deleted"].soft_delete()
    return sessions


# --- live_session --------------------------------------------------------------------------


def test_live_session_is_the_orm_lookup_for_every_state_and_owner(cast, alice, bob):
    for session in cast.values():
        for owner_id in (None, alice.user.pk, bob.user.pk):
            twin = Session.objects.filter(pk=session.pk)
            if owner_id is not None:
                twin = twin.filter(user_id=owner_id)
            assert fields(live_session(session.pk, owner_id=owner_id)) == fields(twin.first()), (
                session.title,
                owner_id,
            )
    assert live_session(uuid.uuid4()) is None


# --- the active rule: one definition, in the database and on a row -----------------------------


def test_active_in_the_database_is_is_active_on_the_row(cast):
    in_database = set(Session.all_objects.filter(ACTIVE).values_list("pk", flat=True))
    on_rows = {s.pk for s in Session.all_objects.all() if s.is_active}
    assert in_database == on_rows == {cast["live"].pk, cast["bobs"].pk}
    assert set(Session.objects.active().values_list("pk", flat=True)) == in_database


# --- the append ---------------------------------------------------------------------------------


def _orm_twin_accepts(session: Session, owner_id: uuid.UUID | None, limit: int) -> bool:
    """What the append's UPDATE matches, asked of the ORM."""
    candidates = Session.objects.filter(ACTIVE, pk=session.pk, total_messages__lt=limit)
    if owner_id is not None:
        candidates = candidates.filter(user_id=owner_id)
    return candidates.exists()


def test_append_takes_exactly_the_sessions_the_orm_twin_matches(cast, alice, bob, settings):
    settings.SESSION_MAX_MESSAGES = 3
    full = Session.objects.create(user=alice.user, agent_id="a", title="full")
    for i in range(3):
        Message.objects.append(session_id=full.pk, role="user", content=str(i))
    for session in [*cast.values(), full]:
        for owner_id in (None, alice.user.pk, bob.user.pk):
            session.refresh_from_db()
            expected = _orm_twin_accepts(session, owner_id, 3)
            before = (session.total_messages, Message.objects.filter(session=session).count())
            try:
                message = Message.objects.append(session_id=session.pk, owner_id=owner_id, role="user", content="hi")
            except (Session.DoesNotExist, SessionNotActive, MessageLimitReached):
                accepted = False
            else:
                accepted = True
                assert message.sequence == before[0] + 1
            session.refresh_from_db()
            after = (session.total_messages, Message.objects.filter(session=session).count())
            assert accepted == expected, (session.title, owner_id)
            assert after == ((before[0] + 1, before[1] + 1) if accepted else before)


def test_the_append_says_why_it_refused(cast, alice, bob, settings):
    with pytest.raises(Session.DoesNotExist):
        Message.objects.append(session_id=cast["deleted"].pk, role="user", content="x")
    with pytest.raises(Session.DoesNotExist):
        Message.objects.append(session_id=cast["live"].pk, owner_id=bob.user.pk, role="user", content="x")
    with pytest.raises(SessionNotActive, match="expired"):
        Message.objects.append(session_id=cast["expired"].pk, role="user", content="x")
    with pytest.raises(SessionNotActive, match="completed"):
        Message.objects.append(session_id=cast["completed"].pk, role="user", content="x")
    settings.SESSION_MAX_MESSAGES = 1
    Message.objects.append(session_id=cast["live"].pk, role="user", content="x")
    with pytest.raises(MessageLimitReached):
        Message.objects.append(session_id=cast["live"].pk, role="user", content="x")


def test_the_appended_row_is_what_the_orm_reads_back(cast):
    session = cast["live"]
    message = Message.objects.append(
        session_id=session.pk, role="tool", content="out", tool_calls=[{"a": 1}], metadata={"k": "v"}, token_count=9
    )
    assert fields(message) == fields(Message.objects.get(pk=message.pk))
    session.refresh_from_db()
    assert (session.total_messages, session.total_tokens, session.last_activity_at) == (1, 9, message.created_at)


# --- message pages through DRF's cursor pagination ------------------------------------------


def _pages(queryset, *, page_size: int) -> tuple[list[list[int]], list[list[int]]]:
    """Walk every page forward through DRF's CursorPagination, then back from the last one;
    return the sequences of each page, in both directions."""
    factory = APIRequestFactory()

    def page(url: str) -> tuple[list[int], str | None, str | None]:
        request = Request(factory.get(url))
        paginator = MessagePagination()
        rows = paginator.paginate_queryset(queryset, request)
        return [m.sequence for m in rows], paginator.get_next_link(), paginator.get_previous_link()

    forward: list[list[int]] = []
    url: str | None = f"/m/?page_size={page_size}"
    last_url = url
    while url is not None:
        last_url = url
        sequences, url, _ = page(url)
        forward.append(sequences)
    backward: list[list[int]] = []
    url = last_url
    while url is not None:
        sequences, _, url = page(url)
        backward.append(sequences)
    return forward, backward


@pytest.mark.parametrize("page_size", [1, 7, 50])
def test_message_pages_are_the_querysets_pages_first_next_and_previous(alice, bob, page_size):
    session = Session.objects.create(user=alice.user, agent_id="a", title="long")
    for i in range(23):
        Message.objects.append(session_id=session.pk, role="user", content=f"m{i}")
    for owner_id in (None, alice.user.pk):
        orm = Message.objects.filter(session_id=session.pk, session__deleted_at__isnull=True)
        if owner_id is not None:
            orm = orm.filter(session__user_id=owner_id)
        hand = MessagePage(session_id=session.pk, owner_id=owner_id)
        assert _pages(hand, page_size=page_size) == _pages(orm, page_size=page_size)
    forward, backward = _pages(MessagePage(session_id=session.pk, owner_id=alice.user.pk), page_size=page_size)
    assert [s for page in forward for s in page] == list(range(1, 24))
    assert len(backward) == len(forward)


def test_a_message_page_shows_nothing_of_a_deleted_or_someone_elses_session(alice, bob):
    session = Session.objects.create(user=alice.user, agent_id="a", title="private")
    Message.objects.append(session_id=session.pk, role="user", content="secret")
    assert _pages(MessagePage(session_id=session.pk, owner_id=bob.user.pk), page_size=10)[0] == [[]]
    session.soft_delete()
    assert _pages(MessagePage(session_id=session.pk, owner_id=None), page_size=10)[0] == [[]]
    orm = Message.objects.filter(session_id=session.pk, session__deleted_at__isnull=True)
    assert _pages(orm, page_size=10)[0] == [[]]


def test_a_message_page_refuses_what_drfs_pagination_never_asks(alice):
    page = MessagePage(session_id=uuid.uuid4(), owner_id=None)
    with pytest.raises(ValueError):
        page.order_by("created_at")
    with pytest.raises(ValueError):
        page.filter(role="user")
    with pytest.raises(ValueError):
        page.filter(sequence__gt=1).filter(sequence__lt=5)
    with pytest.raises(ValueError):
        page[5:]


def test_a_cursor_from_the_pagination_decodes_to_a_position(alice):
    session = Session.objects.create(user=alice.user, agent_id="a", title="t")
    for i in range(3):
        Message.objects.append(session_id=session.pk, role="user", content=str(i))
    request = Request(APIRequestFactory().get("/m/?page_size=2"))
    paginator = MessagePagination()
    paginator.paginate_queryset(MessagePage(session_id=session.pk, owner_id=None), request)
    cursor = parse_qs(urlparse(paginator.get_next_link()).query)["cursor"][0]
    assert parse_qs(base64.b64decode(cursor).decode())["p"] == ["2"]


# --- agent ids ------------------------------------------------------------------------------------


def test_agent_ids_are_the_distinct_values_of_every_session(cast):
    twin = sorted(set(Session.all_objects.values_list("agent_id", flat=True)))
    assert agent_ids() == twin
    assert agent_ids(limit=2) == twin[:2]


# --- the batch append (issue 16) ----------------------------------------------------------------


def _orm_twin_accepts_batch(
    session: Session, owner_id: uuid.UUID | None, count: int, limit: int, expected_revision: int | None
) -> bool:
    """What the batch append's UPDATE matches, asked of the ORM."""
    candidates = Session.objects.filter(ACTIVE, pk=session.pk, total_messages__lte=limit - count)
    if owner_id is not None:
        candidates = candidates.filter(user_id=owner_id)
    if expected_revision is not None:
        candidates = candidates.filter(revision=expected_revision)
    return candidates.exists()


def test_a_batch_append_takes_exactly_the_sessions_the_orm_twin_matches(cast, alice, bob, settings):
    settings.SESSION_MAX_MESSAGES = 4
    for session in cast.values():
        for owner_id in (None, alice.user.pk, bob.user.pk):
            for count in (1, 3):
                for expected_revision in (None, 0, 1):
                    session.refresh_from_db()
                    expected = _orm_twin_accepts_batch(session, owner_id, count, 4, expected_revision)
                    before = (session.total_messages, session.revision, session.context)
                    batch = [NewMessage("user", str(i)) for i in range(count)]
                    try:
                        appended = Message.objects.append_batch(
                            session_id=session.pk,
                            owner_id=owner_id,
                            messages=batch,
                            expected_revision=expected_revision,
                            state_delta={"n": before[0]},
                        )
                    except (Session.DoesNotExist, SessionNotActive, MessageLimitReached, RevisionMismatch):
                        accepted = False
                    else:
                        accepted = True
                        assert [m.sequence for m in appended.messages] == list(
                            range(before[0] + 1, before[0] + count + 1)
                        )
                        assert appended.revision == before[1] + 1
                    session.refresh_from_db()
                    assert accepted == expected, (session.title, owner_id, count, expected_revision)
                    if accepted:
                        assert (session.total_messages, session.revision) == (before[0] + count, before[1] + 1)
                        assert session.context == {**before[2], "n": before[0]}
                    else:
                        assert (session.total_messages, session.revision, session.context) == before


def test_the_batched_rows_are_what_the_orm_reads_back(cast):
    session = cast["live"]
    appended = Message.objects.append_batch(
        session_id=session.pk,
        messages=[
            NewMessage("tool", "out", [{"a": 1}], {"k": "v"}, 9, "function_call_output", '{"z":1.0,"a":"\\u0000"}'),
            NewMessage("user", "in", None, None, 2),
        ],
    )
    for message in appended.messages:
        assert fields(message) == fields(Message.objects.get(pk=message.pk))
    assert Message.objects.get(sequence=1, session=session).item == '{"z":1.0,"a":"\\u0000"}'
    session.refresh_from_db()
    assert (session.total_messages, session.total_tokens, session.revision) == (2, 11, 1)
