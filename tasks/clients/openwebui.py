"""Open WebUI's admin API: which LiteLLM key it holds, and giving it a new one.

Open WebUI copies ``OPENAI_API_KEY`` into its own database on its first start and from then on
ignores the environment (a "PersistentConfig" value), so a key changed in .env never reaches it
by a restart. The tasks sign in as the admin from .env (``WEBUI_ADMIN_EMAIL`` /
``WEBUI_ADMIN_PASSWORD``), replace the key of the LiteLLM connection through
``/openai/config/update`` (keeping every other connection setting), and prove it with
``/api/models``: Open WebUI lists LiteLLM's models only when its stored key works.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..base.errors import OpenWebUIError, OpenWebUIUnreachableError
from ..base.urls import endpoint
from ..containers.compose import LITELLM_SERVICE_URL
from .http import http_client, transport_failure

LITELLM_INTERNAL_URL = f"{LITELLM_SERVICE_URL}/v1"

def _endpoint(url: str) -> tuple[str, str, int | None, str]:
    """A URL as Open WebUI would reach it: scheme, host (every loopback name one), port (the
    default filled in), path without a trailing slash or ``/v1`` (LiteLLM serves both)."""
    scheme, host, port, path = endpoint(url)
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return (scheme, host, port, path.rstrip("/"))


def _healthy(client: httpx.Client) -> bool:
    """Open WebUI answers ``/health`` (no sign-in needed) through ``client``."""
    try:
        return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


def answers_health(base_url: str, timeout: float) -> bool:
    """Open WebUI answers ``/health`` at ``base_url`` - asked before any admin credentials are
    needed (``OpenWebUI`` refuses to be made without them)."""
    with http_client(base_url, timeout) as client:
        return _healthy(client)


class OpenWebUI:
    def __init__(self, base_url: str, email: str, password: str, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not email or not password:
            raise OpenWebUIError(
                "WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD must be set in .env: the tasks sign "
                "in as Open WebUI's admin to hand it the key (env.init generates them)"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._email = email
        self._password = password
        self._token = ""
        self._client = http_client(self.base_url, timeout, transport)

    def __enter__(self) -> OpenWebUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                 auth: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self._client.request(method, path, json=body, headers=headers)
        except httpx.TransportError as exc:
            message, _ = transport_failure(exc, "Open WebUI", self.base_url, path, self.timeout,
                                           "is it running and WEBUI_PORT right?")
            raise OpenWebUIUnreachableError(message) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400 or data is None:
            detail = data.get("detail") if isinstance(data, dict) else None
            raise OpenWebUIError(
                f"Open WebUI {path}: HTTP {response.status_code}"
                + (f": {detail}" if detail else " (not Open WebUI's JSON; something else on the port?)")
            )
        return data

    @property
    def token(self) -> str:
        if not self._token:
            try:
                data = self._request("POST", "/api/v1/auths/signin",
                                     {"email": self._email, "password": self._password}, auth=False)
            except OpenWebUIUnreachableError:
                raise
            except OpenWebUIError as exc:
                raise OpenWebUIError(
                    f"Open WebUI refused the admin sign-in ({exc.message}); check WEBUI_ADMIN_EMAIL "
                    "and WEBUI_ADMIN_PASSWORD in .env against its admin account"
                ) from exc
            token = data.get("token") if isinstance(data, dict) else None
            if not token:
                raise OpenWebUIError("Open WebUI's sign-in answered without a token")
            if data.get("role") not in (None, "admin"):
                raise OpenWebUIError("the account of WEBUI_ADMIN_EMAIL is not an admin in Open WebUI")
            self._token = str(token)
        return self._token

    def health(self) -> bool:
        return _healthy(self._client)

    def config(self) -> dict[str, Any]:
        data = self._request("GET", "/openai/config")
        if not isinstance(data, dict) or "OPENAI_API_BASE_URLS" not in data:
            raise OpenWebUIError("Open WebUI's /openai/config has no OPENAI_API_BASE_URLS")
        return data

    def connections(self, urls: Sequence[str] = (LITELLM_INTERNAL_URL,),
                    old_keys: Sequence[str] = (), config: Mapping[str, Any] | None = None
                    ) -> list[int]:
        """The indexes of LiteLLM's connection(s) in Open WebUI's config, however written.

        A connection is LiteLLM's when its URL is one of ``urls`` up to the way it is written
        (with or without ``/v1``, a trailing slash, upper case, the default port, any loopback
        name for another), or when it holds one of ``old_keys`` (the key being replaced, so
        that no connection is left on a revoked key). ``[]`` when Open WebUI has no connection
        at all. Raises OpenWebUIError (exit 13), before anything changes, when it has
        connections but none of them can be told to be LiteLLM's."""
        config = self.config() if config is None else config
        wanted = {_endpoint(u) for u in urls}
        configured = [str(u) for u in config.get("OPENAI_API_BASE_URLS") or []]
        keys = [str(k) for k in config.get("OPENAI_API_KEYS") or []]
        found = [i for i, url in enumerate(configured) if _endpoint(url) in wanted]
        found += [i for i, key in enumerate(keys[: len(configured)])
                  if key and key in old_keys and i not in found]
        if not found and any(u.strip() for u in configured):
            raise OpenWebUIError(
                f"cannot tell which of Open WebUI's {len(configured)} connection(s) is LiteLLM's: "
                f"none points at {urls[0]} (or {', '.join(urls[1:]) or 'another name for it'}) "
                "or holds the key being replaced; nothing was changed. Point LiteLLM's connection "
                f"at {urls[0]} in Open WebUI (Admin Settings > Connections) and run the task again")
        return sorted(found)

    def held_key(self, url: str = LITELLM_INTERNAL_URL, *, also: Sequence[str] = (),
                 old_keys: Sequence[str] = ()) -> str | None:
        """The key Open WebUI stored for LiteLLM's connection(s) (see ``connections``): None
        when it has none, or when two of them hold different keys."""
        config = self.config()
        indexes = self.connections((url, *also), old_keys, config)
        keys = list(config.get("OPENAI_API_KEYS") or [])
        held = {str(keys[i]) if i < len(keys) else "" for i in indexes}
        return held.pop() if len(held) == 1 else None

    def set_key(self, key: str, url: str = LITELLM_INTERNAL_URL, *, also: Sequence[str] = (),
                old_keys: Sequence[str] = ()) -> bool:
        """Store ``key`` in every connection of LiteLLM's (see ``connections``), every other
        setting kept; with no connection at all, add one for ``url``. True if added.
        Raises OpenWebUIError (13) when it cannot tell which connection is LiteLLM's, before
        anything changes, or when Open WebUI does not keep the key."""
        config = self.config()
        indexes = self.connections((url, *also), old_keys, config)
        urls = list(config.get("OPENAI_API_BASE_URLS") or [])
        keys = list(config.get("OPENAI_API_KEYS") or [])
        keys += [""] * (len(urls) - len(keys))
        added = not indexes
        if added:
            urls = [u for u in urls if str(u).strip()]
            keys = keys[: len(urls)]
            urls.append(url)
            keys.append(key)
            indexes = [len(urls) - 1]
        for index in indexes:
            keys[index] = key
        body = {
            "ENABLE_OPENAI_API": True if added else config.get("ENABLE_OPENAI_API", True),
            "OPENAI_API_BASE_URLS": urls,
            "OPENAI_API_KEYS": keys[: len(urls)],
            "OPENAI_API_CONFIGS": config.get("OPENAI_API_CONFIGS") or {},
        }
        self._request("POST", "/openai/config/update", body)
        stored = self.config()
        stored_keys = list(stored.get("OPENAI_API_KEYS") or [])
        if any(i >= len(stored_keys) or stored_keys[i] != key for i in indexes):
            raise OpenWebUIError("Open WebUI did not store the new key")
        return added

    def models(self) -> list[str]:
        data = self._request("GET", "/api/models")
        items = data.get("data", []) if isinstance(data, dict) else []
        return [str(m.get("id")) for m in items if isinstance(m, dict)]

    def prove(self, expected: Sequence[str], timeout: float = 20.0) -> list[str]:
        """Wait until /api/models lists at least one of ``expected`` - the models LiteLLM
        serves that the key reaches - for at most ``timeout`` seconds; returns what it lists.
        Raises OpenWebUIError (13) when it lists none of them in time, or when ``expected`` is
        empty (a list of nothing proves nothing)."""
        if not expected:
            raise OpenWebUIError(
                "cannot prove that Open WebUI uses the key: the key reaches none of the models "
                "LiteLLM serves")
        deadline = time.monotonic() + timeout
        while True:
            seen = self.models()
            # an admin may have set a prefix for the connection: "gw.gpt-4o-mini"
            if any(s == m or s.endswith(f".{m}") for s in seen for m in expected):
                return seen
            if time.monotonic() >= deadline:
                raise OpenWebUIError(
                    "Open WebUI holds the new key but lists none of LiteLLM's models "
                    f"({', '.join(expected[:3])}...) through it; check its connection settings"
                )
            time.sleep(0.5)
