"""Replace the compose stack's LiteLLM without dropping a request (the rolling step): a new
``litellm`` container beside the running ones, HAProxy (``litellm-lb``) switching to it once it
is healthy, the old ones drained and removed; a new one that never turns ready is removed and
the old ones serve on (``RollFailed``); a step a kill interrupted is ended by ``settle``.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..base.errors import GatewayError, StackError
from .compose import (
    CONFIG_HASH_LABEL,
    LITELLM,
    LITELLM_LB,
    SERVICE_LABEL,
    ServiceState,
    Stack,
    state_of,
)

#: The runtime API of HAProxy inside the litellm-lb container (haproxy.cfg, ``stats socket``),
#: reached with bash's /dev/tcp (the official Debian-based image and the test image have bash).
RUNTIME_PORT = 9999
#: The backend of haproxy.cfg whose servers are the litellm containers.
BACKEND = "litellm"
#: how long a removal is tried again while Docker refuses it (a container it is restarting)
REMOVE_SECONDS = 60.0
_RUNTIME = ('exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 3; printf "%s\\n" "$2" >&3; '
            'cat <&3; exec 3<&-')


class RollFailed(StackError):
    """The new LiteLLM container never turned ready; the old one serves on. The message then
    says whether the new one was removed (or the ``docker rm -f`` to run)."""


@dataclass
class Server:
    """One server slot of the ``litellm`` backend, from HAProxy's ``show stat``."""

    name: str
    status: str  # UP / DOWN / MAINT / MAINT (resolution) / DRAIN / no check...
    address: str  # the container's IP, "" while the slot has none
    sessions: int  # requests under way (one connection per request: http-reuse never)


class LoadBalancer:
    """HAProxy's runtime API in the running ``litellm-lb`` container."""

    def __init__(self, container: Any) -> None:
        self.container = container

    def command(self, line: str) -> str:
        """One runtime-API command; its answer. StackError when HAProxy cannot be asked."""
        try:
            code, output = self.container.exec_run(
                ["bash", "-c", _RUNTIME, "runtime", str(RUNTIME_PORT), line], demux=False)
        except Exception as exc:
            raise StackError(f"cannot ask HAProxy in {self.container.name}: {exc}") from exc
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
        if code != 0:
            raise StackError(f"cannot ask HAProxy in {self.container.name} ({line!r}, exit code "
                             f"{code}): {text.strip()[:200]}")
        return text

    def servers(self) -> list[Server]:
        text = self.command("show stat").lstrip("# ")
        result = []
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") != BACKEND or row.get("svname") in ("FRONTEND", "BACKEND", None):
                continue
            addr = str(row.get("addr") or "")
            host = addr.rsplit(":", 1)[0] if ":" in addr else addr
            result.append(Server(name=str(row["svname"]), status=str(row.get("status") or ""),
                                 address="" if host in ("", "0.0.0.0") else host,  # noqa: S104
                                 sessions=int(row.get("scur") or 0)))
        return result

    def set_state(self, server: str, state: str) -> None:
        """``state``: ready / drain / maint (HAProxy's ``set server``)."""
        answer = self.command(f"set server {BACKEND}/{server} state {state}").strip()
        if answer:
            raise StackError(f"HAProxy refused to set {server} to {state}: {answer[:200]}")


def _not_found(exc: BaseException) -> bool:
    """Docker answered 404 (the docker SDK's NotFound): the container is gone."""
    return getattr(exc, "status_code", None) == 404


def addresses(container: Any) -> set[str]:
    """The container's IP addresses on its networks."""
    networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return {str(n.get("IPAddress")) for n in networks.values() if n.get("IPAddress")}


def _current(container: Any) -> ServiceState:
    """``container``'s state as Docker gives it now (compose.ServiceState)."""
    container.reload()
    return state_of(container)


