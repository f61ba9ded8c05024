"""The stack and its keys together: start / stop / restart / status, the LiteLLM transport
(host or container), and Open WebUI as the consumer of the virtual key. Plain functions over
``containers.compose.Stack``, ``clients.litellm.LiteLLM``, ``clients.openwebui.OpenWebUI`` and
``virtualkeys.manager.KeyManager``; no Invoke, no printing (progress goes through a callback).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import (
    BackupError,
    DockerUnavailableError,
    EnvFileError,
    GatewayError,
    KeyStateError,
    OpenWebUIError,
    ProxyUnreachableError,
    StackError,
    UsageError,
)
from ..base.masking import mask
from ..clients.litellm import LiteLLM
from ..clients.openwebui import LITELLM_INTERNAL_URL, OpenWebUI
from ..config.settings import GATE_VAR, TRUTHY, KeySpec, Settings, load_with_env
from ..containers.compose import LITELLM, LITELLM_LB, OPENWEBUI, POSTGRES, SERVICES, ServiceState, Stack
from ..containers.rolling import Roll
from ..containers.swarm import SwarmStack
from ..envstore import envfile
from ..virtualkeys.manager import KeyManager
from ..virtualkeys.openwebui import OpenWebUIConsumer
from ..virtualkeys.rotation import key_status, reached
from . import backup as backup_mod
from . import connect, envsetup, masterkey

#: what runs before Open WebUI can: the key store, LiteLLM, and HAProxy in front of it
BACKEND_SERVICES = [POSTGRES, LITELLM, LITELLM_LB]

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass
class Outcome:
    """What a stack task did, for the task to print."""

    notes: list[str] = field(default_factory=list)
    services: dict[str, ServiceState] = field(default_factory=dict)
    changed: bool = True
    urls: dict[str, str] = field(default_factory=dict)
    key: str = field(default="", repr=False)
    key_status: str = ""
    openwebui_key: str = ""  # in sync / differs / not running / unknown

    @property
    def masked(self) -> str:
        return mask(self.key) if self.key else ""



def _compose_can_read(env_file: Path) -> None:
    """The stack tasks hand .env to docker compose, which reads it again: a pipe gives its text
    once. EnvFileError (exit 3) for a pipe or a .env that cannot be written."""
    if envfile.kind_of(env_file) == "a pipe":
        raise EnvFileError(f"{env_file} is a pipe (as `--env-file <(...)` gives): the stack "
                           "tasks hand .env to docker compose, which reads it again, and a pipe "
                           "gives its text once; give a .env file")
    envfile.require_updatable(env_file)

class Gateway:
    """Settings + .env + Docker + LiteLLM + Open WebUI, for one task run."""

    def __init__(self, settings: Settings, *, progress: Progress | None = None,
                 stack: Stack | None = None, service_change: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress or _quiet
        #: one line per service state change while waiting (shown even without a terminal)
        self.service_change = service_change or self.progress
        self._stack = stack
        self._containers: connect.Containers | None = None
        self._master_checked = False
        self.notes: list[str] = []

    @classmethod
    def load(cls, config: Any, *, env_file: str | None = None, url: str | None = None,
             engine: str | None = None, progress: Progress | None = None,
             service_change: Progress | None = None) -> Gateway:
        settings, _ = load_with_env(config, env_file=env_file, url=url, check=_compose_can_read,
                                    engine=engine)
        return cls(settings, progress=progress, service_change=service_change)

    # -- pieces --------------------------------------------------------------

    @property
    def values(self) -> dict[str, str]:
        return envfile.load(self.settings.env_file).values

    @property
    def stack(self) -> Stack:
        return self.containers.stack

    def close(self) -> None:
        if self._containers is not None:
            self._containers.close()
        elif self._stack is not None:
            self._stack.close()

    @property
    def containers(self) -> connect.Containers:
        if self._containers is None:
            self._containers = connect.Containers(self.settings, self._stack)
        return self._containers

    def running_container(self, service: str) -> Any | None:
        return self.containers.running(service)

    def take_notes(self) -> list[str]:
        """The notes gathered so far for the task to print (then emptied)."""
        notes, self.notes = self.notes, []
        return notes

    def litellm(self, via: str | None = None, wait: float = 0,
                about: Sequence[KeySpec] | None = None, master_key: str | None = None) -> LiteLLM:
        """A LiteLLM client over the host port, or from inside its container (``via``);
        ``wait``: give a starting LiteLLM that many seconds to become ready; ``about``: the
        keys the task is about, named in the advice when LiteLLM cannot be reached;
        ``master_key``: another admin key than the settings' (``connect.litellm``)."""
        return connect.litellm(self.settings, self.containers, via=via, wait=wait,
                               progress=self.progress, keys=about, master_key=master_key)

    def openwebui(self) -> OpenWebUI | None:
        """An admin client for Open WebUI, or None when its container is not running."""
        return connect.openwebui(self.settings, self.containers)

    @contextlib.contextmanager
    def keys(self, via: str | None = None, *, starting: bool = False,
             hand_over: bool = True, wait: float = 0,
             about: Sequence[KeySpec] | None = None) -> Iterator[KeyManager]:
        """The one place a KeyManager is made (every keys and stack task comes here): its
        LiteLLM client, and a consumer that hands the gate key to a running Open WebUI
        (``hand_over``), looked up only when a key will really change. ``starting``:
        stack.start itself starts Open WebUI with the key afterwards. ``about``: as for
        ``litellm``. Once LiteLLM is reached (as ``via`` and ``wait`` say), an interrupted
        master-key rotation is finished first (its notes join ``notes``): until then .env's
        master key may not open LiteLLM."""
        client = self.litellm(via, wait, about)
        try:
            recovered = self.finish_master_rotation(via=via)
            if recovered:  # LiteLLM may have been replaced meanwhile: reach the one that runs
                client.close()
                client = self.litellm(via, 0, about)
        except BaseException:
            client.close()
            raise
        self.notes += recovered
        with client:
            consumer = self.consumer(client, starting) if hand_over else None
            try:
                yield KeyManager(self.settings, client, consumer=consumer, progress=self.progress)
            finally:
                if consumer is not None:
                    consumer.close()

    def finish_master_rotation(self, wait: float | None = None, *, via: str | None = None) -> list[str]:
        """Finish or roll back a master-key rotation a killed task left (its journal beside
        .env; ``masterkey.MasterRotation.recover``), once per task run, here: before any
        KeyManager is made and before a new rotation. A file check; Docker and LiteLLM are asked
        only when the journal is there. ``wait``: seconds a recreated LiteLLM may take to be
        healthy (default: ``start_timeout``); ``via``: how LiteLLM is reached to prove it. Notes
        for the user; raises as ``recover`` does."""
        if self._master_checked:
            return []
        self._master_checked = True
        return masterkey.MasterRotation(self, progress=self.progress, via=via,
                                        wait=wait or self.settings.start_timeout).recover()

    def rotate_master(self, *, wait: float, external_salt_key: bool = False) -> masterkey.MasterResult:
        """keys.rotate-master: an interrupted rotation finished first, then
        ``MasterRotation.rotate`` (``wait``: seconds a recreated LiteLLM may take to be healthy;
        ``external_salt_key``: the user confirms a LiteLLM that is not ours has a salt key).
        Its notes start with those of the recovery and of this gateway (left in ``notes`` when
        the rotation fails)."""
        self.notes += self.finish_master_rotation(wait)
        rotation = masterkey.MasterRotation(self, progress=self.progress, wait=wait)
        result = rotation.rotate(external_salt_key=external_salt_key)
        result.notes[:0] = self.take_notes()
        return result

    def consumer(self, client: LiteLLM, starting: bool = False) -> OpenWebUIConsumer:
        """Open WebUI as the gate key's consumer, looked up only when a key will change."""
        spec = self.settings.gate_key
        return OpenWebUIConsumer(
            self.openwebui, client, also=self.litellm_aliases,
            old_keys=lambda: [self.values.get(spec.env_var, "")] if spec is not None else [],
            starting=starting, progress=self.progress)

    def litellm_aliases(self) -> list[str]:
        """Other URLs that reach the LiteLLM service: its host URL, its container's name."""
        return connect.litellm_aliases(self.settings, self.containers)

    # -- checks --------------------------------------------------------------

    def check_env(self) -> list[str]:
        """Block on every env.check error except git's (reported as warnings)."""
        warnings = []
        for finding in envsetup.check(self.settings):
            if finding.level != "error":
                continue
            if finding.check == "git":
                warnings.append(f"warning: {finding.message}")
            elif finding.check != "gate":
                raise EnvFileError(f"{finding.message} (see `invoke env.check`)")
        return warnings

    def gate(self, create_key: bool) -> tuple[KeySpec | None, bool]:
        """(gate key spec, whether .env holds its key); refuses when the gate says so."""
        spec = self.settings.gate_key
        if spec is None:
            return None, True
        values = self.values
        has_key = bool(values.get(spec.env_var))
        first_run = values.get(GATE_VAR, "").strip().lower() in TRUTHY
        if not has_key and not first_run and create_key:
            raise KeyStateError(
                f"{spec.env_var} is empty and {GATE_VAR} is not yes: Open WebUI will not be "
                "started without its virtual key (never with the master key); run `invoke "
                "stack.start --no-create-key keys.create stack.start`, or set FIRST_RUN=yes"
            )
        return spec, has_key

    def require_docker(self) -> None:
        """The docker CLI, its context, the daemon at its endpoint, Compose, and for the swarm
        engine a swarm manager: every stack task checks the same, so one cause always ends in
        one exit code (10)."""
        self.stack.require()

    def preflight(self) -> None:
        s = self.stack
        self.require_docker()
        if s.cli.warning:
            self.notes.append(s.cli.warning)
        s.check_engine()  # before the ports: the project under the other engine holds them
        # check_env has refused ports that are not port numbers before this
        s.check_ports({name: port for name, port in self.settings.host_ports.items() if port})

    def _snapshot(self) -> dict[str, tuple[str, str]]:
        return {name: (st.id, st.started_at) for name, st in self.stack.states().items()}

    def _announce(self, service: str, state: str) -> None:
        self.service_change(f"{service}: {state}")

    # -- the tasks -----------------------------------------------------------

    def start(self, *, create_key: bool = True, timeout: float | None = None) -> Outcome:
        timeout = timeout or self.settings.start_timeout
        outcome = Outcome(notes=self.check_env())
        spec, has_key = self.gate(create_key)
        self.preflight()
        self.settle()
        roll = Roll(self.stack, timeout=0)
        if roll.balancer() is not None and roll.outdated():
            # `docker compose up` below would recreate it, with downtime
            self.progress(f"{LITELLM} runs with other settings than .env and the compose files "
                          "give; replacing it beside the running one")
            self.replace_litellm(timeout)
        before = self._snapshot()
        if spec is not None and not has_key:
            self.progress("first run: starting PostgreSQL and LiteLLM without Open WebUI")
            # LiteLLM first and waited for, so a LiteLLM that fails says so with its logs (HAProxy
            # waits for it: compose would only say "dependency failed")
            self.stack.up([POSTGRES, LITELLM], timeout=timeout)
            self.stack.wait([POSTGRES, LITELLM], timeout=timeout, on_change=self._announce)
            if LITELLM_LB in self.present(BACKEND_SERVICES):
                self.stack.up([LITELLM_LB], no_deps=True, timeout=timeout)
                self.stack.wait([LITELLM_LB], timeout=timeout, on_change=self._announce)
            if not create_key:
                outcome.notes.append(
                    f"Open WebUI left stopped: {spec.env_var} is empty and --no-create-key was "
                    "given; run `invoke keys.create`, then `invoke stack.start`")
                return self._finish(outcome, self.present(BACKEND_SERVICES), before)
            with self.keys(starting=True) as manager:
                result = manager.create(spec)
            outcome.notes += [*result.notes, f"created the virtual key {result.masked} "
                              f"({spec.env_var}); Open WebUI starts with it"]
            self.stack.env_values = self.values
        self.stack.up(timeout=timeout)
        outcome = self._finish(outcome, self.present(SERVICES), before, timeout=timeout)
        self.sync_openwebui(outcome)
        return outcome

    def _finish(self, outcome: Outcome, services: list[str], before: dict[str, tuple[str, str]],
                timeout: float | None = None) -> Outcome:
        states = self.stack.wait(services, timeout=timeout or self.settings.start_timeout,
                                 on_change=self._announce)
        outcome.services = states
        outcome.changed = any(before.get(name) != (st.id, st.started_at) for name, st in states.items())
        outcome.urls = {"LiteLLM": self.settings.litellm_url,
                        "LiteLLM admin UI": f"{self.settings.litellm_url}/ui"}
        if OPENWEBUI in states:
            outcome.urls["Open WebUI"] = self.settings.webui_url
        spec = self.settings.gate_key
        if spec is not None:
            outcome.key = self.values.get(spec.env_var, "")
        outcome.notes += self.take_notes()
        return outcome

    def sync_openwebui(self, outcome: Outcome) -> None:
        """Open WebUI keeps the key it stored; hand it .env's when they differ, then prove it."""
        spec = self.settings.gate_key
        if spec is None or not outcome.key:
            return
        with self.litellm() as client:
            if _db_ok(client):
                outcome.key_status = key_status(client.key_info(outcome.key))
            else:
                outcome.key_status = "unknown"
            webui = self.openwebui()
            if webui is None:
                outcome.openwebui_key = "not running"
                return
            with webui:
                also = self.litellm_aliases()
                held = webui.held_key(also=also, old_keys=[outcome.key])
                if held == outcome.key:
                    outcome.openwebui_key = "in sync"
                else:
                    self.progress("Open WebUI holds another key than .env; handing it .env's")
                    webui.set_key(outcome.key, also=also, old_keys=[outcome.key])
                    outcome.notes.append("Open WebUI held another key than .env; it now has "
                                         f"{outcome.masked}")
                    outcome.openwebui_key = "updated"
                if outcome.key_status == "active":
                    webui.prove(reached(client.models_for(outcome.key, var=spec.env_var),
                                        client.served_models()))
                elif outcome.key_status == "unknown":
                    outcome.notes.append("LiteLLM cannot say whether the key is active, so "
                                         "whether Open WebUI reaches models with it is unchecked")
                else:
                    outcome.notes.append(
                        f"warning: {spec.env_var} is {outcome.key_status} in LiteLLM, so Open "
                        "WebUI cannot reach models; run `invoke keys.create` to replace it")

    def stop(self, *, volumes: bool = False) -> Outcome:
        self.require_docker()
        states = self.stack.states()
        if not states and not volumes:  # --volumes: a stopped stack's volumes go too
            return Outcome(notes=[f"nothing to stop: no containers of project "
                                  f"{self.settings.project_name!r}"], changed=False)
        self.stack.down(volumes=volumes)
        if not states:
            kept = " and secrets" if isinstance(self.stack, SwarmStack) else ""
            return Outcome(notes=[f"nothing was running; removed the volumes{kept} of project "
                                  f"{self.settings.project_name!r} that were left, if any"],
                           changed=False)
        if isinstance(self.stack, SwarmStack):
            what = "removed the swarm stack's services" + (
                ", its volumes on this node (data deleted) and its secrets" if volumes
                else "; volumes and secrets kept")
        else:
            what = "stopped and removed the containers" + (" and the volumes (data deleted)"
                                                          if volumes else "; volumes kept")
        return Outcome(notes=[what], services=states)

    def restart(self, *, service: str | None = None, timeout: float | None = None) -> Outcome:
        if service is not None and service not in SERVICES:
            raise UsageError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
        outcome = Outcome(notes=self.check_env())
        _spec, has_key = self.gate(create_key=True)
        self.preflight()
        if service == OPENWEBUI and not has_key:
            raise KeyStateError("Open WebUI is not started without its virtual key; "
                                "run `invoke keys.create` first")
        services = [service] if service else self.present(SERVICES if has_key else BACKEND_SERVICES)
        before = self._snapshot()
        recreate, no_deps = list(services), service is not None
        if service is None and (isinstance(self.stack, SwarmStack)
                                or Roll(self.stack, timeout=0).balancer() is not None):
            # the whole stack: PostgreSQL and HAProxy only when their settings changed (compose
            # or Swarm decides), LiteLLM replaced without downtime, Open WebUI recreated. (A
            # stack from before litellm-lb has all recreated, as before: its LiteLLM holds the
            # port.)
            self.stack.up([POSTGRES, LITELLM_LB], no_deps=True, timeout=timeout)
            recreate, no_deps = [s for s in services if s not in (POSTGRES, LITELLM_LB)], True
        if LITELLM in recreate and self.replace_litellm(timeout or self.settings.start_timeout):
            recreate.remove(LITELLM)
        if recreate:
            self.progress(f"recreating {', '.join(recreate)} with the settings in .env")
            self.stack.up(recreate, recreate=True, no_deps=no_deps, timeout=timeout)
        outcome = self._finish(outcome, services, before, timeout=timeout)
        if has_key and (service in (None, OPENWEBUI, LITELLM)):
            self.sync_openwebui(outcome)
        return outcome

    def logs_commands(self, services: Sequence[str], *, follow: bool, tail: int | None
                      ) -> list[list[str]]:
        """The commands that print the services' logs (all when none are named): one ``docker
        compose logs``; on a swarm one ``docker service logs`` per service, and with
        ``--follow`` one service (UsageError, exit 2, otherwise)."""
        stack = self.stack
        if isinstance(stack, SwarmStack):
            names = list(services) or [s for s in SERVICES if s in self.present(SERVICES)]
            if follow and len(names) != 1:
                raise UsageError("on a swarm, stack.logs --follow follows one service: add "
                                 "--service NAME")
            return [stack.logs_argv(name, follow=follow, tail=tail) for name in names]
        args = ["logs", "--no-color"] + (["--follow"] if follow else [])
        if tail is not None:
            args += ["--tail", str(tail)]
        return [stack.compose_args(*args, *services)]

    def compose_only(self, what: str) -> None:
        """UsageError (exit 2) when the stack runs on a swarm: ``what`` drives Compose only."""
        if self.settings.engine == "swarm":
            raise UsageError(f"{what} works on the compose engine only; on a swarm see the "
                             "README, 'Docker Swarm' (gateway.engine is swarm)")

    def present(self, services: Sequence[str]) -> list[str]:
        """``services`` without litellm-lb when the compose files do not define it (compose
        files of one's own, from before it): then LiteLLM publishes its port itself."""
        if LITELLM_LB in services and LITELLM_LB not in self.stack.defined():
            return [s for s in services if s != LITELLM_LB]
        return list(services)

    def replace_litellm(self, timeout: float) -> bool:
        """The rolling step (rolling.py) when HAProxy and a LiteLLM run; False when they do not
        (then LiteLLM can only be recreated, with downtime). Raises RollFailed (11): the new
        LiteLLM never turned ready and the running one serves on."""
        roll = Roll(self.stack, timeout=timeout, progress=self.progress)
        if roll.balancer() is None or not roll.litellm_containers():
            return False
        roll.replace()
        self.notes.append("LiteLLM replaced beside the running one: HAProxy sent new requests to "
                          "the new one before the old one stopped")
        return True

    def settle(self) -> None:
        """End a LiteLLM replacement a killed task left (rolling.settle); quiet without Docker."""
        with contextlib.suppress(DockerUnavailableError):
            if Roll(self.stack, timeout=0, progress=self.progress).settle():
                self.notes.append("ended an unfinished replacement of LiteLLM")

    def backup(self, *, to: str | None = None, keep: int | None = None) -> backup_mod.BackupResult:
        """stack.backup: a new backup folder under ``to`` (default: ``backups`` beside .env)."""
        self.compose_only("stack.backup")
        self.require_docker()
        folder = Path(to).expanduser() if to else self.settings.env_file.parent / "backups"
        return backup_mod.backup(self.stack, env_file=self.settings.env_file,
                                 default_config=self.settings.project_dir / "litellm-config.yaml",
                                 to=folder, keep=keep, progress=self.progress)

    def restore_check(self, folder: Path, *, force: bool) -> tuple[backup_mod.Manifest, list[str]]:
        """Before anything changes: every checksum, and the salt key against live volumes
        (BackupError 14 unless ``force``). The manifest and notes (an earlier restore that
        stopped)."""
        self.compose_only("stack.restore")
        manifest = backup_mod.verify(folder)
        self.require_docker()
        notes = []
        unfinished = backup_mod.journal_for(self.settings.env_file).read()
        if unfinished is not None:
            notes.append(f"a restore of {unfinished['backup']} stopped during "
                         f"{unfinished['step']!r}; this restore replaces it")
        current = (envfile.load(self.settings.env_file).values
                   if self.settings.env_file.exists() else None)
        volumes = self.stack.client.volumes.list(
            filters={"label": f"com.docker.compose.project={self.settings.project_name}"})
        if backup_mod.salt_conflict(backup_mod.backup_env(folder).values, current, bool(volumes)):
            if not force:
                raise BackupError(
                    f"the backup {folder.name} was made by another installation: its "
                    f"LITELLM_SALT_KEY differs from the one this stack's volumes were made with; "
                    "--force replaces this stack's data with it; nothing was changed")
            notes.append("the backup's LITELLM_SALT_KEY differs from this stack's (--force)")
        return manifest, notes

    def restore_stop(self, folder: Path) -> list[str]:
        """Step 1: LiteLLM and Open WebUI stopped (nothing writes to the data any more), then
        .env and litellm-config.yaml put back. Notes."""
        config = backup_mod.config_path(self.stack, self.settings.project_dir / "litellm-config.yaml")
        journal = backup_mod.journal_for(self.settings.env_file)
        journal.write(folder, "files")
        if self.stack.containers():
            self.progress("stopping LiteLLM and Open WebUI")
            self.stack.compose_ok("stop", LITELLM, OPENWEBUI, what="docker compose stop")
        return backup_mod.restore_files(folder, env_file=self.settings.env_file, config=config)

    def restore_data(self, folder: Path, *, timeout: float | None = None) -> Outcome:
        """Step 2, on a Gateway loaded from the restored .env: the database and Open WebUI's
        volume, then the stack started and proved: .env's virtual key active in LiteLLM and
        Open WebUI listing models through it."""
        journal = backup_mod.journal_for(self.settings.env_file)
        docker = backup_mod.Docker(self.stack)
        step = "database"
        try:
            journal.write(folder, step)
            self.progress("starting PostgreSQL")
            self.stack.up([POSTGRES])
            self.stack.wait([POSTGRES], timeout=timeout or self.settings.start_timeout,
                             on_change=self._announce)
            self.progress("restoring LiteLLM's database (pg_restore, one transaction)")
            backup_mod.restore_database(docker, folder, self.values)
            step = "open-webui"
            journal.write(folder, step)
            if self.stack.container_of(OPENWEBUI) is not None:
                self.stack.compose_ok("stop", OPENWEBUI, what="docker compose stop")
            self.progress("restoring Open WebUI's data volume")
            backup_mod.restore_webui(docker, folder)
            step = "start"
            journal.write(folder, step)
            outcome = self.start(create_key=False, timeout=timeout)
        except GatewayError as exc:
            exc.extend(f"the restore stopped during {step!r}, the stack partly restored; "
                       f"run `invoke stack.restore {folder} --yes` again to finish")
            raise
        if self.settings.gate_key is not None and outcome.key_status != "active":
            raise KeyStateError(f"restored, but .env's virtual key is {outcome.key_status or 'unset'} "
                                "in LiteLLM; run `invoke keys.create` to make a new one")
        journal.clear()
        return outcome

    def status(self) -> Outcome:
        outcome = Outcome(changed=False)
        self.require_docker()
        outcome.services = self.stack.states()
        outcome.notes += self._litellm_notes()
        spec = self.settings.gate_key
        values = self.values
        outcome.key = values.get(spec.env_var, "") if spec else ""
        outcome.urls = {"LiteLLM": self.settings.litellm_url,
                        "Open WebUI": self.settings.webui_url or "unknown: WEBUI_PORT is no port"}
        if not outcome.key:
            outcome.key_status = "missing from .env"
            return outcome
        try:
            with self.litellm() as client:
                client.require_database()
                outcome.key_status = key_status(client.key_info(outcome.key))
        except GatewayError as exc:
            outcome.key_status = "unknown"
            outcome.notes.append(f"key status unknown: {exc.message}")
        try:
            webui = self.openwebui()
            if webui is None:
                outcome.openwebui_key = "not running"
            else:
                with webui:
                    held = webui.held_key(also=self.litellm_aliases(), old_keys=[outcome.key])
                    outcome.openwebui_key = ("in sync" if held == outcome.key
                                             else "differs from .env (stack.restart fixes it)")
        except (OpenWebUIError, ProxyUnreachableError) as exc:
            outcome.openwebui_key = "unknown"
            outcome.notes.append(f"Open WebUI key unknown: {exc.message}")
        return outcome


    def _litellm_notes(self) -> list[str]:
        """What stack.status says of a LiteLLM replacement under way, or left by a killed task,
        and of a LiteLLM that runs with other settings than .env gives now."""
        roll = Roll(self.stack, timeout=0)
        running = roll.litellm_containers()
        if len(running) > 1:
            return [f"{len(running)} LiteLLM containers run ({', '.join(c.name for c in running)}): "
                    "a replacement is under way, or was interrupted (`invoke stack.start` ends it)"]
        with contextlib.suppress(StackError):
            if running and roll.outdated():
                return ["LiteLLM runs with other settings than .env and the compose files give "
                        "now; `invoke stack.restart --service litellm` applies them"]
        return []


