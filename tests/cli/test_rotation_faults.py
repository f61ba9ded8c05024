"""Rotation under failure: each step failing in turn, SIGKILL and Ctrl-C between steps.

The invariant after every case, once the next keys task has run: .env holds a key the stand-in
accepts, exactly one active key carries the alias, no pending key is left, the journal is gone.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tasks.base.errors import EnvFileError, GatewayError, IncompleteError
from tasks.clients.litellm import LiteLLM
from tasks.config.settings import load_settings
from tasks.envstore import envfile
from tasks.virtualkeys import manager, rotation
from tests.support.project import (
    MASTER,
    WINDOWS,
    Project,
    Standin,
    outlive_litellm,
    start_rotation,
)

#: Ctrl-C and SIGTERM are POSIX signals one process sends another. On Windows Ctrl-C is a console
#: event (GenerateConsoleCtrlEvent needs a shared console; Wine gives none) and
#: Popen.send_signal(SIGTERM) is TerminateProcess - the kills above cover that case there.
posix_signals = pytest.mark.skipif(WINDOWS, reason="POSIX signals: Ctrl-C is a console event on "
                                   "Windows and SIGTERM is TerminateProcess (covered as a kill)")

ALIAS = "Open WebUI Key"


def journal(project: Project) -> Path:
    return project.dir / ".env.keys-journal.json"


def settle(project: Project, follow: subprocess.CompletedProcess[str], path: str, mode: str
           ) -> None:
    """After the keys task that follows a kill: a ``/key/generate`` sent and never answered,
    with no key made (yet), stays unknown - the journal waits - until LiteLLM's request
    timeout has passed; then the next task drops it."""
    if (path, mode) != ("/key/generate", "hang"):
        return
    assert "LiteLLM may still make it" in follow.stdout, follow.stdout
    assert journal(project).exists()
    outlive_litellm(project)
    again = project.run("keys.list")
    assert again.returncode == 0, again.stderr
    assert "LiteLLM has no unfinished key of it" in again.stdout


def assert_healthy(project: Project, litellm: Standin) -> str:
    key = project.value("VIRTUAL_KEY")
    assert litellm.accepts(key), "the key in .env must work"
    active = litellm.active()
    assert [k["key_alias"] for k in active] == [ALIAS], active
    assert active[0]["token"] == hashlib.sha256(key.encode()).hexdigest()
    assert not journal(project).exists()
    return key


@pytest.fixture
def created(project: Project, litellm: Standin) -> str:
    done = project.run("keys.create")
    assert done.returncode == 0, done.stderr
    return project.value("VIRTUAL_KEY")


# --------------------------------------------------------------------------- HTTP failures


@pytest.mark.parametrize(
    ("path", "skip"),
    [("/key/info", 0), ("/team/info", 0), ("/key/generate", 0), ("/v1/models", 0)],
)
def test_failure_before_the_switch_changes_nothing(
    project: Project, litellm: Standin, created: str, path: str, skip: int
) -> None:
    before = project.env.read_bytes()
    litellm.fault(path, status=500, message="injected", skip=skip)
    done = project.run("keys.rotate")
    assert done.returncode == 7, done.stderr
    assert done.stderr.count("\n") == 1 and "injected" in done.stderr
    assert project.env.read_bytes() == before
    assert assert_healthy(project, litellm) == created


def test_new_key_that_does_not_work_is_deleted(project: Project, litellm: Standin, created: str) -> None:
    # skip=1: the first /v1/models (with the master key) asks what LiteLLM serves
    litellm.fault("/v1/models", status=401, message="Authentication Error, Invalid API key provided.",
                  skip=1)
    done = project.run("keys.rotate")
    assert done.returncode == 7
    assert "the new key does not work" in done.stderr and "the new key was deleted" in done.stderr
    assert assert_healthy(project, litellm) == created
    assert len(litellm.keys(include_deleted=True)) == 2  # made, proven broken, deleted


@pytest.mark.parametrize("path", ["/key/delete", "/key/update"])
def test_failure_after_the_switch_is_finished_by_the_next_task(
    project: Project, litellm: Standin, created: str, path: str
) -> None:
    litellm.fault(path, status=500, message="injected")
    done = project.run("keys.rotate")
    assert done.returncode == 9, done.stderr
    assert "holds the new working key" in done.stderr and "to finish" in done.stderr
    new = project.value("VIRTUAL_KEY")
    assert new != created and litellm.accepts(new)
    assert journal(project).exists()
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    assert "finished an interrupted rotation of 'open-webui'" in follow.stdout
    assert assert_healthy(project, litellm) == new
    assert not litellm.accepts(created)


def key_manager(project: Project, litellm: Standin) -> manager.KeyManager:
    settings = load_settings(None, env_file=str(project.env), url=litellm.url,
                             env_values=envfile.load(project.env).values)
    return manager.KeyManager(settings, LiteLLM(litellm.url, MASTER, timeout=5))


def test_env_write_failure_rolls_back(
    project: Project, litellm: Standin, created: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = key_manager(project, litellm)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise EnvFileError("cannot write .env: No space left on device")

    monkeypatch.setattr(envfile, "update", full_disk)
    with pytest.raises(EnvFileError, match="No space left.*the new key was deleted"):
        keys.rotate(keys.settings.key(None))
    monkeypatch.undo()
    assert assert_healthy(project, litellm) == created


def test_consumer_failure_keeps_the_old_key(project: Project, litellm: Standin, created: str) -> None:
    calls: list[str] = []

    def consumer(spec: object, key: str) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise GatewayError("Open WebUI did not take the key")

    keys = key_manager(project, litellm)
    keys.consumer = consumer
    with pytest.raises(IncompleteError, match="Open WebUI did not take the key"):
        keys.rotate(keys.settings.key(None))
    assert litellm.accepts(created), "the consumer still uses the old key: it must keep working"
    notes = keys.recover_locked()
    assert notes and "finished" in notes[0]
    assert calls[0] == calls[1] == project.value("VIRTUAL_KEY")
    assert assert_healthy(project, litellm) != created


def test_journal_write_failure_creates_nothing(
    project: Project, litellm: Standin, created: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = key_manager(project, litellm)

    def refuse(*args: object, **kwargs: object) -> None:
        raise EnvFileError("cannot write the journal")

    monkeypatch.setattr(rotation.Journal, "put", refuse)
    with pytest.raises(EnvFileError, match="nothing was created"):
        keys.rotate(keys.settings.key(None))
    monkeypatch.undo()
    assert litellm.requests("/key/generate")[-1:] and len(litellm.keys(include_deleted=True)) == 1
    assert assert_healthy(project, litellm) == created


# --------------------------------------------------------------------------- kills and Ctrl-C

# (path to freeze at, fault mode, whether .env has the new key by then)
STEPS = [
    ("/key/info", "hang", False),
    ("/team/info", "hang", False),
    ("/key/generate", "hang", False),  # request sent, key not made
    ("/key/generate", "hang_after", False),  # key made, answer lost
    ("/v1/models", "hang", False),  # key made and journaled, not proven
    ("/key/delete", "hang", True),  # switched, old key not yet deleted
    ("/key/update", "hang", True),  # old key deleted, new one not yet renamed
]


@pytest.mark.parametrize(("path", "mode", "switched"), STEPS)
def test_sigkill_at_each_step_is_repaired_by_the_next_task(
    project: Project, litellm: Standin, created: str, path: str, mode: str, switched: bool
) -> None:
    proc = start_rotation(project, litellm, path, mode)
    proc.kill()
    proc.communicate(timeout=60)
    held = project.value("VIRTUAL_KEY")
    assert (held != created) == switched
    assert litellm.accepts(held), "even right after a kill, .env holds a working key"
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    settle(project, follow, path, mode)
    key = assert_healthy(project, litellm)
    assert (key != created) == switched
    assert not [k for k in litellm.keys() if "[pending" in str(k["key_alias"])]


@posix_signals
@pytest.mark.parametrize(("path", "mode", "switched"), STEPS)
def test_ctrl_c_at_each_step(
    project: Project, litellm: Standin, created: str, path: str, mode: str, switched: bool
) -> None:
    proc = start_rotation(project, litellm, path, mode)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    if switched:
        assert "the next keys task finishes the job" in err
    elif path in ("/key/info", "/team/info"):
        assert err.strip() == "interrupted"
    else:
        assert ".env and the old key are unchanged" in err
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    settle(project, follow, path, mode)
    key = assert_healthy(project, litellm)
    assert (key != created) == switched


def test_a_create_killed_midway_is_rolled_back(project: Project, litellm: Standin) -> None:
    seen = len(litellm.requests("/v1/models")) + 1  # the first asks what LiteLLM serves
    litellm.fault("/v1/models", mode="hang", delay=20, skip=1)
    proc = project.start("keys.create")
    deadline = time.monotonic() + 60
    while len(litellm.requests("/v1/models")) <= seen:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "keys.create never reached the proof"
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    assert project.value("FIRST_RUN") == "yes" and project.value("VIRTUAL_KEY") == ""
    done = project.run("keys.create")
    assert done.returncode == 0, done.stderr
    assert "rolled back an interrupted key creation" in done.stdout
    assert_healthy(project, litellm)
    assert project.value("FIRST_RUN") == "no"


def test_concurrent_rotations_end_with_one_working_key(
    project: Project, litellm: Standin, created: str
) -> None:
    procs = [project.start("keys.rotate") for _ in range(8)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0] * 8, [p.communicate() for p in procs]
    assert_healthy(project, litellm)
    assert len(litellm.keys(include_deleted=True)) == 9


@posix_signals
def test_sigterm_unwinds_like_ctrl_c(project: Project, litellm: Standin, created: str) -> None:
    proc = start_rotation(project, litellm, "/v1/models", "hang")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "the new key was deleted" in err
    assert not journal(project).exists()
    assert assert_healthy(project, litellm) == created


# --------------------------------------------------------------------------- the kill race (issue 21)


def admin_key(litellm: Standin, alias: str, **body: object) -> dict[str, object]:
    with LiteLLM(litellm.url, MASTER, timeout=5) as client:
        return client.generate_key({"key_alias": alias, "team_id": "open-webui-team", **body})


@pytest.mark.parametrize("stop", ["kill", pytest.param("sigterm", marks=posix_signals)])
@pytest.mark.parametrize("follow_up", ["keys.list", "keys.rotate"])
def test_a_key_litellm_makes_after_the_kill_is_deleted_not_orphaned(
    project: Project, litellm: Standin, created: str, stop: str, follow_up: str
) -> None:
    """`keys.rotate & sleep 1; kill -TERM $!; keys.list`: LiteLLM carries out the /key/generate
    after the kill and after the next task looked. That task must not drop the journal (it
    did: an active `Open WebUI Key [pending <id>]` for good); the one after deletes the key.
    A rotation meanwhile is not held up by the waiting entry."""
    proc = start_rotation(project, litellm, "/key/generate", "held")
    if stop == "kill":
        proc.kill()
    else:
        proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=20)
    if stop == "sigterm":
        assert proc.returncode == 130 and "may have made a new key named" in err, err
    follow = project.run(follow_up)
    assert follow.returncode == 0, follow.stderr
    assert "LiteLLM may still make it" in follow.stdout and "rolled back" not in follow.stdout
    assert journal(project).exists()
    assert (project.value("VIRTUAL_KEY") != created) == (follow_up == "keys.rotate")
    litellm.release()  # LiteLLM finishes the request only now
    [orphan] = litellm.wait_for_pending()
    again = project.run("keys.list")
    assert again.returncode == 0, again.stderr
    assert ("rolled back an interrupted rotation of 'open-webui': deleted the unfinished key"
            in again.stdout)
    assert orphan["token"] not in {k["token"] for k in litellm.keys()}
    assert (assert_healthy(project, litellm) != created) == (follow_up == "keys.rotate")


@pytest.mark.parametrize("task", [["keys.list"], ["keys.rotate"], ["keys.create", "--force"],
                                  ["keys.revoke", "--alias", "Someone's Key", "--yes"]])
def test_every_keys_task_collects_unfinished_keys_no_env_holds(
    project: Project, litellm: Standin, created: str, task: list[str]
) -> None:
    """What a killed run of an earlier version left: `[pending ...]` keys of our aliases that no
    journal waits for and no .env holds. Every keys task deletes them, in one line; a key .env
    holds, or of an alias not ours, is left alone."""
    orphans = [admin_key(litellm, f"{ALIAS} [pending {txid}]") for txid in ("0badc0de", "7e57da7a")]
    theirs = admin_key(litellm, "Someone's Key [pending 12345678]")
    admin_key(litellm, "Someone's Key")
    held = admin_key(litellm, "Continue.dev Key [pending 5ca1ab1e]")
    envfile.update(project.env, {"SOME_OTHER_KEY": str(held["key"])})
    done = project.run(*task)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "unfinished key" in line]
    assert lines == [f"deleted 2 unfinished key(s) in LiteLLM that an interrupted run made and no "
                     f".env holds: '{ALIAS} [pending 0badc0de]', '{ALIAS} [pending 7e57da7a]'"]
    left = {k["token"] for k in litellm.keys()}
    assert not {str(o["token"]) for o in orphans} & left
    assert {theirs["token"], held["token"]} <= left
    assert not journal(project).exists()
    again = project.run("keys.list")
    assert "unfinished" not in again.stdout, "said once, when it was done"


def test_a_key_a_journal_still_waits_for_is_not_collected(
    project: Project, litellm: Standin, created: str
) -> None:
    """The collector leaves a pending key a journal entry waits for (its own run may yet need
    it); recovery decides about it."""
    keys = key_manager(project, litellm)
    entry = rotation.journal_intent(keys.run, keys.settings.key(None), "rotate", None, None)
    made = admin_key(litellm, entry.pending_alias)
    assert rotation.leftovers(keys.run, keys.settings.keys, keys.client.list_keys()) == []
    keys.journal.drop(entry.slot)
    assert [k["token"] for k in rotation.leftovers(keys.run, keys.settings.keys,
                                                   keys.client.list_keys())] == [made["token"]]
