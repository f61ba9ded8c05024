"""Docker Swarm: the same stack as a swarm stack (``docker stack deploy``), from the same compose
files plus the project's swarm file (docker-stack.yml), behind the interface of
``compose.Stack`` so the gateway's start / stop / restart / status and the keys tasks work
unchanged; .env's secrets become Docker secrets, never part of a service spec.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..base.errors import DockerUnavailableError, StackError, UsageError
from ..config.settings import Settings
from ..envstore import envfile
from .compose import PROJECT_LABEL, SECRET_VARS, SWARM_STACK_LABEL, ServiceState, Stack, run_cli
from .rolling import RollFailed

#: the label Docker puts on a swarm service's containers (the stack's own: SWARM_STACK_LABEL)
SWARM_SERVICE_LABEL = "com.docker.swarm.service.name"
#: our label on the secrets of a project (not SWARM_STACK_LABEL: ``docker stack rm`` would delete them)
SECRET_LABEL = "ai-gateway.project"  # noqa: S105 - a label's name
#: what Compose renders in place of a secret's value (never a value of its own)
PLACEHOLDER = "ai-gateway-swarm-secret:"
#: the entrypoint in front of a service with secrets: each /run/secrets/<NAME> becomes the
#: variable NAME, then the image's entrypoint and command run as PID 1 (exec)
SECRETS_ENTRYPOINT = ('for f in /run/secrets/*; do [ -f "$f" ] && export "${f##*/}=$(cat "$f")"; '
                      'done; exec "$@"')
#: the largest Docker config (Docker's limit, 500 KiB): a larger file stays a bind mount
CONFIG_MAX_BYTES = 500 * 1024
#: failed tasks of one service (after the deployment began) that end a wait
FAILED_TASKS = 3
#: task states in which its container may run (Swarm's task lifecycle, moby/swarmkit api)
LIVE = ("assigned", "accepted", "preparing", "ready", "starting", "running")
#: update states in which a service is not yet converged / has failed its update
UPDATING = ("updating", "rollback_started")
#: A rollback that ended (Swarm's UpdateStatus.State).
ROLLED_BACK = ("rollback_completed", "rollback_paused")
UPDATE_FAILED = ("paused", *ROLLED_BACK)
#: stack.logs' lines per task on a swarm when --tail is not given
LOGS_TAIL = 1000


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _reported(method: _Method) -> _Method:
    """A Docker API error inside a swarm step (a worker node, a removed object) as one
    StackError line (exit 11), not a traceback."""
    @functools.wraps(method)
    def wrapper(self: SwarmStack, *args: Any, **kwargs: Any) -> Any:
        from docker.errors import DockerException  # the SDK on first use, as compose.connect

        try:
            return method(self, *args, **kwargs)
        except DockerException as exc:
            raise StackError("the swarm refused a request: "
                             + self.scrub(str(exc).splitlines()[0][:300])) from None
    return wrapper  # type: ignore[return-value]


def stack_for(settings: Settings, env_values: Mapping[str, str]) -> Stack:
    """The stack ``settings.engine`` runs: a compose project, or a swarm stack."""
    if settings.engine == "swarm":
        return SwarmStack(settings, env_values)
    return Stack(settings, env_values)


def secret_vars(settings: Settings) -> list[str]:
    """The variables of .env that are secrets: the passwords and keys, and every virtual key."""
    return [*SECRET_VARS, *(spec.env_var for spec in settings.keys.values())]


def secret_name(project: str, variable: str, value: str, salt: str) -> str:
    """``<project>_<variable>_<hmac>``: a new name for a new value (Docker secrets are immutable);
    the HMAC, keyed with the salt key, says nothing about the value to who lists the secrets."""
    digest = hmac.new(salt.encode(), f"{variable}\0{value}".encode(), hashlib.sha256).hexdigest()
    name = f"{project}_{variable.lower()}_{digest[:12]}"
    if len(name) > 64:
        raise UsageError(f"the project name {project!r} is too long for Docker secret names "
                         "(at most 64 characters in all): shorten COMPOSE_PROJECT_NAME")
    return name


def _digest_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@dataclass(frozen=True)
class ImageCommand:
    """An image's own ENTRYPOINT and CMD (what a service without its own runs)."""

    entrypoint: list[str]
    cmd: list[str]


