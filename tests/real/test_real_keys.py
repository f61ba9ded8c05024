"""Every keys task and flag through the command line, against the REAL LiteLLM and its database.

The proxy is the version docker-compose.yml pins, on a fresh PostgreSQL database for this module
(tests/support/real_litellm.py). Results are checked in LiteLLM itself (its admin API) and in
.env. A loopback relay (tests/support/relay.py) sits between the tasks and the proxy to count
requests and to freeze one step of a rotation for the kill tests; it forwards everything as is.
After each test every key and team is deleted through the admin API, so tests do not see each
other's keys.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Project, two_key_config, write_env
from tests.support.real_litellm import REAL_MASTER, RealProxy, running_proxy
from tests.support.relay import Relay, start_relay

pytestmark = pytest.mark.real

ALIAS = "Open WebUI Key"
TEAM = "open-webui-team"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, real_postgres: Any, real_provider: Any
         ) -> Iterator[RealProxy]:
    with running_proxy(tmp_path_factory.mktemp("real-litellm"), real_postgres, real_provider) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def relay(real: RealProxy) -> Iterator[Relay]:
    relay = start_relay(real.url)
    yield relay
    relay.close()


def wipe(real: RealProxy) -> None:
    """Delete every key and team in LiteLLM (its own API), so the next test starts empty."""
    tokens = [k["token"] for k in real.keys()]
    for start in range(0, len(tokens), 200):
        real.ok("POST", "/key/delete", {"keys": tokens[start:start + 200]})
    status, teams = real.call("GET", "/team/list")
    if status == 200 and teams:
        real.ok("POST", "/team/delete", {"team_ids": [t["team_id"] for t in teams]})


@pytest.fixture
def lite(real: RealProxy, relay: Relay) -> Iterator[RealProxy]:
    relay.reset()
    yield real
    relay.reset()
    wipe(real)


@pytest.fixture
def rp(tmp_path: Path, lite: RealProxy, relay: Relay) -> Project:
    """A project whose .env holds the real proxy's master key; the tasks reach it via the relay."""
    # LITELLM_PORT agrees with the relay's URL (LITELLM_PROXY_URL): no "note: using ..." line
    env = write_env(tmp_path / ".env", LITELLM_MASTER_KEY=REAL_MASTER,
                    LITELLM_PORT=relay.url.rsplit(":", 1)[1])
    return Project(tmp_path, env, relay.url)


