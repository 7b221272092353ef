"""The raw API key format: ``sk_<environment>_<32 random base62><6 base62 checksum>``.

Like GitHub's tokens, the last six characters are a CRC32 of everything before them, so a
mistyped, truncated or made-up key is rejected without a database query. Only the SHA-256
of the raw key is stored: the key has ~190 bits of entropy, so a fast hash is the right one
(a password hasher would cost milliseconds on every request for nothing).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass

from django.conf import settings

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
MAX_KEY_LENGTH = 64
_KEY_RE = re.compile(rf"sk_([a-z]{{2,8}})_([0-9A-Za-z]{{{RANDOM_LENGTH}}})([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})")


@dataclass(frozen=True)
class GeneratedKey:
    raw: str
    key_hash: str
    prefix: str
    hint: str


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def hint_for(raw: str) -> str:
    """A display hint that identifies a key in a list without revealing it: sk_live_AbCd…xYz9."""
    prefix, _, rest = raw.rpartition("_")
    return f"{prefix}_{rest[:4]}…{rest[-4:]}"


def generate(environment: str | None = None) -> GeneratedKey:
    env = environment or settings.API_KEY_ENVIRONMENT
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    body = f"sk_{env}_{random_part}"
    raw = body + _checksum(body)
    return GeneratedKey(raw=raw, key_hash=hash_key(raw), prefix=f"sk_{env}", hint=hint_for(raw))


def is_well_formed(raw: str) -> bool:
    """True if ``raw`` has the key format and a correct checksum (no database involved)."""
    if not isinstance(raw, str) or len(raw) > MAX_KEY_LENGTH:
        return False
    match = _KEY_RE.fullmatch(raw)
    if match is None:
        return False
    body = raw[:-CHECKSUM_LENGTH]
    return secrets.compare_digest(_checksum(body), match.group(3))
