"""Owner-only files: mode 0600 on POSIX; on Windows a protected DACL with one ACE for the current
user, given at creation through pywin32 and read back, so a file is private from the instant
it exists and a stub API cannot pass silently (``EnvFileError``).
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..base.errors import EnvFileError

#: ERROR_FILE_EXISTS / ERROR_ALREADY_EXISTS from CreateFile with CREATE_NEW
_EXISTS = (80, 183)
#: LocalSystem: the operating system itself (backup, indexing, antivirus) - allowed beside the
#: owner, as OpenSSH for Windows allows it on private keys; Wine adds it to every DACL it reads.
SYSTEM_SID = "S-1-5-18"


@dataclass(frozen=True)
class LockResult:
    path: Path
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Ace:
    """One access control entry as read back: allow or deny, for whom (string SID and name)."""

    allowed: bool
    sid: str
    name: str


@dataclass(frozen=True)
class Dacl:
    """A file's DACL as read back. ``present`` False is a NULL DACL: everyone has full access."""

    present: bool
    protected: bool
    aces: tuple[Ace, ...]

    def owner_only(self, user_sid: str) -> bool:
        """True when the DACL exists and allows ``user_sid`` alone (and the operating system,
        LocalSystem). Whether it is protected from inheritance is not part of the test: the
        ACEs it holds now decide who can open the file (Wine also drops the flag)."""
        allowed = [ace for ace in self.aces if ace.allowed]
        return (self.present and any(ace.sid == user_sid for ace in allowed)
                and all(ace.sid in (user_sid, SYSTEM_SID) for ace in allowed))

    def describe(self) -> str:
        """Who may access the file: ``DOMAIN\\user, BUILTIN\\Users`` (inherited ACEs included)."""
        if not self.present:
            return "everyone (no access list)"
        names = list(dict.fromkeys(ace.name for ace in self.aces if ace.allowed))
        return ", ".join(names) or "nobody"


class WindowsAcl(Protocol):
    """The few Windows security calls this module needs (pywin32 in :class:`Win32Acl`)."""

    def current_user(self) -> tuple[str, str]:
        """The process token's user: (string SID, ``DOMAIN\\name``)."""
        ...

    def create_private(self, path: str) -> int:
        """Create ``path`` (fails with FileExistsError if it exists) with the owner-only DACL;
        return a writable binary file descriptor."""
        ...

    def set_owner_only(self, path: str) -> None:
        """Replace the DACL of an existing ``path`` by the owner-only, protected one."""
        ...

    def read_dacl(self, path: str) -> Dacl:
        ...


