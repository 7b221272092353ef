"""How admin pages show stored values: JSON documents readably, timestamps and ids compactly."""

from __future__ import annotations

import datetime
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString


def pretty_json(value: Any) -> SafeString | str:
    if value in (None, {}, []):
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
    return format_html('<pre class="json-document">{}</pre>', text)


def short_datetime(value: datetime.datetime | None) -> SafeString | str:
    """A timestamp for a list column: ``2026-01-31 14:05`` (local time), to the second on hover."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        local.strftime("%Y-%m-%d %H:%M"),
    )


def identifier(value: object) -> SafeString:
    """An email, id or agent name in a list column: it may break anywhere rather than widen the
    list past the window (the change list's stylesheet, config/templates/admin/change_list.html)."""
    return format_html('<span class="ident">{}</span>', value)
