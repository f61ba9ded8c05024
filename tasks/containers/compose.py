"""Docker and Docker Compose: the ``docker compose`` CLI driven with argument lists, and the
Docker SDK (imported lazily) for state, health, logs and exec.
The SDK talks to the same daemon the CLI uses: ``DOCKER_HOST`` when set, otherwise the
endpoint of the current ``docker context`` (rootless Docker, Docker Desktop, Colima...).
Compose is run with an explicit project name, project folder, ``--env-file`` and ``-f`` files,
and with the variables that .env defines removed from its environment, so that .env - not
whatever a shell happens to export - decides what the containers get.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import ComposeRefusedError, DockerUnavailableError, PortInUseError, StackError
from ..base.masking import mask
from ..config.settings import Settings

POSTGRES, LITELLM, OPENWEBUI = "postgres", "litellm", "open-webui"
#: HAProxy in front of LiteLLM (docker-compose.yml, haproxy.cfg; see rolling.py)
LITELLM_LB = "litellm-lb"
SERVICES = (POSTGRES, LITELLM, LITELLM_LB, OPENWEBUI)
# Where the services listen inside the compose network (docker-compose.yml): one place.
LITELLM_CONTAINER_PORT, OPENWEBUI_CONTAINER_PORT = 4000, 8080
LITELLM_SERVICE_URL = f"http://{LITELLM}:{LITELLM_CONTAINER_PORT}"
OPENWEBUI_SERVICE_URL = f"http://{OPENWEBUI}:{OPENWEBUI_CONTAINER_PORT}"
PROJECT_LABEL = "com.docker.compose.project"
#: the label `docker stack deploy` puts on a swarm stack's services
SWARM_STACK_LABEL = "com.docker.stack.namespace"
SERVICE_LABEL = "com.docker.compose.service"
#: The hash of the settings compose made a container from; ``docker compose up`` recreates a
#: container whose hash is not its service's current one (``docker compose config --hash``).
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
SECRET_VARS = ("LITELLM_MASTER_KEY", "POSTGRES_PASSWORD", "UI_PASSWORD", "WEBUI_SECRET_KEY",
               "WEBUI_ADMIN_PASSWORD", "LITELLM_SALT_KEY")

DAEMON_HELP = (
    "start it: Linux `sudo systemctl start docker` (rootless: `systemctl --user start docker`), "
    "macOS/Windows: start Docker Desktop (or `colima start`)"
)


def run_cli(args: Sequence[str], *, timeout: float = 30, env: Mapping[str, str] | None = None,
            capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a docker / compose command (stdin closed); DockerUnavailableError (exit 10) when it is
    not installed or does not finish within ``timeout`` seconds."""
    try:
        return subprocess.run(list(args), capture_output=capture, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DockerUnavailableError(f"{args[0]} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise DockerUnavailableError(
            f"`{' '.join(args[:3])}` did not finish within {timeout:g}s; is the Docker daemon hung?"
        ) from None


def find_docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise DockerUnavailableError(
            "the docker command is not installed or not on PATH; install Docker Engine "
            "(Linux) or Docker Desktop (macOS, Windows)"
        )
    return docker


def docker_endpoint(docker: str, environ: Mapping[str, str] | None = None) -> str:
    """The daemon the docker CLI would talk to: ``DOCKER_HOST``, else the current context's.

    Raises DockerUnavailableError (exit 10) when the CLI cannot resolve its context (a
    ``DOCKER_CONTEXT`` or ``docker context use`` naming a context that does not exist): the
    docker CLI, and so ``docker compose``, cannot start then.
    """
    environ = os.environ if environ is None else environ
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"]
    done = run_cli([docker, "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"], timeout=15,
                env=environ)
    endpoint = done.stdout.strip() if done.returncode == 0 else ""
    if endpoint:
        return endpoint
    problem = (done.stderr or "").lower()
    old_cli = "unknown command" in problem or "is not a docker command" in problem
    if done.returncode != 0 and not old_cli:
        named = environ.get("DOCKER_CONTEXT")
        which = f"DOCKER_CONTEXT={named}" if named else "the current docker context"
        raise DockerUnavailableError(
            f"the docker CLI cannot use {which} (`docker context inspect` failed); "
            "`docker context ls` lists the contexts, `docker context use default` picks the default"
        )
    return "npipe:////./pipe/docker_engine" if sys.platform == "win32" else "unix:///var/run/docker.sock"


def connect(endpoint: str, timeout: float = 30) -> Any:
    """A Docker SDK client for ``endpoint``, checked with a ping."""
    # the SDK only here, on first use: it takes ~130 ms to import (requests, urllib3, paramiko
    # hooks), which the keys tasks over LiteLLM's host port never need
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=endpoint, timeout=int(max(timeout, 1)))
        client.ping()
        return client
    except DockerException as exc:
        reason = str(exc).split("(")[0].strip().rstrip(":") or type(exc).__name__
        raise DockerUnavailableError(
            f"cannot reach the Docker daemon at {endpoint} ({reason}); {DAEMON_HELP}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - requests/urllib3 errors under the SDK
        raise DockerUnavailableError(
            f"cannot reach the Docker daemon at {endpoint} ({type(exc).__name__}); {DAEMON_HELP}"
        ) from None


@dataclass(frozen=True)
class ComposeCLI:
    argv: tuple[str, ...]
    version: str
    legacy: bool  # docker-compose v1

    @property
    def warning(self) -> str:
        if not self.legacy:
            return ""
        return (f"warning: using the old docker-compose {self.version}; install Compose v2 "
                "(`docker compose`), v1 is unmaintained")


def find_compose(docker: str) -> ComposeCLI:
    done = run_cli([docker, "compose", "version", "--short"], timeout=30)
    if done.returncode == 0 and done.stdout.strip():
        return ComposeCLI((docker, "compose"), done.stdout.strip().lstrip("v"), legacy=False)
    legacy = shutil.which("docker-compose")
    if legacy:
        done = run_cli([legacy, "version", "--short"], timeout=30)
        if done.returncode == 0:
            version = done.stdout.strip().lstrip("v")
            return ComposeCLI((legacy,), version, legacy=version.startswith("1."))
    raise DockerUnavailableError(
        "Docker Compose is missing: `docker compose` does not work and there is no docker-compose; "
        "install the Compose v2 plugin (Debian/Ubuntu: docker-compose-plugin)"
    )


@dataclass
class ServiceState:
    service: str
    container: str
    status: str  # created / running / restarting / exited / dead / paused / missing
    health: str | None  # healthy / unhealthy / starting / None (no healthcheck)
    exit_code: int
    restarts: int
    ports: list[str] = field(default_factory=list)
    started_at: str = ""
    id: str = ""

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in (None, "healthy")

    @property
    def failed(self) -> bool:
        return (self.status in ("exited", "dead") or self.health == "unhealthy"
                or (self.status == "restarting" and self.restarts > 0))

    def describe(self) -> str:
        if self.status == "missing":
            return "not created"
        text = self.status
        if self.health:
            text += f" ({self.health})"
        if self.status in ("exited", "dead", "restarting"):
            text += f", exit code {self.exit_code}"
        return text


def state_of(container: Any) -> ServiceState:
    """The state of one container (its attributes as last loaded)."""
    attrs = container.attrs
    state = attrs.get("State", {})
    health = (state.get("Health") or {}).get("Status")
    ports = []
    for inner, bindings in sorted((attrs.get("NetworkSettings", {}).get("Ports") or {}).items()):
        for binding in bindings or []:
            ports.append(f"{binding.get('HostIp') or '0.0.0.0'}:{binding.get('HostPort')}->{inner}")  # noqa: S104
    return ServiceState(
        service=container.labels.get(SERVICE_LABEL, "?"),
        container=container.name,
        status=str(state.get("Status", "unknown")),
        health=health,
        exit_code=int(state.get("ExitCode") or 0),
        restarts=int(attrs.get("RestartCount") or 0),
        ports=ports,
        started_at=str(state.get("StartedAt", "")),
        id=container.id,
    )


def compose_argv(cli: Sequence[str], settings: Settings, *args: str) -> list[str]:
    """The command line for ``cli`` (``docker compose``) on this project: its name, folder,
    .env and compose files, then ``args``. Values of .env never go on it (the file does)."""
    argv = [*cli, "--project-name", settings.project_name,
            "--project-directory", str(settings.project_dir), "--env-file", str(settings.env_file)]
    for file in settings.compose_files:
        argv += ["-f", str(file)]
    return [*argv, *args]


def compose_environ(environ: Mapping[str, str], env_names: Iterable[str]) -> dict[str, str]:
    """The environment compose runs with: ``environ`` without .env's own variable names (so
    .env decides, as a shell's exported variable would otherwise win) and without
    COMPOSE_FILE and COMPOSE_PROJECT_NAME (the settings decide those)."""
    drop = {*env_names, "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}
    return {k: v for k, v in environ.items() if k not in drop}


class Stack:
    """One compose project: the CLI for changes, the SDK for state."""

    def __init__(self, settings: Settings, env_values: Mapping[str, str],
                 *, docker: str | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env_values = dict(env_values)
        self.environ = dict(os.environ if environ is None else environ)
        self.docker = docker or find_docker()
        self._cli: ComposeCLI | None = None
        self._client: Any = None
        self._defined: list[str] | None = None

    # -- connections ---------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            endpoint = docker_endpoint(self.docker, self.environ)
            self._client = connect(endpoint, timeout=self.settings.timeout * 3)
        return self._client

    @property
    def cli(self) -> ComposeCLI:
        if self._cli is None:
            self._cli = find_compose(self.docker)
        return self._cli

    def require(self) -> None:
        """The daemon at the CLI's endpoint and Compose; DockerUnavailableError (exit 10)."""
        _ = self.client
        _ = self.cli

    def check_engine(self) -> None:
        """Refuse (StackError, exit 11) to start the project here while it runs as a swarm
        stack on this engine: both would use the same volumes and ports."""
        from docker.errors import DockerException  # the SDK on first use, as connect

        swarm = self.client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            return
        try:
            services = self.client.services.list(
                filters={"label": f"{SWARM_STACK_LABEL}={self.settings.project_name}"})
        except DockerException:
            return  # not a manager after all: nothing to compare with
        if services:
            raise StackError(
                f"the project {self.settings.project_name!r} runs as a swarm stack on this "
                f"engine ({len(services)} services): stop it first (`invoke stack.stop --engine "
                "swarm`; its volumes and secrets are kept) or use the swarm engine")

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    # -- compose CLI ---------------------------------------------------------

    def compose_args(self, *args: str) -> list[str]:
        return compose_argv(self.cli.argv, self.settings, *args)

    def child_env(self) -> dict[str, str]:
        return compose_environ(self.environ, self.env_values)

    def compose(self, *args: str, timeout: float | None = None, capture: bool = True
                ) -> subprocess.CompletedProcess[str]:
        for file in self.settings.compose_files:
            if not file.is_file():
                raise StackError(f"compose file {file} not found")
        return run_cli(self.compose_args(*args), timeout=timeout or self.settings.start_timeout,
                    env=self.child_env(), capture=capture)

    def compose_ok(self, *args: str, what: str, timeout: float | None = None
                   ) -> subprocess.CompletedProcess[str]:
        done = self.compose(*args, timeout=timeout)
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
            reason = self.scrub(lines[-1]) if lines else f"exit code {done.returncode}"
            port = _port_conflict(reason)
            if port:
                raise PortInUseError(f"{what} failed: host port {port} is already in use; free it "
                                     "or change LITELLM_PORT / WEBUI_PORT in .env")
            raise StackError(f"{what} failed: {reason}",
                             [self.scrub(ln) for ln in lines[-20:]])
        return done

    def prune_secrets(self) -> None:
        """Remove the stack's secrets that neither .env nor a service uses: a swarm stack's
        (SwarmStack); a compose stack keeps none."""

    def up(self, services: Iterable[str] = (), *, recreate: bool = False,
           no_deps: bool = False, timeout: float | None = None) -> None:
        """``docker compose up -d`` of ``services`` (all: none given). It does not wait: the
        caller waits with :meth:`wait` (``timeout`` is for an engine that waits in between)."""
        args = ["up", "-d", "--remove-orphans"]
        if recreate:
            args.append("--force-recreate")
        if no_deps:
            args.append("--no-deps")
        self.compose_ok(*args, *services, what="docker compose up")

    def defined(self) -> list[str]:
        """The services the compose files define (active profiles only), asked once."""
        if self._defined is None:
            done = self.compose_ok("config", "--services", what="docker compose config")
            self._defined = done.stdout.split()
        return self._defined

    def services_config(self) -> dict[str, dict[str, Any]]:
        """``{service: its settings}`` as compose resolves them with .env now (``docker compose
        config --format json``). StackError (11) when compose gives no services, or a service
        that is not a mapping."""
        done = self.compose_ok("config", "--format", "json", what="docker compose config")
        try:
            services = json.loads(done.stdout)["services"]
        except (ValueError, KeyError, TypeError):
            services = None
        if not isinstance(services, dict) or not all(isinstance(s, dict) for s in services.values()):
            raise StackError("`docker compose config` gave no services")
        return services

    def bind_source(self, service: str, target: str) -> Path | None:
        """The host file or folder the compose files bind-mount at ``target`` in ``service``'s
        containers, or None."""
        for volume in self.services_config().get(service, {}).get("volumes") or []:
            if (isinstance(volume, dict) and volume.get("type") == "bind"
                    and volume.get("target") == target and volume.get("source")):
                return Path(str(volume["source"]))
        return None

    def config_hash(self, service: str) -> str:
        """The hash of ``service``'s current settings (compose files and .env), as compose
        labels its containers with (CONFIG_HASH_LABEL); "" when compose gives none."""
        done = self.compose_ok("config", "--hash", service, what="docker compose config --hash")
        for line in done.stdout.splitlines():
            name, _, value = line.strip().partition(" ")
            if name == service:
                return value.strip()
        return ""

    def down(self, *, volumes: bool = False) -> None:
        args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
        self.compose_ok(*args, what="docker compose down")

    # -- state (SDK) ---------------------------------------------------------

    def containers(self) -> list[Any]:
        return list(self.client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.settings.project_name}"},
            ignore_removed=True))  # one removed between the list and its inspect

    def states(self) -> dict[str, ServiceState]:
        result: dict[str, ServiceState] = {}
        for container in self.containers():
            state = state_of(container)
            had = result.get(state.service)
            # two litellm containers while one replaces the other: the ready one, else the newer
            if had is None or (state.ready, state.started_at) > (had.ready, had.started_at):
                result[state.service] = state
        return result

    def container_of(self, service: str) -> Any | None:
        """The service's container: a running one first (two litellm containers while one
        replaces the other)."""
        found = [c for c in self.containers() if c.labels.get(SERVICE_LABEL) == service]
        found.sort(key=lambda c: (c.status == "running", str(c.attrs.get("Created", ""))))
        return found[-1] if found else None

    def logs(self, service: str, tail: int = 20) -> list[str]:
        container = self.container_of(service)
        if container is None:
            return []
        try:
            raw = container.logs(tail=tail, stdout=True, stderr=True)
        except Exception:  # noqa: BLE001 - best effort while reporting another failure
            return []
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return [self.scrub(line) for line in text.splitlines()]

    def scrub(self, text: str) -> str:
        """Replace every secret .env holds with its masked form."""
        for name, value in self.env_values.items():
            if value and len(value) >= 8 and (name in SECRET_VARS or value.startswith("sk-")):
                text = text.replace(value, mask(value))
        return text

    def wait(self, services: Sequence[str], *, timeout: float,
             on_change: Callable[[str, str], None] | None = None) -> dict[str, ServiceState]:
        """Until every service is running and healthy; StackError with details otherwise."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while True:
            states = self.states()
            for service in services:
                text = states[service].describe() if service in states else "not created"
                if seen.get(service) != text:
                    seen[service] = text
                    if on_change:
                        on_change(service, text)
            failed = [states[s] for s in services if s in states and states[s].failed]
            if failed:
                raise self._failure(failed, "failed to start")
            if all(s in states and states[s].ready for s in services):
                return states
            if time.monotonic() >= deadline:
                late = [states.get(s) or ServiceState(s, "", "missing", None, 0, 0)
                        for s in services if not (s in states and states[s].ready)]
                raise self._failure(late, f"not healthy after {timeout:g}s (--timeout)")
            time.sleep(0.5)

    def _failure(self, failed: Sequence[ServiceState], what: str) -> StackError:
        details = []
        for state in failed:
            details.append(f"{state.service}: {state.describe()}")
            details += [f"  | {line}" for line in self.logs(state.service)]
        names = ", ".join(f"{s.service} ({s.describe()})" for s in failed)
        shown = "see the log lines above, and " if len(details) > len(failed) else "see "
        return StackError(f"{names} {what}; {shown}`invoke stack.logs --service <name>`", details)

    # -- ports ---------------------------------------------------------------

    def check_ports(self, ports: Mapping[str, int]) -> None:
        """Each host port is free, or held by this project's own containers."""
        ours = set()
        with contextlib.suppress(DockerUnavailableError):
            for state in self.states().values():
                for mapping in state.ports:
                    ours.add(int(mapping.split("->")[0].rsplit(":", 1)[1]))
        for name, port in ports.items():
            if port in ours:
                continue
            if not port_is_free(port):
                raise PortInUseError(
                    f"port {port} ({name}) is already in use by another program; stop it or "
                    f"set another {name} in .env"
                )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``port``. Connections lingering in TIME_WAIT (from talking
    to the stack a moment ago) do not count: Docker binds with SO_REUSEADDR too."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sys.platform == "win32":  # pragma: no cover - Windows' REUSEADDR would steal the port
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", 0) or
                            socket.SO_REUSEADDR, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _port_conflict(message: str) -> str | None:
    lowered = message.lower()
    if "address already in use" in lowered or "port is already allocated" in lowered:
        for token in message.replace(":", " ").split():
            if token.isdigit() and 0 < int(token) < 65536 and len(token) >= 2:
                return token
        return "?"
    return None


def exec_python(container: Any, program: str, environment: Mapping[str, str]) -> tuple[int, str]:
    """Run ``python3 -c program`` in ``container``. Values travel in the exec's environment
    (sent to the daemon in the API request body), never in an argument list."""
    done = container.exec_run(["python3", "-c", program], environment=dict(environment),
                              stdout=True, stderr=True, demux=True)
    out, err = done.output if isinstance(done.output, tuple) else (done.output, b"")
    return int(done.exit_code or 0), (out or b"").decode("utf-8", "replace") + (
        (err or b"").decode("utf-8", "replace") if done.exit_code else "")


def service_environments(settings: Settings, env_names: Iterable[str], *, interpolate: bool = True,
                         timeout: float = 15) -> dict[str, dict[str, str]] | None:
    """Each service's environment as ``docker compose config`` shows it with this .env:
    interpolated (what the containers get) or, with ``interpolate=False``, as written.

    None when Docker or Compose v2 is not there. ComposeRefusedError when Compose is there and
    refuses the files with this .env (its message is not kept: it may quote a value of .env).
    The values hold secrets: never print them."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    environ = compose_environ(os.environ, env_names)
    if not all(file.is_file() for file in settings.compose_files):
        return None
    args = compose_argv((docker, "compose"), settings, "config", "--format", "json",
                        *([] if interpolate else ["--no-interpolate"]))
    try:
        done = run_cli(args, timeout=timeout, env=environ)
        if done.returncode != 0:
            if run_cli([docker, "compose", "version"], timeout=timeout, env=environ).returncode == 0:
                raise ComposeRefusedError(
                    "`docker compose config` refuses the compose files with this .env (its "
                    "message is not shown here: it may quote a value of .env); run `docker "
                    "compose config -q` to see why")
            return None
        data = json.loads(done.stdout)
    except (DockerUnavailableError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        return None
    result: dict[str, dict[str, str]] = {}
    for service, spec in data["services"].items():
        environment = (spec or {}).get("environment") or {}
        if not isinstance(environment, dict):
            continue
        result[str(service)] = {
            str(k): (str(v).replace("$$", "$") if interpolate else str(v))
            for k, v in environment.items() if v is not None
        }
    return result