def render(config: Mapping[str, Any], *, project: str, services: Iterable[str],
           secrets: Mapping[str, str], image_command: Callable[[str], ImageCommand],
           values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The stack file for ``services`` of Compose's rendered ``config`` (its JSON).

    ``secrets``: ``{variable: Docker secret name}`` for every placeholder Compose rendered;
    ``image_command``: an image's own entrypoint and command; ``values``: ``{variable: secret
    value}``, none of which may appear in the result. Raises UsageError (exit 2) when a secret
    would end up inside a longer value or outside an environment (a command line, a healthcheck),
    where it cannot be a file, or in the spec by another way (``env_file``)."""
    wanted = list(services)
    out: dict[str, Any] = {"version": "3.9", "services": {}, "networks": {}, "volumes": {},
                           "secrets": {}, "configs": {}}
    for name, network in (config.get("networks") or {}).items():
        if network and network.get("external"):
            out["networks"][name] = {"external": True, "name": network.get("name", name)}
        else:
            out["networks"][name] = {"driver": "overlay"}
    for name, volume in (config.get("volumes") or {}).items():
        out["volumes"][name] = ({"external": True, "name": volume.get("name", name)}
                                if volume and volume.get("external") else {})
    for name in wanted:
        spec = config["services"][name]
        out["services"][name] = _service(name, spec, out, secrets, image_command, project)
    text = json.dumps(out)
    leaked = sorted(var for var, value in (values or {}).items() if len(value) >= 8 and value in text)
    if leaked:
        raise UsageError(f"the compose files give a service the value of {', '.join(leaked)} "
                         "some other way than its variable (an env_file?): on a swarm a service "
                         "spec is shown to every manager; give it as VAR: ${VAR}")
    return out


def _service(name: str, spec: Mapping[str, Any], out: dict[str, Any],
             secrets: Mapping[str, str], image_command: Callable[[str], ImageCommand],
             project: str) -> dict[str, Any]:
    environment = {str(k): v for k, v in (spec.get("environment") or {}).items()}
    mounted = []
    for variable, value in list(environment.items()):
        if isinstance(value, str) and value.startswith(PLACEHOLDER) and value[len(PLACEHOLDER):] in secrets:
            source = secrets[value[len(PLACEHOLDER):]]
            out["secrets"][source] = {"external": True, "name": source}
            mounted.append({"source": source, "target": variable})
            del environment[variable]
    rest = json.dumps({k: v for k, v in spec.items() if k != "environment"}) + json.dumps(environment)
    if PLACEHOLDER in rest:
        raise UsageError(f"the compose files put a secret of .env inside a longer value or a "
                         f"command of the service {name}: on a swarm a secret reaches a service "
                         "only as a whole variable (LITELLM_MASTER_KEY: ${LITELLM_MASTER_KEY}); "
                         "move it into its own variable")
    service: dict[str, Any] = {"image": spec["image"]}
    if mounted:
        own = image_command(spec["image"]) if spec.get("entrypoint") is None else None
        # Compose's JSON writes a literal $ as $$ already; the image's own words need it too,
        # or `docker stack deploy` would interpolate them from the caller's environment
        entrypoint = spec["entrypoint"] if own is None else _escaped(own.entrypoint)
        command = (spec["command"] if spec.get("command") is not None
                   else _escaped(own.cmd) if own is not None else [])
        service["entrypoint"] = ["/bin/sh", "-c", SECRETS_ENTRYPOINT.replace("$", "$$"),
                                 "ai-gateway-secrets", *(entrypoint or [])]
        service["command"] = list(command or [])
        service["secrets"] = mounted
    else:
        for field_name in ("entrypoint", "command"):
            if spec.get(field_name) is not None:
                service[field_name] = spec[field_name]
    service["environment"] = environment
    for field_name in ("healthcheck", "stop_grace_period", "stop_signal", "user", "working_dir",
                       "labels", "deploy", "ulimits", "cap_add", "cap_drop", "read_only",
                       "tmpfs", "extra_hosts", "hostname", "logging", "init"):
        if spec.get(field_name) is not None:
            service[field_name] = spec[field_name]
    service["networks"] = {net: ({"aliases": list(opts["aliases"])} if opts and opts.get("aliases")
                                 else None)
                           for net, opts in (spec.get("networks") or {}).items()}
    service["volumes"], configs = _mounts(spec.get("volumes") or [], out, project)
    if configs:
        service["configs"] = configs
    if spec.get("ports"):
        service["ports"] = [_port(name, p) for p in spec["ports"] if p.get("published")]
    return service


def _port(service: str, port: Mapping[str, Any]) -> dict[str, Any]:
    """One published port in the stack file's long syntax. UsageError (exit 2) for a range
    published to one container port (``8000-8002:80``), which Swarm cannot publish (Compose
    itself splits a range published to a range of the same length into single ports)."""
    published = str(port["published"])
    if not published.isdigit():
        raise UsageError(f"service {service}: the published port range {published} (to "
                         f"{port['target']}) cannot run on a swarm: publish one port")
    return {"target": int(port["target"]), "published": int(published),
            "protocol": port.get("protocol", "tcp"), "mode": port.get("mode", "ingress")}


def _escaped(words: Sequence[str]) -> list[str]:
    return [word.replace("$", "$$") for word in words]


def _mounts(volumes: Sequence[Mapping[str, Any]], out: dict[str, Any],
            project: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, configs): a bind-mounted file becomes a Docker config, named by its content."""
    mounts: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    for volume in volumes:
        source = str(volume.get("source", ""))
        if (volume.get("type") == "bind" and Path(source).is_file()
                and Path(source).stat().st_size <= CONFIG_MAX_BYTES):
            path = Path(source)
            key = f"{path.name}_{_digest_file(path)}"
            out["configs"][key] = {"file": str(path), "name": f"{project}_{key}"[:64]}
            configs.append({"source": key, "target": str(volume["target"])})
            continue
        mount = {"type": volume.get("type", "volume"), "source": source,
                 "target": str(volume["target"])}
        if volume.get("read_only"):
            mount["read_only"] = True
        mounts.append(mount)
    return mounts, configs


