"""Personal data at rest: AES-256-GCM encryption, an HMAC blind index, masking.

ID document numbers and phone numbers are stored only as ciphertext
``<key id>:<base64(nonce || ciphertext)>``. The record's id is bound in as
associated data, so ciphertext copied onto another row fails to decrypt. The
key id prefix lets keys rotate: ``QSITE_PII_KEYS`` lists ``keyid:key`` pairs,
newest first; new values use the first, old ones still decrypt.

Exact lookup ("find the resident with this ID number") uses the blind index:
HMAC-SHA256 of the normalised value under a separate key, stored beside the
ciphertext and indexed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.errors import DomainError
from service.settings import Settings, SettingsError


class DecryptionFailed(DomainError):
    status, default_code, title = 500, "decryption_failed", "Stored personal data could not be decrypted"


@cache
def _keys(pii_keys: str) -> tuple[tuple[str, AESGCM], ...]:
    keys = []
    for entry in pii_keys.split(","):
        key_id, _, encoded = entry.strip().partition(":")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise SettingsError("QSITE_PII_KEYS: each key must be keyid:base64 of 32 bytes") from None
        if not key_id or len(raw) != 32:
            raise SettingsError("QSITE_PII_KEYS: each key must be keyid:base64 of 32 bytes")
        keys.append((key_id, AESGCM(raw)))
    return tuple(keys)


def normalise(value: str) -> str:
    """The canonical form compared and indexed: trimmed, no inner spaces or dashes, upper case."""
    return "".join(value.split()).replace("-", "").upper()


def encrypt(settings: Settings, plaintext: str, *, record_id: bytes) -> str:
    key_id, aead = _keys(settings.pii_keys)[0]
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, plaintext.encode(), record_id)
    return f"{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(settings: Settings, stored: str, *, record_id: bytes) -> str:
    key_id, _, encoded = stored.partition(":")
    for candidate_id, aead in _keys(settings.pii_keys):
        if candidate_id == key_id:
            blob = base64.b64decode(encoded)
            try:
                return aead.decrypt(blob[:12], blob[12:], record_id).decode()
            except InvalidTag:
                break
    raise DecryptionFailed("A stored personal-data field could not be decrypted.")


def blind_index(settings: Settings, value: str) -> bytes:
    key = base64.b64decode(settings.pii_index_key)
    return hmac.new(key, normalise(value).encode(), hashlib.sha256).digest()


def mask(value: str, *, keep_start: int = 4, keep_end: int = 4) -> str:
    """``500101199001011234`` -> ``5001**********1234``; short values keep less."""
    if len(value) <= keep_start + keep_end:
        keep = max(0, len(value) // 4)
        return value[:keep] + "*" * (len(value) - 2 * keep) + (value[-keep:] if keep else "")
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]


def mask_phone(value: str) -> str:
    """``13812345678`` -> ``138****5678``."""
    return mask(value, keep_start=3, keep_end=4)
