"""keys.rotate --older-than / --grace edge cases and rotate-master's sense of "ours", through the
command line against the stand-in (found by a new-user review; the happy paths run against the
real LiteLLM in tests/real/test_real_master.py)."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest

from tasks.envstore import envfile
from tasks.gateway.masterkey import MasterRotation
from tests.support.project import MASTER, Project, Standin

ALIAS = "Open WebUI Key"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.parametrize("args", [["--grace", "3000000d"], ["--grace", "10000000000000000000000s"],
                                  ["--older-than", "5000000000w"], ["--grace", ""],
                                  ["--older-than", ""], ["--older-than", " "]])
def test_bad_durations_change_nothing(project: Project, litellm: Standin, args: list[str]) -> None:
    assert project.run("keys.create").returncode == 0
    before = project.env.read_bytes()
    done = project.run("keys.rotate", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert project.env.read_bytes() == before and not (project.dir / ".env.keys-journal.json").exists()
    assert len(litellm.active()) == 1


@pytest.mark.parametrize("state", ["expired", "blocked"])
def test_a_dead_key_is_always_due(project: Project, litellm: Standin, state: str) -> None:
    assert project.run("keys.create").returncode == 0
    old = project.value("VIRTUAL_KEY")
    with litellm.state.lock:
        record = litellm.state.keys[sha(old)]
        if state == "expired":
            record["expires"] = "2000-01-01T00:00:00+00:00"
        else:
            record["blocked"] = True
    done = project.run("keys.rotate", "--older-than", "30d")
    assert done.returncode == 0, done.stderr
    assert "rotated" in done.stdout and project.value("VIRTUAL_KEY") != old
    assert litellm.accepts(project.value("VIRTUAL_KEY"))


def test_a_young_key_not_in_env_is_left_alone(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    envfile.update(project.env, {"VIRTUAL_KEY": ""})  # .env lost it; LiteLLM has it, seconds old
    done = project.run("keys.rotate", "--older-than", "30d", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["action"] == "skipped"
    assert [k["key_alias"] for k in litellm.active()] == [ALIAS], "the young key was not replaced"


def test_no_key_anywhere_is_said(project: Project, litellm: Standin) -> None:
    done = project.run("keys.rotate", "--older-than", "30d")
    assert done.returncode == 8 and "nothing to rotate" in done.stderr


def test_a_litellm_given_by_url_is_not_ours_even_beside_a_running_stack() -> None:
    running = SimpleNamespace(running_container=lambda service: object())
    for source, ours in (("LITELLM_PORT in .env", True), ("default", True), ("--url", False),
                         ("LITELLM_PROXY_URL", False), ("gateway.litellm_url", False)):
        gateway = SimpleNamespace(settings=SimpleNamespace(url_source=source),
                                  running_container=running.running_container)
        assert MasterRotation(gateway).ours() is ours, source  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", [{"restart": "no"}, [], {"old_sha256": "x"}, None,
                                   {"old_sha256": 1, "new_sha256": None, "started_at": "now",
                                    "restart": True}])
def test_a_malformed_master_journal_is_one_line(project: Project, entry: object) -> None:
    body = entry if not isinstance(entry, dict) or "old_sha256" in entry else {
        "old_sha256": "a", "new_sha256": "b", "started_at": "now", **entry}
    (project.dir / ".env.master-journal.json").write_text(json.dumps(body))
    done = project.run("keys.list")
    assert done.returncode == 3, done.stderr
    assert "cannot read the master-key journal" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["keys", "master"])
def test_a_journal_that_holds_null_is_not_taken_for_none(project: Project, name: str) -> None:
    """``null`` is no journal this project writes: it is refused, not read as "no journal"
    (``JournalFile.load``, which the upgrade and restore journals read through too)."""
    journal = project.dir / f".env.{name}-journal.json"
    journal.write_text("null")
    done = project.run("keys.list")
    assert done.returncode == 3, done.stderr
    assert "cannot read the" in done.stderr and "it holds null" in done.stderr
    assert journal.read_text() == "null"


def test_a_pending_rotation_never_starts_litellm_alone(project: Project, litellm: Standin) -> None:
    """A rotation killed after .env got the new key, then the stack stopped: the next keys task
    says to start the stack - it ran `docker compose up litellm` without its database."""
    import shutil
    import subprocess

    new = "sk-the-new-master-key-" + "x" * 24
    envfile.update(project.env, {"LITELLM_MASTER_KEY": new})
    journal = project.dir / ".env.master-journal.json"
    journal.write_text(json.dumps({"old_sha256": sha("sk-the-old-one"), "new_sha256": sha(new),
                                   "started_at": "2026-12-04T00:00:00+00:00", "restart": True}))
    before = project.env.read_bytes()
    done = project.run("keys.list")
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "start the stack (`invoke stack.start`" in done.stderr
    assert new not in done.stdout + done.stderr
    assert journal.exists() and project.env.read_bytes() == before
    if shutil.which("docker"):
        made = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="
                               + project.value("COMPOSE_PROJECT_NAME")],
                              capture_output=True, text=True, timeout=60)
        assert made.stdout.strip() == "", "no container was made"


NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def pending_rotation(project: Project, new: str, *, restart: bool) -> None:
    """.env holds ``new``: a rotation killed after step 2."""
    envfile.update(project.env, {"LITELLM_MASTER_KEY": new})
    (project.dir / ".env.master-journal.json").write_text(json.dumps({
        "old_sha256": sha("sk-the-old-master-key"), "new_sha256": sha(new),
        "started_at": "2026-12-04T00:00:00+00:00", "restart": restart}))


def test_a_rotation_finishes_without_docker_and_with_a_dead_virtual_key(
        project: Project, litellm: Standin) -> None:
    """LiteLLM elsewhere, restarted by hand with the new key, no Docker on this machine, and a
    virtual key in .env that LiteLLM no longer has: the rotation is proven and ends. Each of the
    last two made every keys task fail (exit 13, exit 7), so nothing could finish it."""
    pending_rotation(project, MASTER, restart=False)  # the stand-in runs with MASTER
    envfile.update(project.env, {"VIRTUAL_KEY": "sk-a-key-litellm-no-longer-has-0000"})
    done = project.run("keys.list", env=NO_DOCKER)
    assert done.returncode == 0, done.stderr
    assert "finished an interrupted master-key rotation" in done.stdout
    assert "VIRTUAL_KEY not checked: LiteLLM has its key as missing" in done.stdout
    assert "Open WebUI not checked: cannot tell whether Open WebUI runs" in done.stdout
    assert not (project.dir / ".env.master-journal.json").exists()


def test_a_pending_rotation_without_docker_says_docker(project: Project, litellm: Standin) -> None:
    """LiteLLM must restart with the new key and Docker cannot be asked: exit 10 (Docker), not
    "LiteLLM is not running" (exit 4), whose advice - stack.start - fails the same way."""
    pending_rotation(project, "sk-the-new-master-key-" + "y" * 24, restart=True)
    done = project.run("keys.list", env=NO_DOCKER)
    assert done.returncode == 10, done.stderr
    assert done.stderr.count("\n") == 1 and (project.dir / ".env.master-journal.json").exists()
