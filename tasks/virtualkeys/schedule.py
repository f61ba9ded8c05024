"""Rotation on a schedule: how old a key is, and LiteLLM's durations in seconds.

``keys.rotate --older-than 30d`` rotates only keys whose age - LiteLLM's ``created_at`` of the key
.env holds, which is the time of its last rotation, as every rotation makes a new key - is at
least that. Plain functions; no Invoke, no printing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..base.errors import UsageError
from ..config.settings import duration_seconds, parse_duration
from .rotation import key_status, now, when

if TYPE_CHECKING:
    from ..clients.litellm import LiteLLM

def min_age(value: str | None) -> int | None:
    """``--older-than``: seconds, or None when not given. Raises UsageError (exit 2) for an empty
    or bad value."""
    if value is None:
        return None
    checked = parse_duration(value)
    if checked is None:
        raise UsageError("--older-than takes a duration such as 30d, not an empty value")
    return duration_seconds(checked)


def due(client: LiteLLM, held: str, alias: str, older_than: int) -> tuple[bool, float | None]:
    """Is the key of a configured consumer due for rotation? ``held``: the key .env holds (may be
    empty); ``alias``: its alias, used when LiteLLM does not know ``held``. Due when that key is at
    least ``older_than`` seconds old, or not active (expired, blocked: a dead key is always due), or
    when no key can be found at all (the rotation then says what is wrong). Returns (due, age)."""
    found = client.find_key(held, alias)
    if found is None:
        return True, None
    info = found[1]
    if key_status(info) != "active":
        return True, None
    age = key_age(info)
    return (age is None or age >= older_than), age


def key_age(info: dict[str, object], at: datetime | None = None) -> float | None:
    """Seconds since LiteLLM made the key ``info`` describes (its ``created_at``) until ``at``
    (default: now); None without a readable one (the key is then taken as due)."""
    made = when(info.get("created_at"))
    if made is None:
        return None
    return ((at or now()) - made).total_seconds()
