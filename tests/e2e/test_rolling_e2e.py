"""Changing LiteLLM without dropping a request, on the real stack (the real LiteLLM with its
PostgreSQL, the real HAProxy in front, the real Open WebUI): three clients chat without pause -
through Open WebUI, through LiteLLM's port with the virtual key, and streamed - while LiteLLM is
replaced by `stack.restart --service litellm` and `keys.rotate-master`, and while a replacement
that never turns ready is refused. Every request must succeed (bench/rolling_bench.py prints the
figures; this asserts 0 failed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest

from tasks.envstore import envfile
from tests.support.project import REPO
from tests.support.stack import STACK_DIR, StackProject, docker_env, make_project
from tests.support.traffic import traffic_for, wait_for_more

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProject]:
    project = make_project(tmp_path_factory.mktemp("rolling"), docker_env())
    project.ok("stack.start")
    yield project
    project.down()


def litellm_containers(stack: StackProject) -> list[str]:
    return [c for c in stack.containers() if c.startswith(f"{stack.name}-litellm-")
            and not c.startswith(f"{stack.name}-litellm-lb")]


class LongStream:
    """One streamed chat of about 40 s, started before an operation: it must end whole."""

    def __init__(self, stack: StackProject) -> None:
        self.url = f"http://127.0.0.1:{stack.port('LITELLM_PORT')}"
        self.key = stack.value("VIRTUAL_KEY")
        self.body = ""
        self.error = ""
        self.begun = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", timeout=300,
                              headers={"Authorization": f"Bearer {self.key}"},
                              json={"model": "gpt-4o-mini", "stream": True,
                                    "messages": [{"role": "user", "content": "slow 40"}]}) as r:
                for text in r.iter_text():
                    self.begun.set()
                    self.body += text
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.begun.set()

    def __enter__(self) -> LongStream:
        self.thread.start()
        assert self.begun.wait(120), "the long stream never began"
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(300)


@pytest.mark.parametrize("args", [["stack.restart", "--service", "litellm"],
                                  ["keys.rotate-master", "--yes"]],
                         ids=["restart-litellm", "rotate-master"])
def test_replacing_litellm_drops_no_request(stack: StackProject, args: list[str]) -> None:
    before = litellm_containers(stack)
    master = stack.value("LITELLM_MASTER_KEY")
    with traffic_for(stack) as traffic, LongStream(stack) as long_stream:
        since = traffic.snapshot()
        done = stack.run(*args)
        wait_for_more(traffic, traffic.snapshot())
        report = traffic.report(since)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    print(f"\n{' '.join(args)}: " + ", ".join(f"{n} {r['failed']} of {r['sent']} failed"
                                              for n, r in report.items()))
    for name, result in report.items():
        assert result["sent"] > 0, name
        assert result["failed"] == 0, f"{name}: {result['errors']}"
    assert not long_stream.error and "[DONE]" in long_stream.body, long_stream.error
    after = litellm_containers(stack)
    assert len(after) == 1 and set(after).isdisjoint(before), (before, after)
    if args[0] == "keys.rotate-master":
        assert stack.value("LITELLM_MASTER_KEY") != master
        assert "the old master key is refused" in done.stdout
    status = stack.ok("stack.status").stdout
    assert "litellm-lb" in status and "virtual key" in status


@pytest.mark.parametrize("args", [["stack.restart", "--service", "litellm"],
                                  ["keys.rotate-master", "--yes"]],
                         ids=["restart-litellm", "rotate-master"])
def test_a_replacement_that_never_turns_ready(stack: StackProject, args: list[str]) -> None:
    """The old LiteLLM serves on; one line, the new one's log, exit 11; the master key kept."""
    before = litellm_containers(stack)
    env_before = stack.env.read_bytes()
    files = [*stack.compose_files, STACK_DIR / "litellm-broken.yml"]
    with traffic_for(stack) as traffic:
        since = traffic.snapshot()
        done = stack.run(*args, env={"INVOKE_GATEWAY_COMPOSE_FILES": os.pathsep.join(map(str, files))})
        wait_for_more(traffic, traffic.snapshot())
        report = traffic.report(since)
    assert done.returncode == 11, f"{done.stdout}\n{done.stderr}"
    assert "keeps serving" in done.stderr
    assert "  | " in done.stderr, "the new LiteLLM's last log lines come before the error"
    for name, result in report.items():
        assert result["failed"] == 0, f"{name}: {result['errors']}"
    assert litellm_containers(stack) == before
    assert stack.env.read_bytes() == env_before
    assert stack.value("LITELLM_MASTER_KEY") not in done.stdout + done.stderr


def test_stack_start_ends_an_unfinished_replacement(stack: StackProject) -> None:
    """A replacement killed after the new LiteLLM started (two run, the old in maintenance):
    stack.start keeps the newest healthy one and drops no request."""
    up = stack.compose("up", "-d", "--no-deps", "--no-recreate", "--scale", "litellm=2", "litellm")
    assert up.returncode == 0, up.stderr
    assert len(litellm_containers(stack)) == 2
    assert "2 LiteLLM containers run" in stack.ok("stack.status").stdout
    with traffic_for(stack) as traffic:
        since = traffic.snapshot()
        done = stack.run("stack.start")
        wait_for_more(traffic, traffic.snapshot())
        report = traffic.report(since)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    for name, result in report.items():
        assert result["failed"] == 0, f"{name}: {result['errors']}"
    assert len(litellm_containers(stack)) == 1
    assert "ended an unfinished replacement of LiteLLM" in done.stdout


def test_stack_start_replaces_a_litellm_whose_settings_changed(stack: StackProject) -> None:
    """.env changed under a running stack (a hand edit, or a keys.rotate-master killed after it
    wrote .env; here LiteLLM's UI_USERNAME): stack.start replaces LiteLLM beside the running
    one, where `docker compose up` alone would recreate it with downtime. Started again,
    nothing changes."""
    before = litellm_containers(stack)
    envfile.update(stack.env, {"UI_USERNAME": "operator"})
    assert "LiteLLM runs with other settings than .env" in stack.ok("stack.status").stdout
    with traffic_for(stack) as traffic:
        since = traffic.snapshot()
        done = stack.run("stack.start")
        wait_for_more(traffic, traffic.snapshot())
        report = traffic.report(since)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    for name, result in report.items():
        assert result["failed"] == 0, f"{name}: {result['errors']}"
    after = litellm_containers(stack)
    assert len(after) == 1 and set(after).isdisjoint(before), (before, after)
    assert "LiteLLM replaced beside the running one" in done.stdout
    assert stack.container_env("litellm")["UI_USERNAME"] == "operator"
    again = stack.ok("stack.start")
    assert litellm_containers(stack) == after
    assert "replaced beside" not in again.stdout + again.stderr


def test_ctrl_c_while_compose_makes_the_new_litellm(stack: StackProject) -> None:
    """Interrupted while `docker compose up --scale` is still making the new LiteLLM (a
    post_start hook holds compose there): exit 130, and no second LiteLLM is left behind."""
    before = litellm_containers(stack)
    files = [*stack.compose_files, STACK_DIR / "litellm-slow-start.yml"]
    env = stack.environ(INVOKE_GATEWAY_COMPOSE_FILES=os.pathsep.join(map(str, files)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "stack.restart", "--service", "litellm"],
        cwd=stack.dir, env=env, text=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    # compose has made the new container, and its post_start hook holds compose there (the
    # task's output is a pipe: its progress lines are for a terminal and not shown)
    while len(litellm_containers(stack)) == len(before):
        assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert litellm_containers(stack) == before
