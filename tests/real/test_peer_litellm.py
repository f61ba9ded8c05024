"""The project in front of the REAL LiteLLM proxy (the pinned release, no database): support/peers.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.base.errors import NoDatabaseError, ProxyUnreachableError
from tasks.clients.litellm import LiteLLM
from tests.support.openapi_check import check_request
from tests.support.peers import PEER_MASTER, Peer, start_litellm
from tests.support.project import CLIENT_REQUESTS, MASTER, Project, Standin, write_env
from tests.support.standin import serve_in_thread

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = start_litellm(tmp_path_factory.mktemp("litellm"))
    try:
        with LiteLLM(peer.url, PEER_MASTER, timeout=5) as client:
            client.wait_ready(900)
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def openapi(proxy: Peer) -> dict[str, Any]:
    with urllib.request.urlopen(f"{proxy.url}/openapi.json", timeout=30) as response:
        return dict(json.load(response))


@pytest.fixture
def peer_project(tmp_path: Path, proxy: Peer) -> Project:
    env = write_env(tmp_path / ".env", LITELLM_MASTER_KEY=PEER_MASTER,
                    LITELLM_PORT=proxy.url.rsplit(":", 1)[1])  # as the URL: no "note:" line
    return Project(tmp_path, env, proxy.url)


# --------------------------------------------------------------------------- startup


def test_waiting_for_the_real_startup(tmp_path: Path) -> None:
    peer = start_litellm(tmp_path)
    try:
        started = time.monotonic()
        with LiteLLM(peer.url, PEER_MASTER, timeout=5) as client:
            ready = client.wait_ready(900)  # minutes on a busy machine
        elapsed = time.monotonic() - started
        assert ready == {"status": "healthy", "db": "Not connected"}
        print(f"\nreal LiteLLM ready after {elapsed:.1f}s")
    finally:
        peer.stop()


def test_the_deadline_holds_when_the_proxy_exits(tmp_path: Path) -> None:
    peer = start_litellm(tmp_path, config="model_list: [this is not: valid")
    try:
        started = time.monotonic()
        with LiteLLM(peer.url, PEER_MASTER, timeout=2) as client, pytest.raises(
            ProxyUnreachableError, match="was not ready within 6s"
        ):
            client.wait_ready(6)
        # 6 s of deadline and one 2 s attempt; the bound is loose, to be no measure of speed
        assert time.monotonic() - started < 40
        peer.process.wait(600)  # it was never going to come up: a broken config ends it
        assert peer.process.returncode != 0
    finally:
        peer.stop()


def test_proxy_stopped_mid_operation(tmp_path: Path) -> None:
    peer = start_litellm(tmp_path)
    with LiteLLM(peer.url, PEER_MASTER, timeout=5) as client:
        client.wait_ready(900)
        peer.stop()
        with pytest.raises(ProxyUnreachableError, match="cannot connect to LiteLLM"):
            client.require_database()


# --------------------------------------------------------------------------- no database


@pytest.mark.parametrize("args", [["keys.create"], ["keys.rotate"], ["keys.list"],
                                  ["keys.revoke", "--alias", "Open WebUI Key", "--yes"],
                                  ["keys.create", "--wait", "30"]])
def test_keys_tasks_say_the_database_is_missing(peer_project: Project, args: list[str]) -> None:
    before = peer_project.env.read_bytes()
    done = peer_project.run(*args)
    assert done.returncode == 6, done.stderr
    err = done.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "virtual keys live in it; set DATABASE_URL" in err
    assert peer_project.env.read_bytes() == before
    assert peer_project.value("FIRST_RUN") == "yes"


def test_wrong_master_key_without_a_database(proxy: Peer, tmp_path: Path) -> None:
    """Without a database the real proxy answers any non-master key with 400 'No connected db',
    so a wrong master key surfaces as the missing database - the first thing to fix."""
    env = write_env(tmp_path / ".env", LITELLM_MASTER_KEY="sk-wrong-" + "w" * 24,
                    LITELLM_PORT=proxy.url.rsplit(":", 1)[1])
    done = Project(tmp_path, env, proxy.url).run("keys.list")
    assert done.returncode == 6 and "virtual keys live in it" in done.stderr
    with LiteLLM(proxy.url, "sk-wrong-" + "w" * 24, timeout=5) as client, pytest.raises(
        NoDatabaseError
    ):
        client.models_for("sk-wrong-" + "w" * 24)


# --------------------------------------------------------------------------- stand-in vs real

# (method, path, which key, body) - everything the real proxy can answer without a database
PROBES: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("GET", "/health/liveliness", "", None),
    ("GET", "/health/readiness", "", None),
    ("GET", "/v1/models", "master", None),
    ("GET", "/models", "master", None),
    ("GET", "/v1/models", "", None),
    ("GET", "/v1/models", "other", None),
    ("GET", "/key/list?page=1&size=100&return_full_object=true", "master", None),
    ("GET", "/key/list", "other", None),
    ("GET", "/key/info?key=sk-nope", "master", None),
    ("POST", "/key/generate", "master", {"key_alias": "x", "team_id": "t", "models": []}),
    ("POST", "/key/update", "master", {"key": "sk-nope", "key_alias": "y"}),
    ("POST", "/key/delete", "master", {"keys": ["sk-nope"]}),
    ("POST", "/key/block", "master", {"key": "sk-nope"}),
    ("GET", "/team/info?team_id=t", "master", None),
    ("POST", "/team/new", "master", {"team_id": "t", "team_alias": "T"}),
]


def _ask(base: str, method: str, path: str, key: str, body: Any) -> tuple[int, str, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, kind, raw = response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as err:
        status, kind, raw = err.code, err.headers.get("content-type", ""), err.read()
    try:
        return status, kind.split(";")[0], json.loads(raw)
    except ValueError:
        return status, kind.split(";")[0], raw.decode(errors="replace")


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_the_standin_answers_like_the_real_proxy(proxy: Peer) -> None:
    standin = serve_in_thread(PEER_MASTER, ["gpt-4o-mini"], db=False)
    try:
        differences = []
        for method, path, who, body in PROBES:
            key = {"master": PEER_MASTER, "other": "sk-some-other-key-000000", "": ""}[who]
            real = _ask(proxy.url, method, path, key, body)
            ours = _ask(standin.url, method, path, key, body)
            same = real[:2] == ours[:2]
            if isinstance(real[2], dict) and "error" in real[2]:
                same = same and real[2] == ours[2]  # error bodies: the very same JSON
            elif isinstance(real[2], dict) and "data" in real[2]:
                same = same and [m["id"] for m in real[2]["data"]] == [m["id"] for m in ours[2]["data"]]
            else:
                same = same and _shape(real[2]) == _shape(ours[2]) and (
                    not isinstance(real[2], str) or real[2] == ours[2])
            if not same:
                differences.append(f"{method} {path} ({who or 'no key'}): real {real} / stand-in {ours}")
        assert differences == [], "\n".join(differences)
    finally:
        standin.shutdown()
        standin.server_close()


# --------------------------------------------------------------------------- the contract


def _flow(litellm: Standin, tmp_path: Path) -> None:
    """Make the client send every kind of request it has, through the real command line."""
    env = write_env(tmp_path / ".env", LITELLM_PORT=litellm.url.rsplit(":", 1)[1])
    project = Project(tmp_path, env, litellm.url)
    for args in (["keys.create", "--models", "gpt-4o-mini", "--duration", "7d", "--max-budget", "5"],
                 ["keys.create"], ["keys.rotate", "--grace", "1h"],
                 ["keys.list", "--team", "open-webui-team"],
                 ["keys.create", "--force", "--alias", "Other"],
                 ["keys.revoke", "--name", "open-webui", "--block", "--yes"],
                 ["keys.revoke", "--alias", "Other", "--yes"]):
        done = project.run(*args)
        assert done.returncode == 0, (args, done.stderr)
    with LiteLLM(litellm.url, MASTER) as client:
        token = client.generate_key({"key_alias": "by-hash"})["token"]
    assert project.run("keys.revoke", "--key", token[:12], "--yes").returncode == 0


@pytest.mark.contract
def test_every_request_matches_the_real_proxys_schema(
    litellm: Standin, tmp_path: Path, openapi: dict[str, Any]
) -> None:
    _flow(litellm, tmp_path)
    with litellm.state.lock:
        sent = CLIENT_REQUESTS + list(litellm.state.log)
    distinct = {}
    for r in sent:
        if r["path"].startswith("/_standin/"):
            continue
        body_keys = tuple(sorted(r["body"])) if isinstance(r["body"], dict) else ()
        distinct[(r["method"], r["path"], tuple(sorted(r["query"])), body_keys)] = r
    problems = []
    for r in distinct.values():
        problems += check_request(r["method"], r["path"], r["query"], r["body"] or None, openapi)
    print(f"\n{len(sent)} requests, {len(distinct)} distinct shapes checked against the real "
          f"proxy's OpenAPI document ({len(openapi['paths'])} paths)")
    assert problems == []
    assert len(distinct) >= 12