class Win32Acl:
    """:class:`WindowsAcl` through pywin32 (``win32security``, ``win32file``). Windows only."""

    def __init__(self) -> None:
        import ntsecuritycon
        import win32api
        import win32con
        import win32file
        import win32security

        self._sec, self._file, self._con = win32security, win32file, win32con
        token = win32security.OpenProcessToken(win32api.GetCurrentProcess(), win32con.TOKEN_QUERY)
        self._sid = win32security.GetTokenInformation(token, win32security.TokenUser)[0]
        dacl = win32security.ACL()
        dacl.AddAccessAllowedAce(win32security.ACL_REVISION, ntsecuritycon.FILE_ALL_ACCESS, self._sid)
        descriptor = win32security.SECURITY_DESCRIPTOR()
        descriptor.SetSecurityDescriptorOwner(self._sid, False)
        descriptor.SetSecurityDescriptorDacl(True, dacl, False)
        descriptor.SetSecurityDescriptorControl(win32security.SE_DACL_PROTECTED,
                                                win32security.SE_DACL_PROTECTED)
        self._descriptor = descriptor

    def _name(self, sid: Any) -> str:
        try:
            name, domain, _ = self._sec.LookupAccountSid(None, sid)
        except self._sec.error:
            return str(self._sec.ConvertSidToStringSid(sid))
        return f"{domain}\\{name}" if domain else str(name)

    def current_user(self) -> tuple[str, str]:
        return str(self._sec.ConvertSidToStringSid(self._sid)), self._name(self._sid)

    def create_private(self, path: str) -> int:
        if sys.platform != "win32":  # pragma: no cover - Windows only
            raise OSError(f"cannot create {path}: CreateFile needs Windows")
        import msvcrt

        attributes = self._sec.SECURITY_ATTRIBUTES()
        attributes.SECURITY_DESCRIPTOR = self._descriptor
        attributes.bInheritHandle = False
        try:
            handle = self._file.CreateFile(
                path, self._con.GENERIC_READ | self._con.GENERIC_WRITE,
                0,  # no sharing: nobody else opens it while it is being written
                attributes, self._file.CREATE_NEW, self._file.FILE_ATTRIBUTE_NORMAL, None,
            )
        except self._sec.error as exc:
            if exc.winerror in _EXISTS:
                raise FileExistsError(path) from None
            raise OSError(exc.winerror, exc.strerror, path) from None
        return msvcrt.open_osfhandle(handle.Detach(), os.O_WRONLY | os.O_BINARY)

    def set_owner_only(self, path: str) -> None:
        try:
            self._sec.SetFileSecurity(path, self._sec.DACL_SECURITY_INFORMATION
                                      | self._sec.PROTECTED_DACL_SECURITY_INFORMATION,
                                      self._descriptor)
        except self._sec.error as exc:
            raise OSError(exc.winerror, exc.strerror, path) from None

    def read_dacl(self, path: str) -> Dacl:
        sec = self._sec
        try:
            descriptor = sec.GetFileSecurity(path, sec.DACL_SECURITY_INFORMATION)
        except sec.error as exc:
            raise OSError(exc.winerror, exc.strerror, path) from None
        control, _ = descriptor.GetSecurityDescriptorControl()
        dacl = descriptor.GetSecurityDescriptorDacl()
        if dacl is None:
            return Dacl(present=False, protected=bool(control & sec.SE_DACL_PROTECTED), aces=())
        aces = []
        for index in range(dacl.GetAceCount()):
            (ace_type, _flags), _mask, sid = dacl.GetAce(index)[:3]
            if ace_type not in (sec.ACCESS_ALLOWED_ACE_TYPE, sec.ACCESS_DENIED_ACE_TYPE):
                continue
            aces.append(Ace(ace_type == sec.ACCESS_ALLOWED_ACE_TYPE,
                            str(sec.ConvertSidToStringSid(sid)), self._name(sid)))
        return Dacl(present=True, protected=bool(control & sec.SE_DACL_PROTECTED), aces=tuple(aces))


_api: WindowsAcl | None = None


def windows_api() -> WindowsAcl:
    """The process-wide :class:`Win32Acl` (built on first use; tests may replace ``_api``)."""
    global _api
    if _api is None:
        try:
            _api = Win32Acl()
        except ImportError:
            raise EnvFileError(
                "pywin32 is missing; `python -m pip install pywin32` (a dependency on Windows)"
            ) from None
    return _api


def _on_windows(platform: str | None) -> bool:
    return (platform or sys.platform) == "win32"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def describe_mode(mode: int) -> str:
    return f"{mode:04o}"


def _verify(path: Path, api: WindowsAcl, sid: str) -> Dacl:
    dacl = api.read_dacl(str(path))
    if not dacl.owner_only(sid):
        raise EnvFileError(
            f"{path} is still open to {dacl.describe()} after setting an owner-only access list; "
            "fix its permissions by hand"
        )
    return dacl


#: Linux's FS_IOC_GETFLAGS (``_IOR('f', 1, long)``) and the attribute bits ``chattr +i`` / ``+a`` set
_FS_IOC_GETFLAGS = 0x80006601 | (struct.calcsize("l") << 16)
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


def change_forbidden(path: Path) -> str:
    """``"immutable"`` or ``"append-only"`` when a file attribute forbids changing ``path`` to
    everyone, root included (``chattr +i`` / ``+a`` on Linux, ``chflags uchg`` / ``uappnd`` on
    macOS and BSD); ``""`` when none does, or it cannot be told (Windows, another file system)."""
    try:
        flags = getattr(os.stat(path), "st_flags", None)
        if flags is not None:  # macOS, BSD
            if flags & (stat.UF_IMMUTABLE | stat.SF_IMMUTABLE):
                return "immutable"
            return "append-only" if flags & (stat.UF_APPEND | stat.SF_APPEND) else ""
        if not sys.platform.startswith("linux"):
            return ""
        import fcntl

        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not block
        try:
            raw = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8))
        finally:
            os.close(fd)
    except (OSError, ValueError, ImportError):
        return ""
    value = struct.unpack("i", raw[:4])[0]
    if value & _FS_IMMUTABLE_FL:
        return "immutable"
    return "append-only" if value & _FS_APPEND_FL else ""