def _task_spec(spec: Mapping[str, Any]) -> str:
    """A task template, comparable between a service and its tasks (a task's has no Runtime)."""
    return json.dumps({k: v for k, v in spec.items() if k != "Runtime"}, sort_keys=True)


def deploy_order(config: Mapping[str, Any], services: Iterable[str]) -> list[list[str]]:
    """``services`` in waves: each service after the services it ``depends_on`` (Compose's
    order, which ``docker stack deploy`` ignores)."""
    left = list(services)
    done: set[str] = set()
    waves: list[list[str]] = []
    while left:
        wave = [s for s in left
                if not set(config["services"][s].get("depends_on") or {}) & (set(left) - done - {s})]
        if not wave:  # a cycle: Compose refuses those; deploy the rest together
            wave = list(left)
        waves.append(wave)
        done |= set(wave)
        left = [s for s in left if s not in done]
    return waves


def _with_deps(config: Mapping[str, Any], services: Iterable[str]) -> list[str]:
    found: list[str] = []
    todo = list(services)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.append(name)
        todo += list(config["services"][name].get("depends_on") or {})
    return found


def _update_of(service: Any) -> tuple[str, str]:
    """A service's update status as (State, StartedAt): a new update has another StartedAt."""
    update = service.attrs.get("UpdateStatus") or {}
    return str(update.get("State", "")), str(update.get("StartedAt", ""))


def _task_error(task: Mapping[str, Any]) -> str:
    """Why a task failed, as Swarm says it (``No such image: ...``, ``task: non-zero exit (1)``)."""
    status = task.get("Status") or {}
    return str(status.get("Err") or status.get("Message") or status.get("State", ""))


