"""The .env store on a corpus of awkward files: bytes kept, errors named, writes safe."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from tasks.base.errors import EnvFileError, LockBusyError
from tasks.envstore import envfile
from tests.support.envdata import BAD_FILES
from tests.support.project import WINDOWS, make_private, make_public, posix_symlinks, private

SECRET = "sk-SECRET-do-not-print-1234567890"


def put(tmp_path: Path, data: bytes | str, name: str = ".env") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    make_private(path)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- preservation

PRESERVE_CASES = {
    "comments and blanks": (
        "# top comment\n\nA=1\n\n\n# about B\nB=2\n# tail\n",
        "# top comment\n\nA=1\n\n\n# about B\nB=new\n# tail\n",
    ),
    "export prefix": ("export A=1\nexport B=2\n", "export A=1\nexport B=new\n"),
    "single quotes": ("A='x y'\nB='old'\n", "A='x y'\nB='new'\n"),
    "double quotes": ('A="x # y"\nB="old"\n', 'A="x # y"\nB="new"\n'),
    "inline comment": ("A=1 # keep me\nB=old   # and me\n", "A=1 # keep me\nB=new   # and me\n"),
    "CRLF": ("A=1\r\nB=old\r\n# c\r\n", "A=1\r\nB=new\r\n# c\r\n"),
    "no trailing newline": ("A=1\nB=old", "A=1\nB=new"),
    "spaces around =": ("A = 1\nB = old\n", "A = 1\nB = new\n"),
    "empty value": ("A=1\nB=\n", "A=1\nB=new\n"),
    "empty with comment": ("A=1\nB= # set me\n", "A=1\nB= new # set me\n"),
    "multi-line neighbour": ('A="line1\nline2"\nB=old\n', 'A="line1\nline2"\nB=new\n'),
    "indented": ("  A=1\n\tB=old\n", "  A=1\n\tB=new\n"),
    "unicode comment": ("# café ☕\nB=old\n", "# café ☕\nB=new\n"),
}


@pytest.mark.parametrize("case", sorted(PRESERVE_CASES))
def test_update_changes_only_the_value(tmp_path: Path, case: str) -> None:
    before, after = PRESERVE_CASES[case]
    path = put(tmp_path, before)
    envfile.update(path, {"B": "new"})
    assert path.read_bytes() == after.encode()
    assert dotenv_values(path, interpolate=False)["B"] == "new"


def test_bom_is_kept(tmp_path: Path) -> None:
    path = put(tmp_path, envfile.BOM + b"A=1\r\nB=old\r\n")
    envfile.update(path, {"B": "new"})
    assert path.read_bytes() == envfile.BOM + b"A=1\r\nB=new\r\n"


def test_absent_key_is_appended_with_the_files_line_ending(tmp_path: Path) -> None:
    path = put(tmp_path, "A=1\r\nB=2")  # CRLF, no final newline
    envfile.update(path, {"C": "3"})
    assert path.read_bytes() == b"A=1\r\nB=2\r\nC=3\r\n"


def test_changing_a_multi_line_value(tmp_path: Path) -> None:
    path = put(tmp_path, 'A="one\ntwo"\nB=2\n')
    envfile.update(path, {"A": "single"})
    assert path.read_text() == 'A="single"\nB=2\n'


@pytest.mark.parametrize(
    "value",
    ["has space", "has#hash", 'has"quote', "has'apostrophe", "back\\slash", "dollar$VAR",
     "${NOT_INTERPOLATED}", "trailing ", "", "new\nline", "ünï"],
)
def test_awkward_values_read_back_exactly(tmp_path: Path, value: str) -> None:
    path = put(tmp_path, "A=1\nB=old\n")
    envfile.update(path, {"B": value})
    assert dotenv_values(path, interpolate=False) == {"A": "1", "B": value}
    assert envfile.load(path).get("B") == value


def test_single_quoted_value_stays_single_quoted(tmp_path: Path) -> None:
    path = put(tmp_path, "B='old'\n")
    envfile.update(path, {"B": "it's"})
    assert path.read_text().startswith("B='")
    assert dotenv_values(path, interpolate=False)["B"] == "it's"


def test_parsed_values_match_python_dotenv(tmp_path: Path) -> None:
    text = "# c\nexport A=1\nB='two words'\nC=\"x\\ny\"\nD=4 # comment\nE=\n"
    path = put(tmp_path, text)
    assert envfile.load(path).values == dotenv_values(path, interpolate=False)


def test_no_change_leaves_the_file_alone(tmp_path: Path) -> None:
    path = put(tmp_path, "A=1\n")
    os.utime(path, (1, 1))
    envfile.update(path, {"A": "1"})
    assert path.stat().st_mtime == 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_files_are_named_and_never_rewritten(tmp_path: Path, case: str) -> None:
    data, expected = BAD_FILES[case]
    path = put(tmp_path, data)
    with pytest.raises(EnvFileError) as err:
        envfile.update(path, {"VIRTUAL_KEY": SECRET})
    assert expected in err.value.message
    assert "\n" not in err.value.message
    assert path.read_bytes() == data


def test_errors_never_quote_the_line(tmp_path: Path) -> None:
    path = put(tmp_path, f"A=1\nbroken {SECRET} line\n")
    with pytest.raises(EnvFileError) as err:
        envfile.load(path)
    assert SECRET not in err.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EnvFileError, match="not found; run `invoke env.init`"):
        envfile.load(tmp_path / ".env")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(EnvFileError, match="is a directory"):
        envfile.update(tmp_path / ".env", {"A": "1"})


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = put(tmp_path, "A=1\n")
    # root reads any file, so the permission error is simulated at the read call
    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(EnvFileError, match="permission denied"):
        envfile.load(path)


def test_huge_file(tmp_path: Path) -> None:
    path = put(tmp_path, b"A=1\n" + b"# padding\n" * 200_000)
    with pytest.raises(EnvFileError, match="expected to be small"):
        envfile.load(path)


# --------------------------------------------------------------------------- symlinks


@posix_symlinks
def test_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = put(tmp_path, "A=1\n", "secrets.env")
    link = tmp_path / ".env"
    link.symlink_to(real)
    envfile.update(link, {"A": "2"})
    assert link.is_symlink()
    assert real.read_text() == "A=2\n"
    assert private(real)


@posix_symlinks
def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / ".env"
    link.symlink_to(tmp_path / "gone.env")
    with pytest.raises(EnvFileError, match="symlink to .* which does not exist"):
        envfile.update(link, {"A": "1"})
    assert not (tmp_path / "gone.env").exists()


# --------------------------------------------------------------------------- safe writes


def test_update_tightens_a_world_readable_file(tmp_path: Path) -> None:
    path = put(tmp_path, "A=1\n")
    make_public(path)
    assert not private(path)
    envfile.update(path, {"A": "2"})
    assert private(path)


def test_new_files_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        envfile.write_secure(tmp_path / ".env", b"A=1\n", exclusive=True)
    finally:
        os.umask(old)
    assert private(tmp_path / ".env")


def test_exclusive_write_never_replaces(tmp_path: Path) -> None:
    path = put(tmp_path, "A=1\n")
    with pytest.raises(EnvFileError, match="already exists"):
        envfile.write_secure(path, b"A=2\n", exclusive=True)
    assert path.read_text() == "A=1\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_mode_is_never_wider_than_0600_during_writes(tmp_path: Path) -> None:
    """Watch the folder while 200 updates run: every file seen holding a secret is private
    (0600; on Windows its DACL, read while the writer works)."""
    path = put(tmp_path, "A=0\n")
    seen_wide: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in os.scandir(tmp_path):
                if entry.name.endswith(".lock"):
                    continue
                try:
                    wide = not private(Path(entry.path)) if WINDOWS else (
                        stat.S_IMODE(entry.stat().st_mode) & 0o077)
                except OSError:  # gone (replaced or cleaned) between listing and looking
                    continue
                if wide:
                    seen_wide.append(entry.name)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(200):
            envfile.update(path, {"A": f"{SECRET}{i}"})
    finally:
        done.set()
        watcher.join()
    assert seen_wide == []
    lock = envfile.lock_path_for(path)
    if not WINDOWS:  # (filelock removes the lock file after use on Windows)
        assert mode(lock) == 0o600


def test_stale_temp_files_are_cleaned_by_the_next_write(tmp_path: Path) -> None:
    path = put(tmp_path, "A=1\n")
    stale = tmp_path / ".env.abc123.tmp"
    stale.write_text("A=half")
    envfile.update(path, {"A": "2"})
    assert not stale.exists()


def test_failed_write_leaves_the_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = put(tmp_path, "A=1\n")

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(EnvFileError, match="No space left"):
        envfile.update(path, {"A": "2"})
    assert path.read_text() == "A=1\n"
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- why a write failed


def _refuse_replace(monkeypatch: pytest.MonkeyPatch, exc: OSError) -> list[object]:
    calls: list[object] = []

    def refused(*args: object) -> None:
        calls.append(args)
        raise exc

    monkeypatch.setattr(os, "replace", refused)
    return calls


@pytest.mark.skipif(WINDOWS, reason="Windows' EACCES is also its sharing violation, which is "
                    "waited for (test_replace_waits_out_a_sharing_violation_on_windows)")
@pytest.mark.parametrize(("code", "cause"), [
    (errno.EPERM, "operation not permitted"),
    (errno.EACCES, "permission denied replacing it"),
])
def test_a_posix_refusal_names_its_cause_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 code: int, cause: str) -> None:
    """EPERM and EACCES on POSIX last: no waiting, and never Windows' "held open" text."""
    path = put(tmp_path, "A=1\n")
    calls = _refuse_replace(monkeypatch, PermissionError(code, os.strerror(code)))
    with pytest.raises(EnvFileError, match=cause) as caught:
        envfile.update(path, {"A": "2"}, lock_timeout=30)
    assert len(calls) == 1, "a lasting refusal was tried again"
    assert "held it open" not in caught.value.message
    assert path.read_text() == "A=1\n" and not list(tmp_path.glob("*.tmp"))


