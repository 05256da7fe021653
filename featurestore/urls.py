"""``redact``: the one way a URL is shown (errors, logs, /readyz, CLI output).

Passwords in a URL's user part and secret-looking query parameters become ``***``; the
scheme, user name, hosts, ports, path and other parameters stay, so a message still says
where. It works on any text: every ``scheme://...`` in it is redacted (a Kafka list of
``SASL_SSL://u:p@h1:9093,SASL_SSL://u:p@h2:9093`` too) and the rest is left alone, so a
bootstrap list ``h1:9092,h2:9092`` or a path comes back unchanged. Stdlib only: the online
read path imports it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

# A scheme (RFC 3986, plus "_" for Kafka listener names such as SASL_SSL) and "://", then
# everything up to whitespace: the URL, maybe followed by more of a list.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-_]*://)(?P<rest>\S*)")
# Where a list's next URL starts: a comma before another scheme.
_NEXT = re.compile(r",(?=[A-Za-z][A-Za-z0-9+.\-_]*://)")
# Query parameters whose value is a secret (password=, sslpassword=, token=, api_key=, ...).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|cred|sig", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the secrets of every URL in it masked; text without URLs unchanged.

    ``redis://user:pw@h:6379/0`` -> ``redis://user:***@h:6379/0``; ``redis://:pw@h`` ->
    ``redis://:***@h``; a user part without ``:`` (``redis://pw@h``, which some clients
    take as the password) -> ``redis://***@h``; ``...?password=pw&ssl=1`` ->
    ``...?password=***&ssl=1``.
    """
    if "://" not in text:
        return text
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    first, *others = _NEXT.split(match.group("rest"))
    parts = [_redact_one(match.group("scheme"), first)]
    for other in others:  # each starts with its own scheme
        scheme, _, rest = other.partition("://")
        parts.append(_redact_one(f"{scheme}://", rest))
    return ",".join(parts)


def _redact_one(scheme: str, rest: str) -> str:
    """One URL: ``scheme`` includes ``://``; ``rest`` is everything after it."""
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    netloc, tail = rest[:end], rest[end:]
    if "@" in netloc:
        # The last "@": an unencoded "@" in a password must not leave its tail showing.
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hosts}" if colon else f"{MASK}@{hosts}"
    if "?" in tail:
        path, _, query = tail.partition("?")
        query, hash_, fragment = query.partition("#")
        tail = f"{path}?{_redact_query(query)}{hash_}{fragment}"
    return f"{scheme}{netloc}{tail}"


def redact_logs() -> None:
    """Redact the URLs in every log record this process makes from now on.

    Third-party clients log what they were given verbatim (kafka-python: "Unable to
    bootstrap from SASL_SSL://user:password@..."). For featurestore's own processes (the
    CLI, the server's workers): a library must not change its host program's logging.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it when the record is emitted
            return record
        if "://" in message:
            record.msg, record.args = redact(message), None
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _redact_query(query: str) -> str:
    pairs = []
    for pair in re.split(r"([&;])", query):
        name, eq, _value = pair.partition("=")
        pairs.append(f"{name}={MASK}" if eq and _SECRET_PARAM.search(name) else pair)
    return "".join(pairs)