def _failure(update: Mapping[str, Any], converged: bool, failures: Sequence[Mapping[str, Any]],
             pending: Sequence[str]) -> str:
    """Why a service will not converge by itself, or "": its update failed (``update``: the
    service's UpdateStatus from this deployment, else empty), FAILED_TASKS of its tasks failed
    (``failures``, oldest first), or no node may run it (``pending``: the waiting tasks' errors)."""
    last_error = f"; the last failed task: {_task_error(failures[-1])}" if failures else ""
    if update.get("State") in UPDATE_FAILED:
        said = update["State"].replace("_", " ")
        message = str(update.get("Message") or "")
        return (f"update {said}" + (f" ({message})" if message and message not in said else "")
                + last_error)
    if converged:
        return ""
    if len(failures) >= FAILED_TASKS:
        return f"{len(failures)} tasks failed, the last: {_task_error(failures[-1])}"
    if any("constraint" in err for err in pending):
        # placement never changes by itself (a host-mode port held by a task that is still
        # stopping does: that one is waited for)
        return (f"no node can run it ({pending[0]}); a service with a volume runs on the "
                "node labelled ai-gateway.data=true (README, 'Docker Swarm')")
    return ""


@dataclass
class RemoteTask:
    """A service's running task on another node: running, but no ``docker exec`` from here."""

    name: str
    status: str = "running"
    labels: Mapping[str, str] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def exec_run(self, *_args: Any, **_kwargs: Any) -> Any:
        raise StackError(f"{self.name} runs on another node of the swarm: the tasks reach it "
                         "through its published port only (LITELLM_PORT, WEBUI_PORT)")


@dataclass
class SwarmServiceState(ServiceState):
    """A swarm service: ``running`` when as many tasks run (and are healthy: a task with a
    healthcheck counts as running only once healthy) as it has replicas, and no update is under
    way; ``failure`` says why it will not get there."""

    failure: str = ""
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.status == "running" and not self.failure

    @property
    def failed(self) -> bool:
        return bool(self.failure)

    def describe(self) -> str:
        text = self.failure or self.status
        return f"{text} ({self.detail})" if self.detail and not self.failure else text


