"""The .env store: strict reading (python-dotenv's parser; anything Compose or a person would
read differently is refused, naming the line, never its text), byte-preserving updates of named
variables, atomic owner-only writes, and a lock (``filelock``) so two tasks never lose an
update; symlinks followed, pipes read once and never written.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dotenv.parser import Binding, parse_stream

from ..base.errors import EnvFileError, LockBusyError
from . import perms

BOM = b"\xef\xbb\xbf"
MAX_SIZE = 1024 * 1024
#: A variable name .env, Compose and every shell accept.
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LINE_RE = re.compile(
    r"(?P<lead>\s*)(?P<export>export[^\S\r\n]+)?(?P<key>'[^']+'|[^=#\s]+)"
    r"(?P<sep>[^\S\r\n]*=[^\S\r\n]*)(?P<rest>.*)\Z",
    re.S,
)
#: A quoted value as python-dotenv reads it (a backslash escapes the next character).
QUOTED_RE = {
    "'": re.compile(r"'((?:\\.|[^'\\])*)'", re.S),
    '"': re.compile(r'"((?:\\.|[^"\\])*)"', re.S),
}
_SAFE_UNQUOTED = re.compile(r"[A-Za-z0-9_\-.:/+=@,%~^]*\Z")


@dataclass(frozen=True)
class Entry:
    """One ``NAME=value`` binding as it stands in the file."""

    name: str
    value: str
    line: int
    quote: str  # "", "'" or '"'


@dataclass
class EnvDoc:
    """A parsed .env: its bindings in order plus what is needed to write it back unchanged."""

    path: Path
    bindings: list[Binding]
    bom: bool = False
    newline: str = "\n"
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, str]:
        return {name: entry.value for name, entry in self.entries.items()}

    def get(self, name: str, default: str = "") -> str:
        entry = self.entries.get(name)
        return entry.value if entry else default

    def text(self) -> str:
        return "".join(b.original.string for b in self.bindings)

    def render(self, changes: Mapping[str, str]) -> bytes:
        """The file's bytes with ``changes`` applied; raises if it would not read back."""
        for name in changes:
            if not NAME_RE.match(name):
                raise EnvFileError(f"{name!r} is not a valid variable name")
        pieces: list[str] = []
        for binding in self.bindings:
            if binding.key is not None and binding.key in changes:
                pieces.append(_replace_value(binding.original.string, changes[binding.key]))
            else:
                pieces.append(binding.original.string)
        text = "".join(pieces)
        for name, value in changes.items():
            if name in self.entries:
                continue
            if text and not text.endswith(("\n", "\r")):
                text += self.newline
            text += f"{name}={_format_value(value, '')}{self.newline}"
        data = (BOM if self.bom else b"") + text.encode("utf-8")
        expected = self.values | dict(changes)
        try:
            check = parse_bytes(data, self.path)
        except EnvFileError as exc:
            raise EnvFileError(f"refusing to write {self.path}: {exc.message}") from None
        if check.values != expected:
            raise EnvFileError(
                f"refusing to write {self.path}: the new text would not read back as intended"
            )
        return data


def _line_of(binding: Binding) -> int:
    original = binding.original.string
    lead = len(original) - len(original.lstrip())
    return binding.original.line + original[:lead].count("\n")


