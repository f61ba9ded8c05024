"""stack.upgrade: a new LiteLLM (or Open WebUI) image, proven, or the old one back with its data.
A journaled protocol over a ``gateway.stack.Gateway``: plan, a checked backup, .env pins the new
image, LiteLLM replaced without downtime, proof - and on any failure the old image, and the
backed-up database when the new LiteLLM migrated it. No Invoke, no printing.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import (
    GatewayError,
    IncompleteError,
    Interrupted,
    StackError,
    UpgradeFailed,
    UsageError,
)
from ..containers.compose import LITELLM, OPENWEBUI, POSTGRES
from ..envstore import envfile
from ..envstore.journal import JournalFile, stamp
from ..virtualkeys.rotation import reached
from . import backup as backup_mod

if TYPE_CHECKING:
    from .stack import Gateway

Progress = Callable[[str], None]
#: the .env variable that pins each service's image (docker-compose.yml reads them)
IMAGE_VARS = {LITELLM: "LITELLM_IMAGE", OPENWEBUI: "OPENWEBUI_IMAGE"}
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

#: The schema of LiteLLM's database (tables, columns, types) and the rows of its migration
#: tables (Prisma's ``_prisma_migrations``; any table named ``*migrations``), as one digest: it
#: changes when a LiteLLM applies a migration.
FINGERPRINT_SQL = """
SELECT md5(coalesce((SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ','
                                       ORDER BY table_name, column_name)
                     FROM information_schema.columns WHERE table_schema = 'public'), '')
           || '|' ||
           coalesce((SELECT string_agg(table_name || '=' ||
                       (xpath('/row/c/text()', query_to_xml(format(
                          'SELECT count(*) AS c FROM public.%I', table_name), false, true, '')))[1]::text,
                       ',' ORDER BY table_name)
                     FROM information_schema.tables
                     WHERE table_schema = 'public' AND table_name LIKE '%migrations'), ''))
