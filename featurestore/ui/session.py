"""The UI's login sessions: a signed cookie that names an operator's key and when it ends.

The cookie holds ``<key id>.<end, unix seconds>.<HMAC>``, never the key: a stolen cookie
ends when its session does, and the key it names is checked again on every request, so
revoking the key ends its sessions within the UI's refresh interval. The HMAC key is
derived from the project's secret (the one masks are keyed with), so every worker and a
restarted server accept the same sessions; a separate label keeps the two uses apart.

Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import re

COOKIE = "fs_ui_session"
LIFETIME_SECONDS = 12 * 3600
_TOKEN = re.compile(r"([0-9a-f]{16})\.([0-9]{1,12})\.([0-9a-f]{64})")


class Sessions:
    def __init__(self, project_secret: bytes) -> None:
        self._key = hmac.new(project_secret, b"featurestore-ui-session-v1", hashlib.sha256).digest()

    def _sign(self, key_id: str, ends: int) -> str:
        return hmac.new(self._key, f"{key_id}.{ends}".encode(), hashlib.sha256).hexdigest()

    def issue(self, key_id: str, ends: int) -> str:
        """A cookie value for ``key_id``'s session, ending at ``ends`` (unix seconds)."""
        return f"{key_id}.{ends}.{self._sign(key_id, ends)}"

    def verify(self, token: str, now: float) -> str | None:
        """The key id a live, untampered session names, or None."""
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            return None
        key_id, ends, signature = match.group(1), int(match.group(2)), match.group(3)
        if not hmac.compare_digest(signature, self._sign(key_id, ends)) or ends <= now:
            return None
        return key_id
