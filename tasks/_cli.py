"""What every task shares: error mapping, settings from Invoke's context, output helpers.

This is the only place (with the task modules) that knows about Invoke or prints.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from invoke.exceptions import Exit

from .errors import EnvFileError, GatewayError, UsageError
from .settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def guarded(func: F) -> F:
    """Turn project errors into one line on stderr and their exit code; Ctrl-C into 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _term_as_interrupt()
        try:
            return func(*args, **kwargs)
        except GatewayError as exc:
            raise Exit(f"error: {exc.message}", exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", 130) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _term_as_interrupt() -> Any:
    """SIGTERM (systemd stop, docker stop, kill) unwinds like Ctrl-C, so rollbacks run."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _raise_interrupt)
    except (ValueError, OSError):  # pragma: no cover - not in the main thread, or no SIGTERM
        return None


def plain(obj: Any) -> Any:
    """Invoke's config proxies as plain dicts and lists."""
    if hasattr(obj, "items"):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def settings_from(
    c: Any, *, env_file: str | None = None, url: str | None = None, with_env: bool = False
) -> Settings:
    """Settings for a task; ``with_env`` also reads .env (for the master key and port)."""
    config = plain(c.config) if c is not None else None
    base = load_settings(config, env_file=env_file, url=url)
    if not with_env:
        return base
    from . import envfile

    values = envfile.load(base.env_file).values
    settings = load_settings(config, env_file=env_file, url=url, env_values=values)
    if not settings.master_key:
        raise EnvFileError(
            f"no LITELLM_MASTER_KEY in {settings.env_file} or the environment; "
            "run `invoke env.init` or set it"
        )
    return settings


def emit(text: str = "") -> None:
    print(text, flush=True)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str), flush=True)


def is_terminal(stream: Any) -> bool:
    """Is ``stream`` a person's terminal? ``isatty()``, except on Windows, where the NUL device
    (``< NUL``, ``subprocess.DEVNULL``) also claims to be one: there the handle must also be a
    console (``GetConsoleMode`` succeeds)."""
    try:
        if not stream.isatty():
            return False
        fileno = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    if sys.platform != "win32":
        return True
    import ctypes
    import msvcrt

    mode = ctypes.c_uint32()
    handle = msvcrt.get_osfhandle(fileno)
    return bool(ctypes.windll.kernel32.GetConsoleMode(ctypes.c_void_p(handle), ctypes.byref(mode)))


def progress(message: str) -> None:
    """Progress for a person at a terminal; silent in scripts, CI and Makefiles."""
    if is_terminal(sys.stderr):
        print(f"... {message}", file=sys.stderr, flush=True)


def service_change(message: str) -> None:
    """A service changed state while a task waits: one line on stderr, terminal or not."""
    prefix = "... " if is_terminal(sys.stderr) else ""
    print(f"{prefix}{message}", file=sys.stderr, flush=True)


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask at a terminal; without one, demand ``--yes`` instead of blocking."""
    if yes:
        return
    if not is_terminal(sys.stdin):
        raise UsageError(f"{what} needs --yes when stdin is not a terminal")
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except EOFError:
        answer = ""
    if answer not in ("y", "yes"):
        raise UsageError(f"{what}: not confirmed; nothing was changed")


def exactly_one(options: Mapping[str, object]) -> str:
    given = [name for name, value in options.items() if value not in (None, False)]
    if len(given) != 1:
        names = ", ".join(f"--{n}" for n in options)
        raise UsageError(f"give exactly one of {names}" + (f" (got {', '.join(given)})" if given else ""))
    return given[0]
