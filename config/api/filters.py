"""Query-string filtering shared by the list endpoints."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend

from config.env import QUERY_BOOLEANS, parse_bool


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, skipped when the query string names none of the view's filters.

    With no filter parameters a FilterSet filters nothing, but building it and validating its
    form cost a tenth of a list request (bench/profile.py); with any of them present it runs
    exactly as before, so bad values are still a 400 naming the parameter.
    """

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None and not any(
            name in request.query_params for name in filterset_class.base_filters
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)


class StrictBooleanField(forms.Field):
    """``true``/``false`` (or ``1``/``0``); empty means absent; anything else is a 400.

    Django's NullBooleanField reads every other value (``?is_active=1``, ``?is_active=yes``) as
    "no filter" and silently lists everyone.
    """

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        parsed = parse_bool(str(value), QUERY_BOOLEANS)
        if parsed is None:
            raise forms.ValidationError("Must be true or false.", code="invalid")
        return parsed


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField
