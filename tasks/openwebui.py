"""Open WebUI's admin API: which LiteLLM key it holds, and handing it a new one.

Open WebUI copies ``OPENAI_API_KEY`` into its own database on its first start and from then on
ignores the environment (a "PersistentConfig" value), so a key changed in .env never reaches it
by a restart. The tasks sign in as the admin from .env (``WEBUI_ADMIN_EMAIL`` /
``WEBUI_ADMIN_PASSWORD``), replace the key of the LiteLLM connection through
``/openai/config/update`` (keeping every other connection setting), and prove it with
``/api/models``: Open WebUI lists LiteLLM's models only when its stored key works.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from .errors import OpenWebUIError

LITELLM_INTERNAL_URL = "http://litellm:4000/v1"


class OpenWebUI:
    def __init__(self, base_url: str, email: str, password: str, *, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not email or not password:
            raise OpenWebUIError(
                "WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD must be set in .env: the tasks sign "
                "in as Open WebUI's admin to hand it the key (env.init generates them)"
            )
        self.base_url = base_url.rstrip("/")
        self._email = email
        self._password = password
        self._token = ""
        self.requests = 0
        self._client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout),
                                    transport=transport, trust_env=False)

    def __enter__(self) -> OpenWebUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                 auth: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        self.requests += 1
        try:
            response = self._client.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException:
            raise OpenWebUIError(
                f"Open WebUI at {self.base_url} did not answer {path} in time") from None
        except httpx.TransportError as exc:
            raise OpenWebUIError(
                f"cannot reach Open WebUI at {self.base_url} ({type(exc).__name__}); is it running "
                "and WEBUI_PORT right?"
            ) from None
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
            except OpenWebUIError as exc:
                raise OpenWebUIError(
                    f"Open WebUI refused the admin sign-in ({exc.message}); check WEBUI_ADMIN_EMAIL "
                    "and WEBUI_ADMIN_PASSWORD in .env against its admin account"
                ) from None
            token = data.get("token") if isinstance(data, dict) else None
            if not token:
                raise OpenWebUIError("Open WebUI's sign-in answered without a token")
            if data.get("role") not in (None, "admin"):
                raise OpenWebUIError("the account of WEBUI_ADMIN_EMAIL is not an admin in Open WebUI")
            self._token = str(token)
        return self._token

    def health(self) -> bool:
        try:
            return self._client.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def config(self) -> dict[str, Any]:
        data = self._request("GET", "/openai/config")
        if not isinstance(data, dict) or "OPENAI_API_BASE_URLS" not in data:
            raise OpenWebUIError("Open WebUI's /openai/config has no OPENAI_API_BASE_URLS")
        return data

    @staticmethod
    def _index(config: Mapping[str, Any], url: str) -> int | None:
        urls = [str(u).rstrip("/") for u in config.get("OPENAI_API_BASE_URLS") or []]
        if url.rstrip("/") in urls:
            return urls.index(url.rstrip("/"))
        return None

    def held_key(self, url: str = LITELLM_INTERNAL_URL) -> str | None:
        """The key Open WebUI stored for the LiteLLM connection (None: no such connection)."""
        config = self.config()
        index = self._index(config, url)
        if index is None:
            return None
        keys = list(config.get("OPENAI_API_KEYS") or [])
        return str(keys[index]) if index < len(keys) else ""

    def set_key(self, key: str, url: str = LITELLM_INTERNAL_URL) -> bool:
        """Store ``key`` for the LiteLLM connection; every other setting stays. True if added."""
        config = self.config()
        urls = list(config.get("OPENAI_API_BASE_URLS") or [])
        keys = list(config.get("OPENAI_API_KEYS") or [])
        keys += [""] * (len(urls) - len(keys))
        index = self._index(config, url)
        added = index is None
        if index is None:
            urls.append(url)
            keys.append(key)
        else:
            keys[index] = key
        body = {
            "ENABLE_OPENAI_API": True if added else config.get("ENABLE_OPENAI_API", True),
            "OPENAI_API_BASE_URLS": urls,
            "OPENAI_API_KEYS": keys[: len(urls)],
            "OPENAI_API_CONFIGS": config.get("OPENAI_API_CONFIGS") or {},
        }
        self._request("POST", "/openai/config/update", body)
        if self.held_key(url) != key:
            raise OpenWebUIError("Open WebUI did not store the new key")
        return added

    def models(self) -> list[str]:
        data = self._request("GET", "/api/models")
        items = data.get("data", []) if isinstance(data, dict) else []
        return [str(m.get("id")) for m in items if isinstance(m, dict)]

    def prove(self, expected: list[str], timeout: float = 20.0) -> list[str]:
        """Wait until /api/models lists at least one of ``expected`` (LiteLLM's models)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.models()
            # an admin may have set a prefix for the connection: "gw.gpt-4o-mini"
            if not expected or any(s == m or s.endswith(f".{m}") for s in seen for m in expected):
                return seen
            if time.monotonic() >= deadline:
                raise OpenWebUIError(
                    "Open WebUI holds the new key but lists none of LiteLLM's models "
                    f"({', '.join(expected[:3])}...) through it; check its connection settings"
                )
            time.sleep(0.5)
