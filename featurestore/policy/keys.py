"""API keys: their format, their salted hashes, and checking one against a project's keys.

A key is ``fsk_<id>_<secret>``: ``id`` (16 hex digits) is public and names the key in
``credentials list`` and the audit log; ``secret`` (32 random bytes, base64url) is shown
once at creation and never stored. The registry keeps ``SHA-256(salt || secret)`` with a
per-key random salt. A fast hash is right here, unlike for passwords: a 256-bit random
secret cannot be guessed, so slowing each check would only slow every lookup.

A key belongs to one project and either one model (it looks features up as that model),
or, push-only, a list of feature views (it may push rows to those views and read nothing;
``featurestore credentials create --push VIEW,...``), or an operator (it opens the web UI,
``featurestore ui``, and neither looks features up nor pushes; ``credentials create
--operator``). A server loads only its own project's keys (``KeyRing``), so another
project's key is simply unknown to it.

This module is on the online read path: standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from featurestore.errors import AccessDeniedError, AuthenticationError

PREFIX = "fsk_"
MODEL, PUSH, OPERATOR = "model", "push", "operator"  # what a key may do
_KEY = re.compile(r"fsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class Credential:
    """One key's stored form: never its secret."""

    key_id: str
    project: str
    model: str
    salt: str  # hex
    secret_hash: str  # hex SHA-256(salt || secret)
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    description: str = ""
    push_views: tuple[str, ...] = ()  # a push-only key's views (model is then '')
    operator: bool = False  # an operator's key: the UI only (model '', no views)

    @property
    def label(self) -> str:
        return f"{PREFIX}{self.key_id}"

    @property
    def is_push(self) -> bool:
        return bool(self.push_views)

    @property
    def role(self) -> str:
        return OPERATOR if self.operator else PUSH if self.push_views else MODEL

    @property
    def subject(self) -> str:
        """Who the key acts as, for messages and the audit log."""
        if self.operator:
            return "operator"
        if self.push_views:
            return f"push {','.join(self.push_views)}"
        return f"model {self.model}"

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def new_key() -> tuple[str, str, str]:
    """``(key_id, secret, key)`` for a new credential."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{PREFIX}{key_id}_{secret}"


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_secret(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str]:
    """``(key_id, secret)``, or AuthenticationError (the key itself is never echoed)."""
    match = _KEY.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise AuthenticationError(
            f"That is not a featurestore API key (they look like {PREFIX}<16 hex>_<43 "
            "characters>). Create one with `featurestore credentials create --model NAME`."
        )
    return match.group(1), match.group(2)


class KeyRing:
    """One project's credentials, as loaded with a registry snapshot."""

    def __init__(self, project: str, credentials: Iterable[Credential] = ()) -> None:
        self.project = project
        self._by_id = {c.key_id: c for c in credentials if c.project == project}

    def __len__(self) -> int:
        return len(self._by_id)

    def credential(self, key_id: str) -> Credential | None:
        """The stored credential of ``key_id`` (revoked or expired ones included)."""
        return self._by_id.get(key_id)

    def authenticate(self, key: str, now: datetime) -> Credential:
        """The key's credential if it is this project's, unrevoked and unexpired, and a
        model's key: a push-only key reads nothing (AccessDeniedError, 403)."""
        found = self.live(key, now)
        if found.operator:
            raise AccessDeniedError(
                f"API key {found.label} is an operator's key: it opens the web UI "
                "(`featurestore ui`) and reads no features. Look features up with a model's "
                "key (`featurestore credentials create --model NAME`)."
            )
        if found.push_views:
            raise AccessDeniedError(
                f"API key {found.label} is a push-only key (views "
                f"{', '.join(found.push_views)}): it may push rows but reads nothing, "
                "neither features nor drift. Look features up with a model's key "
                "(`featurestore credentials create --model NAME`)."
            )
        return found

    def authenticate_push(self, key: str, view: str, now: datetime) -> Credential:
        """The key's credential if it is live and may push ``view`` (AccessDeniedError
        otherwise: a model's key never pushes, a push key only its own views)."""
        found = self.live(key, now)
        if found.operator:
            raise AccessDeniedError(
                f"API key {found.label} is an operator's key; operator keys cannot push. Push "
                f"with a push-only key: `featurestore credentials create --push {view}`."
            )
        if not found.push_views:
            raise AccessDeniedError(
                f"API key {found.label} belongs to model '{found.model}'; lookup keys cannot "
                f"push. Push with a push-only key: `featurestore credentials create --push "
                f"{view}`."
            )
        if view not in found.push_views:
            raise AccessDeniedError(
                f"API key {found.label} may push only {', '.join(found.push_views)}, not "
                f"'{view}'. Make a key for it: `featurestore credentials create --push {view}`."
            )
        return found

    def authenticate_operator(self, key: str, now: datetime) -> Credential:
        """The key's credential if it is live and an operator's (AccessDeniedError for a
        model's or a push key: they serve machines, the UI serves people)."""
        found = self.live(key, now)
        if not found.operator:
            raise AccessDeniedError(
                f"API key {found.label} belongs to {found.subject}; the UI needs an "
                "operator's key: `featurestore credentials create --operator`."
            )
        return found

    def live(self, key: str, now: datetime) -> Credential:
        """The key's credential if it is this project's, unrevoked and unexpired (any kind)."""
        key_id, secret = parse_key(key)
        found = self._by_id.get(key_id)
        # Compare even for an unknown id, so timing does not tell ids apart.
        expected = found.secret_hash if found else "0" * 64
        actual = hash_secret(found.salt if found else "00", secret)
        if not hmac.compare_digest(expected, actual) or found is None:
            raise AuthenticationError(
                f"Unknown API key {PREFIX}{key_id} for project '{self.project}': it was "
                "never issued here (keys belong to one project). Ask for a key of this "
                "project: `featurestore credentials create --model NAME`."
            )
        if found.revoked_at is not None:
            raise AuthenticationError(
                f"API key {found.label} ({found.subject}) was revoked at "
                f"{found.revoked_at.isoformat(timespec='seconds')}. Ask for a new key."
            )
        if found.expires_at is not None and found.expires_at <= now:
            raise AuthenticationError(
                f"API key {found.label} ({found.subject}) expired at "
                f"{found.expires_at.isoformat(timespec='seconds')}. Ask for a new key."
            )
        return found