def _win_error(winerror: int, code: int = errno.EACCES) -> PermissionError:
    exc = PermissionError(code, "Access is denied")
    exc.winerror = winerror  # type: ignore[attr-defined]  # as Windows' OSError carries it
    return exc


@pytest.mark.parametrize(("exc", "platform", "waits"), [
    (_win_error(32), "win32", True),   # ERROR_SHARING_VIOLATION
    (_win_error(33), "win32", True),   # ERROR_LOCK_VIOLATION
    (_win_error(5), "win32", True),    # access denied: also a file open without delete sharing
    (PermissionError(errno.EPERM, "Operation not permitted"), "win32", False),
    (PermissionError(errno.EACCES, "Permission denied"), "linux", False),
    (PermissionError(errno.EPERM, "Operation not permitted"), "linux", False),
    (PermissionError(errno.EACCES, "Permission denied"), "darwin", False),
])
def test_only_windows_sharing_violation_is_waited_for(tmp_path: Path, exc: OSError, platform: str,
                                                      waits: bool) -> None:
    target = put(tmp_path, "A=1\n")
    assert envfile.held_open(exc, target, platform) is waits
    message = envfile.write_failure(exc, target, target, timeout=30, platform=platform).message
    assert ("held it open for over 30s" in message) is waits, message


