"""What a task reads: its flags (seconds, counts, one of several), a line of stdin, a yes at a
terminal, and its settings from Invoke's configuration and .env."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ..base.errors import UsageError
from ..config.settings import Settings, load_settings, load_with_env, parse_count, parse_seconds
from ..envstore import envfile
from ..envstore.compat import require_sendable
from .output import is_terminal, note


def seconds_flag(value: str | None, flag: str, *, allow_zero: bool = True) -> float | None:
    """A flag's seconds (None when not given); UsageError (exit 2) naming the flag otherwise.

    Flags are taken as text and parsed here: Invoke's own parser ends a typed flag's bad
    value (``--timeout 5m``) in a traceback."""
    if value is None:
        return None
    return parse_seconds(value, flag, allow_zero=allow_zero)


def count_flag(value: str | None, flag: str) -> int | None:
    """A flag's whole number 0 or more (None when not given); UsageError (exit 2) otherwise."""
    return None if value is None else parse_count(value, flag)


def read_stdin_line(what: str) -> str:
    """One line of stdin as text; UsageError (exit 2) when it is not UTF-8 or absent."""
    try:
        data = sys.stdin.buffer.readline(64 * 1024) if hasattr(sys.stdin, "buffer") else \
            sys.stdin.readline().encode()
    except (OSError, ValueError):
        data = b""
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"{what}: stdin is not UTF-8 text") from None


def plain(obj: Any) -> Any:
    """Invoke's config proxies as plain dicts and lists."""
    if hasattr(obj, "items"):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def settings_from(
    c: Any, *, env_file: str | None = None, url: str | None = None, with_env: bool = False,
    reads_only: bool = False, engine: str | None = None,
) -> Settings:
    """Settings for a task; ``with_env`` also reads .env (for the master key and port).

    A .env that is a pipe (``--env-file <(sops -d .env.enc)``) is taken only by a task that
    ``reads_only``; any other is refused here (exit 3), before anything happens."""
    config = plain(c.config) if c is not None else None
    check = None if reads_only else envfile.require_updatable
    if not with_env:
        base = load_settings(config, env_file=env_file, url=url, engine=engine)
        if check is not None:
            check(base.env_file)
        return base

    settings, values = load_with_env(config, env_file=env_file, url=url, check=check,
                                     engine=engine)
    note(settings.url_note)
    require_sendable(settings.require_master_key(), settings.master_key_source,
                     {k.env_var: values.get(k.env_var, "") for k in settings.keys.values()})
    return settings


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask at a terminal; without one, demand ``--yes`` instead of blocking."""
    if yes:
        return
    if not is_terminal(sys.stdin):
        raise UsageError(f"{what} needs --yes when stdin is not a terminal")
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except EOFError:  # the terminal closed, or Ctrl-D
        answer = ""
    except UnicodeDecodeError:
        answer = ""
    if answer not in ("y", "yes"):
        raise UsageError(f"{what}: not confirmed; nothing was changed")


def exactly_one(options: Mapping[str, object]) -> str:
    given = [name for name, value in options.items() if value not in (None, False)]
    if len(given) != 1:
        names = ", ".join(f"--{n}" for n in options)
        raise UsageError(f"give exactly one of {names}" + (f" (got {', '.join(given)})" if given else ""))
    return given[0]
