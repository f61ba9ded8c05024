"""Rotating LiteLLM's master key (``keys.rotate-master``) as a journaled protocol - a new key in
.env, LiteLLM replaced with it, the result proven - and finishing or rolling back a rotation a
killed task left (``MasterRotation.recover``, run by ``Gateway.finish_master_rotation``). Plain
functions over a ``gateway.stack.Gateway``; no Invoke, no printing.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import (
    AuthError,
    DockerUnavailableError,
    GatewayError,
    IncompleteError,
    KeyStateError,
    OpenWebUIUnreachableError,
    ProxyUnreachableError,
    UsageError,
)
from ..base.masking import mask
from ..clients.litellm import LiteLLM
from ..containers.compose import LITELLM
from ..containers.rolling import RollFailed
from ..containers.swarm import SwarmStack
from ..envstore import envfile
from ..envstore.journal import JournalFile, stamp
from ..virtualkeys.manager import keys_lock
from ..virtualkeys.rotation import key_status
from .envsetup import new_master_key

if TYPE_CHECKING:
    from .stack import Gateway

Progress = Callable[[str], None]
MASTER_VAR = "LITELLM_MASTER_KEY"
SALT_VAR = "LITELLM_SALT_KEY"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class MasterJournal:
    """The journal entry of a master-key rotation (hashes only)."""

    old_sha256: str
    new_sha256: str
    started_at: str
    restart: bool  # True: LiteLLM is the compose stack's, the tasks recreate it

    @staticmethod
    def file(env_file: Path) -> JournalFile:
        return JournalFile(env_file, "master", "the master-key journal", "if no keys task is "
                           "running, check LITELLM_MASTER_KEY and delete it")

    @classmethod
    def read(cls, env_file: Path) -> MasterJournal | None:
        file = cls.file(env_file)
        data = file.load()
        if data is None:
            return None
        try:
            if not isinstance(data.get("restart"), bool):
                raise TypeError("restart")
            if not all(isinstance(data[name], str) for name in ("old_sha256", "new_sha256")):
                raise TypeError("a hash that is not text")
            return cls(data["old_sha256"], data["new_sha256"], str(data["started_at"]),
                       data["restart"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise file.unreadable(exc) from None

    def write(self, env_file: Path) -> None:
        self.file(env_file).save(asdict(self))

    @classmethod
    def drop(cls, env_file: Path) -> None:
        cls.file(env_file).drop()


@dataclass
class MasterResult:
    """What a master-key rotation did. ``key`` is the new master key (render it masked)."""

    action: str  # "rotated" | "finished" | "rolled back"
    key: str = field(repr=False)
    restarted: bool
    seconds: float = 0.0
    proven: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"action": self.action, "key": mask(self.key), "restarted": self.restarted,
                "seconds": round(self.seconds, 1), "proven": self.proven, "notes": self.notes}


class MasterRotation:
    """Steps of the protocol above, over one gateway (Settings, Docker, LiteLLM, Open WebUI)."""

    def __init__(self, gateway: Gateway, *, progress: Progress | None = None, wait: float = 300,
                 via: str | None = None) -> None:
        self.gateway = gateway
        self.via = via  # how LiteLLM is reached (connect.litellm), for every proof
        self.settings = gateway.settings
        self.progress = progress or (lambda _m: None)
        self.wait = wait

    @property
    def env_file(self) -> Path:
        return self.settings.env_file

    def ours(self) -> bool:
        """Is LiteLLM this compose stack's running ``litellm`` service (ours to recreate)? Only when
        the tasks reach it at the port .env publishes it on - a LiteLLM given by ``--url``,
        ``LITELLM_PROXY_URL`` or ``gateway.litellm_url`` is another one, even beside a running stack."""
        if self.settings.url_source not in ("LITELLM_PORT in .env", "LITELLM_PORT (environment)",
                                            "default"):
            return False
        return self.gateway.running_container(LITELLM) is not None

    # -- the steps -----------------------------------------------------------

    def rotate(self, *, external_salt_key: bool = False) -> MasterResult:
        """Steps 1-5. Raises UsageError (the master key is not .env's), KeyStateError (LiteLLM is not
        ours and the salt key is not confirmed; a rotation is pending), AuthError (.env's key is
        refused), IncompleteError (exit 9: LiteLLM must be restarted by hand)."""
        started = time.monotonic()
        with keys_lock(self.settings):
            old, ours = self._check(external_salt_key)
            new = new_master_key()
            journal = MasterJournal(sha256(old), sha256(new), stamp(), ours)
            self.progress("noting the rotation in the master-key journal (hashes only)")
            journal.write(self.env_file)
            self.progress(f"writing the new master key to {self.env_file}")
            try:
                envfile.update(self.env_file, {MASTER_VAR: new}, lock_timeout=self.settings.lock_timeout)
            except BaseException:
                MasterJournal.drop(self.env_file)
                raise
            try:
                result = self._finish(journal, new, old=old, action="rotated")
            except RollFailed as exc:
                # the new LiteLLM never turned ready and the old one serves on with the old key:
                # .env gets it back, so nothing changed
                envfile.update(self.env_file, {MASTER_VAR: old}, lock_timeout=self.settings.lock_timeout)
                MasterJournal.drop(self.env_file)
                with contextlib.suppress(GatewayError):  # a swarm's secret of the new key
                    self.gateway.stack.prune_secrets()
                raise RollFailed(f"{exc.message}; the master key was not changed (.env holds "
                                 "the old one again)", exc.details) from None
        result.seconds = time.monotonic() - started
        return result

    def _check(self, external_salt_key: bool) -> tuple[str, bool]:
        """The checks before step 1, nothing changed yet: (the old key, whether LiteLLM is this
        stack's to restart) once .env's key opens LiteLLM; raises as ``rotate`` says."""
        doc = envfile.load(self.env_file)
        old = doc.get(MASTER_VAR)
        if not old or not self.settings.master_key_source.startswith(MASTER_VAR + " in "):
            raise UsageError(f"keys.rotate-master rotates the {MASTER_VAR} that .env holds; "
                             f"the key in use comes from {self.settings.master_key_source or 'nowhere'}")
        if MasterJournal.read(self.env_file) is not None:
            raise KeyStateError("a master-key rotation is already pending; run `invoke keys.list` "
                                "(any keys task) to finish it first")
        # the project under the other engine (compose or swarm) is refused as stack.start
        # refuses it, not taken for a LiteLLM elsewhere; no Docker: LiteLLM is elsewhere
        with contextlib.suppress(DockerUnavailableError):
            self.gateway.stack.check_engine()
        ours = self.ours()
        if ours:  # before .env changes: Docker, Compose, and a swarm manager on a swarm
            self.gateway.require_docker()
        if ours and not doc.get(SALT_VAR):
            raise KeyStateError(
                f"{SALT_VAR} is empty in .env, so LiteLLM encrypts what it stores with the master "
                "key and a new one would make that unreadable; docker-compose.yml requires a salt "
                "key - see README, 'keys.rotate-master'")
        if not ours and not external_salt_key:
            raise KeyStateError(
                "LiteLLM is not this compose stack's running service, so the tasks cannot restart "
                f"it; if that LiteLLM has {SALT_VAR} set (else a new master key makes the "
                "credentials it stores unreadable), run again with --salt-key-set, then restart it "
                "with the new key as told")
        with self.gateway.litellm("host" if not ours else None) as client:
            client.require_database()
            client.check_admin()  # .env's key opens LiteLLM now
        return old, ours

    def _finish(self, journal: MasterJournal, new: str, *, old: str | None, action: str) -> MasterResult:
        """Steps 3-5 with .env holding ``new``. ``old``: the old key when known (to prove it refused)."""
        restarted = False
        if journal.restart:
            restarted = self._recreate_litellm(new)
        # a LiteLLM that is not ours is the one at the URL: never this project's container
        via = self.via if journal.restart else "host"
        client = self.gateway.litellm(via, master_key=new)
        with client:
            try:
                client.check_admin()
            except AuthError:
                if journal.restart:
                    raise
                raise IncompleteError(
                    f"{MASTER_VAR} in {self.env_file} now holds the new master key "
                    f"{mask(new)}; LiteLLM still runs with the old one: set LiteLLM's "
                    f"{MASTER_VAR} to the value in .env and restart LiteLLM, then run any keys task "
                    "(e.g. `invoke keys.list`) to prove it and finish") from None
            proven = ["the new master key opens LiteLLM's admin API"]
            if old:
                with self.gateway.litellm(via, master_key=old) as old_client:
                    try:
                        old_client.check_admin()
                    except AuthError:
                        proven.append("the old master key is refused")
                    else:
                        raise GatewayError("LiteLLM still accepts the old master key after its restart; "
                                           f"check how LiteLLM gets {MASTER_VAR}")
            proven += self._prove_virtual_keys(client)
        proven += self._prove_openwebui()
        MasterJournal.drop(self.env_file)
        return MasterResult(action, new, restarted, proven=proven)

    def _recreate_litellm(self, new: str) -> bool:
        """Recreate the compose stack's litellm service (it reads the new key from .env) and wait
        until it is healthy - unless it already accepts ``new``. True if it was recreated."""
        self.gateway.settle()  # a replacement a killed rotation left: keep the newest LiteLLM
        try:
            with self.gateway.litellm(self.via, master_key=new) as client:
                client.check_admin()
            accepted = True
        except GatewayError:
            accepted = False
        if accepted:
            if isinstance(self.gateway.stack, SwarmStack):
                # a rotation resumed while Swarm still rolls LiteLLM: until the old tasks (old
                # key) are gone; the wait then removes the old key's secret
                self.gateway.stack.wait([LITELLM], timeout=self.wait)
            return False
        if self.gateway.containers.running_or_raise(LITELLM) is None:  # no Docker: exit 10
            # a killed rotation, then stack.stop: never start LiteLLM alone (without its database)
            raise ProxyUnreachableError(
                "a master-key rotation is unfinished and this stack's LiteLLM, which must restart "
                "with the new key, is not running; start the stack (`invoke stack.start`: LiteLLM "
                "starts with .env's new master key), then any keys task proves it and finishes it")
        if self.gateway.replace_litellm(self.wait):  # beside the old one: no request dropped
            return True
        stack = self.gateway.stack
        self.progress("recreating the litellm service with the new key")
        stack.up([LITELLM], recreate=True, no_deps=True)
        stack.wait([LITELLM], timeout=self.wait)
        return True

    def _prove_virtual_keys(self, client: LiteLLM) -> list[str]:
        """Each active virtual key .env holds still works; one that was dead before (expired,
        blocked, deleted) is said, not taken for a failure of the rotation - else no keys task,
        not even the keys.create that replaces it, could finish the rotation."""
        doc = envfile.load(self.env_file)
        proven = []
        for spec in self.settings.keys.values():
            key = doc.get(spec.env_var)
            if not key:
                continue
            status = key_status(client.key_info(key))
            if status != "active":
                proven.append(f"{spec.env_var} not checked: LiteLLM has its key as {status} "
                              f"(`invoke keys.create --name {spec.name}` replaces it)")
                continue
            client.models_for(key, var=spec.env_var)  # raises when LiteLLM refuses it
            proven.append(f"{spec.env_var} still works")
        return proven

    def _prove_openwebui(self) -> list[str]:
        try:
            webui = self.gateway.openwebui()
        except OpenWebUIUnreachableError as exc:  # no Docker, nothing at WEBUI_PORT
            return [f"Open WebUI not checked: {exc.message}"]
        if webui is None:
            return []
        with webui:
            if not webui.models():
                raise GatewayError("Open WebUI lists no models from LiteLLM after the master-key rotation")
        return ["Open WebUI still lists LiteLLM's models"]

    # -- recovery ------------------------------------------------------------

    def recover(self) -> list[str]:
        """Finish or roll back an interrupted rotation (run by every keys task first). Notes."""
        journal = MasterJournal.read(self.env_file)
        if journal is None:
            return []
        with keys_lock(self.settings):
            journal = MasterJournal.read(self.env_file)
            if journal is None:
                return []
            held = envfile.load(self.env_file).get(MASTER_VAR)
            if sha256(held) == journal.old_sha256:
                MasterJournal.drop(self.env_file)  # interrupted before .env changed: nothing to undo
                return ["rolled back an interrupted master-key rotation (nothing had changed)"]
            if sha256(held) != journal.new_sha256:
                raise KeyStateError(
                    f"{MASTER_VAR} in .env is neither the old nor the new key of an interrupted "
                    f"master-key rotation; check it, then delete {MasterJournal.file(self.env_file).path}")
            result = self._finish(journal, held, old=None, action="finished")
        return ["finished an interrupted master-key rotation: " + "; ".join(result.proven)]

