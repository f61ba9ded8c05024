"""A loopback HTTP relay in front of a real server, to freeze a request at a chosen step.

The real LiteLLM cannot be told to hang, so fault injection against it goes through this relay:
every request is forwarded unchanged (method, path, headers, body) to ``upstream`` and its answer
returned unchanged, except a request whose path matches a :meth:`Relay.hold`:
- ``"before"``: the relay waits before forwarding (the server never saw the request),
- ``"after"``: the relay forwards, the server does the work, then the answer is held back.
It also records what was sent (method, path, when) so tests can count requests and wait for a step.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "host",
        "content-length"}


@dataclass
class _Hold:
    path: str
    mode: str  # "before" | "after"
    seconds: float
    remaining: int = 1
    skip: int = 0


@dataclass
class Relay:
    upstream: str
    server: http.server.ThreadingHTTPServer
    holds: list[_Hold] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    #: the paths of the requests the server has answered (the answer maybe held back after)
    answered: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def hold(self, path: str, mode: str = "before", seconds: float = 30, times: int = 1,
             skip: int = 0) -> None:
        """Freeze the next ``times`` requests to ``path`` for ``seconds`` (``mode`` as above),
        after letting ``skip`` of them through."""
        assert mode in ("before", "after")
        with self.lock:
            self.holds.append(_Hold(path, mode, seconds, times, skip))

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.log if r["path"] == path)

    def wait_for(self, path: str, seen: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.count(path) <= seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no request to {path} within {timeout}s")
            time.sleep(0.02)

    def wait_answered(self, path: str, seen: int, timeout: float = 60) -> None:
        """Wait until the server has answered a request to ``path`` beyond the first ``seen``
        (its work is done, whether or not a hold keeps the answer back)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.answered.count(path) > seen:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never answered {path} within {timeout}s")
            time.sleep(0.02)

    def reset(self) -> None:
        self.release.set()
        with self.lock:
            self.holds.clear()
            self.log.clear()
            self.answered.clear()
        self.release = threading.Event()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _take_hold(self, path: str) -> _Hold | None:
        with self.lock:
            for hold in self.holds:
                if hold.path == path and hold.remaining > 0:
                    if hold.skip > 0:
                        hold.skip -= 1
                        return None
                    hold.remaining -= 1
                    return hold
        return None


def start_relay(upstream: str, root_path: str = "") -> Relay:
    """A relay to ``upstream``. With ``root_path`` (``/litellm``) it is a reverse proxy that
    serves the upstream under that path only (forwarded unchanged, as to a LiteLLM started with
    ``SERVER_ROOT_PATH``) and another application - a web page - at every other path."""
    target = urllib.parse.urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            path = urllib.parse.urlsplit(self.path).path
            with relay.lock:
                relay.log.append({"method": self.command, "path": path, "at": time.monotonic()})
            if root_path and path != root_path and not path.startswith(root_path + "/"):
                page = b"<html><body>another application</body></html>"
                self.send_response(200 if self.command == "GET" else 405)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            hold = relay._take_hold(path)
            release = relay.release
            if hold is not None and hold.mode == "before":
                release.wait(hold.seconds)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            with relay.lock:
                relay.answered.append(path)
            if hold is not None and hold.mode == "after":
                release.wait(hold.seconds)
            try:
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client was killed while we held its answer

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    relay = Relay(upstream, server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return relay
