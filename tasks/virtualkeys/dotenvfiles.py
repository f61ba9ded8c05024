"""Dotenv consumers: other applications (Continue.dev, scripts) that read a key from a .env file
(``hand_over`` in a key's settings). Each file is written with the .env store's guarantees, and
``DotenvConsumer`` is a rotation ``Consumer``: checked before a key is made, given the new key
after the switch and before the old one is retired.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..base.errors import EnvFileError
from ..envstore import envfile, perms

if TYPE_CHECKING:
    from ..config.settings import KeySpec, Settings
    from .rotation import Consumer


class ConsumerFileError(EnvFileError):
    """A hand_over file cannot be read or written (exit 3, as for .env)."""


# --------------------------------------------------------------------------- the file


def make_folder(folder: Path) -> None:
    """``folder`` and its missing parents, 0700 on POSIX (a Windows folder inherits its
    parent's access list: the user profile's is the user's). Each missing folder is made on
    its own: ``mkdir(parents=True)`` gives the parents the umask's mode (0755), not 0700."""
    missing = []
    at = folder
    while not at.is_dir():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if path.is_dir():  # made by another process meanwhile
                continue
            raise ConsumerFileError(f"cannot make the folder {folder}: {path} is a file, in "
                                    "the way") from None
        except OSError as exc:
            raise ConsumerFileError(f"cannot make the folder {path}: {exc.strerror or exc}") from None


def _doc(path: Path) -> envfile.EnvDoc:
    """The file's document; an empty one when it is missing or blank."""
    target = envfile.resolve(path)
    if not target.exists() and not target.is_symlink():
        return envfile.EnvDoc(path=path, bindings=[])
    data = envfile.read_bytes(path)
    if not data.removeprefix(envfile.BOM).strip():
        return envfile.EnvDoc(path=path, bindings=[], bom=data.startswith(envfile.BOM))
    return envfile.parse_bytes(data, path)


def held(path: Path, var: str) -> str:
    """The value of ``var`` in the file ("" when the file or the variable is missing)."""
    return _doc(path).get(var)


def check_writable(path: Path) -> None:
    """Raise ConsumerFileError naming the file when a key could not be written to it: the file
    cannot be read or parsed, or its folder cannot be made or written (tried with a private
    temporary file, removed at once)."""
    try:
        if path.is_dir():
            raise ConsumerFileError(f"{path} is a folder, not a file")
        _doc(path)
        make_folder(envfile.resolve(path).parent)
        fd, tmp = perms.create_private(envfile.resolve(path).parent, ".handover-check.", ".tmp")
        os.close(fd)
        tmp.unlink()
        file = envfile.resolve(path)
        flag = perms.change_forbidden(file) if file.exists() else ""
        if flag:  # the folder takes new files, but this one may not be replaced
            raise ConsumerFileError(f"{file} is {flag} (a file attribute: not even root may "
                                    f"replace it); lift it with {perms.unlock_hint(file, flag)}")
    except ConsumerFileError:
        raise
    except EnvFileError as exc:
        raise ConsumerFileError(exc.message) from None
    except OSError as exc:
        raise ConsumerFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def write(path: Path, var: str, value: str, *, lock_timeout: float = 30.0) -> bool:
    """Set ``var`` to ``value`` in the file (made with its folder if missing), under its lock,
    atomically and owner-only. False when it held the value already (nothing written)."""
    try:
        make_folder(envfile.resolve(path).parent)
        with envfile.file_lock(envfile.lock_path_for(path), lock_timeout, str(path)):
            doc = _doc(path)
            if var in doc.entries and doc.get(var) == value:
                return False
            envfile.clean_stale_temps(envfile.resolve(path))
            envfile.write_secure(path, doc.render({var: value}), timeout=lock_timeout)
            return True
    except ConsumerFileError:
        raise
    except EnvFileError as exc:
        raise ConsumerFileError(exc.message) from None


# --------------------------------------------------------------------------- the consumer


class DotenvConsumer:
    """Every ``hand_over`` file of the keys it is asked about."""

    def __init__(self, project_dir: Path, *, lock_timeout: float = 30.0,
                 progress: Callable[[str], None] = lambda _message: None) -> None:
        self.project_dir = project_dir
        self.lock_timeout = lock_timeout
        self.progress = progress

    def serves(self, spec: KeySpec) -> bool:
        return bool(getattr(spec, "hand_over", ()))

    def check(self, spec: KeySpec) -> None:
        for target in spec.hand_over:
            path = target.path(self.project_dir)
            try:
                check_writable(path)
            except ConsumerFileError as exc:
                raise ConsumerFileError(
                    f"cannot hand the key {spec.name!r} to {path} ({exc.message}); nothing was "
                    "changed: .env and the old key are as they were") from None

    def accept(self, spec: KeySpec, key: str) -> list[str]:
        notes = []
        for target in spec.hand_over:
            path = target.path(self.project_dir)
            self.progress(f"writing the new key to {target.var} in {path}")
            try:
                write(path, target.var, key, lock_timeout=self.lock_timeout)
            except ConsumerFileError as exc:
                raise ConsumerFileError(f"cannot write the key to {path}: {exc.message}") from None
            notes.append(f"wrote the key to {target.var} in {path}")
        return notes

    def sync(self, spec: KeySpec, key: str) -> list[str]:
        """Hand ``key`` to the files that do not hold it yet (``keys.create`` when .env holds a
        working key already); notes of what it wrote."""
        notes = []
        for target in spec.hand_over:
            path = target.path(self.project_dir)
            try:
                if held(path, target.var) == key:
                    continue
            except EnvFileError as exc:
                raise ConsumerFileError(f"cannot hand the key to {path}: {exc.message}") from None
            if write(path, target.var, key, lock_timeout=self.lock_timeout):
                notes.append(f"wrote the key to {target.var} in {path}")
        return notes


class Consumers:
    """Several consumers as one: each is asked about the keys it serves, files first."""

    def __init__(self, *members: Consumer | None) -> None:
        self.members = [m for m in members if m is not None]

    def serves(self, spec: KeySpec) -> bool:
        return any(m.serves(spec) for m in self.members)

    def check(self, spec: KeySpec) -> None:
        for member in self.members:
            if member.serves(spec):
                member.check(spec)

    def accept(self, spec: KeySpec, key: str) -> list[str]:
        notes: list[str] = []
        for member in self.members:
            if member.serves(spec):
                notes += member.accept(spec, key)
        return notes

    def close(self) -> None:
        for member in self.members:
            close = getattr(member, "close", None)
            if close is not None:
                close()


def with_files(consumer: Consumer | None, settings: Settings,
               progress: Callable[[str], None] = lambda _message: None) -> Consumer | None:
    """``consumer`` with the hand_over files beside it (first), when any key declares one."""
    if not any(spec.hand_over for spec in settings.keys.values()):
        return consumer
    if isinstance(consumer, Consumers):
        return consumer
    files = DotenvConsumer(settings.project_dir, lock_timeout=settings.lock_timeout,
                           progress=progress)
    return Consumers(files, consumer)


# --------------------------------------------------------------------------- status

State = Literal["current", "stale", "missing", "unreadable", "no key in .env"]


@dataclass
class FileState:
    """Whether one hand_over file holds the key .env holds."""

    key: str
    dotenv: str
    var: str
    state: State
    holds_current_key: bool
    detail: str = ""

    def line(self) -> str:
        said = {"current": "holds the current key", "stale": "holds another key (not .env's)",
                "missing": "does not hold the key", "unreadable": "cannot be read",
                "no key in .env": "- .env holds no key for it"}[self.state]
        return (f"{self.key}: {self.var} in {self.dotenv} {said}"
                + (f" ({self.detail})" if self.detail else ""))


def states(settings: Settings, values: Mapping[str, str],
           names: Sequence[str] | None = None) -> list[FileState]:
    """Each hand_over file of each key (of ``names``, default all) against .env's ``values``."""
    found = []
    for spec in settings.keys.values():
        if names is not None and spec.name not in names:
            continue
        current = values.get(spec.env_var, "")
        for target in spec.hand_over:
            path = target.path(settings.project_dir)
            state: State
            detail = ""
            try:
                there = held(path, target.var)
            except EnvFileError as exc:
                state, detail = "unreadable", exc.message
            else:
                if not current:
                    state = "no key in .env"
                elif not there:
                    state = "missing"
                else:
                    state = "current" if there == current else "stale"
            found.append(FileState(spec.name, str(path), target.var, state, state == "current",
                                   detail))
    return found

