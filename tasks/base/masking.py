"""How a secret may be shown: its prefix and last four characters, never more."""

from __future__ import annotations


def mask(secret: str) -> str:
    """``sk-Abc...xyz9`` -> ``sk-...xyz9``; short or empty secrets show no characters at all."""
    if not secret:
        return "(none)"
    prefix = "sk-" if secret.startswith("sk-") else ""
    body = secret[len(prefix) :]
    if len(body) < 16:
        return f"{prefix}..."
    return f"{prefix}...{body[-4:]}"
