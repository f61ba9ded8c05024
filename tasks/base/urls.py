"""URLs compared as endpoints: the same scheme, host and port, every loopback name one host."""

from __future__ import annotations

from urllib.parse import urlsplit

#: The names this machine answers on itself; ``urlsplit`` gives ``[::1]`` as ``::1``.
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint(url: str) -> tuple[str, str, int | None, str]:
    """``(scheme, host, port, path)`` of ``url``: scheme and host lower-case, every loopback
    name as ``"loopback"``, the scheme's default port filled in, the path without a trailing
    slash. A URL that cannot be read (a bad port) is ``("", url, None, "")``: equal only to
    itself."""
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port
    except ValueError:
        return ("", str(url), None, "")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    return (scheme, "loopback" if host in LOOPBACK else host,
            port or DEFAULT_PORTS.get(scheme), parts.path.rstrip("/"))


def same_endpoint(a: str, b: str) -> bool:
    """The same scheme, host (every loopback name counts as one) and port; paths aside."""
    return endpoint(a)[:3] == endpoint(b)[:3]
