"""stack.* end to end on the programs users run: real Docker engine and Compose v2, the production
docker-compose.yml, the real PostgreSQL, the real LiteLLM with its key store in it, the real Open
WebUI, and a fake model provider behind LiteLLM - so a chat goes Open WebUI -> LiteLLM (checking
the virtual key in its database) -> provider and back. Only the images are built here
(tests/stack/compose.test.yml says how). The LiteLLM stand-in appears in one test, which needs a
proxy that crashes at start on demand (tests/stack/compose.standin.yml).
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks.envstore import envfile
from tests.support.project import REPO
from tests.support.stack import CmdlineWatcher, DockerEnv, StackProject, docker_env, make_project
from tests.support.traffic import E2E_PAUSE

pytestmark = pytest.mark.docker

MODELS = {"gpt-4o-mini", "claude-haiku", "llama-3"}  # tests/stack/litellm-test-config.yaml


@pytest.fixture(scope="session")
def docker() -> DockerEnv:
    return docker_env()


@pytest.fixture
def stack(tmp_path: Path, docker: DockerEnv) -> Iterator[StackProject]:
    project = make_project(tmp_path, docker)
    yield project
    project.down()


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def chat_through_webui(stack: StackProject, model: str = "gpt-4o-mini") -> str:
    """Sign in to Open WebUI as its admin and chat once; the answer's text."""
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{stack.port('WEBUI_PORT')}", timeout=60) as client:
        token = client.post("/api/v1/auths/signin", json={
            "email": stack.value("WEBUI_ADMIN_EMAIL"),
            "password": stack.value("WEBUI_ADMIN_PASSWORD")}).json()["token"]
        answer = client.post("/api/chat/completions", headers={"Authorization": f"Bearer {token}"},
                             json={"model": model, "stream": False,
                                   "messages": [{"role": "user", "content": "ping"}]})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["choices"][0]["message"]["content"])


