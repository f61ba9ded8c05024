"""The command line itself: every task listed, every flag documented, one namespace everywhere."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import tasks
from tests.support.project import REPO

TASKS = ["env.check", "env.init", "env.lock-permissions",
         "keys.create", "keys.list", "keys.revoke", "keys.rotate",
         "stack.logs", "stack.restart", "stack.start", "stack.status", "stack.stop"]


def run(*args: str, module: str = "invoke") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_invoke_list_shows_every_task_with_help() -> None:
    done = run("--list")
    assert done.returncode == 0, done.stderr
    for name in TASKS:
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(name))
        assert len(line.split(maxsplit=1)) == 2, f"{name} has no one-line help"


def test_python_m_tasks_sees_the_same_collections() -> None:
    done = run("--list", module="tasks")
    assert done.returncode == 0, done.stderr
    for name in TASKS:
        assert name in done.stdout


def test_plain_import_finds_the_package() -> None:
    assert hasattr(tasks, "ns")
    assert sorted(tasks.ns.collections) == ["env", "keys", "stack"]


@pytest.mark.parametrize("name", TASKS)
def test_every_flag_is_documented(name: str) -> None:
    collection, task_name = name.split(".")
    task = tasks.ns.collections[collection][task_name]
    params = [p for p in inspect.signature(task.body).parameters if p != "c"]
    for param in params:
        assert param.replace("_", "-") in task.help or param in task.help, f"{name} --{param}"
    done = run("--help", name)
    assert done.returncode == 0
    for param in params:
        flag = param.replace("_", "-")
        assert f"--{flag}" in done.stdout or f"--[no-]{flag}" in done.stdout


def test_importing_the_tasks_is_cheap() -> None:
    code = "import sys, tasks; print(sorted(m for m in ('httpx', 'docker') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "[]", "httpx and docker load only when a task needs them"


def test_the_readme_documents_every_exit_code() -> None:
    from tasks.base.errors import EXIT_CODES

    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Exit codes"):readme.index("## Secrets")]
    documented = {int(line.split("|")[1]) for line in table.splitlines()
                  if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert documented == set(EXIT_CODES)
