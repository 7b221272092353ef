"""Reading settings from the environment: one ``env`` and the parsers settings.py uses.

django-environ reads ``.env`` and parses DATABASE_URL; the typed readers here add what it
lacks: a malformed value stops startup with ImproperlyConfigured naming the variable, instead of
a ValueError (``env.int``) or a silent False (``env.bool`` reads every unknown word as False).

``parse_bool`` is the one reading of a boolean word in the project: settings, gunicorn.conf.py
and the API's boolean query filters (with their narrower vocabulary) all use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# What an operator may write for a boolean setting (case-insensitive; empty means false).
SETTING_BOOLEANS: Mapping[str, bool] = {
    **dict.fromkeys(("1", "true", "yes", "on", "y", "t"), True),
    **dict.fromkeys(("0", "false", "no", "off", "n", "f", ""), False),
}
# What a client may write for a boolean query parameter: the schema's boolean, plus 1/0.
QUERY_BOOLEANS: Mapping[str, bool] = {"true": True, "1": True, "false": False, "0": False}


def parse_bool(text: str, words: Mapping[str, bool] = SETTING_BOOLEANS) -> bool | None:
    """The boolean ``text`` names in ``words`` (case and surrounding space ignored); None if none."""
    return words.get(text.strip().lower())


def env_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = parse_bool(raw)
    if value is None:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")
    return value


def _number(name: str, raw: str | None, default: float, kind: type[float] | type[int], what: str) -> float:
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not {what}") from None


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = int(_number(name, env.str(name, default=None), default, int, "an integer"))
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = float(_number(name, env.str(name, default=None), default, float, "a number"))
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.str(name, default=default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Comma-separated, each item stripped, empty items dropped (django-environ keeps the spaces)."""
    raw = env.str(name, default=None)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]
