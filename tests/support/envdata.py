"""Malformed .env files, each with the words its error must name (the .env store's and the CLI's
tests both feed them in)."""

from __future__ import annotations

BAD_FILES: dict[str, tuple[bytes, str]] = {
    "unparseable line": (b"A=1\nthis is not a binding\n", "line 2 cannot be parsed"),
    "duplicate keys": (b"A=1\nB=2\nA=3\n", "A is set twice (lines 1 and 3)"),
    "name without =": (b"A=1\nLONELY\n", "line 2 has no '='"),
    "bad name": (b"A=1\n1BAD=2\n", "line 2: the name before '=' is not a valid variable name"),
    "NUL byte": (b"A=1\nB=\x00\n", "line 2 holds a NUL byte"),
    "not UTF-8": (b"A=1\nB=caf\xe9\n", "line 2 is not UTF-8"),
    "empty": (b"", "is empty"),
    "only blank lines": (b"\n\n  \n", "is empty"),
    "unclosed quote": (b'A="open\nB=2\n', "cannot be parsed"),
}
