"""A small LiteLLM admin client over httpx: one error type per kind of failure.

Every call has a timeout. Transport failures (refused, reset, timed out) become
``ProxyUnreachableError``; a refused master key ``AuthError``; a proxy without its database
``NoDatabaseError``; anything else LiteLLM (or an impostor on its port) says ``ApiError`` with
the message pulled out of whichever of LiteLLM's three error shapes it used. The master key
travels only in the ``Authorization`` header.
"""

from __future__ import annotations

import ast
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..base.errors import ApiError, AuthError, NoDatabaseError, ProxyUnreachableError, UsageError
from .http import http_client, transport_failure

PAGE_SIZE = 100  # LiteLLM's largest page for /key/list
#: readiness ``db`` answers that may turn ``connected`` by themselves (a missed ping deadline)
DB_TRANSIENT = ("disconnected", "stalled")
#: how long require_database asks again after such an answer: LiteLLM's probe has a 4 s
#: deadline, so this spans a few of its probes
DB_RECHECK_SECONDS = 15.0
#: how long a readiness answer of ``db: connected`` stands for "asked now" (seconds), once: the
#: one a task got when it reached LiteLLM serves its first key request instead of a second ask
READY_FRESH_SECONDS = 1.0


def token_of(key: str) -> str:
    """LiteLLM's id for a key: the sha256 hex of the plaintext (hashes pass through)."""
    if key.startswith("sk-"):
        return hashlib.sha256(key.encode()).hexdigest()
    return key


def error_message(body: Any) -> tuple[str, str]:
    """(message, type) from any of LiteLLM's error shapes; message may be a dict's repr."""
    kind = ""
    message: Any = body
    if isinstance(body, Mapping):
        if isinstance(body.get("error"), Mapping):  # shape A
            message = body["error"].get("message", "")
            kind = str(body["error"].get("type") or "")
        elif "detail" in body:  # shape B, or a 422 list
            message = body["detail"]
            if isinstance(message, list):  # FastAPI validation
                parts = []
                for item in message:
                    if isinstance(item, Mapping):
                        loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                        parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
                message = "; ".join(parts) or "request rejected"
                kind = "validation_error"
        elif "message" in body:
            message = body["message"]
    if isinstance(message, str) and message.startswith("{"):
        try:
            inner = ast.literal_eval(message)
        except (ValueError, SyntaxError):
            inner = None
        if isinstance(inner, Mapping):
            message = inner.get("error") or inner.get("message") or inner
    if isinstance(message, Mapping):
        message = message.get("error") or message.get("message") or json.dumps(message)
    return " ".join(str(message).split())[:300], kind


