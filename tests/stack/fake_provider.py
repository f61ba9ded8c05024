"""A tiny OpenAI-compatible model provider: the upstream of every model the real LiteLLM serves
in the tests, so a chat through a virtual key really goes user -> (Open WebUI ->) LiteLLM ->
provider and back. ``GET /v1/models`` and ``POST /v1/chat/completions`` (canned answer; with
``"stream": true`` as server-sent events). Standard library only: it runs in the test stack
(``python3 fake_provider.py [PORT]``) and in a thread of the tests (:func:`serve`).
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from typing import Any

MODELS = ("gpt-4o-mini", "claude-haiku", "llama-3")
REPLY = "pong from the fake provider"


class Provider(http.server.ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Provider

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/health":
            self._send({"status": "ok"})
            return
        self._send({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"}
                                               for m in MODELS]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append({"path": self.path, "model": body.get("model")})
        created, model = int(time.time()), body.get("model", "")
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            # a last message "slow <seconds>": the answer word by word over that many seconds
            last = str((body.get("messages") or [{}])[-1].get("content") or "")
            seconds = float(last.split()[1]) if last.startswith("slow ") else 0.0
            words = REPLY.split(" ") if seconds else [REPLY]
            deltas = [{"role": "assistant", "content": w if i == 0 else " " + w}
                      for i, w in enumerate(words)]
            for i, (delta, finish) in enumerate([*((d, None) for d in deltas), ({}, "stop")]):
                if seconds and i:
                    time.sleep(seconds / len(words))
                chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                         "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            return
        self._send({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": REPLY}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        })


def serve(host: str = "127.0.0.1", port: int = 0) -> Provider:
    """Start the provider in a daemon thread; its address is ``server_address``."""
    server = Provider((host, port), Handler)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    provider = Provider(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 8000), Handler)
    provider.requests = []
    provider.serve_forever()
