"""Owner-only files on Windows: the decision logic against a recorded stand-in of the Windows
security API, on any platform. The real pywin32 calls run in tests/windows/test_on_windows.py
under a Windows CPython (Wine in CI).

What Wine cannot show - that another account is really refused, and that the DACL keeps its
"protected" flag on disk - is covered only by these stand-in tests (see the README).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tasks.base.errors import EnvFileError
from tasks.envstore import perms

ME = ("S-1-5-21-1-2-3-1001", "PC\\me")
SYSTEM = perms.Ace(True, perms.SYSTEM_SID, "NT AUTHORITY\\SYSTEM")
USERS = perms.Ace(True, "S-1-5-32-545", "BUILTIN\\Users")
EVERYONE = perms.Ace(True, "S-1-1-0", "Everyone")
MINE = perms.Ace(True, ME[0], ME[1])
OWNER_ONLY = perms.Dacl(present=True, protected=True, aces=(MINE,))


@dataclass
class FakeAcl:
    """Records calls; holds one DACL per path. ``stub`` ignores every change, as Wine's
    ``icacls`` did; ``created`` is the DACL a new file gets (owner-only unless a test says)."""

    dacls: dict[str, perms.Dacl] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    stub: bool = False
    created: perms.Dacl = OWNER_ONLY
    taken: set[str] = field(default_factory=set)

    def current_user(self) -> tuple[str, str]:
        return ME

    def create_private(self, path: str) -> int:
        self.calls.append(("create", path))
        if path in self.taken or os.path.exists(path):
            raise FileExistsError(path)
        self.dacls[path] = self.created
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)

    def set_owner_only(self, path: str) -> None:
        self.calls.append(("set", path))
        if not self.stub:
            self.dacls[path] = OWNER_ONLY

    def read_dacl(self, path: str) -> perms.Dacl:
        self.calls.append(("read", path))
        return self.dacls[path]


def _file(tmp_path: Path, fake: FakeAcl, *aces: perms.Ace, protected: bool = False) -> Path:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    fake.dacls[str(path)] = perms.Dacl(present=True, protected=protected, aces=aces)
    return path


# --------------------------------------------------------------------------- the decision logic


@pytest.mark.parametrize(("aces", "private"), [
    ((MINE,), True),
    ((SYSTEM, MINE), True),                       # the OS itself may read it
    ((MINE, perms.Ace(False, "S-1-1-0", "Everyone")), True),   # a deny ACE opens nothing
    ((MINE, USERS), False),
    ((SYSTEM, MINE, EVERYONE), False),
    ((SYSTEM,), False),                           # not even the owner
    ((), False),
])
def test_what_counts_as_owner_only(aces: tuple[perms.Ace, ...], private: bool) -> None:
    assert perms.Dacl(present=True, protected=True, aces=aces).owner_only(ME[0]) is private


def test_a_null_dacl_is_open_to_everyone() -> None:
    dacl = perms.Dacl(present=False, protected=False, aces=())
    assert not dacl.owner_only(ME[0])
    assert dacl.describe() == "everyone (no access list)"


def test_lock_down_sets_the_dacl_and_reads_it_back(tmp_path: Path) -> None:
    fake = FakeAcl()
    path = _file(tmp_path, fake, SYSTEM, MINE, USERS, EVERYONE)
    result = perms.lock_down(path, platform="win32", api=fake)
    assert [c[0] for c in fake.calls] == ["read", "set", "read"]
    assert result.before == "NT AUTHORITY\\SYSTEM, PC\\me, BUILTIN\\Users, Everyone"
    assert result.after == "PC\\me" and result.changed


def test_lock_down_of_a_private_file_changes_nothing(tmp_path: Path) -> None:
    fake = FakeAcl()
    path = _file(tmp_path, fake, MINE, protected=True)
    result = perms.lock_down(path, platform="win32", api=fake)
    assert not result.changed and ("set", str(path)) not in fake.calls


def test_an_api_that_changes_nothing_is_caught(tmp_path: Path) -> None:
    """The failure Wine's icacls stub hid: the call 'succeeds' and the file stays open."""
    fake = FakeAcl(stub=True)
    path = _file(tmp_path, fake, MINE, USERS)
    with pytest.raises(EnvFileError, match=r"still open to PC\\me, BUILTIN\\Users"):
        perms.lock_down(path, platform="win32", api=fake)


def test_a_refused_change_is_one_clear_error(tmp_path: Path) -> None:
    class Refusing(FakeAcl):
        def set_owner_only(self, path: str) -> None:
            raise PermissionError(5, "Access is denied", path)

    fake = Refusing()
    path = _file(tmp_path, fake, MINE, USERS)
    with pytest.raises(EnvFileError, match="cannot change the permissions of .*access denied"):
        perms.lock_down(path, platform="win32", api=fake)


def test_new_files_are_created_owner_only_through_the_api(tmp_path: Path) -> None:
    fake = FakeAcl()
    fd, path = perms.create_private(tmp_path, ".env.", ".tmp", platform="win32", api=fake)
    os.close(fd)
    assert fake.calls == [("create", str(path)), ("read", str(path))]
    assert path.name.startswith(".env.") and path.name.endswith(".tmp")


def test_create_takes_another_name_when_one_is_taken(tmp_path: Path) -> None:
    fake = FakeAcl()
    fake.taken = {"x"}
    original = fake.create_private
    attempts: list[str] = []

    def first_taken(path: str) -> int:
        attempts.append(path)
        if len(attempts) == 1:
            raise FileExistsError(path)
        return original(path)

    fake.create_private = first_taken  # type: ignore[method-assign]
    fd, path = perms.create_private(tmp_path, ".env.", ".tmp", platform="win32", api=fake)
    os.close(fd)
    assert len(attempts) == 2 and str(path) == attempts[1]


def test_a_new_file_that_is_not_private_is_removed_and_refused(tmp_path: Path) -> None:
    fake = FakeAcl(created=perms.Dacl(present=True, protected=False, aces=(MINE, USERS)))
    with pytest.raises(EnvFileError, match="still open to"):
        perms.create_private(tmp_path, ".env.", ".tmp", platform="win32", api=fake)
    assert list(tmp_path.iterdir()) == []


def test_env_check_reports_the_access_list(tmp_path: Path) -> None:
    fake = FakeAcl()
    path = _file(tmp_path, fake, SYSTEM, MINE, USERS)
    assert not perms.is_private(path, platform="win32", api=fake)
    assert perms.describe(path, platform="win32", api=fake) == (
        "access list: NT AUTHORITY\\SYSTEM, PC\\me, BUILTIN\\Users")