class LiteLLM:
    """The admin API of one LiteLLM proxy."""

    def __init__(
        self,
        base_url: str,
        master_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._master_key = master_key
        self.timeout = timeout
        self._client = http_client(self.base_url, timeout, transport)
        self._connected_at: float | None = None  # when readiness last said db: connected

    def __enter__(self) -> LiteLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"LiteLLM({self.base_url!r})"

    # ------------------------------------------------------------------ transport

    def _send(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        token = self._master_key if key is None else key
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self._client.request(method, path, params=params, json=body, headers=headers)
        except (UnicodeEncodeError, httpx.LocalProtocolError):
            # a key an HTTP header cannot carry (non-ASCII, spaces at its ends): not the network
            raise UsageError(
                "a key has characters an HTTP header cannot carry (outside ASCII, or spaces at "
                "its ends); `invoke env.check` names it and says how to fix it"
            ) from None
        except httpx.TransportError as exc:
            message, maybe_done = transport_failure(
                exc, "LiteLLM", self.base_url, path, self.timeout,
                "is the stack running (`invoke stack.start`) and the port right (LITELLM_PORT, --url)?")
            raise ProxyUnreachableError(message, maybe_done=maybe_done) from exc

    def _elsewhere(self, *, proxy: bool = False) -> str:
        """The likely cause when something that is not LiteLLM answered at ``base_url``."""
        path = urlsplit(self.base_url).path
        if path:
            return (f"is LiteLLM served under {path} there (its SERVER_ROOT_PATH, behind a reverse "
                    "proxy)? --url takes the URL LiteLLM's own root is at")
        return "is something else on that port" + (", or a proxy in front?" if proxy else "?")

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _fail(self, response: httpx.Response, path: str, *, admin: bool = True) -> ApiError:
        """Turn an error response into the right exception (returned, for ``raise``)."""
        body = self._json(response)
        status = response.status_code
        if body is None and status == 500 and response.text.strip() == "Internal Server Error":
            # LiteLLM's bare answer when a handler fails (e.g. with no database, seen on 1.108.7)
            return ApiError(
                f"LiteLLM failed on {path} with an internal error (HTTP 500, no details); its "
                "log says why: `invoke stack.logs --service litellm`",
                status,
            )
        if body is None:
            kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
            return ApiError(
                f"{self.base_url}{path} answered HTTP {status} with {kind}, not LiteLLM's JSON; "
                f"{self._elsewhere(proxy=True)}",
                status,
            )
        message, kind = error_message(body)
        lowered = message.lower()
        if kind == "no_db_connection" or any(
            text in lowered for text in ("db not connected", "no connected db", "database not connected",
                                         "not connected to db", "no db connected")
        ):
            raise NoDatabaseError(
                f"LiteLLM at {self.base_url} has no database connected, and virtual keys live "
                "in it; set DATABASE_URL for LiteLLM and check its PostgreSQL"
            )
        if admin and status in (401, 403):
            raise AuthError(
                f"LiteLLM at {self.base_url} refused the master key ({message}); check "
                "LITELLM_MASTER_KEY in .env against the one LiteLLM was started with"
            )
        return ApiError(f"LiteLLM {path}: HTTP {status}: {message}", status)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        allow_404: bool = False,
    ) -> Any:
        response = self._send(method, path, params=params, body=body)
        if allow_404 and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self._fail(response, path)
        data = self._json(response)
        if data is None:
            raise ApiError(
                f"{self.base_url}{path} answered HTTP {response.status_code} without JSON; "
                f"{self._elsewhere()}",
                response.status_code,
            )
        return data

    # ------------------------------------------------------------------ health

    def readiness(self) -> dict[str, Any]:
        response = self._send("GET", "/health/readiness", key="")
        data = self._json(response)
        if not isinstance(data, dict) or "status" not in data:
            if response.status_code == 503:
                raise ProxyUnreachableError(
                    f"LiteLLM at {self.base_url} is not ready (HTTP 503); wait and try again"
                )
            raise ApiError(
                f"{self.base_url}/health/readiness answered HTTP {response.status_code} but not "
                f"as LiteLLM does; {self._elsewhere()}",
                response.status_code,
            )
        self._connected_at = time.monotonic() if data.get("db") == "connected" else None
        return data

    def wait_ready(self, timeout: float, *, interval: float = 0.5,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Poll ``/health/readiness`` until LiteLLM answers, for at most ``timeout`` seconds.
        LiteLLM answers nothing until its startup is done (about 7 s for a bare proxy)."""
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                return self.readiness()
            except ProxyUnreachableError as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProxyUnreachableError(
                        f"LiteLLM at {self.base_url} was not ready within {timeout:g}s "
                        f"({exc.message})") from None
            if progress and not announced:
                progress(f"waiting up to {timeout:g}s for LiteLLM at {self.base_url}")
                announced = True
            time.sleep(min(interval, remaining))

    def database(self, wait: float = DB_RECHECK_SECONDS) -> str:
        """LiteLLM's readiness ``db`` answer (``connected``, ``Not connected``: none configured,
        ...), asked now - or ``connected`` when the last readiness answer, less than
        READY_FRESH_SECONDS old and not used so yet, said so. A ``disconnected`` or ``stalled``
        answer is asked again for up to ``wait`` seconds: LiteLLM gives it whenever its own
        database ping misses its 2 s deadline (4 s with a reconnect; LiteLLM 1.108,
        ``proxy/health_endpoints/_health_endpoints.py``), which a busy machine makes happen."""
        asked, self._connected_at = self._connected_at, None  # an answer stands in once
        if asked is not None and time.monotonic() - asked < READY_FRESH_SECONDS:
            return "connected"
        deadline = time.monotonic() + wait
        while True:
            db = str(self.readiness().get("db", ""))
            self._connected_at = None  # this answer is used here
            remaining = deadline - time.monotonic()
            if db not in DB_TRANSIENT or remaining <= 0:
                return db
            time.sleep(min(1.0, remaining))

    def require_database(self, wait: float = DB_RECHECK_SECONDS) -> None:
        """Check that LiteLLM is up and has its database (asked now, see ``database``: an
        earlier answer may be stale, e.g. LiteLLM stopped meanwhile); keys live there.
        NoDatabaseError (6)."""
        db = self.database(wait)
        if db != "connected":
            raise NoDatabaseError(
                f"LiteLLM at {self.base_url} is up but its database is {db or 'unknown'!r}, and "
                "virtual keys live in it; set DATABASE_URL for LiteLLM and check its PostgreSQL")

    # ------------------------------------------------------------------ keys

    def key_info(self, key: str) -> dict[str, Any] | None:
        """``/key/info`` for a plaintext key or its hash; None when LiteLLM does not know it."""
        data = self._call("GET", "/key/info", params={"key": key}, allow_404=True)
        if data is None:
            return None
        info = data.get("info") if isinstance(data, Mapping) else None
        return dict(info) if isinstance(info, Mapping) else None

    def generate_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        data = self._call("POST", "/key/generate", body=body)
        if not isinstance(data, dict) or not str(data.get("key", "")).startswith("sk-"):
            raise ApiError("LiteLLM /key/generate answered without a key")
        return data

    def update_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        data = self._call("POST", "/key/update", body=body)
        return data if isinstance(data, dict) else {}

    def delete_keys(self, keys: list[str] | None = None, aliases: list[str] | None = None) -> bool:
        """Delete by key/hash or by alias. False when LiteLLM found nothing to delete."""
        body: dict[str, Any] = {"keys": keys} if keys else {"key_aliases": aliases or []}
        response = self._send("POST", "/key/delete", body=body)
        if response.status_code == 404:
            return False
        if response.status_code >= 400:
            raise self._fail(response, "/key/delete")
        return True

    def check_admin(self) -> None:
        """One authenticated admin request (``/key/list``, one hash): AuthError when LiteLLM
        refuses this client's key as its master key."""
        self._call("GET", "/key/list", params={"page": 1, "size": 1})

    def block_key(self, key: str) -> None:
        self._call("POST", "/key/block", body={"key": key})

    def list_keys(
        self, *, team_id: str | None = None, key_alias: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every key (full objects), following LiteLLM's pages of at most 100. ApiError (7) when
        a page answers no keys before the count LiteLLM gave was reached: a short list would be
        taken for the whole one (a key missed is a key never rotated or collected)."""
        page, seen, expected = 1, 0, 0
        while True:
            params: dict[str, Any] = {"page": page, "size": PAGE_SIZE, "return_full_object": "true"}
            if team_id:
                params["team_id"] = team_id
            if key_alias:
                params["key_alias"] = key_alias
            data = self._call("GET", "/key/list", params=params)
            keys = data.get("keys", []) if isinstance(data, Mapping) else []
            count = data.get("total_count") if isinstance(data, Mapping) else None
            if isinstance(count, int) and not isinstance(count, bool):
                expected = count  # each page's own count: keys deleted meanwhile lower it
            if not keys and seen < expected:
                raise ApiError(f"LiteLLM's key list is inconsistent: it counted {expected} keys, "
                               f"and page {page} answered none after {seen}; run the task again")
            for item in keys:
                seen += 1
                if isinstance(item, Mapping):
                    yield dict(item)
                else:
                    yield {"token": str(item)}
            total_pages = int(data.get("total_pages") or 1) if isinstance(data, Mapping) else 1
            if (page >= total_pages and seen >= expected) or not keys:
                return
            page += 1

    def keys_with_alias(self, alias: str) -> list[dict[str, Any]]:
        """The keys whose ``key_alias`` is exactly ``alias`` (LiteLLM's own ``key_alias`` filter
        narrows the list; the exact comparison is ours). Errors as ``list_keys``."""
        return [k for k in self.list_keys(key_alias=alias) if k.get("key_alias") == alias]

    def named_key(self, alias: str) -> tuple[str, dict[str, Any]] | None:
        """(token, ``/key/info``) of the first key whose alias is ``alias`` (the listing's row
        when ``/key/info`` no longer knows it), or None. Errors as ``list_keys``."""
        named = self.keys_with_alias(alias)
        if not named:
            return None
        token = str(named[0].get("token"))
        return token, self.key_info(token) or named[0]

    def find_key(self, held: str, alias: str) -> tuple[str, dict[str, Any]] | None:
        """The key .env holds (``held``, may be empty), else the first named ``alias``: (its
        token, ``/key/info``), or None when LiteLLM knows neither."""
        info = self.key_info(held) if held else None
        if info is not None:
            return token_of(held), info
        return self.named_key(alias)

    # ------------------------------------------------------------------ teams

    def team_info(self, team_id: str) -> dict[str, Any] | None:
        data = self._call("GET", "/team/info", params={"team_id": team_id}, allow_404=True)
        return dict(data) if isinstance(data, Mapping) else None

    def new_team(self, team_id: str, team_alias: str) -> dict[str, Any]:
        data = self._call("POST", "/team/new", body={"team_id": team_id, "team_alias": team_alias})
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ using a key

    def served_models(self) -> list[str]:
        """The models LiteLLM serves (``/v1/models`` with the master key)."""
        return self.models_for(self._master_key, admin=True)

    def models_for(self, key: str, *, admin: bool = False, var: str = "") -> list[str]:
        """The models ``key`` reaches (``/v1/models``); raises ApiError when it is refused -
        naming ``var``, the variable the key is kept in, when LiteLLM refuses the key itself
        (401/403)."""
        response = self._send("GET", "/v1/models", key=key)
        if response.status_code >= 400:
            failure = self._fail(response, "/v1/models", admin=admin)
            body = self._json(response)
            if var and not admin and failure.status in (401, 403) and body is not None:
                message, _kind = error_message(body)
                raise ApiError(f"LiteLLM at {self.base_url} refused the key in {var} (HTTP "
                               f"{failure.status}: {message})", failure.status)
            raise failure
        data = self._json(response)
        if not isinstance(data, Mapping) or not isinstance(data.get("data"), list):
            raise ApiError(f"{self.base_url}/v1/models did not answer with a model list")
        return [str(m.get("id")) for m in data["data"] if isinstance(m, Mapping)]
