"""The swarm engine's pure parts: the engine setting, the stack file rendered from Compose's
JSON (secrets as files, never in a service spec), the order of deployment and the secrets'
versioned names. The swarm itself runs in tests/e2e/test_swarm_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tasks.base.errors import UsageError
from tasks.config.settings import DEFAULTS, PROJECT_DIR, load_settings
from tasks.containers.swarm import (
    PLACEHOLDER,
    SECRETS_ENTRYPOINT,
    ImageCommand,
    deploy_order,
    render,
    secret_name,
)


def config(**gateway: object) -> dict[str, object]:
    return {"gateway": {**DEFAULTS["gateway"], **gateway}}


def test_the_engine_is_compose_unless_told() -> None:
    assert load_settings(None, environ={}).engine == "compose"
    assert load_settings(config(engine="swarm"), environ={}).engine == "swarm"
    assert load_settings(config(engine="swarm"), engine="compose", environ={}).engine == "compose"


def test_the_swarm_engine_reads_the_swarm_file_after_the_compose_file() -> None:
    assert load_settings(None, environ={}).compose_files == (PROJECT_DIR / "docker-compose.yml",)
    assert load_settings(None, engine="swarm", environ={}).compose_files == (
        PROJECT_DIR / "docker-compose.yml", PROJECT_DIR / "docker-stack.yml")
    # files named by the user are taken as given
    named = load_settings(config(compose_files="a.yml"), engine="swarm", environ={})
    assert named.compose_files == (PROJECT_DIR / "a.yml",)


def test_compose_file_is_read_from_env_as_compose_reads_it() -> None:
    """COMPOSE_FILE in .env counts (it was read from the environment only: a swarm then
    deployed the production images instead of the ones .env named); the environment's wins."""
    env = {"COMPOSE_FILE": "a.yml,b.yml"}
    assert load_settings(None, env_values=env, environ={}).compose_files == (
        PROJECT_DIR / "a.yml", PROJECT_DIR / "b.yml")
    assert load_settings(None, env_values=env, environ={"COMPOSE_FILE": "c.yml"}).compose_files == (
        PROJECT_DIR / "c.yml",)


@pytest.mark.parametrize(("flag", "conf", "source"), [("kubernetes", "compose", "--engine"),
                                                      (None, "Swarm", "gateway.engine"),
                                                      ("", "compose", "--engine"),
                                                      (None, "nomad", "gateway.engine")])
def test_an_unknown_engine_is_refused(flag: str | None, conf: str, source: str) -> None:
    with pytest.raises(UsageError, match=f"{source} must be one of compose, swarm"):
        load_settings(config(engine=conf), engine=flag, environ={})


MASTER = PLACEHOLDER + "LITELLM_MASTER_KEY"
PASSWORD = PLACEHOLDER + "POSTGRES_PASSWORD"


def compose_config(tmp_path: Path, **litellm: Any) -> dict[str, Any]:
    """What `docker compose config --format json` gives for a small stack, with placeholders."""
    cfg = tmp_path / "litellm-config.yaml"
    cfg.write_text("model_list: []\n")
    return {
        "name": "gw",
        "networks": {"default": {"name": "gw_default"}},
        "volumes": {"postgres-data": {"name": "gw_postgres-data"}},
        "services": {
            "postgres": {"image": "postgres:16", "command": None, "entrypoint": None,
                         "restart": "unless-stopped",
                         "environment": {"POSTGRES_PASSWORD": PASSWORD, "POSTGRES_USER": "litellm"},
                         "volumes": [{"type": "volume", "source": "postgres-data",
                                      "target": "/var/lib/postgresql/data", "volume": {}}],
                         "networks": {"default": None}},
            "litellm": {"image": "litellm:1", "command": ["--port", "4000"], "entrypoint": None,
                        "container_name": "x", "restart": "unless-stopped",
                        "depends_on": {"postgres": {"condition": "service_healthy"}},
                        "environment": {"LITELLM_MASTER_KEY": MASTER, "DATABASE_PASSWORD": PASSWORD,
                                        "STORE_MODEL_IN_DB": "True"},
                        "volumes": [{"type": "bind", "source": str(cfg), "target": "/app/config.yaml",
                                     "read_only": True, "bind": {"create_host_path": True}},
                                    {"type": "bind", "source": str(tmp_path), "target": "/data",
                                     "read_only": True}],
                        "networks": {"default": {"aliases": ["litellm-backend"]}},
                        "ports": [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 4000,
                                   "published": "4000", "protocol": "tcp"}],
                        "deploy": {"replicas": 2, "update_config": {"order": "start-first"}},
                        **litellm},
        },
    }


