"""A keys task looks for Docker only when a key will really change and it has a consumer there
(issue 10, "The shape"): a no-op ``keys.create``, ``keys.list`` and the rotation of a key with no
Open WebUI consumer never open the Docker socket - and the rotation of Open WebUI's key does,
which shows the socket is the one the tasks would use. Counted, not timed (the times are in
bench/noop_bench.py).
"""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.envstore import envfile
from tests.support.project import Project, Standin, two_key_config

ALIAS_OF_OPEN_WEBUI = "Open WebUI Key"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Docker's endpoint on Windows is a "
                                "named pipe; the socket DOCKER_HOST names here is a Unix one")


class CountingSocket:
    """A Unix socket at ``path`` that counts the connections it accepts and closes each at once
    (a Docker client then fails fast instead of waiting)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(16)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def docker_socket(tmp_path: Path) -> Iterator[CountingSocket]:
    # a short path: a Unix socket's path has a length limit of about 100 bytes
    counting = CountingSocket(Path(tmp_path.anchor) / "tmp" / f"aigw-{tmp_path.name[-20:]}.sock")
    try:
        yield counting
    finally:
        counting.close()
        counting.path.unlink(missing_ok=True)


def nothing_on(port_holder: list[socket.socket]) -> int:
    """A free loopback port that refuses connections (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port_holder.append(sock)
    return int(sock.getsockname()[1])


class FakeOpenWebUI(http.server.ThreadingHTTPServer):
    """Answers ``/health`` as Open WebUI does and refuses every sign-in."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                ok = self.path == "/health"
                body = json.dumps({"status": True} if ok else {"detail": "wrong credentials"})
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_keys_tasks_that_change_no_key_never_open_docker(
        project: Project, litellm: Standin, docker_socket: CountingSocket) -> None:
    held: list[socket.socket] = []
    envfile.update(project.env, {"WEBUI_PORT": str(nothing_on(held))})
    env = {"DOCKER_HOST": f"unix://{docker_socket.path}"}
    config = two_key_config(project)
    assert project.run("-f", config, "keys.create", env=env).returncode == 0
    assert project.run("-f", config, "keys.create", "--name", "continue-dev",
                       env=env).returncode == 0
    opened = docker_socket.connections
    for args in (["keys.create"], ["keys.list"], ["keys.list", "--json"],
                 ["keys.create", "--name", "continue-dev"],
                 ["keys.rotate", "--name", "continue-dev"]):
        done = project.run("-f", config, *args, env=env)
        assert done.returncode == 0, (args, done.stderr)
        assert docker_socket.connections == opened, f"{args} opened the Docker socket"
    assert litellm.accepts(project.value("CONTINUE_DEV_KEY"))

    # the key Open WebUI uses: its consumer is looked up in Docker, through this very socket;
    # Docker refuses to answer and nothing answers on Open WebUI's port: it does not run
    done = project.run("-f", config, "keys.rotate", env=env)
    assert done.returncode == 0, done.stderr
    assert docker_socket.connections > opened
    assert "cannot tell whether Open WebUI runs" in done.stdout, done.stdout
    assert "taken as not running" in done.stdout


def test_without_docker_open_webui_is_found_on_its_port(
        project: Project, litellm: Standin, docker_socket: CountingSocket) -> None:
    """A cron job whose DOCKER_HOST is wrong (or that may not use the socket) must not take a
    running Open WebUI for a stopped one and retire the key it uses: it asks Open WebUI's host
    port, and there the sign-in is refused - before anything is made."""
    assert project.run("keys.create").returncode == 0
    old = project.value("VIRTUAL_KEY")
    webui = FakeOpenWebUI()
    try:
        envfile.update(project.env, {"WEBUI_PORT": str(webui.server_address[1])})
        done = project.run("keys.rotate", env={"DOCKER_HOST": f"unix://{docker_socket.path}"})
    finally:
        webui.shutdown()
    assert done.returncode == 13, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert docker_socket.connections > 0
    assert project.value("VIRTUAL_KEY") == old and litellm.accepts(old)
    assert len(litellm.active()) == 1


def test_a_bad_webui_port_stops_only_what_needs_open_webui(
        project: Project, litellm: Standin, docker_socket: CountingSocket) -> None:
    """WEBUI_PORT that is no port: keys.list and a key with no Open WebUI consumer go on; the
    rotation of Open WebUI's key stops before anything is made, with one line."""
    config = two_key_config(project)
    assert project.run("-f", config, "keys.create").returncode == 0
    assert project.run("-f", config, "keys.create", "--name", "continue-dev").returncode == 0
    envfile.update(project.env, {"WEBUI_PORT": "abc"})
    env = {"DOCKER_HOST": f"unix://{docker_socket.path}"}
    assert project.run("-f", config, "keys.list", env=env).returncode == 0
    done = project.run("-f", config, "keys.rotate", "--name", "continue-dev", env=env)
    assert done.returncode == 0, done.stderr
    before = project.value("VIRTUAL_KEY")
    done = project.run("-f", config, "keys.rotate", env=env)
    assert done.returncode == 3 and "WEBUI_PORT must be a port number" in done.stderr
    assert done.stderr.count("\n") == 1 and "abc" not in done.stderr
    assert project.value("VIRTUAL_KEY") == before and len(litellm.active(ALIAS_OF_OPEN_WEBUI)) == 1
