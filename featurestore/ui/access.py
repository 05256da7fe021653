"""Who is asking: an operator's key, from the session cookie or an ``Authorization:
Bearer`` header, checked against the project's keys on every request.

Only operator keys open the UI (a model's or a push key serves machines). A session
names its key, so revoking the key, or its expiry, ends the session too. CSRF: the UI
changes nothing but its own session (log in, log out), and the cookie is SameSite=Strict,
so another site cannot make a browser use it.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request

from featurestore.errors import AuthenticationError, MalformedRequestError
from featurestore.policy.keys import Credential
from featurestore.serving.request_io import read_body
from featurestore.times import now_utc
from featurestore.ui.session import COOKIE, LIFETIME_SECONDS, Sessions
from featurestore.ui.state import UiState

MAX_LOGIN_BYTES = 4096  # a key is 64 characters; the form is a few more


class Access:
    def __init__(self, state: UiState, sessions: Sessions) -> None:
        self.state = state
        self.sessions = sessions

    def operator(self, request: Request) -> Credential | None:
        """The operator's credential, or None (no credential given: log in). A bearer key
        that is wrong raises AuthenticationError / AccessDeniedError (401 / 403)."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            return self.state.keys().authenticate_operator(header[7:].strip(), now_utc())
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        key_id = self.sessions.verify(token, time.time())
        found = self.state.keys().credential(key_id) if key_id else None
        if found is None or not found.operator or found.status(now_utc()) != "active":
            return None  # tampered, ended, revoked or expired: log in again
        return found

    def login(self, key: str) -> tuple[Credential, str, int]:
        """``(credential, cookie value, max age)`` for an operator's ``key``."""
        credential = self.state.keys().authenticate_operator(key.strip(), now_utc())
        ends = int(time.time()) + LIFETIME_SECONDS
        if credential.expires_at is not None:
            ends = min(ends, int(credential.expires_at.timestamp()))
        return credential, self.sessions.issue(credential.key_id, ends), ends - int(time.time())


async def login_form(request: Request) -> dict[str, str]:
    """The login form's fields (urlencoded, at most ``MAX_LOGIN_BYTES``)."""
    body = await read_body(request.receive, MAX_LOGIN_BYTES)
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=8, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRequestError(f"The login form could not be read: {exc}.") from None
    return {name: values[0] for name, values in fields.items() if values}


def safe_next(target: str | None, prefix: str) -> str:
    """Where to go after logging in: a path of this UI, never another site."""
    default = prefix + "/"
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(prefix + "/"):
        return default
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return default
    return target


def no_key() -> AuthenticationError:
    return AuthenticationError(
        "Log in with an operator's key: `featurestore credentials create --operator`."
    )
