"""What only Windows can show, run under a real Windows CPython (tests/real/test_windows.py runs this
module under python.org's build on Wine; on a Windows machine `python -m pytest` collects it).

- the owner-only DACL through the real pywin32 calls: given at creation, read back;
- a .env another process holds open: Windows refuses the replace (WinError 5); the writer waits
  within the lock timeout and never leaves it half-written;
- a .env saved by Notepad (UTF-8 BOM, CRLF) through the real command line;
- Docker absent, and Docker Desktop stopped (its named pipe missing): stack tasks exit 10 with
  one line; the keys tasks reach LiteLLM over the host port without Docker at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.base.errors import EnvFileError
from tasks.envstore import envfile, perms
from tests.support.project import Project, Standin, write_env

if sys.platform != "win32":  # pragma: no cover - conftest does not collect this folder elsewhere
    pytest.skip("Windows only", allow_module_level=True)

import win32security

OPEN_TO_ALL = ("S-1-1-0", "S-1-5-32-545", "S-1-5-11")  # Everyone, Users, Authenticated Users


def _open_to_others(path: Path) -> bool:
    return any(ace.allowed and ace.sid in OPEN_TO_ALL
               for ace in perms.windows_api().read_dacl(str(path)).aces)


# --------------------------------------------------------------------------- the DACL


def test_descriptor_given_to_the_api_is_protected_and_owner_only() -> None:
    api = perms.windows_api()
    assert isinstance(api, perms.Win32Acl)
    control, _ = api._descriptor.GetSecurityDescriptorControl()
    assert control & win32security.SE_DACL_PROTECTED
    dacl = api._descriptor.GetSecurityDescriptorDacl()
    assert dacl.GetAceCount() == 1
    (ace_type, _), _mask, sid = dacl.GetAce(0)
    assert ace_type == win32security.ACCESS_ALLOWED_ACE_TYPE
    assert win32security.ConvertSidToStringSid(sid) == api.current_user()[0]


def test_a_new_temp_file_is_private_before_a_byte_is_written(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _open_to_others(plain), "the folder's default must be open, or this proves nothing"
    fd, path = perms.create_private(tmp_path, ".env.", ".tmp")
    try:
        assert path.stat().st_size == 0
        assert perms.is_private(path) and not _open_to_others(path)
    finally:
        os.close(fd)


def test_env_written_and_replaced_by_the_store_is_private(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    envfile.write_secure(path, b"A=1\n", exclusive=True)
    assert perms.is_private(path) and not _open_to_others(path)
    envfile.update(path, {"A": "2"})
    assert perms.is_private(path) and path.read_bytes() == b"A=2\n"


def test_lock_down_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    assert not perms.is_private(path)
    result = perms.lock_down(path)
    assert "Everyone" in result.before and result.changed
    assert perms.is_private(path) and not _open_to_others(path)
    assert not perms.lock_down(path).changed


# --------------------------------------------------------------------------- held open

HOLD = """
import sys
handle = open(sys.argv[1], "rb")   # as an editor or a scanner would: no delete sharing
print("holding", flush=True)
sys.stdin.readline()               # until the test lets go (an event, never a set time)
handle.close()
print("released", flush=True)
"""


def _hold(path: Path) -> subprocess.Popen[str]:
    """Another process holding ``path`` open until :func:`_release`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def _release(holder: subprocess.Popen[str]) -> None:
    if holder.poll() is None:
        out, _ = holder.communicate("go\n", timeout=60)
        assert "released" in out


def _writer_waiting(folder: Path, name: str = ".env") -> bool:
    """A writer's temporary file for ``name`` is there: it waits to replace the file."""
    return any(re.fullmatch(rf"{re.escape(name)}\.[0-9a-f]+\.tmp", p.name) for p in folder.iterdir())


