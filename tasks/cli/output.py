"""The tasks' output: their result on stdout (``emit``, ``emit_json``), every other line on stderr
(``note``), progress for a person at a terminal (``progress``), a service's state changes while
a task waits (``service_change``)."""

from __future__ import annotations

import json
import sys
from typing import Any


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