def parse_bytes(data: bytes, path: Path) -> EnvDoc:
    """Parse .env bytes strictly. Errors name the line, never its text."""
    bom = data.startswith(BOM)
    if bom:
        data = data[len(BOM) :]
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise EnvFileError(f"{path}: line {line} holds a NUL byte; this is not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EnvFileError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8") from None
    if not text.strip():
        raise EnvFileError(f"{path} is empty; run `invoke env.init --force` to write a new one")
    newline = "\r\n" if "\r\n" in text.split("\n", 1)[0] + "\n" else "\n"
    bindings = list(parse_stream(io.StringIO(text, newline="")))
    if "".join(b.original.string for b in bindings) != text:  # pragma: no cover - parser bug
        raise EnvFileError(f"{path}: python-dotenv could not read the whole file")
    doc = EnvDoc(path=path, bindings=bindings, bom=bom, newline=newline)
    for binding in bindings:
        line = _line_of(binding)
        if binding.error:
            raise EnvFileError(f"{path}: line {line} cannot be parsed; expected NAME=value")
        if binding.key is None:
            continue
        if binding.value is None:
            # the "name" may be a secret pasted on a line of its own: never quote it
            raise EnvFileError(f"{path}: line {line} has no '=': expected NAME=value (a value "
                               "belongs on the same line as its NAME=)")
        if not NAME_RE.match(binding.key):
            raise EnvFileError(f"{path}: line {line}: the name before '=' is not a valid variable "
                               "name (letters, digits and _, not starting with a digit)")
        if binding.key in doc.entries:
            first = doc.entries[binding.key].line
            raise EnvFileError(
                f"{path}: {binding.key} is set twice (lines {first} and {line}); keep one"
            )
        match = _LINE_RE.match(binding.original.string)
        rest = match.group("rest") if match else ""
        quote = rest[0] if rest[:1] in ("'", '"') else ""
        doc.entries[binding.key] = Entry(binding.key, binding.value, line, quote)
    return doc


def _format_value(value: str, quote: str) -> str:
    if quote == "" and _SAFE_UNQUOTED.match(value):
        return value
    if quote == "'" or (quote == "" and "$" in value):
        # single quotes: Compose does not interpolate ${...} inside them
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace_value(original: str, value: str) -> str:
    match = _LINE_RE.match(original)
    if match is None:  # pragma: no cover - parse_bytes accepted this binding
        raise EnvFileError("internal: cannot locate the value to replace")
    rest = match.group("rest")
    quote = rest[:1] if rest[:1] in QUOTED_RE else ""
    if quote:
        quoted = QUOTED_RE[quote].match(rest)
        tail = rest[quoted.end() :] if quoted else ""
    elif rest.startswith("#") and match.group("sep") != match.group("sep").rstrip():
        tail = " " + rest  # `NAME= # comment`: an empty value, then a comment
    else:
        body = re.match(r"[^\r\n]*", rest)
        part = body.group(0) if body else ""
        comment = re.search(r"[^\S\r\n]+#", part)
        cut = comment.start() if comment else len(part.rstrip())
        tail = part[cut:] + rest[len(part) :]
    head = original[: match.start("rest")]
    return head + _format_value(value, quote) + tail


# --------------------------------------------------------------------------- reading


def resolve(path: Path) -> Path:
    """The file to read and write: ``path``, or the file a symlink at ``path`` points to.

    A link the system follows to something without a name - ``/dev/fd/63``, which
    ``--env-file <(sops -d .env.enc)`` gives, leads to ``pipe:[...]`` - stays ``path``."""
    path = Path(path)
    if path.is_symlink():
        target = path.resolve()
        if target.exists():
            return target
        if os.path.exists(path):
            return path
        raise EnvFileError(f"{path} is a symlink to {target}, which does not exist")
    return path


def kind_of(path: Path) -> str | None:
    """What ``path`` (followed) is when it is not a regular file: ``"a directory"``,
    ``"a pipe"`` (a FIFO, or ``<(...)``), ``"a socket"``, ``"a device"``; None for a regular
    file or nothing at all."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    return "a socket" if stat.S_ISSOCK(mode) else "a device"


def require_updatable(path: Path) -> None:
    """EnvFileError (exit 3) when ``path`` is there but is no regular file a write can replace:
    a pipe (read once, never written), a device or a socket. A directory and a missing file are
    left to the caller's own messages."""
    kind = kind_of(path)
    if kind == "a pipe":
        raise EnvFileError(f"cannot update {path}: it is a pipe (as `--env-file <(...)` gives), "
                           "which can be read but not written; give a .env file (tasks that only "
                           "read .env - keys.list, keys.continue-config, env.check - take a pipe)")
    if kind not in (None, "a directory"):
        raise EnvFileError(f"cannot update {path}: it is {kind}, not a file; give a .env file")