"""
#: Before the backed-up database goes back: everything in the ``public`` schema dropped (what a
#: migration added too, which pg_restore --clean would leave), the schema made again as
#: PostgreSQL (15 and later) makes it.
EMPTY_SCHEMA_SQL = ("DROP SCHEMA IF EXISTS public CASCADE; "
                    "CREATE SCHEMA public AUTHORIZATION pg_database_owner; "
                    "GRANT USAGE ON SCHEMA public TO PUBLIC; "
                    "COMMENT ON SCHEMA public IS 'standard public schema';")


def retag(image: str, version: str) -> str:
    """The image reference for ``version``: a tag (``1.108.14`` or ``v1.108.14``) on the current
    image's repository, written as its tag is (``v`` or not); a whole reference (with ``:``, ``/``
    or ``@``) as it is. UsageError for an empty or malformed one."""
    version = version.strip()
    if not version or any(c.isspace() for c in version):
        raise UsageError(f"{version!r} is not a version or image; e.g. --litellm 1.108.14")
    if any(c in version for c in ":/@"):
        return version
    base = image.split("@", 1)[0]
    name = base.rsplit("/", 1)[-1]
    repo, tag = (base[: len(base) - len(name)] + name.split(":", 1)[0],
                 name.split(":", 1)[1] if ":" in name else "")
    bare = version[1:] if version[:1] in "vV" and version[1:2].isdigit() else version
    if not _TAG.fullmatch(bare):
        raise UsageError(f"{version!r} is not a valid image tag; e.g. --litellm 1.108.14")
    prefix = "v" if tag[:1] == "v" and tag[1:2].isdigit() else ""
    return f"{repo}:{prefix}{bare}"


@dataclass
class Change:
    service: str
    var: str
    old: str  # the image running / configured now
    new: str
    env_before: str | None  # .env's value before (None: not set, docker-compose.yml's default)


@dataclass
class Journal:
    """What an upgrade under way changes; written before .env changes, cleared when done."""

    changes: list[Change]
    backup: str
    fingerprint: str
    models: list[str]
    started_at: str
    step: str = "switch"

    @staticmethod
    def file(env_file: Path) -> JournalFile:
        return JournalFile(env_file, "upgrade", "the upgrade journal", "if no stack.upgrade is "
                           "running, check .env's images and delete it")

    def write(self, env_file: Path) -> None:
        self.file(env_file).save(asdict(self))

    @classmethod
    def read(cls, env_file: Path) -> Journal | None:
        file = cls.file(env_file)
        data = file.load()
        if data is None:
            return None
        try:
            data["changes"] = [Change(**c) for c in data["changes"]]
            return cls(**data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise file.unreadable(exc) from None

    @classmethod
    def clear(cls, env_file: Path) -> None:
        cls.file(env_file).drop()


@dataclass
class UpgradeResult:
    changes: list[Change]
    dry_run: bool = False
    backup: str = ""
    proven: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.changes) and not self.dry_run

    def public(self) -> dict[str, Any]:
        return {"changed": self.changed, "dry_run": self.dry_run, "backup": self.backup,
                "changes": {c.service: {"from": c.old, "to": c.new, "env_var": c.var}
                            for c in self.changes},
                "proven": self.proven, "notes": self.notes, "seconds": round(self.seconds, 1)}


class Upgrade:
    """The steps above, over one Gateway."""

    def __init__(self, gateway: Gateway, *, timeout: float, to: str | None = None,
                 progress: Progress | None = None) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.timeout = timeout
        self.to = to
        self.progress = progress or (lambda _m: None)

    @property
    def env_file(self) -> Path:
        return self.settings.env_file

    # -- pieces --------------------------------------------------------------

    def configured_images(self) -> dict[str, str]:
        """Each service's image as compose resolves it with .env now."""
        services = self.gateway.stack.services_config()
        return {name: str(spec.get("image") or "") for name, spec in services.items()}

    def running_images(self, service: str) -> set[str]:
        return {str((c.attrs.get("Config") or {}).get("Image") or "")
                for c in self.gateway.stack.containers()
                if c.labels.get("com.docker.compose.service") == service and c.status == "running"}

    def _docker(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        stack = self.gateway.stack
        return subprocess.run([stack.docker, *args], capture_output=True, text=True,
                              timeout=timeout, env=stack.child_env(), stdin=subprocess.DEVNULL,
                              check=False)

    def require_image(self, image: str) -> None:
        """The image is on this machine, or pulled now; else StackError (nothing changed)."""
        if self._docker("image", "inspect", image, timeout=60).returncode == 0:
            return
        self.progress(f"pulling {image}")
        done = self._docker("pull", image)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            raise StackError(f"the image {image} is not on this machine and cannot be pulled "
                             f"({lines[-1] if lines else f'exit code {done.returncode}'}); "
                             "check the version; nothing was changed")

    def fingerprint(self) -> str:
        """FINGERPRINT_SQL's digest of the database, read through the postgres container."""
        docker = backup_mod.Docker(self.gateway.stack)
        postgres = docker.container(POSTGRES)
        if postgres is None:
            raise StackError("PostgreSQL is not running; the database cannot be checked")
        secrets, conn = backup_mod.pg_secrets(self.gateway.values)
        sink = io.BytesIO()
        docker.stream(docker.exec_argv(postgres, ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                                                  "-c", FINGERPRINT_SQL, *conn], secrets),
                      secrets=secrets, stdin=None, stdout=sink, what="psql in the postgres container")
        return sink.getvalue().decode().strip()

    def restore_database(self, folder: Path) -> None:
        """The backed-up database back: the public schema emptied, then pg_restore (one
        transaction)."""
        docker = backup_mod.Docker(self.gateway.stack)
        postgres = docker.container(POSTGRES)
        if postgres is None:
            raise StackError("PostgreSQL is not running; the database cannot be restored")
        values = self.gateway.values
        secrets, conn = backup_mod.pg_secrets(values)
        docker.stream(docker.exec_argv(postgres, ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1",
                                                  "-c", EMPTY_SCHEMA_SQL, *conn], secrets),
                      secrets=secrets, stdin=None, stdout=None, what="psql in the postgres container")
        backup_mod.restore_database(docker, folder, values)

    def prove(self, models: list[str]) -> list[str]:
        """LiteLLM ready with its database; every model of ``models`` still served; .env's
        virtual keys work; Open WebUI lists models through the gate key. Raises GatewayError."""
        proven = []
        values = self.gateway.values
        with self.gateway.litellm(wait=self.timeout) as client:
            db = client.database(wait=min(self.timeout, 120.0))
            if db != "connected":
                raise StackError(f"LiteLLM answers but its database is {db!r}")
            proven.append("LiteLLM is ready with its database")
            served = client.served_models()
            missing = [m for m in models if m not in served]
            if missing:
                raise StackError(f"LiteLLM no longer serves {', '.join(missing)}")
            proven.append(f"it serves the {len(models)} models it served before "
                          "(those stored in its database too)")
            reach: list[str] = []
            for spec in self.settings.keys.values():
                key = values.get(spec.env_var, "")
                if not key:
                    continue
                reaches = reached(client.models_for(key), served)
                if spec.gate:
                    reach = reaches
                proven.append(f"{spec.env_var} works")
        webui = self.gateway.openwebui()
        if webui is not None and reach:
            with webui:
                webui.prove(reach, timeout=max(20.0, min(self.timeout, 120.0)))
            proven.append("Open WebUI lists LiteLLM's models through it")
        return proven

    def _switch_litellm(self) -> None:
        if not self.gateway.replace_litellm(self.timeout):
            stack = self.gateway.stack
            self.progress("recreating litellm (no HAProxy in front of it: a short downtime)")
            stack.up([LITELLM], recreate=True, no_deps=True)
            stack.wait([LITELLM], timeout=self.timeout)

    def _switch_openwebui(self) -> None:
        stack = self.gateway.stack
        self.progress("recreating open-webui with its new image")
        stack.up([OPENWEBUI], recreate=True, no_deps=True)
        stack.wait([OPENWEBUI], timeout=self.timeout)

    def _pin(self, images: Mapping[str, str | None]) -> None:
        """.env's image variables set (or, for None, emptied: docker-compose.yml's pin)."""
        envfile.update(self.env_file, {k: v or "" for k, v in images.items()},
                       lock_timeout=self.settings.lock_timeout)
        self.gateway.stack.env_values = self.gateway.values

    # -- plan --------------------------------------------------------------

    def plan(self, wanted: Mapping[str, str | None]) -> list[Change]:
        configured = self.configured_images()
        values = self.gateway.values
        changes = []
        for service, version in wanted.items():
            if not version:
                continue
            if service not in configured:
                raise UsageError(f"the compose files define no {service} service")
            old = configured[service]
            new = retag(old, version)
            if new == old:
                continue
            var = IMAGE_VARS[service]
            changes.append(Change(service, var, old, new, values.get(var) if var in values else None))
        return changes

    def check_compose_uses(self, changes: list[Change]) -> None:
        """The compose files take each image from .env's variable (a hard-coded image would make
        the pin in .env change nothing): compose asked with the new value in its environment,
        nothing written."""
        stack = self.gateway.stack
        for change in changes:
            done = subprocess.run(stack.compose_args("config", "--images", change.service),
                                  capture_output=True, text=True, timeout=60, check=False,
                                  stdin=subprocess.DEVNULL,
                                  env={**stack.child_env(), change.var: change.new})
            if done.returncode != 0 or change.new not in done.stdout.split():
                raise UsageError(f"the compose files do not take {change.service}'s image from "
                                 f"{change.var} in .env, so pinning it there would change nothing; "
                                 "nothing was changed")

    # -- the upgrade -------------------------------------------------------

    def run(self, wanted: Mapping[str, str | None], *, dry_run: bool = False) -> UpgradeResult:
        started = time.monotonic()
        self.gateway.compose_only("stack.upgrade")
        self.gateway.require_docker()
        notes = [] if dry_run else self.recover()
        changes = self.plan(wanted)
        if not changes:
            return UpgradeResult([], dry_run=dry_run, notes=[
                *notes, "already runs " + ", ".join(f"{s}: {self.configured_images()[s]}"
                                                    for s, v in wanted.items() if v)
                + "; nothing to do"])
        self.check_compose_uses(changes)
        if dry_run:
            pending = Journal.read(self.env_file)
            notes = ([f"an interrupted upgrade to {', '.join(c.new for c in pending.changes)} is "
                      "pending: the real run finishes or rolls it back first"] if pending else [])
            return UpgradeResult(changes, dry_run=True, notes=notes + self.dry_run_notes(changes))
        models, made = self._before(changes)
        journal = Journal(changes, str(made.path), self.fingerprint(), models, stamp())
        journal.write(self.env_file)
        state = "the old image still pinned in .env"
        try:
            self._pin({c.var: c.new for c in changes})
            state = ".env pins the new image; the new LiteLLM may be starting beside the old one"
            for change in changes:
                self.progress(f"{change.service}: {change.old} -> {change.new}")
                if change.service == LITELLM:
                    self._switch_litellm()
                else:
                    self._switch_openwebui()
            state = ".env pins the new image and it runs, not yet proven"
            self.progress("proving the upgraded stack")
            proven = self.prove(models)
        except GatewayError as exc:
            self.rollback(journal, exc)  # raises
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted during the upgrade to {', '.join(c.new for c in changes)} ({state}; "
                f"backup: {made.path}); run the same `invoke stack.upgrade` again: it finishes "
                "the upgrade or rolls it back first") from None
        Journal.clear(self.env_file)
        return UpgradeResult(changes, backup=str(made.path), proven=proven, notes=notes,
                             seconds=time.monotonic() - started)

    def _before(self, changes: list[Change]) -> tuple[list[str], backup_mod.BackupResult]:
        """Nothing changed yet: the new images are there, the stack as it is works (LiteLLM's
        served models, proven), and a backup of it is made and verified. Returns (the models,
        the backup)."""
        for change in changes:
            self.require_image(change.new)
        self.progress("checking the stack as it is")
        with self.gateway.litellm(wait=self.timeout) as client:
            models = client.served_models()
        try:
            self.prove(models)
        except GatewayError as exc:
            raise exc.extend("the stack must be up and working before an upgrade; nothing "
                             "was changed") from None
        self.progress("backing up first (stack.backup)")
        made = self.gateway.backup(to=self.to)
        backup_mod.verify(made.path)
        return models, made

    def dry_run_notes(self, changes: list[Change]) -> list[str]:
        folder = Path(self.to).expanduser() if self.to else self.env_file.parent / "backups"
        lines = [f"would back up the stack into {folder} (stack.backup) and check it"]
        for c in changes:
            lines.append(f"would pin {c.var}={c.new} in {self.env_file} (now {c.old})")
            if c.service == LITELLM:
                lines.append("would start LiteLLM " + c.new + " beside the running one (it applies "
                             "its database migrations as it starts) and retire the old one once "
                             "it is ready")
            else:
                lines.append(f"would recreate {c.service} with {c.new}")
        lines.append("would prove it (readiness, the models, .env's virtual key, Open WebUI) and "
                     "roll back to the old image and the backed-up database on any failure")
        return lines

    def rollback(self, journal: Journal, cause: GatewayError) -> None:
        """Back to the old images (and the backed-up database when it was migrated), proven.
        Raises UpgradeFailed (15) when that worked, IncompleteError (9) when it did not."""
        what = ", ".join(c.new for c in journal.changes)
        done: list[str] = []
        try:
            self._back(journal, done)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted while rolling back the failed upgrade to {what} (done: "
                f"{'; '.join(done) or 'nothing'}); run the same `invoke stack.upgrade` again: it "
                "finishes the rollback first") from None
        except GatewayError as exc:
            raise IncompleteError(
                f"the upgrade to {what} failed ({cause.message}) and so did its rollback "
                f"({exc.message}); done so far: {'; '.join(done) or 'nothing'}; run the same "
                f"`invoke stack.upgrade` again to finish the rollback, or `invoke stack.restore "
                f"{journal.backup} --yes`",
                [*cause.details, *exc.details]) from None
        raise UpgradeFailed(
            f"the upgrade to {what} failed and was rolled back: {cause.message}; now: "
            f"{'; '.join(done)}; the backup {journal.backup} is kept", cause.details)

    def _back(self, journal: Journal, done: list[str]) -> None:
        self.progress("rolling back")
        self.gateway.settle()
        self._pin({c.var: c.env_before for c in journal.changes})
        done.append(".env pins " + ", ".join(c.old for c in journal.changes) + " again")
        try:
            migrated = self.fingerprint() != journal.fingerprint
        except GatewayError:
            migrated = True
        if migrated:
            self.progress("the new LiteLLM changed the database: restoring the backed-up one")
            self.restore_database(Path(journal.backup))
            done.append(f"the database restored from {Path(journal.backup).name}")
        else:
            done.append("the database untouched (no migration had run)")
        for change in journal.changes:
            if self.running_images(change.service) != {change.old} or (
                    migrated and change.service == LITELLM):
                self.progress(f"{change.service}: back to {change.old}")
                if change.service == LITELLM:
                    self._switch_litellm()
                else:
                    self._switch_openwebui()
        done.append("proven: " + ", ".join(self.prove(journal.models)))
        Journal.clear(self.env_file)

    def recover(self) -> list[str]:
        """An upgrade a Ctrl-C left: finished when .env pins and the stack runs the new images
        and they prove; rolled back otherwise. Notes."""
        journal = Journal.read(self.env_file)
        if journal is None:
            return []
        self.gateway.settle()
        configured = self.configured_images()
        if all(configured.get(c.service) == c.new and self.running_images(c.service) == {c.new}
               for c in journal.changes):
            with contextlib.suppress(GatewayError):
                proven = self.prove(journal.models)
                Journal.clear(self.env_file)
                return ["finished an interrupted upgrade to "
                        + ", ".join(c.new for c in journal.changes) + ": " + ", ".join(proven)]
        done: list[str] = []
        try:
            self._back(journal, done)
        except GatewayError as exc:
            raise IncompleteError(f"an interrupted upgrade could not be rolled back ({exc.message}); "
                                  f"done: {'; '.join(done) or 'nothing'}; run `invoke stack.restore "
                                  f"{journal.backup} --yes`", exc.details) from None
        return ["rolled back an interrupted upgrade: " + "; ".join(done)]