class Roll:
    """The rolling step on one compose stack; see the module docstring."""

    def __init__(self, stack: Stack, *, timeout: float, grace: float = 120,
                 progress: Callable[[str], None] = lambda _m: None) -> None:
        self.stack = stack
        self.timeout = timeout
        self.grace = grace
        self.progress = progress

    # -- what runs -------------------------------------------------------------

    def _containers(self, service: str, states: tuple[str, ...]) -> list[Any]:
        return [c for c in self.stack.containers()
                if c.labels.get(SERVICE_LABEL) == service and c.status in states]

    def litellm_containers(self) -> list[Any]:
        return sorted(self._containers(LITELLM, ("running", "restarting", "created")),
                      key=lambda c: str(c.attrs.get("Created", "")))

    def balancer(self) -> LoadBalancer | None:
        """HAProxy, when the stack runs it; None otherwise (a stack from before litellm-lb,
        or compose files without it): then LiteLLM can only be recreated."""
        running = self._containers(LITELLM_LB, ("running",))
        return LoadBalancer(running[0]) if running else None

    def outdated(self) -> bool:
        """True when a running LiteLLM was made from other settings than the compose files and
        .env give now (a hand edit, an interrupted ``keys.rotate-master``): ``docker compose up``
        would recreate it, with downtime, where the rolling step replaces it without."""
        running = self.litellm_containers()
        if not running:
            return False
        want = self.stack.config_hash(LITELLM)
        return bool(want) and any(c.labels.get(CONFIG_HASH_LABEL) != want for c in running)

    # -- the step ----------------------------------------------------------------

    def replace(self) -> None:
        """Start a LiteLLM from the current settings beside the running ones, then retire
        those. Raises StackError (11): the new one never turned ready (removed; the old ones
        serve on) or HAProxy could not be asked."""
        lb = self.balancer()
        if lb is None:
            raise StackError(f"{LITELLM_LB} is not running, so LiteLLM cannot be replaced "
                             "without downtime; run `invoke stack.start` first")
        self.settle(lb)
        for container in self.leftovers():
            self.progress(f"removing {container.name}, a stopped {LITELLM} container left behind")
            self._remove(container, timeout=5)
        old = self.litellm_containers()
        old_ids = {c.id for c in old}
        self.progress(f"starting a new {LITELLM} container beside the running one")
        try:
            self.stack.compose_ok("up", "-d", "--no-deps", "--no-recreate", "--scale",
                                  f"{LITELLM}={len(old) + 1}", LITELLM,
                                  what="docker compose up --scale")
            new = [c for c in self.litellm_containers() if c.id not in old_ids]
            if not new:
                raise StackError(f"docker compose started no new {LITELLM} container")
            self._until_ready(new[-1], lb)
        except BaseException as exc:
            # a failure, or Ctrl-C while compose was still making it: no second LiteLLM left
            for container in self.litellm_containers():
                if container.id not in old_ids:
                    try:
                        self._remove(container, timeout=5)
                        left = f"{container.name} was removed"
                    except StackError as refused:
                        left = refused.message
                    if isinstance(exc, GatewayError):  # the failure stays the one reported
                        exc.extend(left)
            raise
        for container in old:
            self.retire(container, lb)

    def _until_ready(self, container: Any, lb: LoadBalancer) -> None:
        deadline = time.monotonic() + self.timeout
        ips = addresses(container)
        announced = ""
        while True:
            now = _current(container)
            if now.failed:
                raise self._failure(container, now.describe())
            if now.health in ("healthy", None):
                ips = ips or addresses(container)
                up = [s for s in lb.servers() if s.address in ips and s.status.startswith("UP")]
                if up:
                    self.progress(f"{container.name}: ready, HAProxy sends it requests")
                    return
                state = "healthy, waiting for HAProxy to find it"
            else:
                state = f"{now.status} ({now.health})"
            if state != announced:
                self.progress(f"{container.name}: {state}")
                announced = state
            if time.monotonic() >= deadline:
                what = ("healthy, but HAProxy never sent it requests" if state.startswith("healthy")
                        else "not ready")
                raise self._failure(container, f"{what} after {self.timeout:g}s (--timeout)")
            time.sleep(0.5)

    def _failure(self, container: Any, what: str) -> RollFailed:
        try:
            raw = container.logs(tail=20, stdout=True, stderr=True)
        except Exception:  # noqa: BLE001 - best effort while reporting another failure
            raw = b""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        details = [f"  | {self.stack.scrub(line)}" for line in text.splitlines()]
        return RollFailed(f"the new {LITELLM} container {container.name} {what} (its log lines "
                          "above); the running LiteLLM keeps serving", details)

    def retire(self, container: Any, lb: LoadBalancer) -> None:
        """No new requests to ``container``; those under way finish (up to ``grace`` s); then
        it is stopped and removed, and its HAProxy slot made ready for the next one."""
        ips = addresses(container)
        slots = [s for s in lb.servers() if s.address and s.address in ips]
        for slot in slots:
            lb.set_state(slot.name, "maint")
        self.progress(f"{container.name}: no new requests; waiting for those under way")
        deadline = time.monotonic() + self.grace
        while slots and time.monotonic() < deadline:
            busy = [s for s in lb.servers() if s.name in {x.name for x in slots} and s.sessions]
            if not busy:
                break
            time.sleep(0.2)
        self._remove(container, timeout=self.grace)
        self.progress(f"{container.name}: stopped and removed")
        for slot in slots:
            with contextlib.suppress(StackError):
                lb.set_state(slot.name, "ready")

    @staticmethod
    def _remove(container: Any, *, timeout: float) -> None:
        """Stopped (up to ``timeout`` s) and removed, once Docker no longer has it: a remove
        Docker refused (one it is restarting, one whose stop timed out) is tried again, for up
        to REMOVE_SECONDS. A LiteLLM container left behind would be started again, with its old
        settings, by the next ``docker compose up --no-recreate --scale``. StackError (11)."""
        with contextlib.suppress(Exception):
            container.stop(timeout=int(timeout))
        deadline = time.monotonic() + REMOVE_SECONDS
        refused = ""
        while True:
            try:
                container.remove(force=True)
            except Exception as exc:  # noqa: BLE001 - the docker SDK's, or a transport error
                if _not_found(exc):
                    return
                text = str(exc).strip()
                refused = text.splitlines()[0][:200] if text else repr(exc)
            try:
                container.reload()
            except Exception as exc:  # noqa: BLE001
                if _not_found(exc):
                    return
            if time.monotonic() >= deadline:
                raise StackError(f"Docker did not remove the {LITELLM} container {container.name} "
                                 f"within {REMOVE_SECONDS:g}s ({refused or 'no answer'}); remove it "
                                 f"with `docker rm -f {container.name}`")
            time.sleep(0.5)

    def leftovers(self) -> list[Any]:
        """Stopped LiteLLM containers (exited, dead): ``docker compose up --no-recreate
        --scale`` would start one of them again, with the settings it was made with, instead of
        making a new one from the current settings."""
        return self._containers(LITELLM, ("exited", "dead"))

    def settle(self, lb: LoadBalancer | None = None) -> bool:
        """End a replacement a killed task left: with more than one LiteLLM container, keep
        the newest healthy one and retire the others; every slot ready again. True if there was
        something to end."""
        lb = lb or self.balancer()
        running = self.litellm_containers()
        if lb is None:
            return False
        ended = False
        if len(running) > 1:
            healthy = [c for c in running if _current(c).ready]
            keep = healthy[-1] if healthy else running[-1]
            for container in running:
                if container.id != keep.id:
                    self.progress(f"ending an unfinished replacement of {LITELLM}")
                    self.retire(container, lb)
                    ended = True
        for server in lb.servers():
            if server.status.startswith("MAINT") and "resolution" not in server.status:
                lb.set_state(server.name, "ready")
                ended = True
        return ended