#: How long a pipe may take to give its whole text (``<(sops -d ...)`` asks a key service).
PIPE_WAIT = 30.0
#: What each pipe gave, by (path, device, inode): a pipe gives its text once, and a task (or
#: tasks chained in one ``invoke``) read .env more than once.
_PIPED: dict[tuple[str, int, int], bytes] = {}


def _read_pipe(path: Path, target: Path, info: os.stat_result, wait: float) -> bytes:
    key = (str(path), info.st_dev, info.st_ino)
    if key in _PIPED:
        return _PIPED[key]
    box: dict[str, Any] = {}
    done = threading.Event()

    def read() -> None:  # in a thread: opening a FIFO nobody writes blocks, without a deadline
        try:
            with open(target, "rb") as handle:
                box["data"] = handle.read(MAX_SIZE + 1)
        except OSError as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=read, name=f"read {path}", daemon=True).start()
    if not done.wait(wait):
        raise EnvFileError(f"{path} is a pipe that gave no end of text within {wait:g}s; is the "
                           "program that writes it (e.g. `sops -d`) stuck or waiting for input?")
    if "error" in box:
        raise box["error"]
    data: bytes = box["data"]
    if len(data) > MAX_SIZE:
        raise EnvFileError(f"{path} is a pipe that gave over {MAX_SIZE} bytes; an env file is "
                           "expected to be small")
    _PIPED[key] = data
    return data


def read_bytes(path: Path, *, wait: float = PIPE_WAIT) -> bytes:
    """The bytes of the .env at ``path``. A pipe is read once, within ``wait`` seconds, and
    what it gave is kept for every later read in this process."""
    target = resolve(path)
    try:
        info = target.stat()
        if stat.S_ISDIR(info.st_mode):
            raise EnvFileError(f"{path} is a directory, not a file")
        if stat.S_ISFIFO(info.st_mode):
            return _read_pipe(Path(path), target, info, wait)
        if not stat.S_ISREG(info.st_mode):
            raise EnvFileError(f"{path} is {kind_of(target) or 'not a file'}, not a file; give "
                               "a .env file (or a pipe)")
        if info.st_size > MAX_SIZE:
            raise EnvFileError(f"{path} is {info.st_size} bytes; an env file is expected to be small")
        return target.read_bytes()
    except FileNotFoundError:
        raise EnvFileError(
            f"{path} not found; run `invoke env.init` to create it from .env.example"
        ) from None
    except PermissionError:
        raise EnvFileError(f"cannot read {path}: permission denied") from None
    except IsADirectoryError:  # pragma: no cover - raced with the stat
        raise EnvFileError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise EnvFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def load(path: Path) -> EnvDoc:
    return parse_bytes(read_bytes(path), Path(path))


# --------------------------------------------------------------------------- writing


def fsync_path(path: Path) -> None:
    """Flush a folder's entries (a rename, a new file) or a file's data to disk; nothing on
    Windows, which has no fsync of a folder (and syncs a file through its handle)."""
    if sys.platform == "win32":  # pragma: no cover - no directory fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_prefix(target: Path) -> str:
    """``.env`` -> ``.env.`` (hidden, and matched by a ``.env.*`` ignore rule)."""
    name = target.name
    return f"{name}." if name.startswith(".") else f".{name}."