SECRETS = {"LITELLM_MASTER_KEY": "gw_litellm_master_key_1", "POSTGRES_PASSWORD": "gw_postgres_password_1"}


def image_command(image: str) -> ImageCommand:
    return ImageCommand(["docker/prod_entrypoint.sh"], ["--port", "4000"])


def test_secrets_reach_a_service_as_files_never_as_its_environment(tmp_path: Path) -> None:
    stack = render(compose_config(tmp_path), project="gw", services=["postgres", "litellm"],
                   secrets=SECRETS, image_command=image_command)
    litellm = stack["services"]["litellm"]
    assert litellm["environment"] == {"STORE_MODEL_IN_DB": "True"}
    assert sorted(litellm["secrets"], key=lambda s: s["target"]) == [
        {"source": "gw_postgres_password_1", "target": "DATABASE_PASSWORD"},
        {"source": "gw_litellm_master_key_1", "target": "LITELLM_MASTER_KEY"}]
    assert stack["secrets"] == {name: {"external": True, "name": name} for name in SECRETS.values()}
    # the entrypoint exports them, then runs the image's own entrypoint with the service's command
    assert litellm["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert litellm["entrypoint"][2] == SECRETS_ENTRYPOINT.replace("$", "$$")  # stack deploy interpolates
    assert litellm["entrypoint"][4:] == ["docker/prod_entrypoint.sh"]
    assert litellm["command"] == ["--port", "4000"]
    assert PLACEHOLDER not in json.dumps(stack)


def test_an_image_without_its_own_command_runs_the_images(tmp_path: Path) -> None:
    stack = render(compose_config(tmp_path), project="gw", services=["postgres"], secrets=SECRETS,
                   image_command=lambda image: ImageCommand(["docker-entrypoint.sh"], ["postgres"]))
    postgres = stack["services"]["postgres"]
    assert postgres["entrypoint"][4:] == ["docker-entrypoint.sh"]
    assert postgres["command"] == ["postgres"]


def test_what_stack_deploy_ignores_or_refuses_is_left_out(tmp_path: Path) -> None:
    stack = render(compose_config(tmp_path), project="gw", services=["postgres", "litellm"],
                   secrets=SECRETS, image_command=image_command)
    for service in stack["services"].values():
        assert not {"container_name", "restart", "depends_on", "profiles"} & set(service)
    litellm = stack["services"]["litellm"]
    assert litellm["deploy"] == {"replicas": 2, "update_config": {"order": "start-first"}}
    assert litellm["ports"] == [{"target": 4000, "published": 4000, "protocol": "tcp", "mode": "ingress"}]
    assert stack["networks"] == {"default": {"driver": "overlay"}}


def test_a_small_bound_file_becomes_a_config_named_by_its_content(tmp_path: Path) -> None:
    stack = render(compose_config(tmp_path), project="gw", services=["litellm"], secrets=SECRETS,
                   image_command=image_command)
    litellm = stack["services"]["litellm"]
    (key,) = stack["configs"]
    assert key.startswith("litellm-config.yaml_")
    assert stack["configs"][key]["name"] == f"gw_{key}"
    assert litellm["configs"] == [{"source": key, "target": "/app/config.yaml"}]
    # the folder stays a bind mount
    assert litellm["volumes"] == [{"type": "bind", "source": str(tmp_path), "target": "/data",
                                   "read_only": True}]
    changed = compose_config(tmp_path)
    (tmp_path / "litellm-config.yaml").write_text("model_list: [changed]\n")
    again = render(changed, project="gw", services=["litellm"], secrets=SECRETS,
                   image_command=image_command)
    assert list(again["configs"]) != [key]  # a changed file is a new config: the service rolls


@pytest.mark.parametrize("where", [{"command": ["--key", MASTER]},
                                   {"environment": {"DATABASE_URL": f"postgres://u:{PASSWORD}@db/x"}},
                                   {"healthcheck": {"test": ["CMD", "check", MASTER]}}])
def test_a_secret_inside_a_longer_value_or_a_command_is_refused(tmp_path: Path,
                                                                where: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="only as a whole variable"):
        render(compose_config(tmp_path, **where), project="gw", services=["litellm"],
               secrets=SECRETS, image_command=image_command)


def test_services_are_deployed_after_those_they_depend_on(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path)
    cfg["services"]["open-webui"] = {"image": "w", "depends_on": {"litellm": {}}}
    cfg["services"]["provider"] = {"image": "p"}
    assert deploy_order(cfg, ["open-webui", "litellm", "postgres", "provider"]) == [
        ["postgres", "provider"], ["litellm"], ["open-webui"]]
    assert deploy_order(cfg, ["litellm"]) == [["litellm"]]  # its dependency runs already


def test_a_new_value_is_a_new_secret_and_the_name_does_not_reveal_it() -> None:
    one = secret_name("gw", "UI_PASSWORD", "hunter2", "salt")
    assert one == secret_name("gw", "UI_PASSWORD", "hunter2", "salt")
    assert one != secret_name("gw", "UI_PASSWORD", "hunter3", "salt")
    assert one != secret_name("gw", "UI_PASSWORD", "hunter2", "other salt")
    assert one.startswith("gw_ui_password_") and "hunter2" not in one and len(one) <= 64
    with pytest.raises(UsageError, match="too long for Docker secret names"):
        secret_name("p" * 50, "WEBUI_ADMIN_PASSWORD", "x", "salt")


class _Engine:
    """The one call `SwarmStack.require` makes of the Docker SDK: ``info()``."""

    def __init__(self, swarm: dict[str, Any]) -> None:
        self.swarm = swarm

    def info(self) -> dict[str, Any]:
        return {"Swarm": self.swarm}


@pytest.mark.parametrize("swarm", [{"LocalNodeState": "inactive"},
                                   {"LocalNodeState": "active", "ControlAvailable": False}])
def test_an_engine_that_is_no_swarm_manager_is_refused_with_exit_10(swarm: dict[str, Any]) -> None:
    from tasks.base.errors import DockerUnavailableError
    from tasks.containers.compose import ComposeCLI
    from tasks.containers.swarm import SwarmStack

    stack = SwarmStack(load_settings(None, engine="swarm", environ={}), {}, docker="docker")
    stack._client, stack._cli = _Engine(swarm), ComposeCLI(("docker", "compose"), "2.40.3", False)
    with pytest.raises(DockerUnavailableError, match="not a swarm manager") as caught:
        stack.require()
    assert caught.value.exit_code == 10
    stack._client = _Engine({"LocalNodeState": "active", "ControlAvailable": True})
    stack.require()


def test_the_images_own_words_are_not_interpolated_by_stack_deploy(tmp_path: Path) -> None:
    stack = render(compose_config(tmp_path), project="gw", services=["postgres"], secrets=SECRETS,
                   image_command=lambda image: ImageCommand(["run", "$HOME"], ["--port", "${PORT}"]))
    postgres = stack["services"]["postgres"]
    assert postgres["entrypoint"][4:] == ["run", "$$HOME"] and postgres["command"] == ["--port", "$${PORT}"]


def test_a_secret_value_that_reaches_a_spec_another_way_is_refused(tmp_path: Path) -> None:
    """``env_file: .env`` puts the values themselves in the environment, no placeholder."""
    leaky = compose_config(tmp_path, environment={"LITELLM_MASTER_KEY": MASTER,
                                                  "FROM_ENV_FILE": "sk-the-real-master-key"})
    with pytest.raises(UsageError, match="value of LITELLM_MASTER_KEY some other way"):
        render(leaky, project="gw", services=["litellm"], secrets=SECRETS,
               image_command=image_command, values={"LITELLM_MASTER_KEY": "sk-the-real-master-key"})


def test_a_port_range_published_to_one_port_is_refused_with_exit_2(tmp_path: Path) -> None:
    """``8000-8002:4000`` in a compose file: Swarm publishes one port per entry. (Compose splits
    ``8000-8002:8000-8002`` into three entries itself: those pass.)"""
    split = [{"mode": "host", "target": 8000 + i, "published": str(8000 + i), "protocol": "tcp"}
             for i in range(3)]
    stack = render(compose_config(tmp_path, ports=split), project="gw", services=["litellm"],
                   secrets=SECRETS, image_command=image_command)
    assert [p["published"] for p in stack["services"]["litellm"]["ports"]] == [8000, 8001, 8002]
    ranged = [{"mode": "ingress", "target": 4000, "published": "8000-8002", "protocol": "tcp"}]
    with pytest.raises(UsageError, match="litellm: the published port range 8000-8002") as caught:
        render(compose_config(tmp_path, ports=ranged), project="gw", services=["litellm"],
               secrets=SECRETS, image_command=image_command)
    assert caught.value.exit_code == 2


class _Service:
    """A swarm service as the Docker SDK gives it: ``attrs``, ``tasks()``, ``reload()``."""

    def __init__(self, tasks: list[dict[str, Any]], update: str | None = None) -> None:
        self.name, self.id = "gw_litellm", "svc1"
        self.attrs: dict[str, Any] = {
            "ID": "svc1", "Spec": {"Mode": {"Replicated": {"Replicas": 1}},
                                   "TaskTemplate": {"ContainerSpec": {"Image": "litellm:2"}}},
            "UpdateStatus": {"State": update} if update else {}, "PreviousSpec": {"x": 1}}
        self._tasks = tasks

    def tasks(self) -> list[dict[str, Any]]:
        return self._tasks

    def reload(self) -> None:
        pass


def _task(image: str, node: str, state: str, desired: str = "running") -> dict[str, Any]:
    return {"ID": f"{image}-{node}", "NodeID": node, "DesiredState": desired, "Slot": 1,
            "CreatedAt": "2026-12-04T00:00:00Z", "Status": {"State": state},
            "Spec": {"ContainerSpec": {"Image": image}}}


def _swarm_stack() -> Any:
    from tasks.containers.swarm import SwarmStack

    stack = SwarmStack(load_settings(None, engine="swarm", environ={}), {}, docker="docker")
    stack._old_failures = set()
    return stack


def test_a_task_on_a_node_that_is_down_neither_serves_nor_holds_up_an_update() -> None:
    """A node that is down never reports its tasks stopped: their last state ("running") is
    stale. The old task there must not keep a finished update waiting (the wait would time out
    and roll back a good update), and a task there does not count as serving."""
    stack = _swarm_stack()
    service = _Service([_task("litellm:2", "node-a", "running"),
                        _task("litellm:1", "node-b", "running", desired="shutdown")])
    assert stack._state("litellm", service, {"node-b"}).ready
    assert not stack._state("litellm", service).ready  # node b up: the old task still runs
    only_there = _Service([_task("litellm:2", "node-b", "running")])
    assert not stack._state("litellm", only_there, {"node-b"}).ready


def test_a_failed_update_is_reported_once_its_rollback_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _swarm_stack()
    states = iter(["updating", "rollback_started", "rollback_started", "rollback_completed"])
    asked: list[str] = []

    def service(name: str) -> _Service:
        asked.append(name)
        return _Service([], update=next(states))

    monkeypatch.setattr(stack, "_service", service)
    monkeypatch.setattr("tasks.containers.swarm.time.sleep", lambda _s: None)
    assert stack._wait_rolled_back(["litellm"], timeout=60) == []
    assert len(asked) == 4
    stuck = _swarm_stack()
    monkeypatch.setattr(stuck, "_service", lambda name: _Service([], update="rollback_started"))
    assert stuck._wait_rolled_back(["litellm"], timeout=0) == ["litellm"]


def test_a_rollback_swarm_made_itself_is_a_failed_update_without_previous_spec() -> None:
    """With ``failure_action: rollback`` Swarm rolls back by itself, and that clears the
    service's PreviousSpec: the failed update must still end as RollFailed (keys.rotate-master
    then puts the old key back in .env), and say why the new task failed."""
    stack = _swarm_stack()
    stack._old_updates = {"litellm": ("completed", "2026-12-04T00:00:00Z")}
    failed = _task("litellm:2", "node-a", "failed", desired="shutdown")
    failed["Status"]["Err"] = "No such image: litellm:nope"
    service = _Service([_task("litellm:1", "node-a", "running"), failed], update="rollback_completed")
    service.attrs["UpdateStatus"]["StartedAt"] = "2026-12-04T01:00:00Z"
    service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] = "litellm:1"
    del service.attrs["PreviousSpec"]
    state = stack._state("litellm", service)
    assert state.failed and "No such image: litellm:nope" in state.failure
    stack._service = lambda name: service  # type: ignore[method-assign]
    assert stack._roll_back("litellm")
    # the same rollback seen again at the next deployment belongs to the earlier one
    stack._old_updates = {"litellm": ("rollback_completed", "2026-12-04T01:00:00Z")}
    assert not stack._state("litellm", service).failed
    assert not stack._roll_back("litellm")


