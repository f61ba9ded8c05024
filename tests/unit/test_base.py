"""The base layer's small pieces, each used by more than one layer above it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tasks.base.urls import endpoint, same_endpoint
from tasks.virtualkeys.rotation import when
from tasks.virtualkeys.schedule import key_age


@pytest.mark.parametrize("a, b", [
    ("http://localhost:4000", "http://127.0.0.1:4000/"),
    ("http://[::1]:4000", "http://localhost:4000"),
    ("HTTP://LocalHost:4000", "http://[::1]:4000/v1"),
    ("http://example.org", "http://example.org:80"),
    ("https://example.org/litellm", "https://EXAMPLE.org:443/"),
])
def test_same_endpoint(a: str, b: str) -> None:
    assert same_endpoint(a, b) and same_endpoint(b, a)


@pytest.mark.parametrize("a, b", [
    ("http://localhost:4000", "https://localhost:4000"),
    ("http://localhost:4000", "http://localhost:4001"),
    ("http://localhost:4000", "http://example.org:4000"),
    ("http://localhost:4000", "http://localhost:99999"),
    ("http://127.0.0.2:4000", "http://127.0.0.1:4000"),
])
def test_different_endpoints(a: str, b: str) -> None:
    assert not same_endpoint(a, b) and not same_endpoint(b, a)


def test_endpoint_keeps_the_path_and_reads_a_bad_port_as_itself() -> None:
    assert endpoint("http://[::1]/litellm/") == ("http", "loopback", 80, "/litellm")
    assert endpoint("http://host:port") == ("", "http://host:port", None, "")


def test_one_reading_of_litellms_times() -> None:
    """`created_at` and `expires` are read the same way: naive is UTC, unreadable is unknown."""
    assert when("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert when("2026-01-01T00:00:00") == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert when("not a time") is None and when(None) is None
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert key_age({"created_at": "2026-01-01T00:00:00+00:00"}, now) == 86400
    assert key_age({"created_at": "yesterday"}, now) is None  # was a ValueError traceback
    assert key_age({}, now) is None