def test_replace_waits_out_a_sharing_violation_on_windows(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    target, tmp = put(tmp_path, "A=1\n"), put(tmp_path, "A=2\n", ".env.x.tmp")
    real, refusals = os.replace, [_win_error(32), _win_error(32)]

    def replace(src: object, dst: object) -> None:
        if refusals:
            raise refusals.pop()
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    envfile.replace_waiting(tmp, target, time.monotonic() + 60, platform="win32")
    assert target.read_text() == "A=2\n" and refusals == []


def test_a_lasting_refusal_is_not_waited_for_even_on_windows(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    target, tmp = put(tmp_path, "A=1\n"), put(tmp_path, "A=2\n", ".env.x.tmp")
    calls = _refuse_replace(monkeypatch, PermissionError(errno.EPERM, "Operation not permitted"))
    with pytest.raises(PermissionError):
        envfile.replace_waiting(tmp, target, time.monotonic() + 60, platform="win32")
    assert len(calls) == 1


def test_an_immutable_env_is_named_immutable(tmp_path: Path, file_attribute: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``chattr +i .env`` (a real file attribute; even root may not replace the file)."""
    path = put(tmp_path, "A=1\n")
    file_attribute(path, "+i")
    real, calls = os.replace, []

    def replace(*args: Any) -> None:
        calls.append(args)
        real(*args)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(EnvFileError) as caught:
        envfile.update(path, {"A": "2"}, lock_timeout=30)
    message = caught.value.message
    assert "is immutable" in message and f"chattr -i {path}" in message, message
    assert "held it open" not in message
    assert len(calls) == 1, "a refusal that lasts was tried again"
    assert path.read_text() == "A=1\n" and not list(tmp_path.glob("*.tmp"))


def test_an_immutable_folder_is_named(tmp_path: Path, file_attribute: Any) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = put(folder, "A=1\n")
    envfile.lock_path_for(path).touch()  # the lock file exists from an earlier run
    file_attribute(folder, "+i")
    with pytest.raises(EnvFileError, match=f"its folder {folder} is immutable .*chattr -i") as caught:
        envfile.update(path, {"A": "2"})
    assert "held it open" not in caught.value.message
    assert path.read_text() == "A=1\n"


def test_an_append_only_env_is_named(tmp_path: Path, file_attribute: Any) -> None:
    path = put(tmp_path, "A=1\n")
    file_attribute(path, "+a")
    with pytest.raises(EnvFileError, match="is append-only .*chattr -a"):
        envfile.update(path, {"A": "2"})


# --------------------------------------------------------------------------- pipes

posix_pipes = pytest.mark.skipif(WINDOWS, reason="POSIX pipes: /dev/fd and FIFOs (Windows has none)")


@posix_pipes
def test_a_pipe_is_read_once_and_its_text_kept(tmp_path: Path) -> None:
    """``--env-file <(sops -d .env.enc)``: /dev/fd/N, a link to ``pipe:[...]``; a task reads
    .env more than once, a pipe gives its text once."""
    read, write = os.pipe()
    try:
        os.write(write, b"A=1\nB=two\n")
        os.close(write)
        path = Path(f"/dev/fd/{read}")
        assert envfile.resolve(path) == path
        assert envfile.load(path).values == {"A": "1", "B": "two"}
        assert envfile.load(path).values == {"A": "1", "B": "two"}
    finally:
        os.close(read)


@posix_pipes
def test_a_fifo_is_read_when_written(tmp_path: Path) -> None:
    fifo = tmp_path / "secrets.env"
    os.mkfifo(fifo, 0o600)

    def feed() -> None:
        with open(fifo, "wb") as handle:
            handle.write(b"A=1\n")

    feeder = threading.Thread(target=feed)
    feeder.start()
    assert envfile.load(fifo).values == {"A": "1"}
    feeder.join()


@posix_pipes
def test_a_fifo_nobody_writes_is_an_error_within_the_wait(tmp_path: Path) -> None:
    fifo = tmp_path / "secrets.env"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(EnvFileError, match="is a pipe that gave no end of text within 0.3s"):
        envfile.read_bytes(fifo, wait=0.3)
    with open(fifo, "wb"):  # lets the reader left behind finish
        pass


@posix_pipes
def test_a_pipe_is_never_written(tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"A=1\n")
        os.close(write)
        path = Path(f"/dev/fd/{read}")
        for attempt in (lambda: envfile.update(path, {"A": "2"}),
                        lambda: envfile.write_secure(path, b"A=2\n")):
            with pytest.raises(EnvFileError, match="it is a pipe .* can be read but not written"):
                attempt()
    finally:
        os.close(read)


@posix_pipes
def test_a_device_is_no_env_file() -> None:
    with pytest.raises(EnvFileError, match="/dev/null is a device, not a file"):
        envfile.load(Path("/dev/null"))
    with pytest.raises(EnvFileError, match="it is a device, not a file"):
        envfile.update(Path("/dev/null"), {"A": "1"})


# --------------------------------------------------------------------------- locking


def _writer(path: str, name: str, rounds: int) -> None:
    for i in range(rounds):
        envfile.update(Path(path), {name: str(i + 1)})


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    path = put(tmp_path, "# shared\n" + "".join(f"V{i}=0\n" for i in range(8)))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), f"V{i}", 25)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    values = envfile.load(path).values
    assert values == {f"V{i}": "25" for i in range(8)}
    assert path.read_text().startswith("# shared\n")


def test_lock_timeout_is_a_clear_error(tmp_path: Path) -> None:
    path = put(tmp_path, "A=1\n")
    lock = envfile.lock_path_for(path)
    with envfile.file_lock(lock, 1):
        started = time.monotonic()
        with pytest.raises(LockBusyError, match="another task has held"):
            # flock is per open file description, so a second open in this process waits too
            envfile.update(path, {"A": "2"}, lock_timeout=0.3)
        # the lock is held for as long as this block lasts: only the 0.3 s timeout ends the
        # wait (the bound is loose, to be no measure of the machine's speed)
        assert time.monotonic() - started < 30
    assert path.read_text() == "A=1\n"


def test_a_kept_copy_never_replaces_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """env.init --force kept its copy as ``.backup.<time>-n``; stack.restore failed when a copy
    of the same second existed: both now keep every copy, owner-only, under a UTC time."""
    from datetime import datetime, timezone

    asked: list[Any] = []

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            asked.append(tz)
            return cls(2026, 12, 4, 22, 30, 5, tzinfo=tz)

    monkeypatch.setattr(envfile, "datetime", Frozen)
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    copies = [envfile.keep_copy(env, f"A={n}\n".encode(), "before-restore") for n in range(3)]
    assert [c.name for c in copies] == [".env.before-restore.20261204T223005Z",
                                        ".env.before-restore.20261204T223005Z-2",
                                        ".env.before-restore.20261204T223005Z-3"]
    assert [c.read_text() for c in copies] == ["A=0\n", "A=1\n", "A=2\n"]
    assert asked == [timezone.utc] * 3  # the time is UTC's
    assert all(private(c) for c in copies)
    assert env.read_text() == "A=1\n"


@pytest.mark.parametrize("text", ["null", "{", ""])
def test_a_journal_that_cannot_be_used_is_an_error_not_none(tmp_path: Path, text: str) -> None:
    from tasks.envstore.journal import JournalFile

    env = tmp_path / ".env"
    journal = JournalFile(env, "upgrade", "the upgrade journal", "delete it")
    assert journal.load() is None  # no file: no journal
    journal.path.write_text(text)
    with pytest.raises(EnvFileError, match="cannot read the upgrade journal"):
        journal.load()