def test_a_host_port_held_by_a_stopping_task_is_waited_for_a_placement_constraint_is_not() -> None:
    """Stop-first with a host-mode port: the new task waits "no suitable node (host-mode port
    already in use on 1 node)" until the old one has stopped - not a failure (two of four
    restarts failed on it). A constraint no node meets never changes: it fails at once."""
    stack = _swarm_stack()
    waiting = _task("litellm:2", "", "pending")
    waiting["Status"]["Err"] = "no suitable node (host-mode port already in use on 1 node)"
    state = stack._state("litellm", _Service([waiting]))
    assert not state.failed and not state.ready and "host-mode port already in use" in state.detail
    placed = _task("litellm:2", "", "pending")
    placed["Status"]["Err"] = "no suitable node (scheduling constraints not satisfied on 1 node)"
    state = stack._state("litellm", _Service([placed]))
    assert state.failed and "ai-gateway.data=true" in state.failure


class _Engine2:
    """The calls ``check_engine`` makes: ``info()``, ``services.list``, ``containers.list``."""

    def __init__(self, services: list[str], containers: list[str]) -> None:
        self._services, self._containers = services, containers
        self.services = self
        self.containers = _Containers(containers)

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}}

    def list(self, **_kwargs: Any) -> list[str]:
        return self._services


