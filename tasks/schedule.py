"""Rotation on a schedule: how old a key is, and LiteLLM's durations in seconds.

``keys.rotate --older-than 30d`` rotates only keys whose age - LiteLLM's ``created_at`` of the key
.env holds, which is the time of its last rotation, as every rotation makes a new key - is at
least that. Plain functions; no Invoke, no printing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .settings import parse_duration

if TYPE_CHECKING:
    from .proxy import LiteLLM

#: Seconds per unit of LiteLLM's duration syntax (a month is 30 days, as LiteLLM counts it).
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}


def duration_seconds(value: str) -> int:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``, ``1mo`` -> seconds. Raises UsageError (exit 2)."""
    checked = parse_duration(value)
    assert checked is not None
    number = int(checked.rstrip("smhdwo"))
    return number * UNIT_SECONDS[checked[len(str(number)):]]


def key_age(client: LiteLLM, key: str, now: datetime | None = None) -> float | None:
    """Seconds since LiteLLM made ``key`` (a plaintext key or its hash); None when LiteLLM does not
    know it or gives no ``created_at``."""
    info = client.key_info(key)
    created = (info or {}).get("created_at")
    if not created:
        return None
    made = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    if made.tzinfo is None:
        made = made.replace(tzinfo=timezone.utc)
    return ((now or datetime.now(timezone.utc)) - made).total_seconds()
