"""env.* through the real command line (the Windows ACL code: tests/unit/test_perms.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tasks.envstore import envfile
from tests.support.project import REPO, WINDOWS, Project, Standin, make_public, private


def example_values() -> dict[str, str]:
    return envfile.load(REPO / ".env.example").values


def test_init_writes_a_private_env_with_strong_secrets(project: Project) -> None:
    project.env.unlink()
    done = project.run("env.init")
    assert done.returncode == 0, done.stderr
    assert private(project.env)
    values = envfile.load(project.env).values
    assert values["LITELLM_MASTER_KEY"].startswith("sk-")
    assert len(values["LITELLM_MASTER_KEY"]) >= 3 + 43  # 32 random bytes, url-safe
    for name in ("POSTGRES_PASSWORD", "UI_PASSWORD", "WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD",
                 "LITELLM_SALT_KEY"):
        assert len(values[name]) >= 16, name
        assert values[name] not in done.stdout + done.stderr
    assert values["FIRST_RUN"] == "yes" and values["VIRTUAL_KEY"] == ""
    assert values["WEBUI_ADMIN_EMAIL"] == example_values()["WEBUI_ADMIN_EMAIL"]
    # every comment of the template survives
    template = (REPO / ".env.example").read_text().splitlines()
    assert [line for line in template if line.startswith("#")] == [
        line for line in project.read().splitlines() if line.startswith("#")
    ]
    assert "LITELLM_MASTER_KEY" in done.stdout  # names only
    assert values["LITELLM_MASTER_KEY"] not in done.stdout


def test_init_twice_gives_different_secrets(project: Project, tmp_path: Path) -> None:
    other = tmp_path / "second.env"
    project.env.unlink()
    assert project.run("env.init").returncode == 0
    assert project.run("env.init", "--env-file", str(other)).returncode == 0
    a, b = envfile.load(project.env).values, envfile.load(other).values
    assert a["LITELLM_MASTER_KEY"] != b["LITELLM_MASTER_KEY"]


def test_init_refuses_to_replace(project: Project) -> None:
    before = project.env.read_bytes()
    done = project.run("env.init")
    assert done.returncode == 3
    assert "already exists" in done.stderr and "--force" in done.stderr
    assert project.env.read_bytes() == before


def test_init_force_keeps_a_private_backup(project: Project) -> None:
    before = project.env.read_bytes()
    done = project.run("env.init", "--force")
    assert done.returncode == 0, done.stderr
    [backup] = project.dir.glob(".env.backup.*")
    assert backup.read_bytes() == before
    assert private(backup)
    assert project.env.read_bytes() != before


def test_init_and_check_agree(project: Project) -> None:
    project.env.unlink()
    assert project.run("env.init").returncode == 0
    report = project.json("env.check")
    assert report["ok"] is True, report
    assert report["errors"] == 0


def run_check(project: Project) -> tuple[int, dict[str, object]]:
    done = project.run("env.check", "--json")
    return done.returncode, json.loads(done.stdout)


def messages(report: dict[str, object], level: str = "error") -> str:
    findings = report["findings"]
    assert isinstance(findings, list)
    return " | ".join(f["message"] for f in findings if f["level"] == level)


def test_check_passes_a_good_file(project: Project) -> None:
    code, report = run_check(project)
    assert code == 0 and report["ok"] is True


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"LITELLM_MASTER_KEY": "no-prefix-key-1234567890"}, "must start with 'sk-'"),
        ({"LITELLM_MASTER_KEY": "sk-1234"}, "known default"),
        ({"POSTGRES_PASSWORD": ""}, "POSTGRES_PASSWORD is missing or empty"),
        ({"UI_PASSWORD": "changeme"}, "UI_PASSWORD still holds a placeholder"),
        ({"WEBUI_SECRET_KEY": "<your secret>"}, "WEBUI_SECRET_KEY still holds a placeholder"),
        ({"UI_PASSWORD": "short"}, "shorter than 8"),
        ({"WEBUI_PORT": "4000", "LITELLM_PORT": "4000"}, "must differ"),
        ({"LITELLM_PORT": "99999"}, "port number"),
        # unset, WEBUI_PORT is Compose's default 3000: the same port
        ({"LITELLM_PORT": "3000", "WEBUI_PORT": ""}, "must differ"),
        # digits Python's str.isdigit() accepts, but no port: one line, never a traceback
        ({"LITELLM_PORT": "\u00b2"}, "LITELLM_PORT must be a port number"),
        ({"WEBUI_PORT": "\uff14\uff10\uff10\uff10"}, "WEBUI_PORT must be a port number"),
        # a space inside quotes: Compose refuses it ("invalid hostPort"), so must the tasks
        ({"LITELLM_PORT": " 4000"}, "LITELLM_PORT must be a port number"),
        ({"WEBUI_ADMIN_EMAIL": "admin"}, "not an e-mail"),
        ({"FIRST_RUN": "no"}, "VIRTUAL_KEY is empty and FIRST_RUN is not yes"),
        ({"VIRTUAL_KEY": "not-a-key"}, "VIRTUAL_KEY must start with 'sk-'"),
    ],
)
def test_check_finds_problems(project: Project, changes: dict[str, str], expected: str) -> None:
    envfile.update(project.env, changes)
    code, report = run_check(project)
    assert code == 3
    assert expected in messages(report)


def test_ports_unset_in_env_come_from_the_environment_as_compose_reads_them(
        project: Project, litellm: Standin) -> None:
    """Compose publishes a port the shell exports when .env does not set it: the tasks read it
    the same way - env.check checks it, and the keys tasks find LiteLLM there."""
    text = project.env.read_text()
    project.env.write_text("".join(line for line in text.splitlines(keepends=True)
                                   if not line.startswith(("LITELLM_PORT=", "WEBUI_PORT="))))
    done = project.run("env.check", "--json", env={"WEBUI_PORT": "abc"})
    assert done.returncode == 3
    assert "WEBUI_PORT (from the environment) must be a port number" in messages(
        json.loads(done.stdout))
    port = litellm.url.rsplit(":", 1)[1]
    done = project.run("keys.list", env={"LITELLM_PORT": port, "LITELLM_PROXY_URL": ""})
    assert done.returncode == 0, done.stderr
    done = project.run("keys.list", env={"LITELLM_PORT": "0", "LITELLM_PROXY_URL": ""})
    assert done.returncode == 3 and "LITELLM_PORT (environment) must be a port number" in done.stderr


def test_check_mode(project: Project) -> None:
    code, report = run_check(project)
    assert "readable by you alone" in messages(report, "ok")
    make_public(project.env)
    code, report = run_check(project)
    found = "Everyone: others can read it" if WINDOWS else "mode 0644: others can read it"
    assert code == 3 and found in messages(report)


def test_check_malformed(project: Project) -> None:
    project.env.write_text("A=1\nA=2\n")
    done = project.run("env.check")
    assert done.returncode == 3
    assert "A is set twice" in done.stdout


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None,
                    reason="no git on PATH (the Windows CPython under Wine has none)")
def test_check_git(project: Project) -> None:
    git(project.dir, "init", "-q")
    code, report = run_check(project)
    assert code == 3 and "not ignored by git" in messages(report)
    (project.dir / ".gitignore").write_text(".env\n")
    code, report = run_check(project)
    assert code == 0, report
    git(project.dir, "add", "-f", ".env")
    code, report = run_check(project)
    assert code == 3 and "git tracks .env" in messages(report)


def test_check_human_output(project: Project) -> None:
    envfile.update(project.env, {"FIRST_RUN": "maybe"})
    done = project.run("env.check")
    assert "warn   gate" in done.stdout and "counts as no" in done.stdout
    assert done.stdout.strip().splitlines()[-1].endswith("warning(s)")


def test_lock_permissions(project: Project) -> None:
    make_public(project.env)
    done = project.run("env.lock-permissions")
    assert done.returncode == 0, done.stderr
    if WINDOWS:  # the accounts the DACL allows, read back through the Windows API
        before, after = done.stdout.split(": was ", 1)[1].split(", now ")
        assert "Everyone" in before and "Everyone" not in after
    else:
        assert "was 0644, now 0600" in done.stdout
    assert private(project.env)
    again = project.run("env.lock-permissions")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert WINDOWS or "already 0600; nothing to do" in again.stdout


def test_lock_permissions_without_a_file(project: Project) -> None:
    project.env.unlink()
    done = project.run("env.lock-permissions")
    assert done.returncode == 3 and "env.init" in done.stderr


# --------------------------------------------------------------------------- the real cause


def test_init_force_on_an_immutable_env_says_immutable(project: Project, file_attribute: Any) -> None:
    """`chattr +i .env`: said as what it is at once, not as Windows' "held it open" text."""
    before = project.env.read_bytes()
    file_attribute(project.env, "+i")
    done = project.run("env.init", "--force")
    assert done.returncode == 3, done.stderr
    assert f"{project.env} is immutable" in done.stderr, done.stderr
    assert f"sudo chattr -i {project.env}" in done.stderr
    assert "held it open" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert project.env.read_bytes() == before


