"""The stack on Docker Swarm (``gateway.engine: swarm``), on a one-node swarm the run makes on
the local engine (and leaves as it found it, once every test of the run has ended): the real
PostgreSQL, LiteLLM, HAProxy and Open WebUI deployed by ``docker stack deploy`` from
docker-compose.yml + docker-stack.yml, with tests/stack/stack.test.yml for what these machines
cannot run (no IPVS: DNS round robin and host-mode ports). In order, on one stack: start up to
LiteLLM -> keys.create -> start (Open WebUI with the key) -> keys.rotate -> keys.rotate-master
while three clients chat (0 failed) -> keys.rotate-master with a LiteLLM that never turns ready
(rolled back, nothing changed) -> status and logs -> stop (volumes and secrets kept) -> stop --volumes."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.project import REPO
from tests.support.stack import (
    STACK_DIR,
    StackProject,
    docker_env,
    leave_swarm_after_the_run,
    make_project,
    pinned_version,
    require,
    versioned_litellm_image,
)
from tests.support.traffic import traffic_for, wait_for_more

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

SWARM_FILES = [REPO / "docker-stack.yml", STACK_DIR / "stack.test.yml"]
DATA_LABEL = "ai-gateway.data"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done


@pytest.fixture(scope="module")
def swarm() -> Iterator[str]:
    """A one-node swarm on the local engine, its node labelled for the stack's data; both undone
    afterwards only if this fixture did them."""
    docker_env()
    state = _docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    made = False
    if state == "inactive":
        done = _docker("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr",
                       "127.0.0.1:2377", check=False)
        require(done.returncode == 0, f"`docker swarm init` failed: {done.stderr.strip()}")
        made = True
    else:
        require(state == "active", f"this Docker Engine's swarm is {state}")
    node = _docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
    labels = json.loads(_docker("node", "inspect", node, "--format", "{{json .Spec.Labels}}").stdout or "{}")
    labelled = (labels or {}).get(DATA_LABEL) != "true"
    if labelled:
        _docker("node", "update", "--label-add", f"{DATA_LABEL}=true", node)
    try:
        yield node
    finally:
        if made:
            leave_swarm_after_the_run()  # not while the other modules' stacks run
        elif labelled:
            _docker("node", "update", "--label-rm", DATA_LABEL, node, check=False)


@pytest.fixture(scope="module")
def stack(swarm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProject]:
    project = make_project(tmp_path_factory.mktemp("swarm"), docker_env())
    project.compose_files += SWARM_FILES
    project.extra_env["INVOKE_GATEWAY_ENGINE"] = "swarm"
    try:
        yield project
    finally:
        _docker("stack", "rm", project.name, check=False)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _docker(
                "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={project.name}").stdout.strip():
            time.sleep(1)
        for kind in ("volume", "secret"):
            label = ("com.docker.stack.namespace" if kind == "volume" else "ai-gateway.project")
            names = _docker(kind, "ls", "-q", "--filter", f"label={label}={project.name}").stdout.split()
            if names:
                _docker(kind, "rm", *names, check=False)


def services(stack: StackProject) -> dict[str, dict[str, Any]]:
    """The stack's services as ``docker service inspect`` shows them to every manager."""
    ids = _docker("service", "ls", "-q", "--filter",
                  f"label=com.docker.stack.namespace={stack.name}").stdout.split()
    if not ids:
        return {}
    found = json.loads(_docker("service", "inspect", *ids).stdout)
    return {s["Spec"]["Name"].removeprefix(stack.name + "_"): s for s in found}


def running_tasks(stack: StackProject, service: str) -> list[str]:
    return sorted(_docker("service", "ps", "-q", "--filter", "desired-state=running",
                          f"{stack.name}_{service}").stdout.split())


def secrets(stack: StackProject) -> list[str]:
    return sorted(_docker("secret", "ls", "--filter", f"label=ai-gateway.project={stack.name}",
                          "--format", "{{.Name}}").stdout.split())


def test_start_without_a_key_runs_up_to_litellm(stack: StackProject) -> None:
    done = stack.ok("stack.start", "--no-create-key")
    assert "Open WebUI left stopped" in done.stdout
    running = services(stack)
    assert {"postgres", "litellm", "litellm-lb"} <= set(running) and "open-webui" not in running


def test_keys_create_then_start_hands_open_webui_the_key(stack: StackProject) -> None:
    stack.ok("keys.create")
    key = stack.value("VIRTUAL_KEY")
    assert key.startswith("sk-")
    done = stack.ok("stack.start")
    assert "the stack is up" in done.stdout and "(active)" in done.stdout
    with stack.webui() as webui:
        assert webui.held_key(old_keys=[key]) == key
        assert webui.models()


def test_no_secret_of_env_is_in_a_service_spec(stack: StackProject) -> None:
    specs = json.dumps(services(stack))
    values = {name: stack.value(name) for name in (
        "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "POSTGRES_PASSWORD", "UI_PASSWORD",
        "WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD", "VIRTUAL_KEY")}
    for name, value in values.items():
        assert value and value not in specs, f"{name} is in a service spec"
    # each is a Docker secret, mounted as a file the entrypoint exports
    litellm = services(stack)["litellm"]["Spec"]["TaskTemplate"]["ContainerSpec"]
    targets = {s["File"]["Name"] for s in litellm["Secrets"]}
    assert {"LITELLM_MASTER_KEY", "LITELLM_SALT_KEY", "DATABASE_PASSWORD", "UI_PASSWORD"} <= targets
    assert len(secrets(stack)) == len(values)


