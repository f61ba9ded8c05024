"""keys.* through the real command line (``python -m invoke`` processes) against the stand-in."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import sys
from pathlib import Path

import pytest

from tests.support.project import MASTER, Project, Standin, private, two_key_config

ALIAS = "Open WebUI Key"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def no_secrets(done: object, *secrets: str) -> None:
    text = f"{getattr(done, 'stdout', '')}{getattr(done, 'stderr', '')}"
    for secret in (MASTER, *secrets):
        if secret:
            assert secret not in text


def one_line_error(done: object) -> str:
    err = str(getattr(done, "stderr", "")).strip()
    assert err.startswith("error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- create


def test_create_first_run(project: Project, litellm: Standin) -> None:
    done = project.run("keys.create")
    assert done.returncode == 0, done.stderr
    key = project.value("VIRTUAL_KEY")
    assert key.startswith("sk-") and litellm.accepts(key)
    assert project.value("FIRST_RUN") == "no"
    [record] = litellm.active()
    assert record["key_alias"] == ALIAS and record["team_id"] == "open-webui-team"
    assert record["metadata"]["managed_by"] == "ai-gateway-tasks"
    assert litellm.state.teams["open-webui-team"]["team_alias"] == "Open WebUI Team"
    assert f"sk-...{key[-4:]}" in done.stdout
    no_secrets(done, key)
    assert private(project.env)


def test_create_is_idempotent(project: Project, litellm: Standin) -> None:
    assert project.run("keys.create").returncode == 0
    before = project.read()
    generated = len(litellm.requests("/key/generate"))
    done = project.run("keys.create")
    assert done.returncode == 0
    assert "already holds an active key; nothing to do" in done.stdout
    assert project.read() == before
    assert len(litellm.requests("/key/generate")) == generated


def test_create_force_replaces_safely(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    old = project.value("VIRTUAL_KEY")
    done = project.run("keys.create", "--force", "--models", "gpt-4o-mini")
    assert done.returncode == 0, done.stderr
    new = project.value("VIRTUAL_KEY")
    assert new != old and litellm.accepts(new) and not litellm.accepts(old)
    [record] = litellm.active(ALIAS)
    assert record["models"] == ["gpt-4o-mini"]


def test_create_force_says_the_old_key_was_deleted(project: Project, litellm: Standin) -> None:
    first = project.run("keys.create")
    assert first.returncode == 0, first.stderr
    assert "old key" not in first.stdout, "nothing was replaced"
    old = project.value("VIRTUAL_KEY")
    done = project.run("keys.create", "--force")
    assert done.returncode == 0, done.stderr
    assert not litellm.accepts(old)
    said = [line for line in done.stdout.splitlines() if "old key" in line]
    assert len(said) == 1 and said[0].startswith("deleted the old key in LiteLLM"), done.stdout


def test_create_reports_the_fallback_alias_the_key_got(project: Project, litellm: Standin) -> None:
    """Another key holds the alias: the new key is named `Open WebUI Key (<id>)`, and that is
    the alias the task reports (it said `created 'Open WebUI Key'`)."""
    assert project.run("keys.create").returncode == 0
    from tasks.clients.litellm import LiteLLM
    from tasks.envstore import envfile
    for flags in ([], ["--json"]):
        with LiteLLM(litellm.url, MASTER) as c:
            nameless = c.generate_key({"team_id": "open-webui-team"})
        envfile.update(project.env, {"VIRTUAL_KEY": nameless["key"]})
        done = project.run("keys.create", "--force", *flags)
        assert done.returncode == 0, done.stderr
        [record] = [k for k in litellm.active() if k["token"] == sha(project.value("VIRTUAL_KEY"))]
        alias = record["key_alias"]
        assert alias.startswith(f"{ALIAS} (") and alias != ALIAS
        if flags:
            assert json.loads(done.stdout)["alias"] == alias
        else:
            assert f"created {alias!r} for open-webui: " in done.stdout, done.stdout


def test_create_with_every_flag(project: Project, litellm: Standin) -> None:
    done = project.run("keys.create", "--alias", "Chat Key", "--team", "chat-team", "--models",
                       "gpt-4o-mini,claude-haiku", "--duration", "30d", "--max-budget", "12.5")
    assert done.returncode == 0, done.stderr
    [record] = litellm.active()
    assert record["key_alias"] == "Chat Key"
    assert record["team_id"] == "chat-team" and "chat-team" in litellm.state.teams
    assert record["models"] == ["gpt-4o-mini", "claude-haiku"]
    assert record["max_budget"] == 12.5
    assert record["expires"] is not None
    assert record["metadata"]["duration"] == "30d"


def test_model_restriction_is_enforced(project: Project, litellm: Standin) -> None:
    project.run("keys.create", "--models", "llama-3")
    key = project.value("VIRTUAL_KEY")
    import urllib.request
    req = urllib.request.Request(f"{litellm.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=5) as response:
        assert [m["id"] for m in json.load(response)["data"]] == ["llama-3"]


def test_create_json_output(project: Project) -> None:
    data = project.json("keys.create")
    assert data["action"] == "created" and data["env_var"] == "VIRTUAL_KEY"
    assert data["key"].startswith("sk-...") and len(data["key"]) == 10


def test_alias_taken_without_plaintext_points_to_rotate(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    from tasks.envstore import envfile
    envfile.update(project.env, {"VIRTUAL_KEY": ""})  # the plaintext is lost
    before = project.read()
    asked = len(litellm.requests("/key/info"))
    done = project.run("keys.create")
    assert done.returncode == 8
    err = one_line_error(done)
    assert "already has a key named 'Open WebUI Key'" in err and "keys.rotate" in err
    assert project.read() == before
    assert len(litellm.requests("/key/info")) == asked  # the listing says it; nothing more asked
    # and the advice works
    assert project.run("keys.rotate").returncode == 0
    assert litellm.accepts(project.value("VIRTUAL_KEY"))
    assert len(litellm.active(ALIAS)) == 1


def test_create_replaces_an_expired_key(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    old = project.value("VIRTUAL_KEY")
    with litellm.state.lock:
        litellm.state.keys[sha(old)]["expires"] = "2000-01-01T00:00:00+00:00"
    done = project.run("keys.create")
    assert done.returncode == 0, done.stderr
    assert "replaced the expired key" in done.stdout
    new = project.value("VIRTUAL_KEY")
    assert new != old and litellm.accepts(new)
    assert [k["key_alias"] for k in litellm.active()] == [ALIAS]


def test_create_after_the_key_was_deleted_elsewhere(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    old = project.value("VIRTUAL_KEY")
    with litellm.state.lock:
        litellm.state.deleted[sha(old)] = litellm.state.keys[sha(old)]
    assert project.run("keys.create").returncode == 0
    assert litellm.accepts(project.value("VIRTUAL_KEY"))


# --------------------------------------------------------------------------- failures


def test_no_database(project: Project, litellm: Standin) -> None:
    litellm.state.db = False
    before = project.env.read_bytes()
    for args in (["keys.create"], ["keys.rotate"], ["keys.list"],
                 ["keys.revoke", "--alias", ALIAS, "--yes"]):
        done = project.run(*args)
        assert done.returncode == 6, (args, done.stderr)
        assert "virtual keys live in it" in one_line_error(done)
    assert project.env.read_bytes() == before


def test_wrong_master_key(project: Project) -> None:
    from tasks.envstore import envfile
    envfile.update(project.env, {"LITELLM_MASTER_KEY": "sk-wrong-wrong-wrong-wrong"})
    done = project.run("keys.create")
    assert done.returncode == 5
    assert "refused the master key" in one_line_error(done)
    assert project.value("FIRST_RUN") == "yes"
    no_secrets(done, "sk-wrong-wrong-wrong-wrong")


def test_proxy_down(project: Project) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = project.run("keys.create", "--url", f"http://127.0.0.1:{port}")
    assert done.returncode == 4
    assert "cannot connect to LiteLLM" in one_line_error(done)


def test_generate_failure_leaves_first_run(project: Project, litellm: Standin) -> None:
    litellm.fault("/key/generate", status=500, message="boom")
    before = project.env.read_bytes()
    done = project.run("keys.create")
    assert done.returncode == 7
    assert "boom" in one_line_error(done)
    assert project.env.read_bytes() == before
    assert litellm.active() == []


def test_missing_env_file(project: Project) -> None:
    project.env.unlink()
    done = project.run("keys.create")
    assert done.returncode == 3
    assert "run `invoke env.init`" in one_line_error(done)


def test_malformed_env_file(project: Project) -> None:
    project.env.write_text(project.read() + "garbage line here\n")
    before = project.env.read_bytes()
    done = project.run("keys.create")
    assert done.returncode == 3
    assert "cannot be parsed" in one_line_error(done)
    assert project.env.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys.create", "--name", "nope"], "unknown key name 'nope'"),
        (["keys.create", "--duration", "forever"], "bad duration"),
        (["keys.create", "--max-budget", "-3"], "bad budget"),
        (["keys.create", "--models", "a,,b"], "bad model list"),
        (["keys.create", "--url", "localhost:4000"], "bad LiteLLM URL"),
        (["keys.create", "--alias", " "], "--alias must not be empty"),
        (["keys.rotate", "--all", "--name", "open-webui"], "--name or --all"),
        (["keys.rotate", "--grace", "soon"], "bad duration"),
        (["keys.revoke", "--alias", "x", "--key", "abcdef12", "--yes"], "give exactly one of"),
        (["keys.revoke", "--name", "open-webui", "--alias", "x", "--yes"], "give exactly one of"),
        (["keys.revoke", "--key", "xyz", "--yes"], "--key takes a key hash"),
        (["keys.create", "--via", "sideways"], "--via must be one of auto, host, container"),
        (["keys.list", "--wait", "-1"], "--wait takes a number of seconds"),
        (["keys.rotate", "--name", "nope"], "unknown key name 'nope'"),
        (["keys.create", "--team", ""], "--team must not be empty"),
        (["stack.restart", "--service", "nginx-plus"], "unknown service 'nginx-plus'"),
        (["stack.logs", "--service", "db"], "unknown service 'db'"),
        (["keys.revoke", "--key", "-", "--yes"], "must start with 'sk-'"),
    ],
)
def test_bad_command_lines(project: Project, args: list[str], message: str) -> None:
    before = project.env.read_bytes()
    done = project.run(*args)
    assert done.returncode == 2, done.stderr
    assert message in one_line_error(done)
    assert project.env.read_bytes() == before


# --------------------------------------------------------------------------- rotate


def test_rotate(project: Project, litellm: Standin) -> None:
    project.run("keys.create", "--models", "gpt-4o-mini", "--max-budget", "5")
    old = project.value("VIRTUAL_KEY")
    with litellm.state.lock:
        litellm.state.keys[sha(old)]["metadata"]["owner"] = "ops"
    done = project.run("keys.rotate")
    assert done.returncode == 0, done.stderr
    new = project.value("VIRTUAL_KEY")
    assert new != old and litellm.accepts(new) and not litellm.accepts(old)
    [record] = litellm.active()
    assert record["key_alias"] == ALIAS
    assert record["models"] == ["gpt-4o-mini"] and record["max_budget"] == 5
    assert record["metadata"]["owner"] == "ops"
    assert record["metadata"]["rotated_from"] == sha(old)[:12]
    assert not (project.dir / ".env.keys-journal.json").exists()
    no_secrets(done, old, new)


def test_rotate_with_grace(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    old = project.value("VIRTUAL_KEY")
    done = project.run("keys.rotate", "--grace", "1h")
    assert done.returncode == 0, done.stderr
    new = project.value("VIRTUAL_KEY")
    assert litellm.accepts(new) and litellm.accepts(old)
    retired = litellm.state.keys[sha(old)]
    assert retired["expires"] is not None and retired["key_alias"].startswith(f"{ALIAS} (retired ")
    assert [k["key_alias"] for k in litellm.active() if k["token"] == sha(new)] == [ALIAS]


def test_rotate_with_nothing_to_rotate(project: Project) -> None:
    done = project.run("keys.rotate")
    assert done.returncode == 8
    assert "keys.create" in one_line_error(done)


def test_rotate_uses_no_enterprise_endpoint(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    project.run("keys.rotate")
    assert not [r for r in litellm.requests() if "regenerate" in r["path"]]


def test_several_consumers_and_rotate_all(project: Project, litellm: Standin) -> None:
    config = two_key_config(project)
    assert project.run("-f", config, "keys.create").returncode == 0
    done = project.run("-f", config, "keys.create", "--name", "continue-dev")
    assert done.returncode == 0, done.stderr
    cont = project.value("CONTINUE_DEV_KEY")
    assert litellm.accepts(cont)
    [record] = litellm.active("Continue.dev Key")
    assert record["models"] == ["claude-haiku"] and record["team_id"] == "continue-dev-team"
    before = {n: project.value(n) for n in ("VIRTUAL_KEY", "CONTINUE_DEV_KEY")}
    done = project.run("-f", config, "keys.rotate", "--all", "--json")
    assert done.returncode == 0, done.stderr
    assert {r["name"] for r in json.loads(done.stdout)} == {"open-webui", "continue-dev"}
    for name, old in before.items():
        assert project.value(name) != old and litellm.accepts(project.value(name))
        assert not litellm.accepts(old)
    assert sorted(k["key_alias"] for k in litellm.active()) == ["Continue.dev Key", ALIAS]


def test_chained_tasks(project: Project, litellm: Standin) -> None:
    done = project.run("keys.create", "keys.rotate", "keys.list")
    assert done.returncode == 0, done.stderr
    assert "created" in done.stdout and "rotated" in done.stdout and "1 key(s)" in done.stdout
    assert len(litellm.active()) == 1


def test_invoke_env_vars_reach_settings(project: Project, litellm: Standin, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    moved = other / "gateway.env"
    project.env.rename(moved)
    done = project.run("keys.create", env={"INVOKE_GATEWAY_ENV_FILE": str(moved)})
    assert done.returncode == 0, done.stderr
    assert str(moved) in done.stdout


# --------------------------------------------------------------------------- revoke


def test_revoke_by_name(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    key = project.value("VIRTUAL_KEY")
    done = project.run("keys.revoke", "--name", "open-webui", "--yes")
    assert done.returncode == 0, done.stderr
    assert not litellm.accepts(key)
    assert project.value("VIRTUAL_KEY") == ""
    assert "stack.start will refuse" in done.stdout
    assert "VIRTUAL_KEY=\n" in project.read()


def test_revoke_needs_yes_without_a_terminal(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    key = project.value("VIRTUAL_KEY")
    done = project.run("keys.revoke", "--name", "open-webui")
    assert done.returncode == 2
    assert "needs --yes" in one_line_error(done)
    assert litellm.accepts(key) and project.value("VIRTUAL_KEY") == key


def test_revoke_by_alias_of_a_key_env_does_not_hold(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    from tasks.clients.litellm import LiteLLM
    with LiteLLM(litellm.url, MASTER) as c:
        c.generate_key({"key_alias": "Other"})
    before = project.read()
    done = project.run("keys.revoke", "--alias", "Other", "--yes")
    assert done.returncode == 0, done.stderr
    assert project.read() == before
    assert not litellm.active("Other")


def test_revoke_by_hash_prefix_and_by_stdin(project: Project, litellm: Standin) -> None:
    from tasks.clients.litellm import LiteLLM
    with LiteLLM(litellm.url, MASTER) as c:
        a = c.generate_key({"key_alias": "A"})
        b = c.generate_key({"key_alias": "B"})
    done = project.run("keys.revoke", "--key", a["token"][:10], "--yes")
    assert done.returncode == 0, done.stderr
    assert not litellm.accepts(a["key"])
    done = project.run("keys.revoke", "--key", "-", "--yes", input=b["key"] + "\n")
    assert done.returncode == 0, done.stderr
    assert not litellm.accepts(b["key"])
    no_secrets(done, b["key"])


def test_block_is_reversible(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    key = project.value("VIRTUAL_KEY")
    done = project.run("keys.revoke", "--name", "open-webui", "--block", "--yes")
    assert done.returncode == 0, done.stderr
    assert not litellm.accepts(key)
    assert project.value("VIRTUAL_KEY") == key
    rows = project.json("keys.list")["keys"]
    assert [r["status"] for r in rows] == ["blocked"]
    litellm.state.keys[sha(key)]["blocked"] = False
    assert litellm.accepts(key)


def test_revoke_unknown_alias(project: Project) -> None:
    done = project.run("keys.revoke", "--alias", "ghost", "--yes")
    assert done.returncode == 8
    assert "no key named 'ghost'" in one_line_error(done)


# --------------------------------------------------------------------------- list


def test_list(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    from tasks.clients.litellm import LiteLLM
    with LiteLLM(litellm.url, MASTER) as c:
        old = c.generate_key({"key_alias": "old", "duration": "1s", "max_budget": 3})
    import time
    deadline = time.monotonic() + 60
    while litellm.accepts(old["key"]):  # until the stand-in refuses it: expired
        assert time.monotonic() < deadline, "a key accepted past its 1 s"
        time.sleep(0.05)
    done = project.run("keys.list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ALIAS", "TEAM", "MODELS", "EXPIRES", "SPEND", "STATUS", "KEY", "IN", ".ENV"]
    key = project.value("VIRTUAL_KEY")
    mine = next(line for line in lines if line.startswith(ALIAS))
    assert f"sk-...{key[-4:]}" in mine and "VIRTUAL_KEY" in mine and "active" in mine
    expired = next(line for line in lines if line.startswith("old"))
    assert "expired" in expired and "0.00/3" in expired
    assert lines[-1] == "2 key(s)"
    no_secrets(done, key)


def test_list_json_and_a_key_litellm_lost(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    key = project.value("VIRTUAL_KEY")
    with litellm.state.lock:
        del litellm.state.keys[sha(key)]
    rows = project.json("keys.list")["keys"]
    assert rows == [{"alias": "", "token": sha(key), "team_id": "", "models": [], "expires": None,
                     "spend": 0.0, "max_budget": None, "status": "missing",
                     "held_by": "VIRTUAL_KEY", "masked": f"sk-...{key[-4:]}"}]


def test_list_many_keys(project: Project, litellm: Standin) -> None:
    from tasks.clients.litellm import LiteLLM
    with LiteLLM(litellm.url, MASTER) as c:
        for i in range(230):
            c.generate_key({"key_alias": f"bulk-{i}"})
    rows = project.json("keys.list")["keys"]
    assert len(rows) == 230
    assert len(litellm.requests("/key/list")) == 3


def test_create_with_a_working_key_settles_first_run(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    from tasks.envstore import envfile
    envfile.update(project.env, {"FIRST_RUN": "yes"})
    done = project.run("keys.create")
    assert done.returncode == 0
    assert "set FIRST_RUN=no" in done.stdout
    assert project.value("FIRST_RUN") == "no"


def test_rotate_keeps_the_alias_of_the_key_it_replaces(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    from tasks.clients.litellm import LiteLLM
    from tasks.envstore import envfile
    with LiteLLM(litellm.url, MASTER) as c:
        hand = c.generate_key({"key_alias": "Hand-made", "team_id": "open-webui-team"})
    envfile.update(project.env, {"VIRTUAL_KEY": hand["key"]})
    done = project.run("keys.rotate")
    assert done.returncode == 0, done.stderr
    assert sorted(k["key_alias"] for k in litellm.active()) == ["Hand-made", ALIAS]
    assert not litellm.accepts(hand["key"])


def test_rotate_when_another_key_holds_the_alias(project: Project, litellm: Standin) -> None:
    project.run("keys.create")
    from tasks.clients.litellm import LiteLLM
    from tasks.envstore import envfile
    with LiteLLM(litellm.url, MASTER) as c:
        nameless = c.generate_key({"team_id": "open-webui-team"})
    envfile.update(project.env, {"VIRTUAL_KEY": nameless["key"]})
    done = project.run("keys.rotate")
    assert done.returncode == 0, done.stderr
    assert f"another key is already named '{ALIAS}'" in done.stdout
    aliases = sorted(k["key_alias"] for k in litellm.active())
    assert aliases[0] == ALIAS and aliases[1].startswith(f"{ALIAS} (")
    assert litellm.accepts(project.value("VIRTUAL_KEY"))
    # once the alias is free again, the next rotation takes it back (no fallback for good)
    [holder] = litellm.active(ALIAS)
    with LiteLLM(litellm.url, MASTER) as c:
        c.delete_keys(keys=[holder["token"]])
    done = project.run("keys.rotate")
    assert done.returncode == 0, done.stderr
    assert [k["key_alias"] for k in litellm.active()] == [ALIAS]


def test_rotate_keeps_the_lifetime_of_a_key_made_elsewhere(project: Project, litellm: Standin) -> None:
    """A key made in LiteLLM's UI has no metadata.duration: its lifetime is read from its
    created_at and expires, and the new key gets the same."""
    from datetime import datetime, timedelta, timezone

    from tasks.clients.litellm import LiteLLM
    from tasks.envstore import envfile
    project.run("keys.create")
    with LiteLLM(litellm.url, MASTER) as c:
        hand = c.generate_key({"key_alias": "Made in the UI", "team_id": "open-webui-team",
                               "duration": "7d", "max_budget": 5})
    envfile.update(project.env, {"VIRTUAL_KEY": hand["key"]})
    done = project.run("keys.rotate")
    assert done.returncode == 0, done.stderr
    [new] = litellm.active("Made in the UI")
    expires = datetime.fromisoformat(str(new["expires"]).replace("Z", "+00:00"))
    left = expires - datetime.now(timezone.utc)
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7), new["expires"]
    assert new["max_budget"] == 5


def test_wait_gives_a_starting_litellm_time(project: Project, litellm: Standin) -> None:
    """LiteLLM comes up only after the task found it not ready (the event, not a delay): the
    task's first attempt reaches a port that closes the connection unanswered, as a starting
    server may; only then is the stand-in started on that port, and --wait gets the key made."""
    from tests.support.project import MODELS
    from tests.support.standin import serve_in_thread
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the stand-in binds it next
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(60)
    port = listener.getsockname()[1]
    proc = project.start("keys.create", "--url", f"http://127.0.0.1:{port}", "--wait", "120")
    late = None
    try:
        connection, _ = listener.accept()  # the task tried: LiteLLM is not ready for it
        if sys.platform != "win32":  # a reset: no TIME_WAIT left to hold the port on Linux
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # unanswered
        listener.close()
        late = serve_in_thread(MASTER, MODELS, port=port)
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err
        assert "created" in out
        assert late.state.keys, "the key was made by the LiteLLM that started late"
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if late is not None:
            late.shutdown()
            late.server_close()


def test_wait_deadline_is_honoured(project: Project) -> None:
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = project.run("keys.list", "--url", f"http://127.0.0.1:{port}", "--wait", "2")
    elapsed = time.monotonic() - started
    assert done.returncode == 4
    assert "was not ready within 2s" in one_line_error(done)
    assert elapsed >= 2  # (an upper bound would only measure this machine's speed)


@pytest.mark.parametrize("alias", ["Chat\nKey", "Chat\tKey", "Chat\x1b[31mKey", "Chat\u2028Key"])
def test_an_alias_with_a_control_character_is_refused_before_any_request(
        project: Project, litellm: Standin, alias: str) -> None:
    """The real LiteLLM refuses such an alias with 400 (exit 7 after requests); a bad value is
    exit 2, checked first."""
    for flag in ("--alias", "--team"):
        done = project.run("keys.create", flag, alias)
        assert done.returncode == 2, done.stderr
        assert flag in one_line_error(done) and "control character" in done.stderr
    config = project.dir / "bad-alias.json"
    config.write_text(json.dumps({"gateway": {"keys": {"open-webui": {"alias": alias}}}}))
    done = project.run("-f", str(config), "keys.create")
    assert done.returncode == 2 and "gateway.keys.open-webui.alias" in one_line_error(done)
    assert litellm.requests() == []


# --------------------------------------------------------------------------- LiteLLM under a path


def test_litellm_under_a_path_is_reached_there(project: Project, litellm_under_path: Standin) -> None:
    """LiteLLM behind a reverse proxy with SERVER_ROOT_PATH=/litellm, another app at /: the
    input as quoted, `--url https://host/litellm` (and with a trailing slash, and from
    LITELLM_PROXY_URL); every API call goes under the path."""
    lite = litellm_under_path
    root = lite.url
    assert root.endswith("/litellm")
    done = project.run("keys.create", "--url", root)
    assert done.returncode == 0, done.stderr
    key = project.value("VIRTUAL_KEY")
    assert lite.accepts(key) and [k["key_alias"] for k in lite.active()] == [ALIAS]
    rotated = project.run("keys.rotate", "--url", root + "/")
    assert rotated.returncode == 0, rotated.stderr
    assert project.value("VIRTUAL_KEY") != key and lite.accepts(project.value("VIRTUAL_KEY"))
    listed = project.run("keys.list", env={"LITELLM_PROXY_URL": root})
    assert listed.returncode == 0, listed.stderr
    assert "VIRTUAL_KEY" in listed.stdout and "1 key(s)" in listed.stdout
    assert {r["path"] for r in lite.requests()} >= {"/health/readiness", "/key/generate"}


def test_the_host_root_in_front_of_litellm_is_another_app(project: Project,
                                                          litellm_under_path: Standin) -> None:
    """The root the old error suggested is the other application: said as such, exit 7."""
    host = litellm_under_path.url.removesuffix("/litellm")
    done = project.run("keys.list", "--url", host)
    assert done.returncode == 7, done.stderr
    assert "not as LiteLLM does; is something else on that port?" in one_line_error(done)


def test_a_path_litellm_is_not_served_under_says_so(project: Project,
                                                    litellm_under_path: Standin) -> None:
    host = litellm_under_path.url.removesuffix("/litellm")
    done = project.run("keys.list", "--url", f"{host}/gateway")
    assert done.returncode == 7, done.stderr
    assert "is LiteLLM served under /gateway there (its SERVER_ROOT_PATH" in one_line_error(done)


@pytest.mark.parametrize("path", ["/v1", "/v1/", "/ui", "/chat/completions", "/litellm/v1",
                                  "/litellm/v1/models", "/litellm/ui/"])
def test_a_path_that_is_no_root_is_refused_with_the_root(project: Project, path: str) -> None:
    host, root_path = "https://gateway.example", "/litellm" if path.startswith("/litellm") else ""
    done = project.run("keys.list", "--url", host + path)
    assert done.returncode == 2, done.stderr
    assert one_line_error(done).endswith(f"use {host}{root_path}")