def test_keys_create_on_an_immutable_env_says_immutable(project: Project, litellm: Standin,
                                                        file_attribute: Any) -> None:
    before = project.env.read_bytes()
    file_attribute(project.env, "+i")
    done = project.run("keys.create")
    assert done.returncode == 3, done.stderr
    assert f"{project.env} is immutable" in done.stderr and "held it open" not in done.stderr
    assert project.env.read_bytes() == before
    assert litellm.active() == [], "a key .env cannot hold was left active"


def test_lock_permissions_on_an_immutable_env_says_immutable(project: Project,
                                                             file_attribute: Any) -> None:
    make_public(project.env)
    file_attribute(project.env, "+i")
    done = project.run("env.lock-permissions")
    assert done.returncode == 3
    assert "it is immutable" in done.stderr and "not its owner" not in done.stderr, done.stderr


posix_pipes = pytest.mark.skipif(WINDOWS, reason="POSIX pipes: process substitution, /dev/fd and "
                                 "FIFOs (Windows has none)")


def run_piped(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """``invoke <args> --env-file /dev/fd/N``, N a pipe holding the project's .env, as
    ``--env-file <(sops -d .env.enc)`` gives it."""
    read, write = os.pipe()
    try:
        os.write(write, project.env.read_bytes())
        os.close(write)
        return project.run(*args, "--env-file", f"/dev/fd/{read}", pass_fds=(read,))
    finally:
        os.close(read)


@pytest.mark.skipif(WINDOWS or shutil.which("bash") is None,
                    reason="POSIX pipes: process substitution needs bash (Windows has none)")
def test_process_substitution_as_a_shell_gives_it(project: Project, litellm: Standin) -> None:
    """The input as quoted: `invoke keys.list --env-file <(sops -d .env.enc)` (here `cat`)."""
    script = 'exec "$0" -m invoke -r "$1" keys.list --env-file <(cat "$2")'
    done = subprocess.run(["bash", "-c", script, sys.executable, str(REPO), str(project.env)],
                          cwd=project.dir, env=project.environ(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "0 key(s)" in done.stdout and "symlink" not in done.stderr


@posix_pipes
def test_read_only_tasks_read_a_pipe(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    done = run_piped(project, "keys.list")
    assert done.returncode == 0, done.stderr
    assert "VIRTUAL_KEY" in done.stdout and "1 key(s)" in done.stdout
    check = run_piped(project, "env.check", "--json")
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["ok"] is True, report
    assert "is a pipe, which gives its text once" in messages(report, "ok")


@posix_pipes
@pytest.mark.parametrize("task", [
    ("keys.create",), ("keys.rotate",), ("keys.revoke", "--name", "open-webui"),
    ("keys.rotate-master", "--yes"), ("env.init", "--force"), ("env.lock-permissions",),
])
def test_tasks_that_write_refuse_a_pipe_before_anything(project: Project, litellm: Standin,
                                                         task: tuple[str, ...]) -> None:
    done = run_piped(project, *task)
    assert done.returncode == 3, done.stderr
    assert "it is a pipe" in done.stderr and "can be read but not written" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "symlink" not in done.stderr
    assert litellm.requests() == []


@posix_pipes
@pytest.mark.parametrize("task", ["stack.status", "stack.start", "stack.stop"])
def test_stack_tasks_refuse_a_pipe_compose_cannot_read(project: Project, task: str) -> None:
    done = run_piped(project, task)
    assert done.returncode == 3, done.stderr
    assert "is a pipe" in done.stderr and "docker compose, which reads it again" in done.stderr


@posix_pipes
def test_keys_list_reads_a_fifo(project: Project, litellm: Standin, tmp_path: Path) -> None:
    fifo = tmp_path / "decrypted.env"
    os.mkfifo(fifo, 0o600)
    text = project.env.read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as handle:
            handle.write(text)

    feeder = threading.Thread(target=feed)
    feeder.start()
    done = project.run("keys.list", "--env-file", str(fifo))
    feeder.join(30)
    assert done.returncode == 0, done.stderr
    assert "0 key(s)" in done.stdout
