"""The rotation protocol's defects of issue 10, each input the issue quotes and its whole kind,
through the command line against the stand-in (fault injection; the real-proxy cases are in
tests/real/test_real_keys.py).

1. a grace period never lengthens the old key's life nor revives an expired or blocked key;
2. a request whose outcome is unknown (timeout, reset, Ctrl-C in flight) stays in the journal
   until a later keys task has looked for what it may have made;
3. requested models are checked against what LiteLLM serves and the team allows before anything
   is made, and the proof needs a served model;
4. the wording never claims a deleted key "is refused" (several workers cache keys);
5. ``keys.revoke`` with no selector revokes the key .env holds for the default consumer.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.support.project import (
    MASTER,
    MODELS,
    Project,
    Standin,
    outlive_litellm,
    start_rotation,
)

ALIAS = "Open WebUI Key"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def admin(litellm: Standin, path: str, body: dict[str, Any]) -> Any:
    """A call to the stand-in's admin API with the master key, as a person in LiteLLM's UI."""
    request = urllib.request.Request(
        f"{litellm.url}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def record(litellm: Standin, key: str) -> dict[str, Any]:
    [found] = [k for k in litellm.keys(include_deleted=True) if k["token"] == sha(key)]
    return found


def journal_exists(project: Project) -> bool:
    return (project.dir / ".env.keys-journal.json").exists()


def assert_healthy(project: Project, litellm: Standin) -> str:
    key = project.value("VIRTUAL_KEY")
    assert litellm.accepts(key), "the key in .env must work"
    active = litellm.active()
    assert [k["key_alias"] for k in active] == [ALIAS], active
    assert active[0]["token"] == sha(key)
    assert not journal_exists(project)
    return key


def one_error_line(stderr: str) -> str:
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr


# --------------------------------------------------------------------------- 1. grace


def test_grace_never_revives_an_expired_key(project: Project, litellm: Standin) -> None:
    """The issue's input: --duration 2s, wait 3 s (401), rotate --grace 1h."""
    assert project.run("keys.create", "--duration", "2s").returncode == 0
    old = project.value("VIRTUAL_KEY")
    deadline = time.monotonic() + 60
    while litellm.accepts(old):  # until LiteLLM refuses it: expired
        assert time.monotonic() < deadline, "a key accepted past its 2 s"
        time.sleep(0.05)
    done = project.run("keys.rotate", "--grace", "1h")
    assert done.returncode == 0, done.stderr
    assert "already expired or blocked, so no grace period applies" in done.stdout
    assert "keeps working" not in done.stdout
    assert not litellm.accepts(old), "the expired key must stay dead"
    assert not [r for r in litellm.requests("/key/update") if r["body"].get("duration")]
    assert record(litellm, old)["status"] == "deleted"
    assert_healthy(project, litellm)