def unlock_hint(path: Path, flag: str) -> str:
    """How to lift ``flag`` (from :func:`change_forbidden`) from ``path``: the command."""
    if sys.platform.startswith("linux"):
        return f"`sudo chattr -{'i' if flag == 'immutable' else 'a'} {path}`"
    return f"`chflags {'nouchg' if flag == 'immutable' else 'nouappnd'} {path}`"


def lock_down(path: Path, *, platform: str | None = None, api: WindowsAcl | None = None) -> LockResult:
    """Make ``path`` readable and writable by its owner alone; say what it was before.

    Returns before/after as mode strings (``0644`` -> ``0600``) on POSIX, as the accounts the
    DACL allows on Windows (read back, ``PC\\me``). Raises :class:`EnvFileError` when the file
    is missing, its permissions cannot be changed, or (Windows) the DACL does not read back
    owner-only.
    """
    try:
        if _on_windows(platform):
            api = api or windows_api()
            sid, _ = api.current_user()
            before = api.read_dacl(str(path))
            after = before
            if not before.owner_only(sid):
                api.set_owner_only(str(path))
                after = _verify(path, api, sid)
            return LockResult(path, before.describe(), after.describe())
        before_mode = mode_of(path)
        if before_mode != 0o600:
            os.chmod(path, 0o600)
        return LockResult(path, describe_mode(before_mode), describe_mode(mode_of(path)))
    except FileNotFoundError:
        raise EnvFileError(f"{path} not found; run `invoke env.init` first") from None
    except PermissionError:
        flag = change_forbidden(path)
        if flag:
            raise EnvFileError(f"cannot change the permissions of {path}: it is {flag} (a file "
                               f"attribute, even root may not change it); lift that with "
                               f"{unlock_hint(path, flag)} and run the task again") from None
        raise EnvFileError(
            f"cannot change the permissions of {path}: access denied (not its owner?)"
        ) from None
    except OSError as exc:
        raise EnvFileError(f"cannot change the permissions of {path}: {exc.strerror or exc}") from None


def create_private(directory: Path, prefix: str, suffix: str, *, platform: str | None = None,
                   api: WindowsAcl | None = None) -> tuple[int, Path]:
    """A new, uniquely named, empty file in ``directory`` that only its owner may open.

    Returns ``(fd, path)``: a binary descriptor open for writing (the caller closes it). On
    POSIX ``mkstemp`` (mode 0600); on Windows ``CreateFile`` with the owner-only protected DACL,
    read back before anything is written. Raises OSError as the OS does, EnvFileError when the
    DACL does not read back owner-only.
    """
    if not _on_windows(platform):
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
        return fd, Path(name)
    api = api or windows_api()
    sid, _ = api.current_user()
    for _attempt in range(100):
        path = Path(directory) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = api.create_private(str(path))
        except FileExistsError:
            continue
        try:
            _verify(path, api, sid)
        except BaseException:
            os.close(fd)
            path.unlink()
            raise
        return fd, path
    raise FileExistsError(f"no free temporary name in {directory}")  # pragma: no cover


def is_private(path: Path, *, platform: str | None = None, api: WindowsAcl | None = None) -> bool:
    """True when only the owner can read ``path``: mode ``0600`` or narrower on POSIX, an
    owner-only protected DACL on Windows."""
    if _on_windows(platform):
        api = api or windows_api()
        return api.read_dacl(str(path)).owner_only(api.current_user()[0])
    return mode_of(path) & 0o077 == 0


def describe(path: Path, *, platform: str | None = None, api: WindowsAcl | None = None) -> str:
    """Who may read ``path``, for a finding: ``mode 0644``, or ``access list: PC\\me``."""
    if _on_windows(platform):
        return f"access list: {(api or windows_api()).read_dacl(str(path)).describe()}"
    return f"mode {describe_mode(mode_of(path))}"
