"""An httpx transport that sends each request from *inside* a container.

When LiteLLM's port is not published on the host (or not reachable from it), the keys tasks
still reach it: every HTTP request is replayed by a small ``python3`` program run with
``docker exec`` in the LiteLLM container, against ``http://127.0.0.1:<port>`` there. The
request - including the ``Authorization`` header with the master key - travels in the exec's
environment (the body of the Docker API call), never in an argument list; the program's
source is constant.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from ..containers.compose import exec_python

# Runs inside the container: read one request from the environment, print one JSON answer.
PROGRAM = r"""
import base64, json, os, socket, urllib.error, urllib.request
req = json.loads(os.environ["AIGW_REQUEST"])
data = base64.b64decode(req["body"]) if req["body"] else None
r = urllib.request.Request(req["url"], data=data, method=req["method"], headers=req["headers"])
try:
    with urllib.request.urlopen(r, timeout=float(req["timeout"])) as resp:
        status, headers, body = resp.status, dict(resp.headers), resp.read()
except urllib.error.HTTPError as err:
    status, headers, body = err.code, dict(err.headers or {}), err.read()
except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as err:
    reason = getattr(err, "reason", err)
    print(json.dumps({"transport_error": type(reason).__name__ + ": " + str(reason)}))
    raise SystemExit(0)
print(json.dumps({"status": status, "headers": headers, "body": base64.b64encode(body).decode()}))
"""


class ContainerTransport(httpx.BaseTransport):
    """Replays requests inside ``container`` against ``http://127.0.0.1:<port>``."""

    def __init__(self, container: Any, port: int, timeout: float) -> None:
        self.container = container
        self.port = port
        self.timeout = timeout

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        payload = {
            "method": request.method,
            "url": str(url),
            "headers": {k: v for k, v in request.headers.items()
                        if k.lower() not in ("host", "content-length", "accept-encoding")},
            "body": base64.b64encode(request.read()).decode(),
            "timeout": self.timeout,
        }
        name = getattr(self.container, "name", "the container")
        try:
            code, output = exec_python(self.container, PROGRAM,
                                       {"AIGW_REQUEST": json.dumps(payload)})
        except Exception as exc:  # noqa: BLE001 - any SDK/daemon failure is a transport failure
            raise httpx.ConnectError(f"docker exec in {name} failed: {type(exc).__name__}") from None
        if code != 0:
            raise httpx.ConnectError(f"docker exec in {name} exited {code}: {output.strip()[-200:]}")
        try:
            answer = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise httpx.RemoteProtocolError(f"unreadable answer from inside {name}") from None
        if "transport_error" in answer:
            raise httpx.ConnectError(f"from inside {name}: {answer['transport_error']}")
        headers = {k: v for k, v in answer["headers"].items()
                   if k.lower() not in ("transfer-encoding", "content-encoding", "content-length")}
        return httpx.Response(answer["status"], headers=headers,
                              content=base64.b64decode(answer["body"]), request=request)
