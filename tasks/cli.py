"""What every task shares: error mapping, settings from Invoke's context, output helpers.

This is the only place (with the task modules) that knows about Invoke or prints.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from invoke.exceptions import AmbiguousEnvVar, Exit, UncastableEnvVar

from .base.errors import EnvFileError, GatewayError, UsageError
from .config.known import empty_message
from .config.settings import Settings, load_settings, load_with_env, parse_count, parse_seconds

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
            for line in getattr(exc, "details", None) or ():
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
    from invoke.config import AmbiguousMergeError
    from invoke.vendor.yaml import YAMLError

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
    reads_only: bool = False,
) -> Settings:
    """Settings for a task; ``with_env`` also reads .env (for the master key and port).

    A .env that is a pipe (``--env-file <(sops -d .env.enc)``) is taken only by a task that
    ``reads_only``; any other is refused here (exit 3), before anything happens."""
    from .envstore import envfile

    config = plain(c.config) if c is not None else None
    check = None if reads_only else envfile.require_updatable
    if not with_env:
        base = load_settings(config, env_file=env_file, url=url)
        if check is not None:
            check(base.env_file)
        return base

    settings, values = load_with_env(config, env_file=env_file, url=url, check=check)
    note(settings.url_note)
    if not settings.master_key:
        raise EnvFileError(
            f"no LITELLM_MASTER_KEY in {settings.env_file} or the environment; "
            "run `invoke env.init` or set it"
        )
    from .envstore.compat import require_sendable

    require_sendable(settings.master_key, settings.master_key_source,
                     {k.env_var: values.get(k.env_var, "") for k in settings.keys.values()})
    return settings


def note(text: str) -> None:
    """A line for the person on stderr: something worth knowing that is not the task's output
    (a warning, a failure's details), or nothing when ``text`` is empty. Every line the tasks
    write to stderr goes through here."""
    if text:
        print(text, file=sys.stderr, flush=True)


def emit(text: str = "", *, as_json: bool = False) -> None:
    """A line of the task's output on stdout - or, with ``as_json`` (the task prints JSON), on
    stderr, so stdout holds the JSON alone."""
    print(text, file=sys.stderr if as_json else sys.stdout, flush=True)


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
        note(f"... {message}")


def service_change(message: str) -> None:
    """A service changed state while a task waits: one line on stderr, terminal or not."""
    note(("... " if is_terminal(sys.stderr) else "") + message)


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
