"""No secret leaks from any task, no file mode wider than 0600 at any moment, and broken .env
files through the real command line: a clear error, never a traceback, the bytes untouched."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from tasks.envstore import envfile
from tests.support.envdata import BAD_FILES
from tests.support.project import MASTER, WINDOWS, Project, Standin, posix_symlinks, private
from tests.support.stack import CmdlineWatcher

SECRETS = ("LITELLM_MASTER_KEY", "POSTGRES_PASSWORD", "UI_PASSWORD", "WEBUI_SECRET_KEY",
           "WEBUI_ADMIN_PASSWORD", "VIRTUAL_KEY", "LITELLM_SALT_KEY")

# every keys and env task, on a success path and on a failure path
RUNS: list[tuple[list[str], str | None]] = [
    (["env.check"], None),
    (["env.check", "--json"], None),
    (["env.lock-permissions"], None),
    (["keys.create"], None),
    (["keys.create", "--json"], None),
    (["keys.list"], None),
    (["keys.list", "--json"], None),
    (["keys.rotate"], None),
    (["keys.rotate", "--json", "--grace", "1h"], None),
    (["keys.create", "--force"], None),
    (["keys.rotate"], "/key/generate"),
    (["keys.rotate"], "/key/delete"),  # after the switch: exit 9 names the new key, masked
    (["keys.list"], None),  # finishes it
    (["keys.create"], "/health/readiness"),
    (["keys.revoke", "--name", "open-webui", "--block", "--yes"], None),
    (["keys.revoke", "--name", "open-webui", "--yes"], None),
    (["keys.revoke", "--name", "open-webui", "--yes"], None),  # nothing left: an error
    (["env.init"], None),  # refuses: exists
    (["env.init", "--force"], None),
    (["keys.list"], None),  # the new master key is wrong for the stand-in: exit 5
]


def test_no_task_prints_or_passes_a_secret(project: Project, litellm: Standin) -> None:
    seen_secrets: set[str] = set()
    outputs = []
    with CmdlineWatcher(project.env) as watcher:
        for args, fault in RUNS:
            if fault:
                litellm.fault(fault, status=500, message="injected")
            values = envfile.load(project.env).values
            seen_secrets |= {values[n] for n in SECRETS if values.get(n)}
            done = project.run(*args)
            assert "Traceback" not in done.stderr, (args, done.stderr)
            outputs.append((args, done.returncode, done.stdout + done.stderr))
            values = envfile.load(project.env).values
            seen_secrets |= {values[n] for n in SECRETS if values.get(n)}
            with litellm.state.lock:
                litellm.state.faults.clear()
    assert {code for _, code, _ in outputs} >= {0, 3, 5, 7, 8, 9}, "success and failure paths"
    seen_secrets.add(MASTER)
    for args, _code, text in outputs:
        for secret in seen_secrets:
            assert secret not in text, f"{args} printed a secret"
    assert watcher.hits == set()
    assert watcher.scans > 0, "the process table was never read"
    print(f"\n{len(outputs)} task runs, {len(seen_secrets)} secrets looked for in their output "
          f"and in every process's arguments ({watcher.scans} scans): found 0")


def test_modes_never_widen_while_tasks_run(project: Project, litellm: Standin) -> None:
    """Watch every file in the folder while env.init, keys.create and keys.rotate write."""
    old = os.umask(0o022)  # a usual umask: new files would be 0644 if nothing took care
    wide: list[str] = []
    stop = threading.Event()
    scans = 0

    def watch() -> None:
        nonlocal scans
        while not stop.is_set():
            for entry in os.scandir(project.dir):
                if WINDOWS and entry.name.endswith(".lock"):
                    continue  # filelock's lock file there: empty, and removed after each use
                try:
                    mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                    # on Windows the DACL, read while the tasks write
                    open_to_others = (not private(Path(entry.path))) if WINDOWS else mode & 0o077
                except OSError:  # gone between listing and looking
                    continue
                if entry.is_file(follow_symlinks=False) and open_to_others:
                    wide.append(f"{entry.name} {mode:04o}")
            scans += 1
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    try:
        project.env.unlink()
        watcher.start()
        for args in (["env.init"], ["env.init", "--force"], ["keys.create"],
                     ["keys.rotate"], ["keys.rotate", "--grace", "1h"], ["keys.create", "--force"]):
            done = project.run(*args)
            assert done.returncode == 0, (args, done.stderr)
            if args[0] == "env.init":  # the stand-in's master key, for the keys tasks
                envfile.update(project.env, {"LITELLM_MASTER_KEY": MASTER})
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        os.umask(old)
    assert scans > 50
    assert wide == []


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_broken_env_files_through_the_command_line(project: Project, case: str) -> None:
    data, expected = BAD_FILES[case]
    project.env.write_bytes(data)
    for args in (["keys.create"], ["keys.rotate"], ["env.check"]):
        done = project.run(*args)
        assert done.returncode == 3, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert expected in done.stdout + done.stderr
        assert project.env.read_bytes() == data


@pytest.mark.parametrize("kind", ["directory", pytest.param("dangling symlink", marks=posix_symlinks),
                                  "missing"])
def test_no_env_file_through_the_command_line(project: Project, kind: str) -> None:
    project.env.unlink()
    if kind == "directory":
        project.env.mkdir()
    elif kind == "dangling symlink":
        project.env.symlink_to(project.dir / "gone.env")
    done = project.run("keys.create")
    assert done.returncode == 3
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert not (project.dir / "gone.env").exists()


@posix_symlinks
def test_a_symlinked_env_through_the_command_line(project: Project, litellm: Standin,
                                                  tmp_path: Path) -> None:
    real = tmp_path / "secrets" / "gateway.env"
    real.parent.mkdir()
    project.env.rename(real)
    project.env.symlink_to(real)
    done = project.run("keys.create")
    assert done.returncode == 0, done.stderr
    assert project.env.is_symlink()
    assert envfile.load(real).get("VIRTUAL_KEY").startswith("sk-")
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