def test_keys_rotate_works_unchanged(stack: StackProject) -> None:
    old = stack.value("VIRTUAL_KEY")
    stack.ok("keys.rotate")
    new = stack.value("VIRTUAL_KEY")
    assert new != old and stack.litellm_accepts(new) and not stack.litellm_accepts(old)
    with stack.webui() as webui:
        assert webui.held_key(old_keys=[new, old]) == new


def test_rotate_master_rolls_litellm_without_dropping_a_request(stack: StackProject) -> None:
    old = stack.value("LITELLM_MASTER_KEY")
    secrets_before = secrets(stack)
    tasks_before = running_tasks(stack, "litellm")
    webui_before = running_tasks(stack, "open-webui")
    with traffic_for(stack) as traffic:
        since = traffic.snapshot()
        started = time.monotonic()
        done = stack.run("keys.rotate-master", "--yes")
        took = time.monotonic() - started
        wait_for_more(traffic, traffic.snapshot())
        report = traffic.report(since)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    print(f"\nkeys.rotate-master on swarm took {took:.1f}s; " + ", ".join(
        f"{n} {r['failed']} of {r['sent']} failed" for n, r in report.items()))
    for name, result in report.items():
        assert result["sent"] > 0, name
        assert result["failed"] == 0, f"{name}: {result['errors']}"
    new = stack.value("LITELLM_MASTER_KEY")
    assert new != old and "the old master key is refused" in done.stdout
    assert old not in done.stdout + done.stderr and new not in done.stdout + done.stderr
    # a new versioned secret replaced the old one, which is gone
    after = secrets(stack)
    master = [s for s in after if "_litellm_master_key_" in s]
    assert len(master) == 1 and master[0] not in secrets_before
    assert len(after) == len(secrets_before)
    tasks_after = running_tasks(stack, "litellm")
    assert tasks_after and set(tasks_after).isdisjoint(tasks_before)
    # only LiteLLM rolled: Open WebUI (whose VIRTUAL_KEY secret keys.rotate changed) runs on
    assert running_tasks(stack, "open-webui") == webui_before


def test_a_rotate_master_whose_litellm_never_turns_ready_changes_nothing(stack: StackProject) -> None:
    """Swarm rolls the failed update back by itself (``failure_action: rollback``, which clears
    the service's PreviousSpec): .env kept the new key, which LiteLLM refused, until the task
    saw such a rollback as one. Now: exit 11, .env holds the old key, which LiteLLM takes, and the
    new key's secret is gone."""
    old = stack.value("LITELLM_MASTER_KEY")
    before = secrets(stack)
    image = versioned_litellm_image(pinned_version(), never_ready=True)
    done = stack.run("keys.rotate-master", "--yes", env={"TEST_LITELLM_IMAGE": image})
    assert done.returncode == 11, f"{done.stdout}\n{done.stderr}"
    assert "rolled back" in done.stderr and "the master key was not changed" in done.stderr
    assert stack.value("LITELLM_MASTER_KEY") == old
    assert stack.admin("GET", "/key/list?page=1&size=1") is not None  # the old key opens LiteLLM
    assert secrets(stack) == before
    assert not (stack.dir / ".env.master-journal.json").exists()


def test_status_and_logs(stack: StackProject) -> None:
    status = stack.ok("stack.status").stdout
    for service in ("postgres", "litellm", "litellm-lb", "open-webui"):
        assert f"{service} " in status
    assert "starting" not in status and "key in sync" in status
    logs = stack.ok("stack.logs", "--service", "litellm", "--tail", "20")
    assert stack.value("LITELLM_MASTER_KEY") not in logs.stdout
    follow = stack.run("stack.logs", "--follow")
    assert follow.returncode == 2 and "--service" in follow.stderr


def test_backup_is_refused_on_swarm(stack: StackProject) -> None:
    done = stack.run("stack.backup")
    assert done.returncode == 2 and "compose engine only" in done.stderr


def test_stop_keeps_volumes_and_secrets_unless_told(stack: StackProject) -> None:
    kept = secrets(stack)
    done = stack.ok("stack.stop")
    assert "volumes and secrets kept" in done.stdout
    assert services(stack) == {}
    volumes = _docker("volume", "ls", "-q", "--filter",
                      f"label=com.docker.stack.namespace={stack.name}").stdout.split()
    assert sorted(volumes) == [f"{stack.name}_open-webui-data", f"{stack.name}_postgres-data"]
    assert secrets(stack) == kept
    assert "nothing to stop" in stack.ok("stack.stop").stdout
    # --volumes removes a stopped stack's volumes and secrets too
    stack.ok("stack.stop", "--volumes", "--yes")
    assert secrets(stack) == []
    assert not _docker("volume", "ls", "-q", "--filter",
                       f"label=com.docker.stack.namespace={stack.name}").stdout.split()