def ok(project: Project, *args: str, input: str | None = None) -> str:
    done = project.run(*args, input=input, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert REAL_MASTER not in done.stdout + done.stderr
    return done.stdout


def active(real: RealProxy, alias: str | None = None) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    found = []
    for k in real.keys():
        expires = k.get("expires")
        if k.get("blocked") or (expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now):
            continue
        if alias is None or k.get("key_alias") == alias:
            found.append(k)
    return found


def when(value: str | None) -> datetime:
    assert value, "expected an expiry"
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- create


def test_create_first_run(rp: Project, lite: RealProxy) -> None:
    out = ok(rp, "keys.create")
    key = rp.value("VIRTUAL_KEY")
    assert key.startswith("sk-") and f"sk-...{key[-4:]}" in out and key not in out
    assert rp.value("FIRST_RUN") == "no"
    assert (rp.env.stat().st_mode & 0o777) == 0o600
    [record] = active(lite)
    assert record["token"] == sha(key) and record["key_alias"] == ALIAS
    assert record["team_id"] == TEAM and record["metadata"]["managed_by"] == "ai-gateway-tasks"
    team = lite.ok("GET", f"/team/info?team_id={TEAM}")
    assert team["team_info"]["team_alias"] == "Open WebUI Team"
    # the key works for real: a chat goes through LiteLLM to the provider and back
    status, answer = lite.chat(key)
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"] == "pong from the fake provider"


def test_create_with_every_flag(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create", "--alias", "Chat Key", "--team", "chat-team", "--models",
       "gpt-4o-mini,claude-haiku", "--duration", "30d", "--max-budget", "12.5")
    info = lite.info(rp.value("VIRTUAL_KEY"))
    assert info["key_alias"] == "Chat Key" and info["team_id"] == "chat-team"
    assert info["models"] == ["gpt-4o-mini", "claude-haiku"] and info["max_budget"] == 12.5
    expires = when(info["expires"]) - datetime.now(timezone.utc)
    assert timedelta(days=29, hours=23) < expires <= timedelta(days=30)
    assert info["metadata"]["duration"] == "30d"
    assert lite.ok("GET", "/team/info?team_id=chat-team")["team_id"] == "chat-team"
    # the model restriction is LiteLLM's: a chat with another model is refused
    key = rp.value("VIRTUAL_KEY")
    assert lite.chat(key, "claude-haiku")[0] == 200
    assert lite.chat(key, "llama-3")[0] in (401, 403)


def test_create_is_idempotent(rp: Project, lite: RealProxy, relay: Relay) -> None:
    ok(rp, "keys.create")
    before = rp.env.read_bytes()
    generated = relay.count("/key/generate")
    out = ok(rp, "keys.create")
    assert "already holds an active key; nothing to do" in out
    assert rp.env.read_bytes() == before and relay.count("/key/generate") == generated
    assert len(lite.keys()) == 1


def test_create_force_replaces_safely(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    old = rp.value("VIRTUAL_KEY")
    ok(rp, "keys.create", "--force", "--models", "gpt-4o-mini")
    new = rp.value("VIRTUAL_KEY")
    assert new != old and lite.accepts(new) and not lite.accepts(old)
    [record] = active(lite, ALIAS)
    assert record["token"] == sha(new) and record["models"] == ["gpt-4o-mini"]


def test_create_when_the_alias_is_taken_by_a_key_env_does_not_hold(rp: Project, lite: RealProxy) -> None:
    lite.ok("POST", "/key/generate", {"key_alias": ALIAS})
    before = rp.env.read_bytes()
    done = rp.run("keys.create")
    assert done.returncode == 8, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "keys.rotate" in done.stderr
    assert rp.env.read_bytes() == before and len(lite.keys()) == 1


def test_two_consumers_with_their_own_variables(rp: Project, lite: RealProxy) -> None:
    config = two_key_config(rp)
    ok(rp, "-f", config, "keys.create")
    ok(rp, "-f", config, "keys.create", "--name", "continue-dev")
    webui, cont = rp.value("VIRTUAL_KEY"), rp.value("CONTINUE_DEV_KEY")
    assert webui != cont and lite.accepts(webui) and lite.accepts(cont)
    info = lite.info(cont)
    assert (info["key_alias"], info["team_id"], info["models"]) == (
        "Continue.dev Key", "continue-dev-team", ["claude-haiku"])
    assert lite.ok("GET", "/team/info?team_id=continue-dev-team")["team_info"]["team_alias"] == \
        "Continue.dev Team"
    assert lite.info(webui)["team_id"] == TEAM


# --------------------------------------------------------------------------- rotate


def test_rotate_keeps_team_models_budget_limits_metadata_and_duration(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create", "--models", "gpt-4o-mini,llama-3", "--duration", "7d", "--max-budget", "5")
    old = rp.value("VIRTUAL_KEY")
    # limits and metadata set in LiteLLM by hand (its admin UI) must survive a rotation too
    lite.ok("POST", "/key/update", {"key": old, "tpm_limit": 1000, "rpm_limit": 60,
                                    "max_parallel_requests": 4, "budget_duration": "30d",
                                    "metadata": {**lite.info(old)["metadata"], "owner": "ops"}})
    ok(rp, "keys.rotate")
    new = rp.value("VIRTUAL_KEY")
    info = lite.info(new)
    assert info["key_alias"] == ALIAS and info["team_id"] == TEAM
    assert info["models"] == ["gpt-4o-mini", "llama-3"] and info["max_budget"] == 5
    assert (info["tpm_limit"], info["rpm_limit"], info["max_parallel_requests"]) == (1000, 60, 4)
    assert info["budget_duration"] == "30d"
    assert info["metadata"]["owner"] == "ops" and info["metadata"]["duration"] == "7d"
    assert info["metadata"]["rotated_from"] == sha(old)[:12]
    left = when(info["expires"]) - datetime.now(timezone.utc)
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7), "the duration policy restarts"


def test_rotate_refuses_the_old_key_at_once(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    old = rp.value("VIRTUAL_KEY")
    assert lite.chat(old)[0] == 200  # warm the proxy's key cache, as a busy consumer would
    out = ok(rp, "keys.rotate")
    new = rp.value("VIRTUAL_KEY")
    assert "rotated" in out and lite.accepts(new)
    status, answer = lite.chat(old)
    assert status == 401, answer
    assert [k["token"] for k in active(lite)] == [sha(new)]


def test_rotate_with_grace(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    old = rp.value("VIRTUAL_KEY")
    ok(rp, "keys.rotate", "--grace", "1h")
    new = rp.value("VIRTUAL_KEY")
    assert lite.accepts(new) and lite.accepts(old)
    old_info = lite.info(old)
    left = when(old_info["expires"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
    assert old_info["key_alias"] != ALIAS and lite.info(new)["key_alias"] == ALIAS


def test_rotate_all(rp: Project, lite: RealProxy) -> None:
    config = two_key_config(rp)
    ok(rp, "-f", config, "keys.create")
    ok(rp, "-f", config, "keys.create", "--name", "continue-dev")
    before = {n: rp.value(n) for n in ("VIRTUAL_KEY", "CONTINUE_DEV_KEY")}
    out = ok(rp, "-f", config, "keys.rotate", "--all", "--json")
    assert {r["name"] for r in json.loads(out)} == {"open-webui", "continue-dev"}
    for name, old in before.items():
        assert rp.value(name) != old and lite.accepts(rp.value(name)) and not lite.accepts(old)
    assert sorted(k["key_alias"] for k in active(lite)) == ["Continue.dev Key", ALIAS]


# --------------------------------------------------------------------------- revoke


def test_revoke_by_name(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    key = rp.value("VIRTUAL_KEY")
    out = ok(rp, "keys.revoke", "--name", "open-webui", "--yes")
    assert "removed the key from VIRTUAL_KEY" in out
    assert rp.value("VIRTUAL_KEY") == "" and not lite.accepts(key) and lite.keys() == []
    status, info = lite.call("GET", f"/key/info?key={sha(key)}")
    assert status == 404 or info["info"].get("status") == "deleted"


def test_revoke_by_alias(rp: Project, lite: RealProxy) -> None:
    made = lite.ok("POST", "/key/generate", {"key_alias": "Shared"})["key"]
    ok(rp, "keys.create")
    ok(rp, "keys.revoke", "--alias", "Shared", "--yes")
    assert not lite.accepts(made) and [k["key_alias"] for k in lite.keys()] == [ALIAS]


def test_revoke_by_hash_prefix(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    other = lite.ok("POST", "/key/generate", {"key_alias": "by-hash"})["key"]
    ok(rp, "keys.revoke", "--key", sha(other)[:12], "--yes")
    assert not lite.accepts(other) and lite.accepts(rp.value("VIRTUAL_KEY"))


def test_revoke_a_key_read_from_stdin(rp: Project, lite: RealProxy) -> None:
    other = lite.ok("POST", "/key/generate", {"key_alias": "pasted"})["key"]
    done = rp.run("keys.revoke", "--key", "-", "--yes", input=other + "\n")
    assert done.returncode == 0, done.stderr
    assert other not in done.stdout + done.stderr
    assert not lite.accepts(other) and lite.keys() == []


def test_block_then_unblock_in_litellm(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    key = rp.value("VIRTUAL_KEY")
    out = ok(rp, "keys.revoke", "--name", "open-webui", "--block", "--yes")
    assert "still holds the blocked key" in out
    assert rp.value("VIRTUAL_KEY") == key and not lite.accepts(key)
    assert lite.info(key)["blocked"] is True
    listed = json.loads(ok(rp, "keys.list", "--json"))["keys"]
    assert [r["status"] for r in listed] == ["blocked"]
    lite.ok("POST", "/key/unblock", {"key": key})
    assert lite.accepts(key)
    assert ok(rp, "keys.create").count("nothing to do") == 1


# --------------------------------------------------------------------------- list


def test_list_every_one_of_1000_keys_made_behind_our_back(rp: Project, lite: RealProxy, relay: Relay) -> None:
    ok(rp, "keys.create")
    made = set()
    for i in range(999):
        made.add(lite.ok("POST", "/key/generate", {"key_alias": f"bulk-{i:04d}",
                                                   "models": ["llama-3"]})["token"])
    seen = relay.count("/key/list")
    rows = json.loads(ok(rp, "keys.list", "--json"))["keys"]
    tokens = [r["token"] for r in rows]
    assert len(tokens) == len(set(tokens)) == 1000, "every key exactly once"
    assert made <= set(tokens)
    assert [r["held_by"] for r in rows if r["held_by"]] == ["VIRTUAL_KEY"]
    assert relay.count("/key/list") - seen == 10, "pages of 100"


# --------------------------------------------------------------------------- recovery

# (path to freeze at, relay mode, whether .env has the new key by then)
STEPS = [
    ("/key/info", "before", False),
    ("/team/info", "before", False),
    ("/key/generate", "before", False),  # request not yet at LiteLLM: it gets there after the kill
    ("/key/generate", "after", False),  # key made in the database, answer never arrives
    ("/v1/models", "before", False),  # key made and journaled, not proven
    ("/key/delete", "before", True),  # switched, old key not yet deleted
    ("/key/update", "before", True),  # old key deleted, new one not yet renamed
]


def pending(real: RealProxy) -> list[dict[str, Any]]:
    return [k for k in real.keys() if "[pending" in str(k.get("key_alias"))]


def wait_for_pending(real: RealProxy, timeout: float = 60) -> list[dict[str, Any]]:
    """Until LiteLLM has stored a `[pending ...]` key (a request carried out after its answer
    was held back, or after a held request went on)."""
    deadline = time.monotonic() + timeout
    while not pending(real):
        assert time.monotonic() < deadline, "LiteLLM never stored the held key"
        time.sleep(0.1)
    return pending(real)


def assert_healthy(project: Project, real: RealProxy) -> str:
    key = project.value("VIRTUAL_KEY")
    assert real.accepts(key), "the key in .env must work"
    keys = active(real)
    assert [k["key_alias"] for k in keys] == [ALIAS], [k["key_alias"] for k in keys]
    assert keys[0]["token"] == sha(key)
    assert not (project.dir / ".env.keys-journal.json").exists()
    return key


@pytest.mark.parametrize(("path", "mode", "switched"), STEPS)
def test_sigkill_at_each_rotation_step(rp: Project, lite: RealProxy, relay: Relay, path: str, mode: str,
                                       switched: bool) -> None:
    ok(rp, "keys.create")
    created = rp.value("VIRTUAL_KEY")
    # the first /v1/models asks what LiteLLM serves (master key); the second is the proof
    skip = 1 if path == "/v1/models" else 0
    seen = relay.count(path) + skip
    with relay.lock:
        answered = relay.answered.count(path) + skip
    relay.hold(path, mode, seconds=60, skip=skip)
    race = (path, mode) == ("/key/generate", "before")
    proc = rp.start("keys.rotate")
    try:
        relay.wait_for(path, seen)
        if mode == "after":
            relay.wait_answered(path, answered)  # LiteLLM did the work whose answer is held back
        proc.kill()
        proc.communicate(timeout=60)
        held = rp.value("VIRTUAL_KEY")
        assert (held != created) == switched
        assert lite.accepts(held), "even right after a kill, .env holds a working key"
        if race:  # the next task looks before LiteLLM has the request: the journal must wait
            done = rp.run("keys.list", timeout=120)
            assert done.returncode == 0, done.stderr
            assert "LiteLLM may still make it" in done.stdout and "rolled back" not in done.stdout
            assert (rp.dir / ".env.keys-journal.json").exists()
    finally:
        relay.reset()  # a held /key/generate goes on to LiteLLM now, after the kill
    if race:
        wait_for_pending(lite)
    done = rp.run("keys.list", timeout=120)
    assert done.returncode == 0, done.stderr
    if race:
        assert "rolled back an interrupted rotation of 'open-webui': deleted the unfinished key" \
            in done.stdout
    key = assert_healthy(rp, lite)
    assert (key != created) == switched
    assert not [k for k in lite.keys() if "[pending" in str(k.get("key_alias"))]


def test_a_leftover_pending_key_is_collected(rp: Project, lite: RealProxy) -> None:
    """An unfinished key no journal waits for and no .env holds - what a killed run of an
    earlier version left (issue 21: 8 of them after 14 kills) - is deleted by the next keys
    task, in one line; another alias's `[pending ...]` key is left alone."""
    ok(rp, "keys.create")
    left = lite.ok("POST", "/key/generate", {
        "key_alias": f"{ALIAS} [pending 0badc0de]", "team_id": TEAM,
        "metadata": {"managed_by": "ai-gateway-tasks", "key_name": "open-webui"}})
    theirs = lite.ok("POST", "/key/generate", {"key_alias": "Someone's Key [pending 12345678]"})
    assert lite.accepts(left["key"])
    out = ok(rp, "keys.list")
    assert (f"deleted 1 unfinished key(s) in LiteLLM that an interrupted run made and no .env "
            f"holds: '{ALIAS} [pending 0badc0de]'") in out.splitlines()
    tokens = {k["token"] for k in lite.keys()}
    assert left["token"] not in tokens and theirs["token"] in tokens
    assert not lite.accepts(left["key"])
    assert "unfinished" not in ok(rp, "keys.list")


def test_eight_concurrent_rotations(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    procs = [rp.start("keys.rotate") for _ in range(8)]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0] * 8, [p.communicate() for p in procs]
    assert_healthy(rp, lite)
    assert len(lite.keys()) == 1, "nothing left behind"


# --------------------------------------------------------------------------- issue 10's defects


def test_grace_never_revives_an_expired_key(rp: Project, lite: RealProxy) -> None:
    """Seen here: /key/update {"duration"} on an expired key revives it; rotate must not send it."""
    ok(rp, "keys.create", "--duration", "2s")
    old = rp.value("VIRTUAL_KEY")
    deadline = time.monotonic() + 60
    while lite.accepts(old):  # until LiteLLM refuses it: expired
        assert time.monotonic() < deadline, "LiteLLM still accepts a key past its 2 s"
        time.sleep(0.2)
    out = ok(rp, "keys.rotate", "--grace", "1h")
    assert "no grace period applies" in out and "keeps working" not in out
    assert not lite.accepts(old), "the expired key must stay dead"
    assert [k["token"] for k in active(lite)] == [sha(rp.value("VIRTUAL_KEY"))]


def test_grace_never_lengthens_a_sooner_expiry(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create", "--duration", "1h")
    old = rp.value("VIRTUAL_KEY")
    expires = lite.info(old)["expires"]
    out = ok(rp, "keys.rotate", "--grace", "7d")
    assert "its expiry is unchanged" in out
    info = lite.info(old)
    assert info["expires"] == expires and info["key_alias"] != ALIAS and lite.accepts(old)


def test_a_timed_out_generate_leaves_a_trace_the_next_task_cleans(rp: Project, lite: RealProxy,
                                                                    relay: Relay) -> None:
    """gateway.timeout 1 s; the relay holds /key/generate 3 s, then LiteLLM stores the key."""
    ok(rp, "keys.create")
    created = rp.value("VIRTUAL_KEY")
    relay.hold("/key/generate", "before", seconds=3)
    done = rp.run("keys.rotate", env={"INVOKE_GATEWAY_TIMEOUT": "1"}, timeout=120)
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "may have made a new key named 'Open WebUI Key [pending" in done.stderr
    assert (rp.dir / ".env.keys-journal.json").exists()
    deadline = time.monotonic() + 60
    while not [k for k in lite.keys() if "[pending" in str(k.get("key_alias"))]:
        assert time.monotonic() < deadline, "LiteLLM never stored the held key"
        time.sleep(0.2)
    out = ok(rp, "keys.list")
    assert "deleted the unfinished key" in out
    assert assert_healthy(rp, lite) == created


def test_a_model_typo_is_refused_before_anything_is_made(rp: Project, lite: RealProxy,
                                                          relay: Relay) -> None:
    before = rp.env.read_bytes()
    done = rp.run("keys.create", "--models", "gpt4o", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "'gpt4o'" in done.stderr and "gpt-4o-mini" in done.stderr
    assert rp.env.read_bytes() == before and lite.keys() == []
    assert relay.count("/key/generate") == 0 and relay.count("/team/new") == 0


def test_a_key_restricted_to_an_unserved_model_is_no_proof(rp: Project, lite: RealProxy) -> None:
    """The real proxy lists an unserved model for a key restricted to it."""
    made = lite.ok("POST", "/key/generate", {"key_alias": ALIAS, "models": ["no-such-model"]})
    rp.env.write_text(rp.read().replace("VIRTUAL_KEY=\n", f"VIRTUAL_KEY={made['key']}\n"))
    before = rp.env.read_bytes()
    done = rp.run("keys.rotate", timeout=120)
    assert done.returncode == 8, done.stderr
    assert "reaches none of the models LiteLLM serves" in done.stderr
    assert rp.env.read_bytes() == before
    assert [k["token"] for k in lite.keys()] == [made["token"]]


def test_revoke_with_no_selector_revokes_the_default_key(rp: Project, lite: RealProxy) -> None:
    ok(rp, "keys.create")
    key = rp.value("VIRTUAL_KEY")
    out = ok(rp, "keys.revoke", "--yes")
    assert "removed the key from VIRTUAL_KEY" in out and "refused" not in out
    assert rp.value("VIRTUAL_KEY") == "" and not lite.accepts(key) and lite.keys() == []
