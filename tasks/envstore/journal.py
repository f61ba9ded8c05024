"""Journals: small owner-only JSON files beside .env (``<.env>.<name>-journal.json``) that say
what an operation in flight has done, so that the next task finishes it or rolls it back.
Written atomically and 0600 like .env (``envfile.write_secure``); a journal that cannot be read
is an EnvFileError (exit 3) naming the file and what to do, never taken for "none"."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..base.errors import EnvFileError
from . import envfile


def stamp() -> str:
    """The moment an operation is noted in its journal (``started_at``): UTC, ISO 8601 to the
    second, e.g. ``2026-12-04T22:30:05+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JournalFile:
    """One journal: ``what`` names it in errors (``"the keys journal"``), ``advice`` says what to
    do when it cannot be read (``"if no keys task is running, ... and delete it"``)."""

    def __init__(self, env_file: Path, name: str, what: str, advice: str) -> None:
        self.path = Path(env_file).with_name(Path(env_file).name + f".{name}-journal.json")
        self.what = what
        self.advice = advice

    def load(self) -> Any:
        """The JSON value the journal holds; None when there is no journal. EnvFileError when
        it cannot be read, is not JSON, or holds ``null`` (no journal is ever written so)."""
        try:
            data = json.loads(envfile.resolve(self.path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise self.unreadable(exc) from None
        if data is None:
            raise self.unreadable("it holds null")
        return data

    def unreadable(self, cause: BaseException | str) -> EnvFileError:
        """The error for a journal that cannot be read, or holds what this version cannot use
        (raise it from the caller's own check of the shape)."""
        why = cause if isinstance(cause, str) else (
            getattr(cause, "strerror", None)
            or (f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__))
        return EnvFileError(f"cannot read {self.what} {self.path} ({why}); {self.advice}")

    def save(self, data: Any) -> None:
        """Replace the journal with ``data`` as JSON, atomically and owner-only."""
        envfile.write_secure(self.path, json.dumps(data, indent=2, sort_keys=True).encode())

    def drop(self) -> None:
        """Remove the journal (done; nothing to finish). No journal is no error."""
        with contextlib.suppress(FileNotFoundError):
            envfile.resolve(self.path).unlink()
