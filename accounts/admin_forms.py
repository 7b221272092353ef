"""Forms of the user admin: roles as checkboxes, groups one per line, passwords via services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.core.exceptions import ValidationError

from accounts.models import MAX_GROUP_LENGTH, User
from accounts.roles import Role
from config.admin.services import ServiceModelForm


class GroupsField(forms.CharField):
    """A JSON list of directory group names, edited one per line.

    One per line, not comma-separated: directory group names (LDAP DNs like
    ``CN=Eng,OU=Groups``) contain commas.
    """

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            f"Directory groups, one per line (at most {MAX_GROUP_LENGTH} characters each). "
            "Not Django permission groups: admin permissions come from roles.",
        )
        super().__init__(strip=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]  # a list field on a textarea
        lines = [str(v) for v in value] if isinstance(value, (list, tuple)) else (value or "").splitlines()
        groups: list[str] = []
        for line in lines:
            name = line.strip()
            if not name:
                continue
            if len(name) > MAX_GROUP_LENGTH:
                raise ValidationError(f"“{name[:40]}…” is longer than {MAX_GROUP_LENGTH} characters.")
            if name not in groups:
                groups.append(name)
        return groups


def roles_field() -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=Role.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Admin permissions: admin and super admin manage everything here; developer views "
        "everything and manages API keys; viewer views everything. Staff status is still needed to log in.",
    )


class UserChangeForm(ServiceModelForm):
    roles = roles_field()
    groups = GroupsField()

    class Meta:
        model = User
        fields = ["email", "name", "provider", "provider_user_id", "roles", "groups", "is_active", "is_staff"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "provider_user_id" in self.fields:
            self.fields["provider_user_id"].required = False
            self.fields["provider_user_id"].help_text = "The identity provider's id. Local users: leave blank."


class UserCreationForm(UserChangeForm):
    """A new user; a local user may get a password now (or later, through the password page)."""

    password1 = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Optional, local users only. Left blank, the user has no usable password until one is set.",
    )
    password2 = forms.CharField(
        label="Password confirmation",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    class Meta(UserChangeForm.Meta):
        fields = [*UserChangeForm.Meta.fields]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 or password2:
            if password1 != password2:
                self.add_error("password2", ValidationError("The two password fields didn’t match."))
            if cleaned.get("provider") not in (None, User.Provider.LOCAL):
                self.add_error("password1", "OAuth users sign in with their provider and cannot have a password.")
        return cleaned


class PasswordChangeForm(AdminPasswordChangeForm):
    """Django's admin password form without "disable password-based authentication".

    Setting a password goes through ``accounts.services.user_set_password`` (audited, masked);
    there is no service that removes a password, so the form does not offer it.
    """

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.fields.pop("usable_password", None)
        self.fields["password1"].required = True
        self.fields["password2"].required = True
