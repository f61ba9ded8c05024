"""How a task ends: a project error as one ``error:`` line and its exit code (``guarded``),
Ctrl-C, SIGTERM and SIGHUP as 130, a closed stdout as 141, and the errors Invoke raises
reading its configuration (before any task runs) as one line and exit 2."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from invoke.config import AmbiguousMergeError
from invoke.exceptions import AmbiguousEnvVar, Exit, UncastableEnvVar
from invoke.vendor.yaml import YAMLError

from ..base.errors import GatewayError
from ..config.known import empty_message
from .output import note

F = TypeVar("F", bound=Callable[..., Any])


def guarded(func: F) -> F:
    """Turn project errors into one line on stderr and their exit code; Ctrl-C, SIGTERM and
    SIGHUP (the terminal went away) into 130; a closed stdout into a quiet exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = _signals_as_interrupt()
        try:
            return func(*args, **kwargs)
        except GatewayError as exc:
            # a failing service's state and log lines (StackError) go before the one line
            for line in exc.details:
                note(line)
            raise Exit(f"error: {exc.message}", exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", 130) from None
        except BrokenPipeError:
            _stdout_gone()
            raise Exit(code=141) from None  # as a shell reports SIGPIPE
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return wrapper  # type: ignore[return-value]


def install_config_error_hook() -> None:
    """Invoke reads invoke.yaml, ``-f`` files and ``INVOKE_*`` variables before any task runs,
    so their errors (bad YAML, a variable it cannot convert) escape every task. This turns
    those, and only those, into one ``error:`` line and exit 2; anything else keeps Python's
    traceback (a bug to report)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        message = _env_cast_error(exc, tb) or _config_error(exc)
        if message is None:
            previous(kind, exc, tb)
            return
        with _suppress_os_errors():
            sys.stdout.flush()
        note(f"error: {message}")
        os._exit(2)  # an excepthook cannot set the exit code any other way

    sys.excepthook = hook


def _config_error(exc: BaseException) -> str | None:
    if isinstance(exc, AmbiguousMergeError):
        kinds = re.findall(r"<class '(\w+)'>", str(exc))
        shapes = {"dict": "a map", "list": "a list", "NoneType": "a value", "str": "a text",
                  "int": "a number", "float": "a number", "bool": "yes/no"}
        want, got = (shapes.get(k, k) for k in [*kinds, "?", "?"][:2])
        return (f"a setting in invoke.yaml (or a -f file) has the wrong shape: {got} where "
                f"{want} belongs (see the README, 'Settings')")
    if isinstance(exc, YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}" if mark is not None else "a config file"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        return f"Invoke's configuration ({where}) is not valid YAML: {problem}"
    if isinstance(exc, (UncastableEnvVar, AmbiguousEnvVar)):  # one _env_cast_error did not name
        return (f"an INVOKE_* variable cannot set this setting ({' '.join(str(exc).split())}); "
                "set it in invoke.yaml")
    return None


def _env_cast_error(exc: BaseException, tb: Any) -> str | None:
    """Invoke casts an ``INVOKE_*`` variable to the type of the setting it replaces with that
    type itself (``int('abc')``), and refuses to replace a list: a ValueError, TypeError or
    UncastableEnvVar from its ``env.py``. The line names the variable, its setting and what it
    takes - never the value (a variable may hold anything)."""
    if not isinstance(exc, (ValueError, TypeError, UncastableEnvVar)) or tb is None:
        return None
    found: dict[str, Any] = {}
    last = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.replace("\\", "/").endswith("invoke/env.py"):
            found.update({k: v for k, v in tb.tb_frame.f_locals.items()
                          if k in ("real_var", "key_path", "old")})
        last = code
        tb = tb.tb_next
    if last is None or last.co_name != "_cast" or "old" not in found:
        return None
    var = str(found.get("real_var") or "an INVOKE_* variable")
    setting = ".".join(str(p) for p in found.get("key_path") or ()) or "its setting"
    old = found["old"]
    if not os.environ.get(var, "x").strip():
        return empty_message(var, setting)
    if isinstance(old, (list, tuple)):
        return (f"{var} cannot set {setting}: it is a list in invoke.yaml (or a -f file), and an "
                "INVOKE_* variable holds text, never a list; set the list in invoke.yaml, or "
                f"unset {var}")
    kind = "a whole number" if isinstance(old, int) else "a number"
    return (f"{var} must be {kind}: {setting} is one in invoke.yaml (or a -f file); give "
            f"{kind}, or unset {var}")


@contextlib.contextmanager
def _suppress_os_errors() -> Iterator[None]:
    try:
        yield
    except (OSError, ValueError):
        pass


def _stdout_gone() -> None:
    """The reader of stdout went away (``| head``): nothing more can be shown there, and
    Python must not complain about it when it flushes at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout not a real file
        pass


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _signals_as_interrupt() -> dict[int, Any]:
    """SIGTERM (systemd stop, docker stop, kill) and SIGHUP (the terminal closed) unwind like
    Ctrl-C, so rollbacks run. Returns the handlers to put back."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is None:  # pragma: no cover - Windows has no SIGHUP
            continue
        try:
            previous[signum] = signal.signal(signum, _raise_interrupt)
        except (ValueError, OSError):  # pragma: no cover - not in the main thread
            continue
    return previous
