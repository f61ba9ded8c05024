"""Drift: the LiteLLM stand-in against the REAL LiteLLM with its database, request by request.

The stand-in (tests/support/standin.py) stays for fault injection and fast tests; the real proxy
is the reference. One scenario - every admin request the tasks send, in the states they meet
(new, duplicate alias, renamed, blocked, expired, deleted, deleted twice, unknown team, paging)
- runs against both; each answer is compared: status, error shape (A ``{"error": {...}}`` or B
``{"detail": ...}``, with its ``type``, ``param`` and ``code``), and for every field the tasks read,
presence and type. A field the stand-in sends that LiteLLM does not is drift too.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.real_litellm import REAL_MASTER, SERVED, RealProxy, running_proxy
from tests.support.standin import serve_in_thread

pytestmark = pytest.mark.real

#: Fields of LiteLLM's answers that tasks/clients/litellm.py and tasks/virtualkeys/manager.py read.
READ = {"key", "token", "key_alias", "team_id", "models", "expires", "metadata", "max_budget", "spend",
        "blocked", "tpm_limit", "rpm_limit", "max_parallel_requests", "budget_duration", "keys",
        "total_pages", "current_page", "total_count", "team_info", "team_alias", "deleted_keys", "data",
        "id", "info", "status", "db", "detail", "error", "message", "type", "param", "code"}

Call = Callable[[str, str, Any, str], tuple[int, Any]]


def caller(base: str) -> Call:
    def call(method: str, path: str, body: Any = None, key: str = REAL_MASTER) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")
    return call


def scenario(call: Call) -> Iterator[tuple[str, int, Any]]:
    """Every request the tasks send, in each state they meet; yields (label, status, body)."""
    def step(label: str, method: str, path: str, body: Any = None, key: str = REAL_MASTER) -> Any:
        status, answer = call(method, path, body, key)
        results.append((label, status, answer))
        return answer

    results: list[tuple[str, int, Any]] = []
    t = secrets.token_hex(3)  # names of this run: the scenario can run twice on one database
    step("readiness", "GET", "/health/readiness", key="")
    step("team/info unknown", "GET", f"/team/info?team_id=drift-{t}")
    step("team/new", "POST", "/team/new", {"team_id": f"drift-{t}", "team_alias": "Drift Team"})
    step("team/info", "GET", f"/team/info?team_id=drift-{t}")
    made = step("key/generate", "POST", "/key/generate", {
        "key_alias": f"drift-{t} [pending ab12cd34]", "team_id": f"drift-{t}", "models": ["gpt-4o-mini"],
        "metadata": {"managed_by": "ai-gateway-tasks", "key_name": "open-webui"}, "duration": "1h",
        "max_budget": 5.0, "tpm_limit": 100, "rpm_limit": 10})
    key = made["key"]
    token = hashlib.sha256(key.encode()).hexdigest()
    step("key/generate duplicate alias", "POST", "/key/generate",
         {"key_alias": f"drift-{t} [pending ab12cd34]"})
    step("key/generate unknown team", "POST", "/key/generate",
         {"key_alias": f"orphan-{t}", "team_id": f"nope-{t}"})
    step("key/info by key", "GET", f"/key/info?key={key}")
    step("key/info by hash", "GET", f"/key/info?key={token}")
    step("key/info unknown", "GET", "/key/info?key=" + "0" * 64)
    step("v1/models with the key", "GET", "/v1/models", key=key)
    step("v1/models with the master key", "GET", "/v1/models")
    typo = step("key/generate, a model not served", "POST", "/key/generate",
                {"key_alias": f"typo-{t}", "models": ["gpt4o"]})
    step("v1/models of a key for a model not served", "GET", "/v1/models", key=typo["key"])
    step("key/update rename", "POST", "/key/update", {"key": token, "key_alias": f"drift-{t}"})
    step("key/update rename onto a taken alias", "POST", "/key/update",
         {"key": token, "key_alias": f"orphan-{t}"})
    step("key/update grace", "POST", "/key/update", {"key": token, "duration": "1h"})
    step("key/list by alias", "GET", f"/key/list?return_full_object=true&page=1&size=100&key_alias=drift-{t}")
    step("key/list by team", "GET", f"/key/list?return_full_object=true&page=1&size=100&team_id=drift-{t}")
    step("key/list page 2", "GET", "/key/list?return_full_object=true&page=2&size=1")
    step("key/block", "POST", "/key/block", {"key": token})
    step("key/info blocked", "GET", f"/key/info?key={token}")
    step("v1/models blocked", "GET", "/v1/models", key=key)
    step("key/unblock", "POST", "/key/unblock", {"key": token})
    short = step("key/generate 1s", "POST", "/key/generate", {"key_alias": f"short-{t}", "duration": "1s"})
    deadline = time.monotonic() + 60
    while call("GET", "/v1/models", None, short["key"])[0] == 200:  # until refused: expired
        assert time.monotonic() < deadline, "a 1 s key still accepted after 60 s"
        time.sleep(0.1)
    step("v1/models expired", "GET", "/v1/models", key=short["key"])
    step("key/delete", "POST", "/key/delete", {"keys": [token]})
    step("key/delete again", "POST", "/key/delete", {"keys": [token]})
    step("key/info deleted", "GET", f"/key/info?key={token}")
    step("v1/models deleted", "GET", "/v1/models", key=key)
    step("key/delete by alias", "POST", "/key/delete", {"key_aliases": [f"orphan-{t}"]})
    step("key/list wrong master", "GET", "/key/list?page=1&size=1", key="sk-wrong-master-0000000000")
    yield from results


def shape_of(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return "A"
    if isinstance(body, dict) and "detail" in body:
        return "B"
    return type(body).__name__


def differences(label: str, real: tuple[int, Any], ours: tuple[int, Any]) -> list[str]:
    found = []
    if real[0] != ours[0]:
        found.append(f"{label}: status real {real[0]} / stand-in {ours[0]}")
    if shape_of(real[1]) != shape_of(ours[1]):
        return [*found, f"{label}: body real {str(real[1])[:300]} / stand-in {str(ours[1])[:300]}"]
    if shape_of(real[1]) == "A":
        for field in ("type", "param", "code"):
            if _masked(real[1]["error"].get(field)) != _masked(ours[1]["error"].get(field)):
                found.append(f"{label}: error.{field} real {real[1]['error'].get(field)!r} / "
                             f"stand-in {ours[1]['error'].get(field)!r}")
    if isinstance(real[1], dict) and isinstance(real[1].get("data"), list) and isinstance(ours[1], dict):
        ids = ([m.get("id") for m in real[1]["data"]], [m.get("id") for m in ours[1].get("data", [])])
        if ids[0] != ids[1]:
            found.append(f"{label}: models real {ids[0]} / stand-in {ids[1]}")
    found += _fields(label, real[1], ours[1])
    return found


def _masked(value: Any) -> str:
    """An error's param may be the caller's key, masked (``sk-...ab12``): compare its form only."""
    text = str(value)
    return "sk-...<4>" if text.startswith("sk-...") and len(text) == 10 else text


def _fields(where: str, real: Any, ours: Any) -> list[str]:
    if isinstance(real, list) and isinstance(ours, list):
        return _fields(f"{where}[0]", real[0], ours[0]) if real and ours else []
    if not (isinstance(real, dict) and isinstance(ours, dict)):
        return []
    found = [f"{where}: stand-in sends {k!r}, LiteLLM does not" for k in sorted(set(ours) - set(real))]
    for k in sorted(READ & set(real)):
        if k not in ours:
            found.append(f"{where}: stand-in lacks {k!r}")
        elif real[k] is not None and ours[k] is not None and type(real[k]) is not type(ours[k]) \
                and not {type(real[k]), type(ours[k])} <= {int, float}:
            found.append(f"{where}.{k}: type real {type(real[k]).__name__} / "
                         f"stand-in {type(ours[k]).__name__}")
        else:
            found += _fields(f"{where}.{k}", real[k], ours[k])
    return found


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, real_postgres: Any, real_provider: Any
          ) -> Iterator[RealProxy]:
    with running_proxy(tmp_path_factory.mktemp("real-drift"), real_postgres, real_provider) as proxy:
        yield proxy


def test_the_standin_answers_like_the_real_proxy_with_its_database(fresh: RealProxy) -> None:
    standin = serve_in_thread(REAL_MASTER, list(SERVED))
    try:
        real = list(scenario(caller(fresh.url)))
        ours = list(scenario(caller(standin.url)))
    finally:
        standin.shutdown()
        standin.server_close()
    assert [r[0] for r in real] == [o[0] for o in ours]
    found = [d for r, o in zip(real, ours, strict=True) for d in differences(r[0], r[1:], o[1:])]
    print(f"\n{len(real)} requests compared")
    assert found == [], "\n".join(found)
