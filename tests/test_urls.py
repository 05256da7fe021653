"""``redact``: every URL shown anywhere loses its secrets and keeps where it points."""

from __future__ import annotations

import pytest

from featurestore.urls import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        (
            "rediss://default:s3cret@cache.example.com:6380",
            "rediss://default:***@cache.example.com:6380",
        ),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        # Some clients read a lone user as the password: masked whole.
        ("redis://s3cret@host", "redis://***@host"),
        ("postgresql+psycopg://user@host/db", "postgresql+psycopg://***@host/db"),
        ("redis://:p@ss:w@rd@host/0", "redis://:***@host/0"),  # an unencoded "@" in the password
        ("redis://:a%40b@host/0", "redis://:***@host/0"),
        (
            "postgresql+psycopg://u:s3cret@db.example.com:5432/registry",
            "postgresql+psycopg://u:***@db.example.com:5432/registry",
        ),
        (
            "postgresql://u:s3cret@h1:5432,h2:5432/registry?sslmode=require",
            "postgresql://u:***@h1:5432,h2:5432/registry?sslmode=require",
        ),
        (
            "redis://host:6379/0?password=s3cret&socket_timeout=2",
            "redis://host:6379/0?password=***&socket_timeout=2",
        ),
        (
            "postgresql://h/db?sslpassword=s3cret;application_name=fs#x",
            "postgresql://h/db?sslpassword=***;application_name=fs#x",
        ),
        ("https://h/x?token=s3cret&api_key=s3cret", "https://h/x?token=***&api_key=***"),
        ("unix://:s3cret@/tmp/redis.sock?db=0", "unix://:***@/tmp/redis.sock?db=0"),
        (
            "SASL_SSL://u:s3cret@b1:9093,SASL_SSL://u:s3cret@b2:9093",
            "SASL_SSL://u:***@b1:9093,SASL_SSL://u:***@b2:9093",
        ),
        # Nothing secret, or not a URL: unchanged.
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("127.0.0.1:9092,broker2:9092", "127.0.0.1:9092,broker2:9092"),
        ("broker:9092", "broker:9092"),
        ("sqlite:////var/lib/fs/registry.db", "sqlite:////var/lib/fs/registry.db"),
        ("data/registry.db", "data/registry.db"),
        ("ml-platform@example.com", "ml-platform@example.com"),
        ("", ""),
    ],
)
def test_redact_masks_secrets_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact(shown) == shown  # idempotent: redacting twice changes nothing


def test_redact_works_on_messages_with_urls_inside() -> None:
    message = (
        "The online store (Redis at redis://:s3cret@h:1/0) is unreachable; "
        "registry 'postgresql://u:s3cret@db/x', brokers h1:9092,h2:9092."
    )
    assert redact(message) == (
        "The online store (Redis at redis://:***@h:1/0) is unreachable; "
        "registry 'postgresql://u:***@db/x', brokers h1:9092,h2:9092."
    )
