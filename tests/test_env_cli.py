"""env.* through the real command line (the Windows ACL code: tests/test_perms.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks import envfile
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