class _Containers:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def list(self, **_kwargs: Any) -> list[str]:
        return self.names


def test_each_engine_refuses_while_the_project_runs_under_the_other() -> None:
    """Both would use the same volumes and ports: the port check said "in use by another
    program" (exit 12), or a second PostgreSQL nearly started on the live volume."""
    from tasks.base.errors import StackError
    from tasks.containers.compose import Stack

    compose = Stack(load_settings(None, environ={}), {}, docker="docker")
    compose._client = _Engine2(["ai-gateway_litellm"], [])
    with pytest.raises(StackError, match="runs as a swarm stack on this engine") as caught:
        compose.check_engine()
    assert caught.value.exit_code == 11 and "--engine swarm" in caught.value.message
    compose._client = _Engine2([], ["ai-gateway-litellm-1"])
    compose.check_engine()
    swarm = _swarm_stack()
    swarm._client = _Engine2([], ["ai-gateway-litellm-1"])
    with pytest.raises(StackError, match="compose project 'ai-gateway' runs on this host"):
        swarm.check_engine()


def test_a_failed_update_shows_the_failed_tasks_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's logs were the old, healthy task's shutting down; the new task's are the
    ones that say why it failed."""
    import subprocess

    stack = _swarm_stack()
    failed = _task("litellm:2", "node-a", "failed", desired="shutdown")
    failed["ID"] = "task-new"
    service = _Service([_task("litellm:1", "node-a", "running"), failed])
    service.logs = lambda **_kw: [b"old task: shutting down\n"]  # type: ignore[attr-defined]
    stack._service = lambda name: service  # type: ignore[method-assign]
    asked: list[list[str]] = []

    def cli(args: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        asked.append(args)
        return subprocess.CompletedProcess(args, 0, "ModuleNotFoundError: no module named x\n", "")

    monkeypatch.setattr("tasks.containers.swarm.run_cli", cli)
    assert stack.logs("litellm") == ["ModuleNotFoundError: no module named x"]
    assert asked and asked[0][-1] == "task-new"
    stack._old_failures = {"task-new"}  # failed before this deployment: the service's logs
    assert stack.logs("litellm") == ["old task: shutting down"]


def test_stack_logs_on_a_swarm_always_names_a_tail() -> None:
    """Without ``--tail``, Engine 20.10's ``docker service logs`` streamed on and never ended
    (stack.logs hung); with one it returns."""
    stack = _swarm_stack()
    unnamed = stack.logs_argv("litellm", follow=False, tail=None)
    assert unnamed[-3:] == ["--tail", "1000", "ai-gateway_litellm"]
    assert stack.logs_argv("litellm", follow=False, tail=5)[-3:] == ["--tail", "5", "ai-gateway_litellm"]
