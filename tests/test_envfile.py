"""The .env store on a corpus of awkward files: bytes kept, errors named, writes safe."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tasks import envfile
from tasks.errors import EnvFileError, LockBusyError
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
        assert time.monotonic() - started < 2
    assert path.read_text() == "A=1\n"