def clean_stale_temps(target: Path) -> list[Path]:
    """Remove temporary files a killed writer left beside ``target``. Call under the lock."""
    removed = []
    with contextlib.suppress(OSError):
        for leftover in target.parent.glob(f"{_temp_prefix(target)}*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed.append(leftover)
    return removed


#: Windows' ERROR_SHARING_VIOLATION and ERROR_LOCK_VIOLATION: another program has the file open
_SHARING = (32, 33)


def held_open(exc: OSError, target: Path, platform: str = sys.platform) -> bool:
    """Is ``exc`` - ``os.replace`` onto ``target`` refused - Windows refusing because another
    program holds ``target`` open (an editor, a scanner, ``docker compose`` reading it)? That
    passes, so it is worth waiting for: a sharing or lock violation (WinError 32, 33), or
    "access denied" (WinError 5, which Windows also gives for a file open without delete
    sharing) on a file not marked read-only. Never on POSIX, where EACCES and EPERM last."""
    if platform != "win32" or not isinstance(exc, PermissionError):
        return False
    if getattr(exc, "winerror", None) in _SHARING:
        return True
    return exc.errno == errno.EACCES and not _read_only_attribute(target)


def _read_only_attribute(path: Path) -> bool:
    """Windows' read-only attribute (``attrib +r``), which refuses every replace for good."""
    try:
        attributes = getattr(os.stat(path), "st_file_attributes", 0)
    except OSError:
        return False
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_READONLY", 1))


def replace_waiting(tmp: Path, target: Path, deadline: float, platform: str = sys.platform) -> None:
    """``os.replace``, tried again while Windows refuses it because another program holds
    ``target`` open (``held_open``), until ``deadline`` (the lock's timeout). Every other
    refusal is raised at once."""
    while True:
        try:
            os.replace(tmp, target)
            return
        except PermissionError as exc:
            if not held_open(exc, target, platform) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def write_failure(exc: OSError, path: Path, target: Path, *, timeout: float,
                  platform: str = sys.platform) -> EnvFileError:
    """The one line saying why replacing ``target`` (the file of ``path``) failed, and what to
    do: held open by another program (Windows, after ``timeout``), marked read-only (Windows),
    immutable or append-only (a file attribute), permission denied - each its own cause."""
    if held_open(exc, target, platform):
        return EnvFileError(f"cannot write {path}: another program has held it open for over "
                            f"{timeout:g}s; close it (an editor?) and run the task again")
    if platform == "win32" and isinstance(exc, PermissionError) and _read_only_attribute(target):
        return EnvFileError(f"cannot write {path}: it is marked read-only; clear that (`attrib -r "
                            f"{path}`, or its Properties) and run the task again")
    for what in (target, target.parent) if isinstance(exc, PermissionError) else ():
        flag = perms.change_forbidden(what)
        if flag:
            return EnvFileError(f"cannot write {path}: {what} is {flag} (a file attribute: not "
                                f"even root may replace it); lift it with "
                                f"{perms.unlock_hint(what, flag)} and run the task again")
    if exc.errno == errno.EPERM:
        return EnvFileError(f"cannot write {path}: the system does not permit replacing it "
                            f"(operation not permitted: a sticky folder {target.parent} and "
                            "another owner, or a security policy); nothing was changed")
    if isinstance(exc, PermissionError):
        return EnvFileError(f"cannot write {path}: permission denied replacing it in "
                            f"{target.parent} (writing needs write permission on that folder); "
                            "nothing was changed")
    return EnvFileError(f"cannot write {path}: {exc.strerror or exc}")


def _private_temp(path: Path, target: Path) -> tuple[int, Path]:
    """An owner-only temporary file beside ``target``: (fd, path); EnvFileError naming why not
    (``path``: as the user gave it)."""
    directory = target.parent
    try:
        return perms.create_private(directory, _temp_prefix(target), ".tmp")
    except PermissionError:
        flag = perms.change_forbidden(directory)
        if flag:
            raise EnvFileError(f"cannot write {path}: its folder {directory} is {flag} (a file "
                               "attribute: not even root may add files to it); lift it with "
                               f"{perms.unlock_hint(directory, flag)} and run the task "
                               "again") from None
        raise EnvFileError(f"cannot write {path}: no permission to create files in {directory}") from None
    except OSError as exc:
        raise EnvFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_secure(path: Path, data: bytes, *, exclusive: bool = False, timeout: float = 30.0) -> Path:
    """Write ``data`` atomically to ``path`` (followed if a symlink), owner-only throughout.

    The temporary file is created owner-only (``perms.create_private``: 0600, or an owner-only
    DACL on Windows) before a byte is written, then synced and moved into place.
    ``exclusive``: fail if the file exists (checked atomically, by hard-linking into place).
    ``timeout``: seconds to keep retrying when Windows refuses the replace because another
    program holds the file open. Returns the path actually written; raises EnvFileError
    naming the cause (``write_failure``); a pipe is refused before anything is written.
    """
    target = Path(path) if exclusive else resolve(Path(path))
    require_updatable(target)
    directory = target.parent
    if not directory.is_dir():
        raise EnvFileError(f"cannot write {path}: folder {directory} does not exist")
    deadline = time.monotonic() + timeout
    fd, tmp = _private_temp(path, target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise EnvFileError(f"{path} already exists") from None
            tmp.unlink()
        else:
            try:
                replace_waiting(tmp, target, deadline)
            except OSError as exc:
                raise write_failure(exc, Path(path), target, timeout=timeout) from None
        fsync_path(directory)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, EnvFileError):
            raise EnvFileError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return target


def keep_copy(path: Path, data: bytes, label: str) -> Path:
    """Keep ``data`` - what the file at ``path`` held before it is replaced - beside it as
    ``<name>.<label>.<UTC time>`` (``20261204T223005Z``; ``-2``, ``-3``... when that name is
    taken), owner-only and never over another file. Returns the copy's path; EnvFileError
    when it cannot be written."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.{label}.{stamp}")
    n = 1
    while kept.exists() or kept.is_symlink():
        n += 1
        kept = path.with_name(f"{path.name}.{label}.{stamp}-{n}")
    return write_secure(kept, data, exclusive=True)


@contextlib.contextmanager
def file_lock(lock_path: Path, timeout: float, what: str = "the .env file") -> Iterator[None]:
    """An exclusive lock on ``lock_path`` between processes, waiting up to ``timeout`` seconds.

    ``filelock`` (``flock`` on POSIX, ``msvcrt.locking`` on Windows); the lock file is created
    0600. Raises LockBusyError after ``timeout``, EnvFileError when the lock file cannot be made.
    """
    import filelock  # here, not at the top: tasks that only read (keys.list) skip its ~9 ms import

    lock = filelock.FileLock(lock_path, timeout=timeout, mode=0o600)
    try:
        lock.acquire(poll_interval=0.02)
    except filelock.Timeout:
        raise LockBusyError(
            f"another task has held {what} for over {timeout:g}s ({lock_path}); "
            "wait for it to finish, or stop it"
        ) from None
    except OSError as exc:
        raise EnvFileError(f"cannot create lock file {lock_path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        lock.release()


def lock_path_for(path: Path) -> Path:
    """``<name>.lock`` beside the file of ``path``. EnvFileError for a pipe: none is written."""
    target = resolve(Path(path)) if Path(path).is_symlink() else Path(path)
    require_updatable(target)
    return target.with_name(target.name + ".lock")


def update(path: Path, changes: Mapping[str, str], *, lock_timeout: float = 30.0) -> EnvDoc:
    """Set ``changes`` in the .env at ``path`` under the lock; return the document as written."""
    path = Path(path)
    with file_lock(lock_path_for(path), lock_timeout):
        doc = load(path)
        clean_stale_temps(resolve(path))
        if all(doc.entries.get(k) and doc.get(k) == v for k, v in changes.items()):
            return doc  # nothing to change: do not touch the file
        data = doc.render(changes)
        write_secure(path, data, timeout=lock_timeout)
        return parse_bytes(data, path)