def test_grace_never_unblocks_a_blocked_key(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    old = project.value("VIRTUAL_KEY")
    assert project.run("keys.revoke", "--block", "--yes").returncode == 0
    done = project.run("keys.rotate", "--grace", "1h")
    assert done.returncode == 0, done.stderr
    assert "no grace period applies" in done.stdout
    assert not litellm.accepts(old)
    assert_healthy(project, litellm)


def test_grace_never_lengthens_a_key_that_expires_sooner(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create", "--duration", "1h").returncode == 0
    old = project.value("VIRTUAL_KEY")
    expires = record(litellm, old)["expires"]
    done = project.run("keys.rotate", "--grace", "7d")
    assert done.returncode == 0, done.stderr
    assert "sooner than --grace 7d; its expiry is unchanged" in done.stdout
    info = record(litellm, old)
    assert info["expires"] == expires and info["key_alias"] != ALIAS
    assert litellm.accepts(old)
    assert not [r for r in litellm.requests("/key/update") if r["body"].get("duration")]


def test_grace_shortens_a_longer_life_to_now_plus_grace(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create", "--duration", "30d").returncode == 0
    old = project.value("VIRTUAL_KEY")
    done = project.run("keys.rotate", "--grace", "1h", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["old_key"] == "expires"
    left = datetime.fromisoformat(record(litellm, old)["expires"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
    assert litellm.accepts(old)


def test_grace_on_a_key_without_expiry(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    old = project.value("VIRTUAL_KEY")
    done = project.run("keys.rotate", "--grace", "2h")
    assert done.returncode == 0, done.stderr
    assert "the old key keeps working until" in done.stdout and "(--grace 2h)" in done.stdout
    left = datetime.fromisoformat(record(litellm, old)["expires"]) - datetime.now(timezone.utc)
    assert timedelta(hours=1, minutes=59) < left <= timedelta(hours=2)


# --------------------------------------------------------------------------- 2. unknown outcome


def wait_for_pending(litellm: Standin, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pending = [k for k in litellm.active() if "[pending" in k["key_alias"]]
        if pending:
            return pending[0]
        assert time.monotonic() < deadline, "the slow /key/generate never stored its key"
        time.sleep(0.05)


def test_a_timed_out_generate_is_cleaned_up_by_the_next_task(project: Project, litellm: Standin) -> None:
    """The issue's input: gateway.timeout 1 s, a /key/generate that takes 3 s and stores its key."""
    assert project.run("keys.create").returncode == 0
    created = project.value("VIRTUAL_KEY")
    litellm.fault("/key/generate", mode="slow", delay=3)
    done = project.run("keys.rotate", env={"INVOKE_GATEWAY_TIMEOUT": "1"})
    assert done.returncode == 4, done.stderr
    err = one_error_line(done.stderr)
    assert "may have made a new key named 'Open WebUI Key [pending" in err
    assert "the keys tasks (e.g. `invoke keys.list`) delete it" in err
    assert ".env and the old key are unchanged" in err
    assert "nothing was created" not in err
    assert journal_exists(project), "the trace stays until a later task has made sure"
    pending = wait_for_pending(litellm)
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    assert "rolled back an interrupted rotation of 'open-webui': deleted the unfinished key" \
        in follow.stdout
    assert pending["token"] not in {k["token"] for k in litellm.active()}
    assert assert_healthy(project, litellm) == created


def test_a_timed_out_first_create_is_cleaned_up_and_retried(project: Project, litellm: Standin) -> None:
    litellm.fault("/key/generate", mode="slow", delay=3)
    done = project.run("keys.create", env={"INVOKE_GATEWAY_TIMEOUT": "1"})
    assert done.returncode == 4, done.stderr
    assert "may have made a new key" in one_error_line(done.stderr)
    assert project.value("VIRTUAL_KEY") == "" and project.value("FIRST_RUN") == "yes"
    wait_for_pending(litellm)
    again = project.run("keys.create")
    assert again.returncode == 0, again.stderr
    assert "rolled back an interrupted key creation" in again.stdout
    assert_healthy(project, litellm)


def test_a_reset_after_the_work_is_an_unknown_outcome(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    created = project.value("VIRTUAL_KEY")
    litellm.fault("/key/generate", mode="hang_after", delay=0.2)  # made, then the line drops
    done = project.run("keys.rotate")
    assert done.returncode == 4, done.stderr
    assert "may have made a new key" in one_error_line(done.stderr)
    assert journal_exists(project)
    assert [k for k in litellm.active() if "[pending" in k["key_alias"]]
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    assert assert_healthy(project, litellm) == created


def test_a_later_task_that_finds_nothing_drops_the_trace_once_litellm_is_done(
        project: Project, litellm: Standin) -> None:
    """Nothing found while LiteLLM may still be carrying the request out proves nothing: the
    journal waits; once LiteLLM's request timeout has passed, the next task drops it."""
    assert project.run("keys.create").returncode == 0
    created = project.value("VIRTUAL_KEY")
    litellm.fault("/key/generate", mode="held", delay=30)  # never released: dropped unmade
    done = project.run("keys.rotate", env={"INVOKE_GATEWAY_TIMEOUT": "1"})
    assert done.returncode == 4 and journal_exists(project), done.stderr
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    assert "LiteLLM may still make it" in follow.stdout and journal_exists(project)
    outlive_litellm(project)
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    assert "LiteLLM has no unfinished key of it" in follow.stdout
    assert assert_healthy(project, litellm) == created


def test_ctrl_c_while_generate_is_in_flight(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    created = project.value("VIRTUAL_KEY")
    seen = len(litellm.requests("/key/generate"))
    litellm.fault("/key/generate", mode="slow", delay=3)
    proc = project.start("keys.rotate")
    deadline = time.monotonic() + 20
    while len(litellm.requests("/key/generate")) == seen:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted while LiteLLM was making the new key" in err
    assert "may have made a new key named" in err and "Traceback" not in err
    assert journal_exists(project)
    wait_for_pending(litellm)
    follow = project.run("keys.list")
    assert follow.returncode == 0, follow.stderr
    assert "deleted the unfinished key" in follow.stdout
    assert assert_healthy(project, litellm) == created


@pytest.mark.parametrize("follow_up", [["keys.list"], ["keys.revoke", "--alias", "someone else", "--yes"]])
def test_any_task_that_finishes_a_rotation_hands_the_key_over_first(
        project: Project, litellm: Standin, follow_up: list[str]) -> None:
    """Killed after the switch, before the old key is deleted: the task that finishes the job
    (even keys.list or keys.revoke) gives Open WebUI the new key before the old one goes - here
    Open WebUI does not run, and the hand-over says so; no task may skip it."""
    assert project.run("keys.create").returncode == 0
    created = project.value("VIRTUAL_KEY")
    if follow_up[0] == "keys.revoke":
        admin(litellm, "/key/generate", {"key_alias": "someone else"})  # what it deletes
    proc = start_rotation(project, litellm, "/key/delete", "hang")
    proc.kill()
    proc.communicate(timeout=10)
    assert project.value("VIRTUAL_KEY") != created and journal_exists(project)
    follow = project.run(*follow_up)
    assert "finished an interrupted rotation" in follow.stdout, (follow.stdout, follow.stderr)
    assert "Open WebUI is not running; `invoke stack.start` hands it the new key" in follow.stdout
    assert_healthy(project, litellm)


@pytest.mark.parametrize("failure", [OSError(5, "Input/output error"), KeyboardInterrupt()],
                         ids=["folder fsync fails", "signal after the write"])
def test_a_failure_after_env_was_written_keeps_the_new_key(
        project: Project, litellm: Standin, monkeypatch: pytest.MonkeyPatch,
        failure: BaseException) -> None:
    """The switch fails after .env was replaced (its folder's fsync, a signal): .env holds the new
    key, so it must not be rolled back, and the message must not say .env is unchanged."""
    from tasks.base.errors import IncompleteError, Interrupted
    from tasks.clients.litellm import LiteLLM
    from tasks.config.settings import load_settings
    from tasks.envstore import envfile
    from tasks.virtualkeys.manager import KeyManager

    assert project.run("keys.create").returncode == 0
    created = project.value("VIRTUAL_KEY")
    real_fsync = envfile.fsync_path

    def fsync_then_fail(directory: Any) -> None:
        real_fsync(directory)
        if created not in project.env.read_text():  # .env already holds the new key
            raise failure

    settings = load_settings(None, env_file=str(project.env), url=litellm.url,
                             env_values=envfile.load(project.env).values)
    monkeypatch.setattr(envfile, "fsync_path", fsync_then_fail)
    with LiteLLM(litellm.url, MASTER) as client, pytest.raises((IncompleteError, Interrupted)) as err:
        KeyManager(settings, client).rotate(settings.key(None))
    monkeypatch.undo()
    held = project.value("VIRTUAL_KEY")
    assert held != created and litellm.accepts(held), "the key .env holds must work"
    assert "unchanged" not in err.value.message and "finish" in err.value.message
    assert err.value.exit_code == (9 if isinstance(failure, OSError) else 130)
    follow = project.run("keys.list")
    assert follow.returncode == 0 and "finished an interrupted rotation" in follow.stdout
    assert assert_healthy(project, litellm) == held


# --------------------------------------------------------------------------- 3. models


def assert_nothing_made(project: Project, litellm: Standin, before: bytes) -> None:
    assert project.env.read_bytes() == before
    assert not litellm.requests("/key/generate") and not litellm.requests("/team/new")
    assert not journal_exists(project)


def test_a_model_typo_is_a_usage_error_before_anything_is_made(project: Project, litellm: Standin) -> None:
    """The issue's input: --models gpt4o (a typo)."""
    before = project.env.read_bytes()
    done = project.run("keys.create", "--models", "gpt4o")
    assert done.returncode == 2, done.stderr
    err = one_error_line(done.stderr)
    assert "'gpt4o'" in err and all(m in err for m in MODELS)
    assert_nothing_made(project, litellm, before)
    assert project.value("FIRST_RUN") == "yes"


def test_every_unknown_model_is_named(project: Project, litellm: Standin) -> None:
    done = project.run("keys.create", "--models", "gpt-4o-mini,nope-1,nope-2")
    assert done.returncode == 2, done.stderr
    err = one_error_line(done.stderr)
    assert "'nope-1', 'nope-2'" in err and "'gpt-4o-mini'" not in err


def test_an_unknown_model_in_the_config(project: Project, litellm: Standin) -> None:
    config = project.dir / "invoke.json"
    config.write_text(json.dumps({"gateway": {"keys": {"open-webui": {"models": ["gpt4o"]}}}}))
    before = project.env.read_bytes()
    done = project.run("-f", str(config), "keys.create")
    assert done.returncode == 2 and "'gpt4o'" in one_error_line(done.stderr)
    assert_nothing_made(project, litellm, before)


def test_a_model_the_team_does_not_allow(project: Project, litellm: Standin) -> None:
    admin(litellm, "/team/new", {"team_id": "narrow", "team_alias": "Narrow", "models": ["claude-haiku"]})
    before = project.env.read_bytes()
    done = project.run("keys.create", "--team", "narrow", "--models", "llama-3")
    assert done.returncode == 2, done.stderr
    err = one_error_line(done.stderr)
    assert "team 'narrow' does not allow 'llama-3'" in err and "claude-haiku" in err
    assert project.env.read_bytes() == before and not litellm.requests("/key/generate")
    ok = project.run("keys.create", "--team", "narrow", "--models", "claude-haiku")
    assert ok.returncode == 0, ok.stderr


def test_a_rotation_whose_key_reaches_no_served_model_is_refused(project: Project, litellm: Standin) -> None:
    """A key restricted to a model LiteLLM no longer serves: /v1/models still lists that model
    (as the real proxy does), so only the comparison with what is served shows it."""
    made = admin(litellm, "/key/generate", {"key_alias": ALIAS, "team_id": "open-webui-team",
                                            "models": ["retired-model"]})
    project.env.write_text(project.read().replace("VIRTUAL_KEY=\n", f"VIRTUAL_KEY={made['key']}\n"))
    before = project.env.read_bytes()
    done = project.run("keys.rotate")
    assert done.returncode == 8, done.stderr
    err = one_error_line(done.stderr)
    assert "reaches none of the models LiteLLM serves" in err and "the new key was deleted" in err
    assert project.env.read_bytes() == before and not journal_exists(project)
    assert [k["token"] for k in litellm.active()] == [made["token"]]


# --------------------------------------------------------------------------- 4. wording


def test_rotate_and_revoke_never_claim_the_old_key_is_refused(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    rotated = project.run("keys.rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "deleted the old key in LiteLLM" in rotated.stdout and "cache TTL" in rotated.stdout
    revoked = project.run("keys.revoke", "--yes")
    assert revoked.returncode == 0, revoked.stderr
    for out in (rotated.stdout, revoked.stdout):
        assert "refused" not in out and "no longer works" not in out
    assert "cache TTL" in revoked.stdout


# --------------------------------------------------------------------------- 5. revoke default


def test_revoke_without_a_selector_revokes_the_default_key(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    key = project.value("VIRTUAL_KEY")
    done = project.run("keys.revoke", "--yes")
    assert done.returncode == 0, done.stderr
    assert f"sk-...{key[-4:]}" in done.stdout and "removed the key from VIRTUAL_KEY" in done.stdout
    assert project.value("VIRTUAL_KEY") == "" and not litellm.accepts(key)
    again = project.run("keys.revoke", "--yes")
    assert again.returncode == 8 and "holds no key" in one_error_line(again.stderr)


def test_revoke_after_a_lost_answer_clears_env(project: Project, litellm: Standin) -> None:
    """The delete went through but its answer was lost: the next revoke clears .env."""
    assert project.run("keys.create").returncode == 0
    key = project.value("VIRTUAL_KEY")
    litellm.fault("/key/delete", mode="hang_after", delay=0.2)
    first = project.run("keys.revoke", "--yes")
    assert first.returncode == 4, first.stderr
    assert not litellm.accepts(key) and project.value("VIRTUAL_KEY") == key
    second = project.run("keys.revoke", "--yes")
    assert second.returncode == 0, second.stderr
    assert "no longer had the key" in second.stdout and project.value("VIRTUAL_KEY") == ""
    assert "revoked" not in second.stdout  # LiteLLM revoked nothing this time: said as it was


def test_revoke_of_a_key_litellm_never_had_says_only_what_happened(project: Project,
                                                                   litellm: Standin) -> None:
    from tasks.envstore import envfile

    envfile.update(project.env, {"VIRTUAL_KEY": "sk-never-made-by-litellm-0123456789",
                                 "FIRST_RUN": "no"})
    done = project.run("keys.revoke", "--yes")
    assert done.returncode == 0, done.stderr
    assert "revoked" not in done.stdout, done.stdout
    assert "no longer had the key" in done.stdout and "removed the key from VIRTUAL_KEY" in done.stdout
    assert project.value("VIRTUAL_KEY") == ""
    done = project.run("keys.create", "--json")
    assert done.returncode == 0
    done = project.run("keys.revoke", "--yes", "--json")
    assert json.loads(done.stdout)["action"] == "revoked"


# --------------------------------------------------------------------------- rotate --all


def test_rotate_all_reports_each_failure_once(project: Project, litellm: Standin) -> None:
    config = project.dir / "invoke.json"
    config.write_text(json.dumps({"gateway": {"keys": {"continue-dev": {
        "env_var": "CONTINUE_DEV_KEY", "alias": "Continue.dev Key"}}}}))
    done = project.run("-f", str(config), "keys.rotate", "--all")
    assert done.returncode == 8, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), lines
    assert sum("open-webui" in line for line in lines) == 1
    assert sum("continue-dev" in line for line in lines) == 1


@pytest.mark.parametrize("flag", ["--name", "--alias"])
def test_revoke_selectors_still_pick_others(project: Project, litellm: Standin, flag: str) -> None:
    assert project.run("keys.create").returncode == 0
    value = "open-webui" if flag == "--name" else ALIAS
    done = project.run("keys.revoke", flag, value, "--yes")
    assert done.returncode == 0, done.stderr
    assert litellm.active() == []