def spend_log_keys(stack: StackProject, timeout: float = 60) -> set[str]:
    """The key hashes LiteLLM's spend log names (it writes them in batches, ~10 s apart)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        logs = stack.admin("GET", "/spend/logs")
        if logs or time.monotonic() > deadline:
            return {str(entry.get("api_key")) for entry in logs}
        time.sleep(2)


def no_secrets(done: subprocess.CompletedProcess[str], project: StackProject) -> None:
    text = done.stdout + done.stderr
    for name in ("LITELLM_MASTER_KEY", "VIRTUAL_KEY", "WEBUI_ADMIN_PASSWORD", "POSTGRES_PASSWORD",
                 "UI_PASSWORD", "WEBUI_SECRET_KEY", "LITELLM_SALT_KEY"):
        value = project.value(name)
        if value:
            assert value not in text, f"{name} printed"


def test_first_run_rotate_revoke_stop(stack: StackProject) -> None:
    master = stack.value("LITELLM_MASTER_KEY")

    # first run: the key is created before Open WebUI ever starts
    done = stack.ok("stack.start")
    key = stack.value("VIRTUAL_KEY")
    assert key.startswith("sk-") and stack.value("FIRST_RUN") == "no"
    assert "the stack is up" in done.stdout and f"sk-...{key[-4:]}" in done.stdout
    no_secrets(done, stack)
    assert stack.container_env("open-webui")["OPENAI_API_KEY"] == key
    with stack.webui() as webui:
        config = webui.config()
        assert master not in json.dumps(config)
        assert webui.held_key() == key
        assert MODELS <= set(webui.models())
    # a chat through Open WebUI reaches the provider through LiteLLM, which bills the virtual key
    # (its spend log names the key's hash) - never the master key
    assert chat_through_webui(stack) == "pong from the fake provider"
    billed = spend_log_keys(stack)
    assert billed == {sha(key)}, f"LiteLLM's spend log names {billed}"
    assert sha(master) not in billed

    # already up: a no-op that says so
    again = stack.ok("stack.start")
    assert "already up; nothing to do" in again.stdout
    status = json.loads(stack.ok("stack.status", "--json").stdout)
    assert {n: s["state"] for n, s in status["services"].items()} == {
        "postgres": "running (healthy)", "litellm": "running (healthy)",
        "litellm-lb": "running (healthy)", "open-webui": "running (healthy)",
        "provider": "running (healthy)"}
    assert status["key_status"] == "active" and status["openwebui_key"] == "in sync"

    # rotate on the running stack: Open WebUI moves to the new key, the old one is refused
    rotated = stack.ok("keys.rotate")
    new = stack.value("VIRTUAL_KEY")
    assert new != key
    assert "Open WebUI now uses the new key" in rotated.stdout
    no_secrets(rotated, stack)
    assert not stack.litellm_accepts(key) and stack.litellm_accepts(new)
    with stack.webui() as webui:
        assert webui.held_key() == new
        assert MODELS <= set(webui.models())

    # revoke: the key goes, and the gate then refuses a plain start
    revoked = stack.ok("keys.revoke", "--name", "open-webui", "--yes")
    assert "stack.start will refuse" in revoked.stdout
    assert stack.value("VIRTUAL_KEY") == "" and not stack.litellm_accepts(new)
    refused = stack.run("stack.start")
    assert refused.returncode == 8 and "never with the master key" in refused.stderr
    # ... and the chain the message suggests repairs it
    stack.ok("stack.start", "--no-create-key", "keys.create", "stack.start")
    fixed = stack.value("VIRTUAL_KEY")
    with stack.webui() as webui:
        assert webui.held_key() == fixed
        assert MODELS <= set(webui.models())

    # make targets are thin wrappers: exit codes pass through
    make = subprocess.run(["make", "-s", "-C", str(REPO), "status",
                           f"INVOKE={sys.executable} -m invoke -r {REPO}"],
                          env=stack.environ(), capture_output=True, text=True, timeout=120)
    assert make.returncode == 0, make.stderr
    assert "open-webui  running (healthy)" in make.stdout

    # stop keeps the volumes; twice is fine; --volumes needs --yes without a terminal
    volumes = stack.volumes()
    assert volumes == [f"{stack.name}_{v}" for v in
                       ("open-webui-data", "postgres-data")]
    stack.ok("stack.stop")
    assert stack.containers() == [] and stack.volumes() == volumes
    twice = stack.ok("stack.stop")
    assert "nothing to stop" in twice.stdout
    # the keys survive in the database volume: start again, same key, in sync
    stack.ok("stack.stop", "stack.start")
    assert stack.value("VIRTUAL_KEY") == fixed and stack.litellm_accepts(fixed)
    no_yes = stack.run("stack.stop", "--volumes")
    assert no_yes.returncode == 2 and "needs --yes" in no_yes.stderr
    assert stack.containers() != []
    stack.ok("stack.stop", "--volumes", "--yes")
    assert stack.containers() == [] and stack.volumes() == []


def test_unpublished_litellm_port_goes_through_the_container(tmp_path: Path, docker: DockerEnv) -> None:
    stack = make_project(tmp_path, docker, "no-litellm-port.yml")
    watcher = CmdlineWatcher(stack.env)
    try:
        with watcher:
            # the watcher itself must see a secret put on a command line
            # it lives until the watcher has seen it (an event), not for a set time
            canary = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()",
                                       stack.value("WEBUI_ADMIN_PASSWORD")], stdin=subprocess.PIPE)
            import time
            deadline = time.monotonic() + 120
            while not watcher.hits and time.monotonic() < deadline:
                time.sleep(0.01)
            canary.communicate(b"done\n", timeout=60)
            assert len(watcher.hits) == 1, "the watcher missed a secret in an argument list"
            watcher.hits.clear()
            _container_path(stack)
        assert watcher.scans > 100 and len(watcher.seen) >= 8  # six secrets and two keys
        assert watcher.hits == set(), "a secret travelled on a command line (docker exec?)"
        if watcher.upstream:
            print(f"\nLiteLLM's own `prisma migrate diff --from-url` carried the database password "
                  f"on its command line ({len(watcher.upstream)} processes) - upstream, see README")
    finally:
        stack.down()


def _container_path(stack: StackProject) -> None:
    done = stack.ok("stack.start")
    key = stack.value("VIRTUAL_KEY")
    assert key and f"sk-...{key[-4:]}" in done.stdout
    listed = json.loads(stack.ok("keys.list", "--json").stdout)
    assert [r["held_by"] for r in listed["keys"]] == ["VIRTUAL_KEY"]
    host = stack.run("keys.list", "--via", "host")
    assert host.returncode == 4 and "cannot connect to LiteLLM" in host.stderr
    stack.ok("keys.rotate", "--via", "container")
    with stack.webui() as webui:
        assert webui.held_key() == stack.value("VIRTUAL_KEY")
        assert MODELS <= set(webui.models())
    # a master-key rotation killed once LiteLLM ran with the new key is proven the same way (it
    # was proven over the host port alone: LiteLLM replaced again by every keys task, then exit 4)
    journal = stack.dir / ".env.master-journal.json"
    journal.write_text(json.dumps({
        "old_sha256": sha("sk-the-master-key-before-the-rotation"),
        "new_sha256": sha(stack.value("LITELLM_MASTER_KEY")),
        "started_at": "2026-12-01T00:00:00+00:00", "restart": True}))
    litellm = stack.containers()
    finished = stack.ok("keys.list")
    assert "finished an interrupted master-key rotation" in finished.stdout, finished.stderr
    assert not journal.exists() and stack.containers() == litellm  # nothing was replaced


def test_a_crashing_service_fails_the_start_with_its_logs(tmp_path: Path, docker: DockerEnv) -> None:
    stack = make_project(tmp_path, docker, "compose.standin.yml")
    try:
        _crash(stack)
    finally:
        stack.down()


def _crash(stack: StackProject) -> None:
    master = stack.value("LITELLM_MASTER_KEY")
    # the dying service prints the master key: the logs shown must mask it
    stack.extra_env["STANDIN_CRASH"] = f"bad config on purpose, key {master}"
    done = stack.run("stack.start", "--timeout", "60")
    assert f"key sk-...{master[-4:]}" in done.stderr
    assert done.returncode == 11, done.stderr
    assert "litellm" in done.stderr and "crashing on purpose: bad config on purpose" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: litellm (")
    no_secrets(done, stack)
    assert stack.value("FIRST_RUN") == "yes" and stack.value("VIRTUAL_KEY") == ""


def test_a_port_already_taken(stack: StackProject) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", stack.port("LITELLM_PORT")))
        sock.listen()
        done = stack.run("stack.start")
    assert done.returncode == 12
    assert f"port {stack.port('LITELLM_PORT')} (LITELLM_PORT) is already in use" in done.stderr
    no_secrets(done, stack)
    assert stack.containers() == []


def test_daemon_unreachable(stack: StackProject, tmp_path: Path) -> None:
    for task in ("stack.start", "stack.status", "stack.stop"):
        done = stack.run(task, env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
        assert done.returncode == 10, (task, done.stderr)
        assert "cannot reach the Docker daemon" in done.stderr
        assert "Traceback" not in done.stderr
        no_secrets(done, stack)


def test_compose_missing(stack: StackProject, tmp_path: Path) -> None:
    config = tmp_path / "docker-config"
    config.mkdir()
    done = stack.run("stack.start", env={"DOCKER_CONFIG": str(config), "HOME": str(tmp_path)})
    assert done.returncode == 10, done.stderr
    assert "Docker Compose is missing" in done.stderr
    no_secrets(done, stack)


def test_the_gate_refuses_before_anything_starts(stack: StackProject) -> None:
    envfile.update(stack.env, {"FIRST_RUN": "no"})
    done = stack.run("stack.start")
    assert done.returncode == 8
    assert "VIRTUAL_KEY is empty and FIRST_RUN is not yes" in done.stderr
    no_secrets(done, stack)
    assert stack.containers() == []


def test_no_create_key_leaves_open_webui_stopped(stack: StackProject) -> None:
    done = stack.ok("stack.start", "--no-create-key")
    assert "Open WebUI left stopped" in done.stdout
    assert [c[len(stack.name) + 1:].rsplit("-", 1)[0] for c in stack.containers()] == [
        "litellm", "litellm-lb", "postgres"]
    assert stack.value("FIRST_RUN") == "yes"
    logs = stack.ok("stack.logs", "--service", "litellm", "--tail", "40")
    assert "Uvicorn running on http://0.0.0.0:4000" in logs.stdout
    no_secrets(logs, stack)
    status = stack.ok("stack.status")
    assert "virtual key (none) (missing from .env)" in status.stdout
    no_secrets(status, stack)


def test_a_first_start_finishes_an_interrupted_master_key_rotation(stack: StackProject) -> None:
    """A keys.rotate-master killed after it wrote the new key to .env, before LiteLLM ever ran
    with it: the first stack.start starts LiteLLM with .env's key and, before it makes the
    virtual key (Gateway.keys, the one place that looks), proves the rotation and ends it."""
    journal = stack.dir / ".env.master-journal.json"
    journal.write_text(json.dumps({
        "old_sha256": sha("sk-the-master-key-before-the-rotation"),
        "new_sha256": sha(stack.value("LITELLM_MASTER_KEY")),
        "started_at": "2026-12-01T00:00:00+00:00", "restart": True}))
    done = stack.ok("stack.start")
    assert done.stdout.count("finished an interrupted master-key rotation") == 1, done.stdout
    assert "the new master key opens LiteLLM's admin API" in done.stdout
    assert not journal.exists()
    key = stack.value("VIRTUAL_KEY")
    assert key.startswith("sk-") and stack.litellm_accepts(key)
    no_secrets(done, stack)
    # looked for once: the next keys task has nothing left to finish
    listed = stack.ok("keys.list")
    assert "interrupted" not in listed.stdout + listed.stderr


class Traffic:
    """A client that keeps chatting and listing models through Open WebUI (bounded), E2E_PAUSE
    seconds between two requests (tests/support/traffic.py says why)."""

    def __init__(self, stack: StackProject, limit: int = 5000, seconds: float = 300) -> None:
        import threading

        import httpx

        self.url = f"http://127.0.0.1:{stack.port('WEBUI_PORT')}"
        self.email, self.password = stack.value("WEBUI_ADMIN_EMAIL"), stack.value("WEBUI_ADMIN_PASSWORD")
        self.limit, self.seconds = limit, seconds
        self.sent = 0
        self.failures: list[str] = []
        # Open WebUI's /openai/config/update empties its model cache while requests are in
        # flight (0.12.4, routers/openai.py clear_models_cache): a chat that passed its cache
        # check a moment before fails with 400 {"detail": "'<model>'"}. Counted apart: it is
        # Open WebUI's own race on any connection change, not a key that stopped working.
        self.cache_races = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._httpx = httpx

    def _run(self) -> None:
        import time

        with self._httpx.Client(base_url=self.url, timeout=30) as client:
            token = client.post("/api/v1/auths/signin",
                                json={"email": self.email, "password": self.password}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            ends = time.monotonic() + self.seconds
            while not self._stop.is_set() and self.sent < self.limit and time.monotonic() < ends:
                self.sent += 1
                try:
                    if self.sent % 3 == 0:
                        r = client.get("/api/models", headers=headers)
                        ok = r.status_code == 200 and MODELS <= {m["id"] for m in r.json()["data"]}
                    else:
                        r = client.post("/api/chat/completions", headers=headers, json={
                            "model": "gpt-4o-mini", "stream": False,
                            "messages": [{"role": "user", "content": f"ping {self.sent}"}]})
                        ok = r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
                    if not ok and r.status_code == 400 and r.text.strip('{}"\\ ').endswith(
                            ("'gpt-4o-mini'", "Model not found")):
                        self.cache_races += 1
                    elif not ok:
                        self.failures.append(f"{r.request.url.path}: {r.status_code} {r.text[:120]}")
                except self._httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}")
                self._stop.wait(E2E_PAUSE)

    def wait(self, done: Callable[[], object], what: str, timeout: float = 180) -> None:
        """Until ``done()`` (e.g. so many requests sent): an event, however slow the machine."""
        import time

        deadline = time.monotonic() + timeout
        while not done():
            assert self._thread.is_alive(), f"the traffic stopped before {what}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:g}s"
            time.sleep(0.05)

    def wait_sent(self, count: int) -> None:
        self.wait(lambda: self.sent >= count, f"{count} requests")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def restart_lines(stack: StackProject) -> list[str]:
    return stack.ok("stack.restart", "--service", "open-webui").stderr.splitlines()


def stack_checks(stack: StackProject) -> dict[str, dict[str, str]]:
    done = stack.run("env.check", "--json")
    return {f["check"]: f for f in json.loads(done.stdout)["findings"]
            if f["check"] in ("database", "admin")}


class TestRunningStack:
    """Tests on one stack that runs throughout, in this order (one xdist unit, tests/conftest.py).
    Here ``stack`` is that stack (this class's fixture overrides the module's one-per-test): each
    test starts with ``stack.start`` (a no-op on a running stack) and leaves the stack running
    and usable for the next. A stack's first start was the longest part of each test."""

    @pytest.fixture(scope="class")
    @staticmethod
    def stack(tmp_path_factory: pytest.TempPathFactory, docker: DockerEnv) -> Iterator[StackProject]:
        project = make_project(tmp_path_factory.mktemp("running-stack"), docker)
        try:
            project.ok("stack.start")
            yield project
        finally:
            project.down()

    def test_rotate_master_on_the_running_stack(self, stack: StackProject) -> None:
        """keys.rotate-master on the real stack: LiteLLM recreated with the new key, everything proven."""
        import time
        import urllib.error
        import urllib.request

        stack.ok("stack.start")
        key, old = stack.value("VIRTUAL_KEY"), stack.value("LITELLM_MASTER_KEY")
        # a model stored in LiteLLM's database: its provider key is encrypted with the salt key
        stack.admin("POST", "/model/new", {"model_name": "stored-model", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": "http://provider:8000/v1",
            "api_key": "sk-provider-secret-stored"}})
        with Traffic(stack) as traffic:
            traffic.wait_sent(10)
            started = time.monotonic()
            done = stack.ok("keys.rotate-master", "--yes")
            took = time.monotonic() - started
            traffic.wait_sent(traffic.sent + 10)  # and it goes on after
        print(f"\nkeys.rotate-master took {took:.1f}s; {traffic.sent} requests through Open WebUI, "
              f"{len(traffic.failures)} failed while LiteLLM was replaced")
        new = stack.value("LITELLM_MASTER_KEY")
        assert traffic.failures == [], traffic.failures[:5]  # LiteLLM replaced beside the old one
        assert new != old and "LiteLLM recreated" in done.stdout
        assert "the old master key is refused" in done.stdout and "VIRTUAL_KEY still works" in done.stdout
        assert "Open WebUI still lists LiteLLM's models" in done.stdout
        no_secrets(done, stack)
        assert old not in done.stdout + done.stderr
        assert not (stack.dir / ".env.master-journal.json").exists()

        def admin_status(master: str) -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{stack.port('LITELLM_PORT')}/key/list?page=1&size=1",
                headers={"Authorization": f"Bearer {master}"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert admin_status(old) == 401 and admin_status(new) == 200
        assert stack.litellm_accepts(key), "the virtual key lives on"
        assert chat_through_webui(stack) == "pong from the fake provider"
        assert chat_through_webui(stack, "stored-model") == "pong from the fake provider", \
            "the stored model (salt-key encrypted) survives"
        assert stack.container_env("litellm")["LITELLM_MASTER_KEY"] == new
        assert "LITELLM_MASTER_KEY" not in stack.container_env("open-webui")
        status = json.loads(stack.ok("stack.status", "--json").stdout)
        assert status["key_status"] == "active" and status["openwebui_key"] == "in sync"

    def test_rotation_drops_no_request(self, stack: StackProject) -> None:
        stack.ok("stack.start")
        for args in (["keys.rotate"], ["keys.rotate", "--grace", "1h"]):
            with Traffic(stack) as traffic:
                traffic.wait_sent(10)
                before = traffic.sent
                stack.ok(*args)
                during = traffic.sent - before
                traffic.wait_sent(traffic.sent + 10)  # and it goes on after
            print(f"\n{' '.join(args)}: {traffic.sent} requests through Open WebUI, {during} while it "
                  f"ran, {len(traffic.failures)} failed, {traffic.cache_races} hit Open WebUI's "
                  "model-cache race")
            assert traffic.sent > 20 and during > 0
            assert traffic.failures == []
            assert traffic.cache_races <= 3

        # the old scripts' way - a new key in .env, containers recreated, the old key revoked -
        # drops requests and, with Open WebUI's stored key, breaks it for good: the check sees it
        with Traffic(stack) as traffic:
            traffic.wait_sent(5)
            old = stack.value("VIRTUAL_KEY")
            envfile.update(stack.env, {"VIRTUAL_KEY": stack.admin_key("Old-way Key")["key"]})
            stack.compose("up", "-d", "--wait")
            master = stack.value("LITELLM_MASTER_KEY")
            subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "POST", "-H", "@-",
                            f"http://127.0.0.1:{stack.port('LITELLM_PORT')}/key/delete",
                            "-d", json.dumps({"keys": [old]})],
                           input=f"Authorization: Bearer {master}\nContent-Type: application/json\n",
                           text=True, check=True, timeout=30)
            after = traffic.sent
            traffic.wait(lambda: traffic.failures or traffic.sent >= after + 30,
                         "failure or 30 more requests")
        print(f"the old way: {traffic.sent} requests, {len(traffic.failures)} failed")
        assert traffic.failures, "the old way should break Open WebUI; the traffic check missed it"

    def test_restart_applies_a_changed_env(self, stack: StackProject) -> None:
        stack.ok("stack.start")
        # every state change while waiting is one line on stderr, even without a terminal
        assert "open-webui: running (healthy)" in restart_lines(stack)
        # a key changed by hand in .env while the stack runs
        other = stack.admin_key("Hand-made Key")["key"]
        envfile.update(stack.env, {"VIRTUAL_KEY": other})
        done = stack.ok("stack.restart")
        assert stack.container_env("open-webui")["OPENAI_API_KEY"] == other
        assert "Open WebUI held another key than .env" in done.stdout
        with stack.webui() as webui:
            assert webui.held_key() == other
            assert MODELS <= set(webui.models())

        # a rotation while Open WebUI is down reaches it on the next start
        stack.compose("stop", "open-webui")
        rotated = stack.ok("keys.rotate")
        assert "Open WebUI is not running" in rotated.stdout
        new = stack.value("VIRTUAL_KEY")
        start = stack.ok("stack.start")
        assert "Open WebUI held another key than .env" in start.stdout
        with stack.webui() as webui:
            assert webui.held_key() == new
            assert MODELS <= set(webui.models())

        # chains as users write them
        stack.ok("stack.restart", "--service", "litellm", "keys.rotate")
        with stack.webui() as webui:
            assert webui.held_key() == stack.value("VIRTUAL_KEY")

        # without Open WebUI's admin login a rotation fails before it changes anything
        password = stack.value("WEBUI_ADMIN_PASSWORD")
        envfile.update(stack.env, {"WEBUI_ADMIN_PASSWORD": ""})
        before = stack.env.read_bytes()
        keys_before = len(stack.litellm_keys())
        done = stack.run("keys.rotate")
        assert done.returncode == 13 and "WEBUI_ADMIN_PASSWORD must be set" in done.stderr
        assert stack.env.read_bytes() == before and len(stack.litellm_keys()) == keys_before
        envfile.update(stack.env, {"WEBUI_ADMIN_PASSWORD": password})  # for the next test

    def test_env_init_force_on_a_stack_that_has_run(self, stack: StackProject) -> None:
        stack.ok("stack.start")
        key, master = stack.value("VIRTUAL_KEY"), stack.value("LITELLM_MASTER_KEY")
        assert {c: f["level"] for c, f in stack_checks(stack).items()} == {
            "database": "ok", "admin": "ok"}

        # new secrets where that is safe; what the volumes hold is kept, so the stack works on
        ports = {n: stack.value(n) for n in ("LITELLM_PORT", "WEBUI_PORT")}
        done = stack.ok("env.init", "--force")
        no_secrets(done, stack)
        assert "kept from the old file" in done.stdout and "POSTGRES_PASSWORD" in done.stdout
        assert stack.value("COMPOSE_PROJECT_NAME") == stack.name
        assert stack.value("VIRTUAL_KEY") == key and stack.value("LITELLM_MASTER_KEY") != master
        envfile.update(stack.env, ports)  # ports are not kept (the template's); the test's own again
        stack.ok("stack.restart")
        assert stack.litellm_accepts(key)
        status = json.loads(stack.ok("stack.status", "--json").stdout)
        assert status["key_status"] == "active" and status["openwebui_key"] == "in sync"
        assert {c: f["level"] for c, f in stack_checks(stack).items()} == {
            "database": "ok", "admin": "ok"}

        # a .env whose Open WebUI admin password is not the account's: said, with the way back
        envfile.update(stack.env, {"WEBUI_ADMIN_PASSWORD": "not-the-admin-password"})
        checked = stack.run("env.check")
        assert checked.returncode == 3
        assert "Open WebUI refuses WEBUI_ADMIN_EMAIL / WEBUI_ADMIN_PASSWORD" in checked.stdout
        assert ".env.backup" in checked.stdout
