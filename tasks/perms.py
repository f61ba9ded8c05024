"""Owner-only file permissions on POSIX (mode 0600) and Windows (an ACL for the current user).

On Windows there are no mode bits: ``icacls`` removes inherited access and grants the
current user alone. The Windows branch is exercised here by simulation (``tests/test_perms.py``
injects the platform and records the argument lists); it has not been run on a Windows machine.
"""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import EnvFileError

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)


@dataclass(frozen=True)
class LockResult:
    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def describe_mode(mode: int) -> str:
    return f"{mode:04o}"


def windows_user() -> str:
    domain = os.environ.get("USERDOMAIN", "")
    user = os.environ.get("USERNAME") or getpass.getuser()
    return f"{domain}\\{user}" if domain else user


def _icacls_grants(path: Path, run: Runner) -> list[str]:
    """The principals `icacls <path>` lists, one per ACE line."""
    done = run(["icacls", str(path)])
    if done.returncode != 0:
        raise EnvFileError(f"icacls could not read the access list of {path}: {done.stderr.strip()}")
    principals = []
    for raw in done.stdout.splitlines():
        line = raw.strip()
        if line.startswith(str(path)):
            line = line[len(str(path)) :].strip()
        if ":" in line and "(" in line:
            principals.append(line.split(":", 1)[0].strip())
    return principals


def lock_down_windows(path: Path, run: Runner = _run, user: str | None = None) -> LockResult:
    """Remove inherited and foreign access; grant only ``user`` read and write."""
    user = user or windows_user()
    before = _icacls_grants(path, run)

    def icacls(*args: str) -> None:
        done = run(["icacls", str(path), *args])
        if done.returncode != 0:
            message = done.stderr.strip() or done.stdout.strip()
            raise EnvFileError(f"icacls failed on {path}: {message}")

    icacls("/inheritance:r", "/grant:r", f"{user}:(R,W,D)")
    for principal in _icacls_grants(path, run):  # explicit grants left after inheritance
        if principal.lower() != user.lower():
            icacls("/remove:g", principal)
    after = _icacls_grants(path, run)
    if [p.lower() for p in after] != [user.lower()]:
        raise EnvFileError(f"{path} is still open to {', '.join(after)} after icacls; fix it by hand")
    return LockResult(path, ", ".join(before) or "(none)", user)


def lock_down(path: Path, *, platform: str | None = None, run: Runner = _run) -> LockResult:
    """Make ``path`` readable and writable by its owner alone; say what it was before."""
    platform = platform or sys.platform
    if platform == "win32":
        return lock_down_windows(path, run)
    try:
        before = mode_of(path)
        if before != 0o600:
            os.chmod(path, 0o600)
        return LockResult(path, describe_mode(before), describe_mode(mode_of(path)))
    except FileNotFoundError:
        raise EnvFileError(f"{path} not found; run `invoke env.init` first") from None
    except PermissionError:
        raise EnvFileError(f"cannot change the mode of {path}: permission denied (not its owner?)") from None


def restrict_new_file(path: Path, *, platform: str | None = None, run: Runner = _run) -> None:
    """Called on a fresh temporary file before any secret is written into it."""
    platform = platform or sys.platform
    if platform == "win32":
        lock_down_windows(path, run)
    else:
        os.chmod(path, 0o600)


def is_private(path: Path) -> bool | None:
    """True when only the owner can read ``path``; None where mode bits do not apply."""
    if sys.platform == "win32":  # pragma: no cover
        return None
    return mode_of(path) & 0o077 == 0