def webui_consumer(webui: OpenWebUI, client: LiteLLM, *, also: Sequence[str] = (),
                   old_keys: Sequence[str] = (), litellm_url: str = LITELLM_INTERNAL_URL,
                   progress: Progress = _quiet) -> OpenWebUIConsumer:
    """A consumer for an Open WebUI already at hand (tests, scripts); checks it at once."""
    consumer = OpenWebUIConsumer(lambda: webui, client, also=lambda: also,
                                 old_keys=lambda: old_keys, litellm_url=litellm_url,
                                 progress=progress)
    consumer.check(KeySpec("", "", "", "", "", gate=True))
    return consumer


def _db_ok(client: LiteLLM) -> bool:
    try:
        return client.database() == "connected"
    except GatewayError:
        return False


def stack_findings(settings: Settings) -> list[envsetup.Finding]:
    """On a running stack: whether .env's database password and Open WebUI admin still work.

    ``settings`` must be resolved with .env's values (``with_env_values``). Never raises for an
    expected failure: no Docker or a stopped stack is an ``ok`` finding saying what was not
    checked."""
    try:
        values = envfile.load(settings.env_file).values
    except EnvFileError:
        return []
    env_name = settings.env_file.name
    gateway = Gateway(settings)
    try:
        try:
            postgres = gateway.running_container(POSTGRES)
        except GatewayError:  # no docker CLI at all
            postgres = None
        if postgres is None:
            return [envsetup.Finding("ok", "stack", "the stack is not running (or Docker is not "
                            "reachable): the database and admin checks were skipped")]
        found = [envsetup.database_finding(postgres, values, env_name)]
        if gateway.running_container(OPENWEBUI) is not None:
            try:
                webui = gateway.openwebui()
            except GatewayError as exc:
                found.append(envsetup.Finding("error", "admin", exc.message))
            else:
                if webui is not None:
                    found.append(envsetup.admin_finding(webui, env_name))
        return found
    finally:
        gateway.close()
