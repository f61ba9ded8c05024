"""How the tasks reach LiteLLM and Open WebUI: over the host port, or - when that fails or
``--via container`` says so - from inside their container (``docker exec``, see transport.py).
Docker is looked up only when it is needed: a keys task whose LiteLLM answers on the host port,
and that changes no key, never touches the Docker socket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..base.errors import (
    DockerUnavailableError,
    EnvFileError,
    OpenWebUIUnreachableError,
    ProxyUnreachableError,
)
from ..clients.litellm import LiteLLM
from ..clients.openwebui import OpenWebUI, answers_health
from ..clients.transport import ContainerTransport
from ..config.settings import KeySpec, Settings
from ..containers.compose import (
    LITELLM,
    LITELLM_CONTAINER_PORT,
    LITELLM_SERVICE_URL,
    OPENWEBUI,
    OPENWEBUI_CONTAINER_PORT,
    OPENWEBUI_SERVICE_URL,
    Stack,
)
from ..containers.swarm import stack_for
from ..envstore import envfile


def manual(env_vars: Sequence[str]) -> str:
    """The advice when LiteLLM cannot be reached to make a key: make it by hand and put it in
    the variable the key lives in (``env_vars``: those of the keys the task is about)."""
    where = "README: 'Creating a key by hand'"
    if len(env_vars) == 1:
        return (f"create the key by hand in LiteLLM's admin UI ({where}) and put it in "
                f"{env_vars[0]} in .env")
    return (f"create each key by hand in LiteLLM's admin UI ({where}) and put it in its variable "
            f"in .env ({', '.join(env_vars)})")


class Containers:
    """The stack's running containers, with the Docker client made on first use."""

    def __init__(self, settings: Settings, stack: Stack | None = None) -> None:
        self.settings = settings
        self._stack = stack

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            self._stack = stack_for(self.settings, envfile.load(self.settings.env_file).values)
        return self._stack

    def running(self, service: str) -> Any | None:
        """The service's running container, or None (also when Docker is not reachable)."""
        try:
            return self.running_or_raise(service)
        except DockerUnavailableError:
            return None

    def running_or_raise(self, service: str) -> Any | None:
        """The service's running container, or None; DockerUnavailableError when Docker cannot
        be asked."""
        container = self.stack.container_of(service)
        if container is None or container.status != "running":
            return None
        return container

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()


def litellm(settings: Settings, containers: Containers, *, via: str | None = None,
            wait: float = 0, progress: Callable[[str], None] = lambda _m: None,
            keys: Sequence[KeySpec] | None = None, master_key: str | None = None) -> LiteLLM:
    """A LiteLLM client over the host port, or from inside its container (``via``: auto, host,
    container; default ``settings.via``); ``wait``: seconds a starting LiteLLM may take to be
    ready; ``keys``: the keys the task is about, named in the advice when LiteLLM cannot be
    reached (default: the first-run gate key, the stack tasks' own); ``master_key``: another
    admin key than the settings' (a master-key rotation's old or new one). Raises
    ProxyUnreachableError (4) or EnvFileError (3, no master key)."""
    via = via or settings.via
    s = settings
    if master_key is None:
        s.require_master_key()
    master = master_key or s.master_key
    host_error: ProxyUnreachableError | None = None
    if via != "container":
        client = LiteLLM(s.litellm_url, master, timeout=s.timeout)
        try:
            if wait:
                client.wait_ready(wait, progress=progress)
            elif via == "auto":
                client.readiness()
            return client
        except ProxyUnreachableError as exc:
            client.close()
            if via == "host":
                raise
            host_error = exc
    container = containers.running(LITELLM)
    if container is None:
        if host_error is None:
            raise ProxyUnreachableError(
                f"no running {LITELLM} container in compose project {s.project_name!r}; "
                "start the stack (`invoke stack.start`)")
        raise ProxyUnreachableError(
            f"{host_error.message}; nor is a {LITELLM} container of project "
            f"{s.project_name!r} running to reach it from inside; start the stack, or "
            f"{manual(_env_vars(settings, keys))}"
        ) from host_error
    progress(f"reaching LiteLLM from inside the {container.name} container")
    client = LiteLLM(LITELLM_SERVICE_URL, master, timeout=s.timeout,
                     transport=ContainerTransport(container, LITELLM_CONTAINER_PORT, s.timeout))
    if wait:
        client.wait_ready(wait, progress=progress)
    return client


def _env_vars(settings: Settings, keys: Sequence[KeySpec] | None) -> list[str]:
    if keys is None:
        gate = settings.gate_key
        keys = [gate] if gate is not None else list(settings.keys.values())
    return [spec.env_var for spec in keys]


def openwebui(settings: Settings, containers: Containers) -> OpenWebUI | None:
    """An admin client for Open WebUI (host port, else from inside its container), or None
    when its container is not running. When Docker cannot be asked, an Open WebUI answering on
    its host port is used; else OpenWebUIUnreachableError (13): whether it runs is unknown."""
    if not settings.webui_url:
        raise EnvFileError("WEBUI_PORT must be a port number from 1 to 65535: Open WebUI's URL "
                           "is made from it (`invoke env.check` says where it comes from)")
    values = envfile.load(settings.env_file).values
    email, password = values.get("WEBUI_ADMIN_EMAIL", ""), values.get("WEBUI_ADMIN_PASSWORD", "")
    try:
        container = containers.running_or_raise(OPENWEBUI)
    except DockerUnavailableError as exc:
        if answers_health(settings.webui_url, settings.timeout):
            return OpenWebUI(settings.webui_url, email, password, timeout=settings.timeout)
        raise OpenWebUIUnreachableError(
            f"cannot tell whether Open WebUI runs: Docker cannot be asked ({exc.message}) and "
            f"nothing answers at {settings.webui_url}") from exc
    if container is None:
        return None
    client = OpenWebUI(settings.webui_url, email, password, timeout=settings.timeout)
    if client.health():
        return client
    client.close()
    return OpenWebUI(OPENWEBUI_SERVICE_URL, email, password, timeout=settings.timeout,
                     transport=ContainerTransport(container, OPENWEBUI_CONTAINER_PORT,
                                                  settings.timeout))


def litellm_aliases(settings: Settings, containers: Containers) -> list[str]:
    """Other URLs that reach the LiteLLM service (beside its service URL): its published host
    URL, and its container's name on the compose network."""
    urls = [settings.litellm_url]
    container = containers.running(LITELLM)
    if container is not None:
        urls.append(f"http://{container.name}:{LITELLM_CONTAINER_PORT}")
    return urls
