"""A STAND-IN for the LiteLLM proxy's key and team API - not LiteLLM.

Why it exists: LiteLLM manages virtual keys only with PostgreSQL *and* Prisma's engine
binaries, which these machines cannot download. So the key lifecycle is tested against this
imitation, written from ``shared/reference/litellm-admin-api.md`` (LiteLLM's source, checked
against a real proxy where marked there). The real proxy is used for everything it can show
without a database; the peer suite compares this stand-in's answers with it where both can
answer.

What it imitates:
- auth: ``x-litellm-api-key`` wins over ``Authorization: Bearer``; no key -> 401; with no
  database any non-master key -> 400 ``no_db_connection``;
- the error shapes: A ``{"error": {message, type, param, code}}`` (message sometimes a Python
  repr of a dict), B ``{"detail": ...}`` for team errors, 422 ``{"detail": [...]}`` for bodies
  of the wrong type;
- keys: plaintext ``sk-`` + 22 url-safe chars shown once, ``token`` = sha256 hex; unique
  ``key_alias`` (400, ``param: key_alias``); ``/key/update`` merge-patch (metadata replaced
  whole; ``duration`` resets the expiry); ``/key/delete`` by keys or aliases echoing its input,
  404 when nothing matched; ``/key/info`` with ``status`` active/expired/revoked/deleted
  (a deleted key still answers 200); ``/key/list`` paged (size <= 100), hashes unless
  ``return_full_object=true``; ``/key/block``; ``/key/regenerate`` refused as Enterprise-only;
- teams by ``team_id`` (alias not unique), ``/team/list`` a bare array, ``/team/delete``
  deleting the team's keys;
- ``/v1/chat/completions``: a canned answer, with the key and model checks of ``/v1/models``;
- ``/v1/models`` (and ``/models``): key models intersected with team models, ``[]``/``*``/
  ``all-proxy-models`` meaning all; blocked, expired and deleted keys refused with 401;
- readiness with ``"db": "connected"`` or ``"Not connected"``; without a database the key
  endpoints fail as the real proxy 1.108.7 with ``prisma`` installed (as in its image) does,
  each with its own words in a 500 JSON body (checked by the peer suite).

Its answers with a database are compared with the real proxy's, request by request, by
tests/real/test_real_drift.py: the real LiteLLM is the reference, this is a stand-in for fault
injection and fast tests.

Test controls under ``/_standin/`` (no auth; loopback only): ``faults`` (inject a status, a
hang before or after the work is done, a reset, garbage JSON, an HTML page or a slow
answer at any path; ``held``: the request waits until ``release``, then is carried out - after
its client was killed, say, as LiteLLM carries out a request whose client is gone), ``release``,
``db``, ``state``, ``reset``. Every request is logged (method, path, query, JSON body) for contract checks.

Run alone (standard library only, so it also runs in a bare container):
``LITELLM_MASTER_KEY=sk-... python3 tests/support/standin.py`` (``/standin/litellm_standin.py`` in
its image) with ``STANDIN_HOST`` (127.0.0.1), ``STANDIN_PORT`` (4000), ``STANDIN_DB``
(``connected``/``none``), ``STANDIN_MODELS``, ``STANDIN_ROOT_PATH`` (LiteLLM's
``SERVER_ROOT_PATH`` behind a reverse proxy: the API under that path, another application
elsewhere), and ``STANDIN_CRASH`` (exit 3 at once, for tests
of a crashing service) and ``STANDIN_STATE`` (a
JSON file where keys and teams persist across restarts, as LiteLLM's database keeps them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import struct
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ALL_MODELS = ("", "*", "all-proxy-models")
DURATION = re.compile(r"(\d+)(s|m|h|d|w|mo)\Z")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc)


PLAIN_500 = b"Internal Server Error"  # Starlette's bare answer to an unhandled error


class Reply(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def shape_a(status: int, message: str, kind: str, param: str | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": param,
                                    "code": str(status)}})


def shape_b(status: int, detail: Any) -> Reply:
    return Reply(status, {"detail": detail})


def invalid(field: str, msg: str, value: Any) -> Reply:
    return Reply(422, {"detail": [{"type": "type_error", "loc": ["body", field], "msg": msg,
                                   "input": value}]})


class State:
    def __init__(self, master_key: str, models: list[str], db: bool = True,
                 path: str | None = None) -> None:
        self.path = path  # where keys and teams persist (LiteLLM keeps them in PostgreSQL)
        self.master_key = master_key
        self.models = list(models)
        self.db = db
        self.lock = threading.RLock()
        self.keys: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}
        self.plain: dict[str, str] = {}  # token -> plaintext, so tests can use keys
        self.teams: dict[str, dict[str, Any]] = {}
        self.faults: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        #: what ``held`` requests wait for; ``epoch`` tells them a reset dropped them
        self.gate = threading.Event()
        self.epoch = 0
        #: the paths of the requests whose work is done (answered or not: ``hang_after``), in
        #: order - the event a test waits for before it kills the client that sent one
        self.worked: list[str] = []

    def load(self) -> None:
        if not self.path or not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as handle:
            data = json.load(handle)
        self.keys = data["keys"]
        self.deleted = {t: self.keys[t] for t in data["deleted"] if t in self.keys}
        self.plain = data["plain"]
        self.teams = data["teams"]

    def save(self) -> None:
        if not self.path:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"keys": self.keys, "deleted": list(self.deleted), "plain": self.plain,
                       "teams": self.teams}, handle)
        os.replace(tmp, self.path)

    def reset(self) -> None:
        with self.lock:
            self.keys.clear()
            self.deleted.clear()
            self.plain.clear()
            self.teams.clear()
            self.faults.clear()
            self.log.clear()
            self.worked.clear()
            self.db = True
            self.epoch += 1  # requests still held are dropped, not carried out now
            self.release()

    def release(self) -> None:
        """Let every ``held`` request go on (the next ones wait for a new release)."""
        with self.lock:
            self.gate.set()
            self.gate = threading.Event()

    # -- faults --------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            for fault in self.faults:
                if fault.get("path") not in (path, "*"):
                    continue
                if fault.get("method") and fault["method"] != method:
                    continue
                if fault.get("skip", 0) > 0:
                    fault["skip"] -= 1
                    continue
                if fault.get("times", 1) <= 0:
                    continue
                fault["times"] = fault.get("times", 1) - 1
                return dict(fault)
        return None

    # -- keys ----------------------------------------------------------------

    def find(self, key: str) -> dict[str, Any] | None:
        token = sha256(key) if key.startswith("sk-") else key
        return self.keys.get(token)

    def status(self, record: dict[str, Any]) -> str:
        if record["token"] in self.deleted:
            return "deleted"
        if record.get("blocked"):
            return "revoked"
        expires = record.get("expires")
        if expires and datetime.fromisoformat(expires) <= now():
            return "expired"
        return "active"

    def effective_models(self, record: dict[str, Any]) -> list[str]:
        mine = [m for m in record.get("models") or [] if m not in ALL_MODELS]
        # as 1.108.7: a key restricted to models lists them, served or not
        allowed = list(self.models) if not mine else list(mine)
        team = self.teams.get(record.get("team_id") or "")
        if team:
            team_models = [m for m in team.get("models") or [] if m not in ALL_MODELS]
            if team_models:
                allowed = [m for m in allowed if m in team_models]
        return allowed


def _duration(value: Any) -> str | None:
    if value in (None, ""):
        return None
    match = DURATION.match(str(value))
    if not match:
        raise shape_a(400, f"Invalid duration format: {value}", "bad_request_error", "duration")
    seconds = int(match.group(1)) * UNITS[match.group(2)]
    return (now() + timedelta(seconds=seconds)).isoformat()


def _check_types(body: dict[str, Any], types: dict[str, tuple[type, ...]]) -> None:
    for field, allowed in types.items():
        if field in body and body[field] is not None and not isinstance(body[field], allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise invalid(field, f"Input should be a valid {names}", body[field])


KEY_FIELDS: dict[str, tuple[type, ...]] = {
    "key_alias": (str,), "team_id": (str,), "models": (list,), "duration": (str,),
    "max_budget": (int, float), "metadata": (dict,), "key_type": (str,), "tpm_limit": (int,),
    "rpm_limit": (int,), "blocked": (bool,), "max_parallel_requests": (int,),
    "budget_duration": (str,), "key": (str,), "user_id": (str,),
}


class Handler(BaseHTTPRequestHandler):
    server: StandinServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    #: the request's path as LiteLLM routes it (without the root path)
    route_path = "/"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ------------------------------------------------------------

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        if body is PLAIN_500:
            content_type = "text/plain; charset=utf-8"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset_connection(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise Reply(422, {"detail": [{"type": "json_invalid", "loc": ["body"],
                                          "msg": "JSON decode error"}]}) from None

    def _api_key(self) -> str:
        direct = self.headers.get("x-litellm-api-key")
        if direct:
            return direct.removeprefix("Bearer ").strip()
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else ""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        path = parts.path
        root = self.server.root_path
        if root and not path.startswith("/_standin/"):
            if path != root and not path.startswith(root + "/"):
                self._another_app(method)
                return
            path = path[len(root):] or "/"
        self.route_path = path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            body = self._body() if method == "POST" else {}
        except Reply as reply:
            self._send(reply.status, reply.body)
            return
        if not path.startswith("/_standin/"):
            key = self._api_key()
            with state.lock:
                state.log.append({"method": method, "path": path, "query": query, "body": body,
                                  "auth": sha256(key)[:16] if key else ""})
            fault = state.take_fault(method, path)
            if fault and self._fault(fault):
                return
        else:
            fault = None
        try:
            status, answer = self._route(method, path, query, body)
        except Reply as reply:
            status, answer = reply.status, reply.body
        except Exception as exc:
            status, answer = 500, {"error": {"message": "Internal server error",
                                             "type": "internal_server_error",
                                             "detail": type(exc).__name__}}
        if method == "POST" and not path.startswith("/_standin/") and status < 400:
            with state.lock:
                state.save()
        if not path.startswith("/_standin/"):
            with state.lock:
                state.worked.append(path)
        if fault and fault.get("mode") == "hang_after":  # done, but the answer never comes
            time.sleep(float(fault.get("delay") or 30))
            self._reset_connection()
            return
        if fault and fault.get("mode") == "held":  # done late: its client may be long gone
            try:
                self._send(status, answer)
            except OSError:
                self.close_connection = True
            return
        self._send(status, answer)

    def _another_app(self, method: str) -> None:
        """Behind a reverse proxy that serves LiteLLM under ``root_path``, the rest of the host
        is another application: a web page for every GET (as a single-page app answers)."""
        page = b"<html><body>another application</body></html>"
        self._send(200 if method == "GET" else 405, page, "text/html")

    def _fault(self, fault: dict[str, Any]) -> bool:
        mode = fault.get("mode", "status")
        delay = float(fault.get("delay", 0))
        if mode == "hang":
            time.sleep(delay or 30)
            self._reset_connection()
            return True
        if mode == "reset":
            self._reset_connection()
            return True
        if mode == "held":  # until released, then carried out; dropped by a reset or `delay`
            state = self.server.state
            with state.lock:
                gate, epoch = state.gate, state.epoch
            if not gate.wait(delay or 60) or state.epoch != epoch:
                self._reset_connection()
                return True
            return False
        if mode in ("slow", "hang_after"):
            time.sleep(delay if mode == "slow" else 0)
            return False  # then handle the request (and answer late, or never)
        if mode == "garbage":
            self._send(int(fault.get("status", 200)), b'{"keys": [tru', "application/json")
            return True
        if mode == "plain500":  # Starlette's bare answer when a handler fails
            self._send(500, PLAIN_500)
            return True
        if mode == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
            self._send(int(fault.get("status", 502)), page, "text/html")
            return True
        status = int(fault.get("status", 500))
        self._send(status, fault.get("body") or {"error": {
            "message": fault.get("message", "injected failure"), "type": "injected",
            "param": None, "code": str(status)}})
        return True

    # -- routes --------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        state = self.server.state
        if path.startswith("/_standin/"):
            return self._control(method, path, body)
        if path == "/health/liveliness" or path == "/health/liveness":
            return 200, "I'm alive!"
        if path == "/health/readiness":
            if not state.db:  # exactly what 1.108.7 answers without a database
                return 200, {"status": "healthy", "db": "Not connected"}
            return 200, {"status": "healthy", "db": "connected"}  # as 1.108.7 with its database
        if path in ("/v1/models", "/models"):
            return self._models()
        if path in ("/v1/chat/completions", "/chat/completions") and method == "POST":
            return self._chat(body)
        if not isinstance(body, dict):
            raise invalid("body", "Input should be a valid dictionary", body)
        routes = {
            ("POST", "/key/generate"): self._generate,
            ("POST", "/key/update"): self._update,
            ("POST", "/key/delete"): self._delete,
            ("GET", "/key/info"): self._info,
            ("GET", "/key/list"): self._list,
            ("POST", "/key/block"): self._block,
            ("POST", "/key/unblock"): self._block,
            ("POST", "/key/regenerate"): self._regenerate,
            ("POST", "/team/new"): self._team_new,
            ("GET", "/team/info"): self._team_info,
            ("GET", "/team/list"): self._team_list,
            ("POST", "/team/delete"): self._team_delete,
        }
        handler = routes.get((method, path))
        if handler is None:
            if path.startswith("/key/") and path.endswith("/regenerate"):
                return self._regenerate(query, body, path)
            return 404, {"detail": "Not Found"}
        self._admin()
        with state.lock:
            return handler(query, body, path)

    def _admin(self) -> None:
        state = self.server.state
        key = self._api_key()
        if not key:
            raise shape_a(401, "Authentication Error, No api key passed in.", "auth_error", "None")
        if secrets.compare_digest(key, state.master_key):
            return
        if not state.db:
            raise shape_a(400, "No connected db.", "no_db_connection")
        if state.find(key) is not None:
            raise shape_a(401, "Authentication Error, Only proxy admin can be used to generate, "
                          "delete, update info for new keys/users/teams.", "auth_error", "None")
        raise shape_a(401, "Authentication Error, Invalid API key provided.",
                      "token_not_found_in_db", "key")

    def _chat(self, body: Any) -> tuple[int, Any]:
        """A canned completion, after the same key checks as /v1/models (and the model's)."""
        _status, listing = self._models()
        allowed = [m["id"] for m in listing["data"]]
        model = body.get("model") if isinstance(body, dict) else None
        if model not in allowed:
            raise shape_a(403 if model in self.server.state.models else 400,
                          f"key not allowed to access model={model}", "key_model_access_denied",
                          "model")
        return 200, {"id": "chatcmpl-standin", "object": "chat.completion",
                     "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "stand-in reply"}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}

    def _models(self) -> tuple[int, Any]:
        state = self.server.state
        key = self._api_key()
        if not key:
            raise shape_a(401, "Authentication Error, No api key passed in.", "auth_error", "None")
        with state.lock:
            if secrets.compare_digest(key, state.master_key):
                models = state.models
            elif not state.db:
                raise shape_a(400, "No connected db.", "no_db_connection")
            else:
                record = state.find(key)
                if record is None or record["token"] in state.deleted:
                    raise shape_a(401, "Authentication Error, Invalid API key provided.",
                                  "token_not_found_in_db", "key")
                status = state.status(record)
                if status == "revoked":
                    raise shape_a(401, "Authentication Error, Key is blocked. Update via "
                                  "`/key/unblock` if you're admin.", "auth_error", "None")
                if status == "expired":
                    raise shape_a(401, f"Authentication Error - Expired Key. Key Expiry time "
                                  f"{record['expires']}", "expired_key", f"sk-...{key[-4:]}")
                models = state.effective_models(record)
        created = int(time.time())
        return 200, {"data": [{"id": m, "object": "model", "created": created,
                               "owned_by": "openai"} for m in models], "object": "list"}

    def _need_db(self, action: str) -> None:
        """Without a database the real proxy (1.108.7, with prisma installed as in its image)
        fails in a different way on nearly every endpoint."""
        if self.server.state.db:
            return
        path = self.route_path
        if path == "/key/list":
            raise shape_a(500, "Authentication Error, Database not connected",
                          "internal_server_error", "None")
        if path == "/key/update":
            raise shape_a(500, "{'error': 'Database not connected'}", "auth_error", "None")
        if path in ("/team/info", "/team/list"):
            raise shape_a(500, "{'error': 'Database not connected. Connect a database to your "
                          "proxy - https://docs.litellm.ai/docs/simple_proxy#managing-auth---"
                          "virtual-keys'}", "auth_error", "None")
        internal = {
            "/key/info": "Database not connected. Connect a database to your proxy - "
                         "https://docs.litellm.ai/docs/simple_proxy#managing-auth---virtual-keys",
            "/key/generate": "{'error': 'DB not connected. This endpoint needs a database; set "
                             "DATABASE_URL to a PostgreSQL connection string (postgresql://...) to "
                             "enable it. See https://docs.litellm.ai/docs/proxy/virtual_keys'}",
            "/key/delete": "Not connected to DB!",
            "/team/new": "{'error': 'No db connected'}",
        }
        if path in internal:
            raise Reply(500, {"error": {"message": internal[path], "type": "internal_server_error",
                                        "param": None, "code": "500"}})
        if path in ("/key/block", "/key/unblock"):
            raise Reply(500, {"error": {"message": "Internal server error",
                                        "type": "internal_server_error"}})
        raise Reply(500, PLAIN_500)

    def _alias_free(self, alias: Any, except_token: str | None = None) -> None:
        if not alias:
            return
        for token, record in self.server.state.keys.items():
            if token == except_token or token in self.server.state.deleted:
                continue
            if record.get("key_alias") == alias:
                raise shape_a(400, f"Key with alias '{alias}' already exists. Unique key aliases "
                              "across all keys are required.", "bad_request_error", "key_alias")

    def _public(self, record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if k != "key"}

    def _generate(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to generate key.")
        _check_types(body, KEY_FIELDS)
        team_id = body.get("team_id")  # 1.108.7 does not check that the team exists
        self._alias_free(body.get("key_alias"))
        plain = "sk-" + secrets.token_urlsafe(16)
        token = sha256(plain)
        record = {
            "token": token,
            "key_name": f"sk-...{plain[-4:]}",
            "key_alias": body.get("key_alias"),
            "team_id": team_id,
            "models": list(body.get("models") or []),
            "metadata": dict(body.get("metadata") or {}),
            "max_budget": body.get("max_budget"),
            "spend": 0.0,
            "expires": _duration(body.get("duration")),
            "blocked": bool(body.get("blocked") or False),
            "tpm_limit": body.get("tpm_limit"),
            "rpm_limit": body.get("rpm_limit"),
            "max_parallel_requests": body.get("max_parallel_requests"),
            "budget_duration": body.get("budget_duration"),
            "user_id": body.get("user_id"),
            "created_at": now().isoformat(),
            "updated_at": now().isoformat(),
        }
        state.keys[token] = record
        state.plain[token] = plain
        return 200, {**record, "key": plain, "token_id": token, "duration": body.get("duration")}

    def _update(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to update key.")
        _check_types(body, KEY_FIELDS)
        record = None
        if body.get("key"):
            record = state.find(str(body["key"]))
        elif body.get("key_alias"):
            matches = [r for r in state.keys.values() if r.get("key_alias") == body["key_alias"]
                       and r["token"] not in state.deleted]
            if len(matches) > 1:
                raise shape_a(400, "Multiple keys share this alias", "bad_request_error",
                              "key_alias")
            record = matches[0] if matches else None
        if record is None or record["token"] in state.deleted:
            raise shape_a(404, "Key not found.", "not_found", "key")
        if "key_alias" in body:
            self._alias_free(body["key_alias"], except_token=record["token"])
        for field, value in body.items():
            if field in ("key",):
                continue
            if field == "duration":
                record["expires"] = _duration(value)
            elif field in KEY_FIELDS:
                record[field] = value
        record["updated_at"] = now().isoformat()
        return 200, {"key": record["token"], **self._public(record)}

    def _delete(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to delete key.")
        keys, aliases = body.get("keys"), body.get("key_aliases")
        if keys is not None and not isinstance(keys, list):
            raise invalid("keys", "Input should be a valid list", keys)
        if aliases is not None and not isinstance(aliases, list):
            raise invalid("key_aliases", "Input should be a valid list", aliases)
        found = []
        for key in keys or []:
            record = state.find(str(key))
            if record and record["token"] not in state.deleted:
                found.append(record)
        for alias in aliases or []:
            found += [r for r in state.keys.values()
                      if r.get("key_alias") == alias and r["token"] not in state.deleted]
        if not found:  # 1.108.7's words, type and (null) param
            raise Reply(404, {"error": {"message": "{'error': 'No keys found'}",
                                        "type": "internal_server_error", "param": None, "code": "404"}})
        for record in found:
            state.deleted[record["token"]] = record
        return 200, {"deleted_keys": keys if keys is not None else aliases}

    def _info(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to get key info.")
        key = query.get("key", "")
        record = state.find(key) if key else None
        if record is None:
            raise shape_a(404, "Key not found in database", "not_found_error", "key")
        info = {k: v for k, v in self._public(record).items() if k != "token"}  # as LiteLLM: no hash
        if record["token"] in state.deleted:
            info.update({"id": record["token"][:32], "deleted_at": now().isoformat(),
                         "deleted_by": "default_user_id"})
        return 200, {"key": key, "info": {**info, "status": state.status(record)}}

    def _list(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to list keys.")
        try:
            page = int(query.get("page", "1"))
            size = int(query.get("size", "10"))
        except ValueError:
            raise Reply(422, {"detail": [{"loc": ["query", "page"], "msg": "Input should be a "
                                          "valid integer", "type": "int_parsing"}]}) from None
        if page < 1 or not 1 <= size <= 100:
            raise Reply(422, {"detail": [{"loc": ["query", "size"], "msg": "Input should be "
                                          "less than or equal to 100", "type": "less_than_equal"}]})
        records = [r for t, r in state.keys.items() if t not in state.deleted]
        if query.get("team_id"):
            records = [r for r in records if r.get("team_id") == query["team_id"]]
        if query.get("key_alias"):
            records = [r for r in records if r.get("key_alias") == query["key_alias"]]
        total = len(records)
        chunk = records[(page - 1) * size : page * size]
        full = query.get("return_full_object", "false").lower() == "true"
        keys = ([{**self._public(r), "team_alias": (state.teams.get(r.get("team_id") or "") or {})
                  .get("team_alias")} for r in chunk] if full else [r["token"] for r in chunk])
        return 200, {"keys": keys, "total_count": total, "current_page": page,
                     "total_pages": max(1, -(-total // size))}

    def _block(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to block key.")
        record = state.find(str(body.get("key", "")))
        if record is None or record["token"] in state.deleted:
            raise shape_a(404, "Key not found.", "not_found", "key")
        record["blocked"] = path.endswith("/block")
        return 200, self._public(record)

    def _regenerate(self, query: dict[str, str], body: Any, path: str) -> tuple[int, Any]:
        self._need_db("Unable to regenerate key.")
        raise shape_a(500, "Regenerating Virtual Keys is an Enterprise feature, see "
                      "https://docs.litellm.ai/docs/enterprise", "internal_server_error")

    def _team_new(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to create team.")
        _check_types(body, {"team_id": (str,), "team_alias": (str,), "models": (list,),
                            "metadata": (dict,), "max_budget": (int, float)})
        team_id = body.get("team_id") or secrets.token_hex(16)
        if team_id in state.teams:
            raise shape_b(400, {"error": f"Team id = {team_id} already exists. Please use a "
                                "different team id."})
        team = {"team_id": team_id, "team_alias": body.get("team_alias"),
                "models": list(body.get("models") or []), "metadata": body.get("metadata") or {},
                "max_budget": body.get("max_budget"), "spend": 0.0, "blocked": False,
                "tpm_limit": None, "rpm_limit": None, "max_parallel_requests": None,
                "budget_duration": None}
        state.teams[team_id] = team
        return 200, team

    def _team_info(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to get team info.")
        team = state.teams.get(query.get("team_id", ""))
        if team is None:
            raise shape_a(404, "{'message': 'Team not found, passed team id: "
                          f"{query.get('team_id')}.'}}", "auth_error", "None")
        keys = [self._public(r) for t, r in state.keys.items()
                if r.get("team_id") == team["team_id"] and t not in state.deleted]
        return 200, {"team_id": team["team_id"], "team_info": team, "keys": keys}

    def _team_list(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        self._need_db("Unable to list teams.")
        return 200, list(self.server.state.teams.values())

    def _team_delete(self, query: dict[str, str], body: dict[str, Any], path: str) -> tuple[int, Any]:
        state = self.server.state
        self._need_db("Unable to delete team.")
        ids = body.get("team_ids")
        if not isinstance(ids, list):
            raise invalid("team_ids", "Input should be a valid list", ids)
        missing = [t for t in ids if t not in state.teams]
        if missing:
            raise shape_b(404, {"error": f"Team not found, passed team_id={missing[0]}"})
        for team_id in ids:
            del state.teams[team_id]
            for token, record in state.keys.items():
                if record.get("team_id") == team_id:
                    state.deleted[token] = record
        return 200, {"deleted_teams": ids}

    # -- test controls -------------------------------------------------------

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        state = self.server.state
        with state.lock:
            if path == "/_standin/faults" and method == "POST":
                state.faults.append(dict(body))
                return 200, {"faults": state.faults}
            if path == "/_standin/faults" and method == "DELETE":
                state.faults.clear()
                return 200, {"faults": []}
            if path == "/_standin/db" and method == "POST":
                state.db = bool(body.get("connected"))
                return 200, {"db": state.db}
            if path == "/_standin/release" and method == "POST":
                state.release()
                return 200, {"released": True}
            if path == "/_standin/reset" and method == "POST":
                state.reset()
                return 200, {"reset": True}
            if path == "/_standin/state":
                return 200, {
                    "keys": [{**self._public(r), "status": state.status(r)}
                             for r in state.keys.values()],
                    "teams": list(state.teams.values()),
                    "log": state.log,
                }
        return 404, {"detail": "Not Found"}


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: State, root_path: str = "") -> None:
        super().__init__(address, Handler)
        self.state = state
        #: LiteLLM's SERVER_ROOT_PATH behind a reverse proxy (``/litellm``): the API answers
        #: under it only, and every other path is another application (``Handler._another_app``)
        self.root_path = root_path.rstrip("/")

    @property
    def url(self) -> str:
        """LiteLLM's root: the host's URL, plus ``root_path``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{self.root_path}"


class NotLiteLLM(BaseHTTPRequestHandler):
    """Something else on LiteLLM's port: a web server that answers every GET with an HTML page."""

    def do_GET(self) -> None:
        body = b"<html>welcome to my web server</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve_in_thread(master_key: str, models: list[str], host: str = "127.0.0.1",
                    port: int = 0, db: bool = True, root_path: str = "") -> StandinServer:
    server = StandinServer((host, port), State(master_key, models, db), root_path)
    threading.Thread(target=server.serve_forever, name="litellm-standin", daemon=True).start()
    return server


def main() -> None:
    crash = os.environ.get("STANDIN_CRASH", "")
    if crash:  # for tests of a service that dies on start
        print(f"stand-in: crashing on purpose: {crash}", flush=True)
        raise SystemExit(3)
    master = os.environ.get("LITELLM_MASTER_KEY", "")
    if not master or master == "sk-1234":
        raise SystemExit("LITELLM_MASTER_KEY must be set (and not sk-1234), as for LiteLLM")
    models = [m for m in os.environ.get("STANDIN_MODELS", "gpt-4o-mini,claude-haiku").split(",")
              if m]
    db = os.environ.get("STANDIN_DB", "connected") == "connected"
    state = State(master, models, db, os.environ.get("STANDIN_STATE") or None)
    state.load()
    server = StandinServer((os.environ.get("STANDIN_HOST", "127.0.0.1"),
                            int(os.environ.get("STANDIN_PORT", "4000"))), state,
                           os.environ.get("STANDIN_ROOT_PATH", ""))
    print(f"LiteLLM stand-in listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
