"""Clients that chat one request after another through a running test stack and count what
fails: through Open WebUI (its admin's session), through LiteLLM's published port with the
virtual key, and a streamed chat through that port. Used by the e2e tests that change LiteLLM
under traffic (assert 0 failed; E2E_PAUSE between requests) and bench/rolling_bench.py (prints
failed / total per client; no pause).

A request counts as failed on any transport error, any status but 200, or an answer without the
provider's text; a streamed chat also when its stream ends without ``[DONE]``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from tests.stack.fake_provider import REPLY

if TYPE_CHECKING:
    from tests.support.stack import StackProject


@dataclass
class Client:
    name: str
    sent: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, error: str | None) -> None:
        with self.lock:
            self.sent += 1
            if error is not None:
                self.failures.append(error)

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.sent, len(self.failures)


class Traffic:
    """Three clients (``webui``, ``litellm``, ``stream``), each in its own thread, sending one
    request after another until stopped, ``pause`` seconds apart; ``slow_stream``: each streamed
    chat asks the fake provider to stretch its answer over that many seconds (so streams are
    under way at any moment of a switch)."""

    def __init__(self, webui_url: str, litellm_url: str, *, email: str, password: str,
                 virtual_key: str, model: str = "gpt-4o-mini", slow_stream: float = 0,
                 pause: float = 0) -> None:
        self.webui_url, self.litellm_url = webui_url, litellm_url
        self.email, self.password, self.key, self.model = email, password, virtual_key, model
        self.slow_stream = slow_stream
        self.pause = pause
        self.clients = {n: Client(n) for n in ("webui", "litellm", "stream")}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=getattr(self, f"_{n}"), daemon=True)
                         for n in self.clients]
        self.started = {n: threading.Event() for n in self.clients}

    # -- clients -----------------------------------------------------------------

    def _messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    def _webui(self) -> None:
        client = self.clients["webui"]
        with httpx.Client(base_url=self.webui_url, timeout=60) as http:
            token = http.post("/api/v1/auths/signin",
                              json={"email": self.email, "password": self.password}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            while not self._stop.is_set():
                try:
                    r = http.post("/api/chat/completions", headers=headers, json={
                        "model": self.model, "stream": False,
                        "messages": self._messages(f"ping {client.sent}")})
                    client.count(None if r.status_code == 200 and REPLY in r.text
                                 else f"{r.status_code} {r.text[:160]}")
                except httpx.HTTPError as exc:
                    client.count(f"{type(exc).__name__}: {exc}")
                self.started["webui"].set()
                self._stop.wait(self.pause)

    def _litellm(self) -> None:
        client = self.clients["litellm"]
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.litellm_url, timeout=60) as http:
            while not self._stop.is_set():
                try:
                    r = http.post("/v1/chat/completions", headers=headers, json={
                        "model": self.model, "messages": self._messages(f"ping {client.sent}")})
                    client.count(None if r.status_code == 200 and REPLY in r.text
                                 else f"{r.status_code} {r.text[:160]}")
                except httpx.HTTPError as exc:
                    client.count(f"{type(exc).__name__}: {exc}")
                self.started["litellm"].set()
                self._stop.wait(self.pause)

    def _stream(self) -> None:
        client = self.clients["stream"]
        headers = {"Authorization": f"Bearer {self.key}"}
        text = f"slow {self.slow_stream:g}" if self.slow_stream else "ping"
        with httpx.Client(base_url=self.litellm_url, timeout=120) as http:
            while not self._stop.is_set():
                try:
                    with http.stream("POST", "/v1/chat/completions", headers=headers, json={
                            "model": self.model, "stream": True,
                            "messages": self._messages(text)}) as r:
                        self.started["stream"].set()
                        body = "".join(r.iter_text())
                    ok = r.status_code == 200 and "[DONE]" in body and "pong" in body
                    client.count(None if ok else f"{r.status_code} {body[-160:]}")
                except httpx.HTTPError as exc:
                    client.count(f"{type(exc).__name__}: {exc}")
                self._stop.wait(self.pause)

    # -- control -----------------------------------------------------------------

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        for name, event in self.started.items():  # every client has been answered once
            if not event.wait(120):
                raise TimeoutError(f"the {name} client got no answer within 120s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(180)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {n: c.snapshot() for n, c in self.clients.items()}

    def report(self, since: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
        """``{client: {"sent": n, "failed": n, "errors": [...first 5]}}``, since a snapshot."""
        result = {}
        for name, client in self.clients.items():
            sent, failed = client.snapshot()
            base_sent, base_failed = (since or {}).get(name, (0, 0))
            result[name] = {"sent": sent - base_sent, "failed": failed - base_failed,
                            "errors": client.failures[base_failed:base_failed + 5]}
        return result


#: Seconds each client of an e2e test waits between two requests. Without a pause the three
#: clients kept Open WebUI and LiteLLM busy on 1.4 of the machine's two cores (about 45
#: requests a second; measured with the containers' cgroup CPU counters on one test stack), which
#: slowed the operation under test and every test beside it in CI; with 0.1 s they take 0.65
#: and each client still has a request under way about a third of the time. The benches
#: (bench/rolling_bench.py) send without pause: their figures are the issue's.
E2E_PAUSE = 0.1


def traffic_for(stack: StackProject, *, slow_stream: float = 3, pause: float = E2E_PAUSE) -> Traffic:
    """The three clients on a test stack's published ports, with its .env's admin and key."""
    return Traffic(f"http://127.0.0.1:{stack.port('WEBUI_PORT')}",
                   f"http://127.0.0.1:{stack.port('LITELLM_PORT')}",
                   email=stack.value("WEBUI_ADMIN_EMAIL"), password=stack.value("WEBUI_ADMIN_PASSWORD"),
                   virtual_key=stack.value("VIRTUAL_KEY"), slow_stream=slow_stream, pause=pause)


def wait_for_more(traffic: Traffic, since: dict[str, tuple[int, int]], timeout: float = 120) -> None:
    """Until every client has finished one more request than at ``since`` (requests really went
    through after an operation, not only before it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = traffic.snapshot()
        if all(now[n][0] > since[n][0] for n in now):
            return
        time.sleep(0.1)
    raise TimeoutError("a client finished no request after the operation")