def _wait_for(condition: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_windows_refuses_to_replace_a_file_held_open(tmp_path: Path) -> None:
    """The premise: without a retry a writer fails here (WinError 5)."""
    path, new = tmp_path / ".env", tmp_path / "new"
    path.write_text("A=1\n")
    new.write_text("A=2\n")
    holder = _hold(path)
    try:
        with pytest.raises(PermissionError) as caught:
            os.replace(new, path)
        assert caught.value.winerror in (5, 32)
    finally:
        _release(holder)


def test_update_waits_for_another_process_to_let_go(tmp_path: Path) -> None:
    """Released only once the writer is seen waiting (its temporary file is there and .env is
    still the old one): the first replace was refused, and the writer went on after."""
    path = tmp_path / ".env"
    envfile.write_secure(path, b"# kept\r\nA=1\r\n", exclusive=True)
    holder = _hold(path)
    failed: list[BaseException] = []

    def update() -> None:
        try:
            envfile.update(path, {"A": "2"}, lock_timeout=300)
        except BaseException as exc:  # reported by the test
            failed.append(exc)

    writer = threading.Thread(target=update)
    writer.start()
    try:
        _wait_for(lambda: _writer_waiting(tmp_path) or not writer.is_alive(), "no writer waited")
        assert writer.is_alive() and path.read_bytes() == b"# kept\r\nA=1\r\n", failed
    finally:
        _release(holder)
        writer.join(300)
    assert failed == [] and path.read_bytes() == b"# kept\r\nA=2\r\n"
    assert list(tmp_path.glob(".env.*.tmp")) == []


def test_update_gives_up_within_the_lock_timeout_and_leaves_env_whole(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    envfile.write_secure(path, b"A=1\n", exclusive=True)
    holder = _hold(path)  # for as long as it takes: the writer must give up by itself
    try:
        with pytest.raises(EnvFileError, match="another program has held it open for over 1s") as caught:
            envfile.update(path, {"A": "2"}, lock_timeout=1)
        assert "\n" not in caught.value.message
    finally:
        _release(holder)
    assert path.read_bytes() == b"A=1\n"
    assert list(tmp_path.glob(".env.*.tmp")) == []


def test_keys_create_while_an_editor_holds_env(project: Project, litellm: Standin) -> None:
    holder = _hold(project.env)
    proc = project.start("keys.create")
    try:
        _wait_for(lambda: _writer_waiting(project.dir) or proc.poll() is not None,
                  "keys.create never came to write .env")
        assert proc.poll() is None, proc.communicate()
    finally:
        _release(holder)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert litellm.accepts(project.value("VIRTUAL_KEY"))


# --------------------------------------------------------------------------- Notepad


def test_env_saved_by_notepad_keeps_bom_and_crlf(project: Project, litellm: Standin) -> None:
    lines = project.env.read_text().splitlines()
    project.env.write_bytes(b"\xef\xbb\xbf# edited in Notepad\r\n" + "\r\n".join(lines).encode() + b"\r\n")
    perms.lock_down(project.env)
    before = project.env.read_bytes()
    done = project.run("keys.create")
    assert done.returncode == 0, done.stderr
    after = project.env.read_bytes()
    assert after.startswith(b"\xef\xbb\xbf# edited in Notepad\r\n")
    assert b"\n" not in after.replace(b"\r\n", b"")
    key = project.value("VIRTUAL_KEY")
    assert after == before.replace(b"VIRTUAL_KEY=\r\n", f"VIRTUAL_KEY={key}\r\n".encode()).replace(
        b"FIRST_RUN=yes", b"FIRST_RUN=no")
    assert perms.is_private(project.env)


# --------------------------------------------------------------------------- no Docker

NO_DOCKER_PATH = os.pathsep.join([os.environ.get("SystemRoot", r"C:\windows") + r"\system32",
                                  os.environ.get("SystemRoot", r"C:\windows")])


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("task", ["stack.start", "stack.status", "stack.stop"])
def test_stack_tasks_without_docker(project: Project, task: str) -> None:
    done = project.run(task, env={"PATH": NO_DOCKER_PATH})
    assert done.returncode == 10
    assert "docker command is not installed" in _one_error_line(done)


def test_stack_start_with_docker_desktop_stopped(project: Project, tmp_path: Path) -> None:
    """The docker CLI is there, its daemon's named pipe is not (Docker Desktop not running):
    the real docker SDK over the real (missing) pipe. The CLI is a .bat answering the one
    question asked of it (`docker context inspect`) as Docker Desktop's CLI does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker.bat").write_text(
        "@echo off\r\nif \"%1\"==\"context\" (echo npipe:////./pipe/docker_engine& exit /b 0)\r\n"
        "echo unexpected: %* 1>&2\r\nexit /b 1\r\n")
    done = project.run("stack.start", env={"PATH": os.pathsep.join([str(bin_dir), NO_DOCKER_PATH])})
    line = _one_error_line(done)
    assert done.returncode == 10
    assert "npipe:////./pipe/docker_engine" in line and "Docker Desktop" in line


def test_keys_tasks_over_the_host_port_without_docker(project: Project, litellm: Standin) -> None:
    env = {"PATH": NO_DOCKER_PATH}
    created = project.run("keys.create", env=env)
    assert created.returncode == 0, created.stderr
    listed = project.run("keys.list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rotated = project.run("keys.rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert litellm.accepts(project.value("VIRTUAL_KEY"))


def test_keys_tasks_when_litellm_is_down_and_no_docker(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / ".env", LITELLM_PORT="9")  # as the URL: no "note: using ..." line
    project = Project(tmp_path, env_file, "http://127.0.0.1:9")  # nothing listens on port 9
    done = project.run("keys.list", env={"PATH": NO_DOCKER_PATH})
    assert done.returncode == 4
    _one_error_line(done)


# --------------------------------------------------------------------------- NUL is not a terminal

NUL_PROBE = ("import sys; from tasks.cli import is_terminal; "
             "print(sys.stdin.isatty(), is_terminal(sys.stdin))")


def test_stdin_from_nul_is_not_a_terminal() -> None:
    """Windows' NUL device claims isatty(): a task reading from it must not prompt (and then
    die on EOF) but say that --yes is needed, as with /dev/null on POSIX."""
    done = subprocess.run([sys.executable, "-c", NUL_PROBE], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert done.stdout.split() == ["True", "False"], done.stderr