class SwarmStack(Stack):
    """One project as a swarm stack of the same name; see the module docstring."""

    def __init__(self, settings: Settings, env_values: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(settings, env_values, **kwargs)
        self._config: dict[str, Any] | None = None
        #: failed tasks from before the deployment under way (None: no deployment: stack.status)
        self._old_failures: set[str] | None = None
        #: each service's update status from before the deployment under way (State, StartedAt):
        #: a rollback Swarm reported before it belongs to an earlier deployment
        self._old_updates: dict[str, tuple[str, str]] = {}

    # -- checks --------------------------------------------------------------

    def require(self) -> None:
        """The Docker daemon, Compose (it renders the files), and a swarm manager.
        DockerUnavailableError (exit 10) otherwise."""
        super().require()
        swarm = self.client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            state = swarm.get("LocalNodeState") or "unknown"
            raise DockerUnavailableError(
                f"this Docker Engine is not a swarm manager (swarm: {state}), and the "
                "engine is swarm (--engine, gateway.engine or INVOKE_GATEWAY_ENGINE): run the "
                "tasks on a manager node, or `docker swarm "
                "init` to make this one a swarm (README, 'Docker Swarm'), or use the compose engine")

    @_reported
    def check_engine(self) -> None:
        """Refuse (StackError, exit 11) to deploy while a compose stack of the project runs on
        this host: both would use the same volumes and ports."""
        running = self.client.containers.list(
            filters={"label": f"{PROJECT_LABEL}={self.settings.project_name}"}, sparse=True)
        if running:
            raise StackError(
                f"the compose project {self.settings.project_name!r} runs on this host "
                f"({len(running)} containers): stop it first (`invoke stack.stop --engine "
                "compose`; its volumes are kept, and the swarm stack uses them on this node)")

    # -- rendering -------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Compose's rendering of the files with this .env, every secret a placeholder."""
        if self._config is None:
            for file in self.settings.compose_files:
                if not file.is_file():
                    raise StackError(f"compose file {file} not found")
            env = self.child_env()
            env.update({var: PLACEHOLDER + var for var in secret_vars(self.settings)})
            done = run_cli(self.compose_args("config", "--format", "json"), env=env,
                        timeout=self.settings.start_timeout)
            if done.returncode != 0:
                lines = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
                raise StackError("docker compose config failed: "
                                 + (self.scrub(lines[-1]) if lines else f"exit {done.returncode}"))
            self._config = json.loads(done.stdout)
        return self._config

    def defined(self) -> list[str]:
        return list(self.config().get("services") or {})

    def _secret_filter(self) -> dict[str, str]:
        return {"label": f"{SECRET_LABEL}={self.settings.project_name}"}

    def secret_names(self) -> dict[str, str]:
        """``{variable: secret name}`` for the secrets .env holds now."""
        salt = self.env_values.get("LITELLM_SALT_KEY", "")
        return {variable: secret_name(self.settings.project_name, variable,
                                      self.env_values.get(variable, ""), salt)
                for variable in secret_vars(self.settings)}

    def _create_secrets(self, names: Iterable[str]) -> None:
        """Create the secrets of ``names`` (of :meth:`secret_names`) that do not exist yet, from
        memory through the API (never a file or a command line)."""
        wanted = set(names)
        have = {s.name for s in self.client.secrets.list(filters=self._secret_filter())}
        for variable, name in self.secret_names().items():
            value = self.env_values.get(variable, "")
            if name in wanted and name not in have and value:
                self.client.secrets.create(name=name, data=value.encode(),
                                           labels={SECRET_LABEL: self.settings.project_name,
                                                   "ai-gateway.variable": variable})

    def _image_command(self, image: str) -> ImageCommand:
        from docker.errors import DockerException  # the SDK on first use, as compose.connect

        try:
            try:
                attrs = self.client.images.get(image).attrs
            except DockerException:
                attrs = self.client.images.pull(image).attrs
        except DockerException as exc:
            raise StackError(f"cannot read the entrypoint of the image {image} (needed to "
                             f"give it its secrets): {str(exc).splitlines()[0][:200]}") from None
        own = attrs.get("Config") or {}
        return ImageCommand(list(own.get("Entrypoint") or []), list(own.get("Cmd") or []))

    # -- changes -------------------------------------------------------------

    def _service(self, name: str) -> Any | None:
        found = self.client.services.list(filters={"name": f"{self.settings.project_name}_{name}"})
        return next((s for s in found if s.name == f"{self.settings.project_name}_{name}"), None)

    def _services(self) -> dict[str, Any]:
        prefix = self.settings.project_name + "_"
        return {s.name[len(prefix):]: s for s in self.client.services.list(
            filters={"label": f"{SWARM_STACK_LABEL}={self.settings.project_name}"})}

    @_reported
    def up(self, services: Iterable[str] = (), *, recreate: bool = False,
           no_deps: bool = False, timeout: float | None = None) -> None:
        """Deploy ``services`` (with the services they depend on unless ``no_deps``), in
        ``depends_on`` order; the others keep running as they are. No ``services``: the whole
        stack, and the services the files no longer define are removed (as Compose's
        ``--remove-orphans``). ``recreate``: roll those whose spec did not change anyway (as
        ``--force-recreate``). Each wave runs before the next deploys, within ``timeout`` seconds
        (gateway.start_timeout when None)."""
        self.check_engine()
        # .env as it is now (a task may have changed it since: keys.rotate-master, a new key)
        self.env_values = envfile.load(self.settings.env_file).values
        self._config = None
        config = self.config()
        defined = self.defined()
        asked = list(services) or defined
        if not no_deps:
            asked = _with_deps(config, asked)
        running = self._services()
        before = {n: json.dumps(s.attrs["Spec"].get("TaskTemplate"), sort_keys=True)
                  for n, s in running.items()}
        self._old_failures = self._failed_tasks()
        self._old_updates = {name: _update_of(service) for name, service in running.items()}
        secrets = self.secret_names()
        waves = deploy_order(config, [s for s in defined if s in asked])
        secret_values = {v: self.env_values.get(v, "") for v in secrets}
        for i, wave in enumerate(waves):
            # only this wave's services: a redeployed service, even unchanged, would lose the
            # spec Swarm rolls back to
            stack_file = render(config, project=self.settings.project_name, services=wave,
                                secrets=secrets, image_command=self._image_command,
                                values=secret_values)
            self._create_secrets(stack_file["secrets"])
            self._deploy(stack_file)
            if i < len(waves) - 1:  # the next wave depends on this one: running and healthy
                self.wait(wave, timeout=timeout or self.settings.start_timeout)
        if not services:  # the whole stack: what the files no longer define goes
            for name, service in running.items():
                if name not in defined:
                    service.remove()
        if recreate:
            after = self._services()
            for name in asked:
                service = after.get(name)
                if service is not None and before.get(name) == json.dumps(
                        service.attrs["Spec"].get("TaskTemplate"), sort_keys=True):
                    service.force_update()

    def _deploy(self, stack_file: Mapping[str, Any]) -> None:
        """``docker stack deploy`` of ``stack_file`` (its services; the stack's others stay)."""
        args = [self.docker, "stack", "deploy", "--resolve-image", "never", "-c", "-",
                self.settings.project_name]
        try:
            done = subprocess.run(args, input=json.dumps(stack_file), capture_output=True,
                                  text=True, env=self.child_env(), check=False,
                                  timeout=self.settings.start_timeout)
        except subprocess.TimeoutExpired:
            raise DockerUnavailableError(f"`docker stack deploy` did not finish within "
                                         f"{self.settings.start_timeout:g}s; is the Docker daemon "
                                         "hung?") from None
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            raise StackError("docker stack deploy failed: "
                             + (self.scrub(lines[-1]) if lines else f"exit {done.returncode}"),
                             [self.scrub(ln) for ln in lines[-20:]])

    @_reported
    def down(self, *, volumes: bool = False) -> None:
        """``docker stack rm``, then until its tasks and networks are gone; ``volumes``: also
        the stack's volumes on this node and the project's secrets."""
        done = run_cli([self.docker, "stack", "rm", self.settings.project_name], env=self.child_env(),
                    timeout=self.settings.start_timeout)
        if done.returncode != 0:
            raise StackError(f"docker stack rm failed: {self.scrub(done.stderr.strip()[-300:])}")
        deadline = time.monotonic() + self.settings.start_timeout
        label = {"label": f"{SWARM_STACK_LABEL}={self.settings.project_name}"}
        while (self.client.containers.list(all=True, filters=label, sparse=True)
               or self.client.networks.list(filters=label)):
            if time.monotonic() > deadline:
                raise StackError(f"the swarm stack {self.settings.project_name} is still being "
                                 f"removed after {self.settings.start_timeout:g}s")
            time.sleep(0.5)
        if volumes:
            from docker.errors import DockerException  # the SDK on first use, as compose.connect

            names = {str((v or {}).get("name") or f"{self.settings.project_name}_{k}")
                     for k, v in (self.config().get("volumes") or {}).items()
                     if not (v or {}).get("external")}
            data = {v.name: v for v in self.client.volumes.list(filters=label)}
            # and those a compose stack of the project made, which the swarm stack took over
            data.update({v.name: v for v in self.client.volumes.list() if v.name in names})
            for item in [*data.values(),
                         *self.client.secrets.list(filters=self._secret_filter())]:
                try:
                    item.remove()
                except DockerException as exc:  # a volume another container still uses
                    reason = str(exc).splitlines()[0]
                    if "in use" in reason:
                        reason = ("a container still uses it (a compose stack of the project? "
                                  "`invoke stack.stop --engine compose` first)")
                    raise StackError(f"could not remove {item.name}: {reason[:300]}") from None

    @_reported
    def prune_secrets(self) -> None:
        """Remove the project's secrets that hold no value of .env any more and that no
        service of the stack uses (run once the services converged: an update that failed has
        been rolled back by then)."""
        from docker.errors import DockerException  # the SDK on first use, as compose.connect

        self.env_values = envfile.load(self.settings.env_file).values  # .env as it is now
        keep = set(self.secret_names().values())
        for service in self._services().values():
            spec = service.attrs["Spec"].get("TaskTemplate", {}).get("ContainerSpec", {})
            keep |= {ref.get("SecretName") for ref in spec.get("Secrets") or []}
        for secret in self.client.secrets.list(filters=self._secret_filter()):
            if secret.name not in keep:
                with contextlib.suppress(DockerException):  # in use by a task still stopping
                    secret.remove()

    # -- state ---------------------------------------------------------------

    def containers(self) -> list[Any]:
        return list(self.client.containers.list(
            all=True, filters={"label": f"{SWARM_STACK_LABEL}={self.settings.project_name}"},
            ignore_removed=True))  # one removed between the list and its inspect

    def container_of(self, service: str) -> Any | None:
        """The service's container on this node, a running one first; else, when its task runs
        on another node, a :class:`RemoteTask` (running, reached through its published port);
        None when it runs nowhere."""
        name = f"{self.settings.project_name}_{service}"
        found = [c for c in self.containers() if c.labels.get(SWARM_SERVICE_LABEL) == name]
        found.sort(key=lambda c: (c.status == "running", str(c.attrs.get("Created", ""))))
        if found and found[-1].status == "running":
            return found[-1]
        swarm_service = self._service(service)
        if swarm_service is not None and any(
                t["Status"]["State"] == "running" for t in swarm_service.tasks(
                    filters={"desired-state": "running"})):
            return RemoteTask(f"{name} (on another node)")
        return found[-1] if found else None

    def _failed_tasks(self) -> set[str]:
        return {t["ID"] for s in self._services().values() for t in s.tasks()
                if t["Status"]["State"] in ("failed", "rejected")}

    @_reported
    def states(self) -> dict[str, ServiceState]:
        down = self._unreachable_nodes()
        return {name: self._state(name, service, down) for name, service in self._services().items()}

    def _unreachable_nodes(self) -> set[str]:
        """The IDs of the nodes not ``ready`` (down, disconnected): their tasks' last reported
        states are stale - a task there neither serves nor ever reports that it stopped."""
        return {n.id for n in self.client.nodes.list()
                if (n.attrs.get("Status") or {}).get("State") != "ready"}

    def _state(self, name: str, service: Any, down: Collection[str] = ()) -> SwarmServiceState:
        service.reload()
        attrs = service.attrs
        replicas = int(((attrs["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
        tasks = [t for t in service.tasks() if t.get("NodeID") not in down]
        current = [t for t in tasks if t.get("DesiredState") == "running"]
        spec = _task_spec(attrs["Spec"].get("TaskTemplate") or {})
        # right after a deployment the old tasks still run, and the update may not have begun
        running = [t for t in current if t["Status"]["State"] == "running"
                   and _task_spec(t.get("Spec") or {}) == spec]
        # ...and an old task told to stop still runs (and answers) until its container exits
        outdated = [t for t in tasks if _task_spec(t.get("Spec") or {}) != spec
                    and (t.get("DesiredState") == "running" or t["Status"]["State"] in LIVE)]
        update = (attrs.get("UpdateStatus") or {})
        # an update status from an earlier deployment (a rollback then) says nothing of this one
        new_update = self._old_failures is not None and _update_of(service) != self._old_updates.get(name)
        failures = [t for t in tasks if t["Status"]["State"] in ("failed", "rejected")
                    and t["ID"] not in (self._old_failures or ())]
        failures.sort(key=lambda t: str(t.get("CreatedAt", "")))
        ports = [f"0.0.0.0:{p['PublishedPort']}->{p['TargetPort']}/{p.get('Protocol', 'tcp')}"
                 for p in (attrs.get("Endpoint") or {}).get("Ports") or []]
        converged = (len(running) >= replicas and not outdated
                     and update.get("State") not in UPDATING)
        pending = [str(t["Status"].get("Err") or "") for t in current
                   if t["Status"]["State"] == "pending" and t["Status"].get("Err")]
        failure = _failure(update if new_update else {}, converged, failures, pending)
        detail = f"{len(running)}/{replicas} tasks running"
        if update.get("State") in UPDATING or outdated:
            detail += ", updating"
        if pending:
            detail += f", waiting: {pending[0]}"
        newest = max(running, key=lambda t: str(t.get("CreatedAt", "")), default=None)
        return SwarmServiceState(
            service=name, container=f"{service.name}.{newest.get('Slot', '')}" if newest else service.name,
            status="running" if converged else "starting", health=None,
            exit_code=int(((failures[-1]["Status"].get("ContainerStatus") or {}).get("ExitCode") or 0)
                          if failures else 0),
            restarts=len(failures), ports=ports,
            started_at=",".join(sorted(t["ID"] for t in running)),
            id=str(attrs.get("ID", "")), failure=failure, detail=detail)

    @_reported
    def wait(self, services: Sequence[str], *, timeout: float,
             on_change: Callable[[str, str], None] | None = None) -> dict[str, ServiceState]:
        """As ``Stack.wait``; then the secrets no service uses any more are removed. RollFailed
        (exit 11) when an update of a running service failed or did not end in time: Swarm
        rolled it back (or is told to), and the old tasks serve on."""
        try:
            states = super().wait(services, timeout=timeout, on_change=on_change)
        except StackError as exc:
            rolled = [name for name in services if self._roll_back(name)]
            if not rolled:
                raise
            unfinished = self._wait_rolled_back(rolled, timeout=timeout)
            what = (f"the update of {', '.join(rolled)} was rolled back (it runs as before the "
                    "update)")
            if unfinished:
                what += (f" (the rollback of {', '.join(unfinished)} was still under way after "
                         f"{timeout:g}s: `docker service ps {self.settings.project_name}_"
                         f"{unfinished[0]}` shows it)")
            raise RollFailed(f"{exc.message}; {what}", exc.details) from None
        self.prune_secrets()
        return states

    def _roll_back(self, name: str) -> bool:
        """True when ``name`` had an update under way or rolled back (its earlier tasks serve,
        or will once the rollback ends)."""
        service = self._service(name)
        if service is None:
            return False
        update = (service.attrs.get("UpdateStatus") or {}).get("State", "")
        if update.startswith("rollback") and _update_of(service) != self._old_updates.get(name):
            return True  # Swarm rolls back by itself (failure_action), which clears PreviousSpec
        if not service.attrs.get("PreviousSpec"):
            return False
        if update in UPDATING or ", updating" in self._state(name, service).detail:
            run_cli([self.docker, "service", "rollback", "--detach", service.name],
                    env=self.child_env(), timeout=self.settings.start_timeout)
            return True
        return False

    def _wait_rolled_back(self, services: Sequence[str], *, timeout: float) -> list[str]:
        """Until Swarm reports each rollback ended (``rollback_completed`` or ``_paused``), at
        most ``timeout`` seconds; the services whose rollback had not ended by then."""
        deadline = time.monotonic() + timeout
        pending = list(services)
        while pending:
            found = {name: self._service(name) for name in pending}
            pending = [name for name, service in found.items() if service is not None
                       and (service.attrs.get("UpdateStatus") or {}).get("State") not in ROLLED_BACK]
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        return pending

    def logs(self, service: str, tail: int = 20) -> list[str]:
        """The last ``tail`` log lines of the newest task that failed since the deployment
        began (the service's own logs are mostly the old, healthy task's), else the service's."""
        found = self._service(service)
        if found is None:
            return []
        try:
            failed = [t for t in found.tasks() if t["Status"]["State"] in ("failed", "rejected")
                      and self._old_failures is not None and t["ID"] not in self._old_failures]
            if failed:
                newest = max(failed, key=lambda t: str(t.get("CreatedAt", "")))
                done = run_cli([self.docker, "service", "logs", "--no-task-ids", "--tail",
                                str(tail), newest["ID"]], env=self.child_env(),
                               timeout=self.settings.timeout * 3)
                text = (done.stdout or "") + (done.stderr or "") if done.returncode == 0 else ""
            else:
                text = b"".join(found.logs(stdout=True, stderr=True, tail=tail)).decode(
                    "utf-8", "replace")
        except Exception:  # noqa: BLE001 - best effort while reporting another failure
            return []
        return [self.scrub(line) for line in text.splitlines()]

    def logs_argv(self, service: str, *, follow: bool, tail: int | None) -> list[str]:
        """``docker service logs`` of one service, for stack.logs: the last ``tail`` lines of
        each task (LOGS_TAIL when None: without ``--tail`` Engine 20.10's service logs could
        stream on and never end)."""
        return [self.docker, "service", "logs", "--no-task-ids", *(["--follow"] if follow else []),
                "--tail", str(LOGS_TAIL if tail is None else tail),
                f"{self.settings.project_name}_{service}"]

    def config_hash(self, service: str) -> str:
        return ""

