"""stack.backup and stack.restore: the stack's data - LiteLLM's database (``pg_dump``), Open
WebUI's volume (SQLite's online backup), LiteLLM's config and .env - as one owner-only folder
with a manifest of sizes and checksums, written as ``.partial`` and renamed when complete;
restore checks every part before it changes anything.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..base.errors import BackupError, EnvFileError, StackError
from ..containers.compose import LITELLM, OPENWEBUI, POSTGRES, Stack
from ..envstore import envfile, perms
from ..envstore.journal import JournalFile

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE, WEBUI_DATA, CONFIG, ENV = "litellm.dump", "open-webui.tar", "litellm-config.yaml", "env"
PARTS = (DATABASE, WEBUI_DATA, CONFIG, ENV)
PARTIAL = ".partial"
#: Where Open WebUI keeps its data inside its container (DATA_DIR; docker-compose.yml's volume).
WEBUI_DATA_DIR = "/app/backend/data"
#: Where docker-compose.yml mounts LiteLLM's config inside its container.
CONFIG_IN_CONTAINER = "/app/config.yaml"
CHUNK = 1 << 20

Progress = Callable[[str], None]

#: Run inside an Open WebUI container: its data folder as an uncompressed tar on stdout. SQLite
#: databases (found by their header) are copied with the online backup API, which gives a
#: consistent snapshot while Open WebUI writes; -wal/-shm/-journal files are left out.
_WEBUI_DUMP = r"""
import os, sqlite3, sys, tarfile, tempfile
root = sys.argv[1]
out = tarfile.open(fileobj=sys.stdout.buffer, mode="w|")
scratch = tempfile.mkdtemp()
def is_sqlite(path):
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    rel = os.path.relpath(dirpath, root)
    if rel != ".":
        out.add(dirpath, arcname=rel, recursive=False)
    for name in sorted(filenames):
        path = os.path.join(dirpath, name)
        arc = os.path.normpath(os.path.join(rel, name))
        if name.endswith(("-wal", "-shm", "-journal")) or not os.path.isfile(path):
            continue
        if is_sqlite(path):
            copy = os.path.join(scratch, "copy.db")
            src, dst = sqlite3.connect(path), sqlite3.connect(copy)
            with dst:
                src.backup(dst)
            src.close(); dst.close()
            info = out.gettarinfo(copy, arcname=arc)
            st = os.stat(path)
            info.mode, info.uid, info.gid, info.mtime = st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mtime
            with open(copy, "rb") as f:
                out.addfile(info, f)
            os.unlink(copy)
        else:
            out.add(path, arcname=arc)
out.close()
sys.stdout.buffer.flush()
"""

#: Run inside an Open WebUI container with the service stopped: replace its data folder's
#: content with the tar on stdin (members outside the folder are refused).
_WEBUI_LOAD = r"""
import os, shutil, sys, tarfile
root = sys.argv[1]
for name in os.listdir(root):
    path = os.path.join(root, name)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
    if hasattr(tarfile, "data_filter"):
        archive.extractall(root, filter="fully_trusted" if os.getuid() == 0 else "data")
    else:
        archive.extractall(root)
"""


@dataclass(frozen=True)
class Part:
    size: int
    sha256: str


@dataclass
class Manifest:
    """What manifest.json says: ``created`` is ISO 8601 UTC; ``parts`` maps a part's file name to
    its size (bytes) and sha256; ``images`` each service's image."""

    created: str
    project: str
    images: dict[str, str]
    parts: dict[str, Part]
    format: int = FORMAT

    def to_json(self) -> bytes:
        data = {"format": self.format, "created": self.created, "project": self.project,
                "images": self.images,
                "parts": {n: {"size": p.size, "sha256": p.sha256} for n, p in self.parts.items()}}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest in ``folder``; BackupError when it is missing or not one of ours."""
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_bytes())
            parts = {str(n): Part(int(p["size"]), str(p["sha256"])) for n, p in data["parts"].items()}
            manifest = cls(created=str(data["created"]), project=str(data["project"]),
                           images={str(k): str(v) for k, v in dict(data.get("images") or {}).items()},
                           parts=parts, format=int(data["format"]))
        except FileNotFoundError:
            raise BackupError(f"{folder} is not a backup: it has no {MANIFEST}") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"{path} cannot be read as a backup manifest "
                              f"({type(exc).__name__}); the backup is damaged") from None
        if manifest.format != FORMAT:
            raise BackupError(f"{path}: backup format {manifest.format} is not one this version "
                              f"reads ({FORMAT})")
        missing = [p for p in PARTS if p not in manifest.parts]
        if missing:
            raise BackupError(f"{path} lists no {', '.join(missing)}; the backup is incomplete")
        return manifest


@dataclass
class BackupResult:
    path: Path
    manifest: Manifest
    pruned: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def size(self) -> int:
        return sum(p.size for p in self.manifest.parts.values())


# --------------------------------------------------------------------------- files


def make_private_dir(path: Path) -> None:
    """``path`` made (parents too) and owner-only: 0700, or an owner-only access list on
    Windows. An existing folder others can open is refused: its files could be read there."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform == "win32":  # pragma: no cover - exercised by the Windows run
        perms.lock_down(path)
    elif os.stat(path).st_mode & 0o077:
        raise BackupError(f"{path} can be opened by other users (mode "
                          f"{perms.describe_mode(perms.mode_of(path))}); "
                          f"run `chmod 700 {path}` or choose another --to folder")


def _create_private(folder: Path, name: str) -> IO[bytes]:
    """A new file ``folder/name``, owner-only before its first byte, open for writing."""
    fd, tmp = perms.create_private(folder, f".{name}.", ".tmp")
    handle = os.fdopen(fd, "wb")
    try:
        os.replace(tmp, folder / name)
    except BaseException:
        handle.close()
        raise
    return handle


def _write_part(folder: Path, name: str, fill: Callable[[IO[bytes]], Part | None]) -> Part:
    """A new owner-only file ``folder/name`` filled by ``fill`` (which returns its size and
    sha256), synced to disk."""
    with _create_private(folder, name) as sink:
        part = fill(sink)
        sink.flush()
        os.fsync(sink.fileno())
    assert part is not None
    return part


def _hashing_copy(source: IO[bytes], sink: IO[bytes]) -> Part:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        sink.write(chunk)
        size += len(chunk)
    return Part(size, digest.hexdigest())


def part_of(path: Path) -> Part:
    with path.open("rb") as handle:
        digest, size = hashlib.sha256(), 0
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Part(size, digest.hexdigest())


# --------------------------------------------------------------------------- docker


class Docker:
    """The few container operations backup and restore need, through the docker CLI (whose
    pipes stream the parts; no part is held in memory whole)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._live: set[subprocess.Popen[bytes]] = set()

    def kill_all(self) -> None:
        """Kill every program still streaming (another thread's too): on a failure or Ctrl-C."""
        for process in list(self._live):
            with contextlib.suppress(OSError):
                process.kill()

    def _env(self, secrets: Mapping[str, str]) -> dict[str, str]:
        return {**self.stack.child_env(), **secrets}

    def container(self, service: str, *, running: bool = True) -> Any | None:
        container = self.stack.container_of(service)
        if container is None or (running and container.status != "running"):
            return None
        return container

    def stream(self, argv: list[str], *, secrets: Mapping[str, str], stdin: IO[bytes] | None,
               stdout: IO[bytes] | None, what: str) -> Part | None:
        """Run ``argv``; its stdout copied into ``stdout`` (hashed), or ``stdin`` fed to it.
        ``secrets`` travel in the environment only. StackError with the last lines of its
        stderr (secrets masked) when it fails."""
        process = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE if stdout is not None else subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=self._env(secrets))
        self._live.add(process)
        part = None
        try:
            if stdout is not None:
                assert process.stdout is not None
                part = _hashing_copy(process.stdout, stdout)
            assert process.stderr is not None
            errors = process.stderr.read().decode("utf-8", "replace")
            code = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            self._live.discard(process)
        if code != 0:
            lines = [self.stack.scrub(ln) for ln in errors.splitlines() if ln.strip()]
            raise StackError(f"{what} failed: {lines[-1] if lines else f'exit code {code}'}",
                             lines[-20:])
        return part

    def exec_argv(self, container: Any, argv: list[str], env_names: Iterable[str] = ()) -> list[str]:
        names = [a for name in env_names for a in ("-e", name)]
        return [self.stack.docker, "exec", "-i", *names, container.id, *argv]

    def run_argv(self, service: str, argv: list[str]) -> list[str]:
        """A one-off container of ``service`` (its image and volumes), the entrypoint
        ``argv[0]``: for a volume whose service is stopped."""
        return self.stack.compose_args("run", "--rm", "--no-deps", "-T", "--entrypoint", argv[0],
                                       service, *argv[1:])


def pg_secrets(values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The libpq environment for the stack's database (PGPASSWORD, PGUSER, PGDATABASE) and the
    connection arguments (over TCP to the container itself, as LiteLLM connects)."""
    env = {"PGPASSWORD": values.get("POSTGRES_PASSWORD", ""),
           "PGUSER": values.get("POSTGRES_USER") or "litellm",
           "PGDATABASE": values.get("POSTGRES_DB") or "litellm",
           "PGCONNECT_TIMEOUT": "10"}
    return env, ["-h", "127.0.0.1", "-w"]


def config_path(stack: Stack, default: Path) -> Path:
    """The litellm-config.yaml the LiteLLM container mounts (its bind mount's source); with no
    LiteLLM container, the one the compose files would mount (a test or override file, not the
    project's own); else ``default``. StackError (11) when compose cannot read its files."""
    container = stack.container_of(LITELLM)
    if container is not None:
        for mount in container.attrs.get("Mounts") or []:
            if mount.get("Destination") == CONFIG_IN_CONTAINER and mount.get("Source"):
                return Path(mount["Source"])
    return stack.bind_source(LITELLM, CONFIG_IN_CONTAINER) or default


def _images(stack: Stack) -> dict[str, str]:
    images = {}
    for service in (POSTGRES, LITELLM, OPENWEBUI):
        container = stack.container_of(service)
        if container is not None:
            images[service] = str((container.attrs.get("Config") or {}).get("Image") or "")
    return images


# --------------------------------------------------------------------------- backup


def backup_name(project: str, when: datetime) -> str:
    return f"{project}-{when.strftime('%Y%m%dT%H%M%SZ')}"


def complete_backups(folder: Path, project: str) -> list[Path]:
    """This project's complete backups in ``folder`` (those with a manifest), oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{project}-*")
             if p.is_dir() and not p.name.endswith(PARTIAL) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(folder: Path, project: str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete backups of ``project``; the deleted paths."""
    backups = complete_backups(folder, project)
    doomed = backups[:-keep] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def backup(stack: Stack, *, env_file: Path, default_config: Path, to: Path,
           keep: int | None = None, progress: Progress = lambda _m: None,
           now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> BackupResult:
    """Back the running stack up into a new folder under ``to``.

    Needs PostgreSQL running (the dump is taken through it); Open WebUI's volume is read from
    its running container, or from a one-off container of its image when it is stopped.
    Raises StackError (postgres not running, a dump failing), BackupError (``to`` not private),
    EnvFileError (.env unreadable)."""
    started = time.monotonic()
    docker = Docker(stack)
    values = envfile.load(env_file).values
    postgres = docker.container(POSTGRES)
    if postgres is None:
        raise StackError("PostgreSQL is not running, so its database cannot be dumped; start "
                         "the stack first (`invoke stack.start`)")
    make_private_dir(to)
    project = stack.settings.project_name
    with envfile.file_lock(to / f".{project}.backup.lock", timeout=2,
                           what=f"the backups of {project} in {to} (another stack.backup?)"):
        for leftover in to.glob(f"{project}-*{PARTIAL}"):  # of a backup that was interrupted
            shutil.rmtree(leftover, ignore_errors=True)
        final, manifest = _write_backup(docker, postgres, values, to=to, env_file=env_file,
                                        default_config=default_config, when=now(),
                                        progress=progress)
        pruned = prune(to, project, keep) if keep is not None else []
    return BackupResult(final, manifest, pruned, time.monotonic() - started)


def _write_backup(docker: Docker, postgres: Any, values: Mapping[str, str], *, to: Path,
                  env_file: Path, default_config: Path, when: datetime,
                  progress: Progress) -> tuple[Path, Manifest]:
    """The parts and the manifest into ``<name>.partial``, synced, then renamed to ``<name>``."""
    stack = docker.stack
    name = backup_name(stack.settings.project_name, when)
    final = to / name
    if final.exists():
        raise BackupError(f"{final} exists already; wait a second and run the backup again")
    work = to / (name + PARTIAL)
    make_private_dir(work)
    parts: dict[str, Part] = {}
    try:
        progress("dumping LiteLLM's database (pg_dump) and copying Open WebUI's data volume")
        secrets, conn = pg_secrets(values)
        dump = docker.exec_argv(postgres, ["pg_dump", "--format=custom", "--compress=6", *conn],
                                secrets)
        webui = docker.container(OPENWEBUI)
        program = ["python3", "-c", _WEBUI_DUMP, WEBUI_DATA_DIR]
        copy = docker.exec_argv(webui, program) if webui is not None else docker.run_argv(OPENWEBUI, program)
        # both at once: each streams from its own container into its own file
        with ThreadPoolExecutor(max_workers=1) as pool:
            database = pool.submit(_write_part, work, DATABASE, lambda sink: docker.stream(
                dump, secrets=secrets, stdin=None, stdout=sink, what="pg_dump in the postgres container"))
            try:
                parts[WEBUI_DATA] = _write_part(work, WEBUI_DATA, lambda sink: docker.stream(
                    copy, secrets={}, stdin=None, stdout=sink, what="copying Open WebUI's data"))
                parts[DATABASE] = database.result()
            except BaseException:
                docker.kill_all()
                raise
        progress("copying litellm-config.yaml and .env")
        for part_name, source in ((CONFIG, config_path(stack, default_config)), (ENV, env_file)):
            with source.open("rb") as src:
                parts[part_name] = _write_part(work, part_name, lambda sink: _hashing_copy(src, sink))
        manifest = Manifest(created=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            project=stack.settings.project_name, images=_images(stack), parts=parts)
        data = manifest.to_json()
        _write_part(work, MANIFEST, lambda sink: Part(sink.write(data), ""))
        envfile.fsync_path(work)
        os.replace(work, final)
        envfile.fsync_path(to)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
        raise
    return final, manifest


# --------------------------------------------------------------------------- restore


def verify(folder: Path) -> Manifest:
    """The backup's manifest, after every part was checked against it (size, then sha256).
    BackupError naming the first part that is missing, of another size or another checksum."""
    if not folder.is_dir():
        raise BackupError(f"{folder} is not a backup folder")
    manifest = Manifest.read(folder)
    for name in PARTS:
        expected = manifest.parts[name]
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BackupError(f"{path} is missing; the backup is incomplete, nothing was "
                              "changed") from None
        if size != expected.size or part_of(path).sha256 != expected.sha256:
            raise BackupError(f"{path} does not match its checksum in {MANIFEST}: the backup is "
                              "corrupted; nothing was changed")
    return manifest


def backup_env(folder: Path) -> envfile.EnvDoc:
    return envfile.parse_bytes((folder / ENV).read_bytes(), folder / ENV)


def salt_conflict(backup_values: Mapping[str, str], current_values: Mapping[str, str] | None,
                  volumes_exist: bool) -> bool:
    """True when live volumes were made with another LITELLM_SALT_KEY than the backup's."""
    if not volumes_exist or current_values is None:
        return False
    current = current_values.get("LITELLM_SALT_KEY", "")
    return bool(current) and current != backup_values.get("LITELLM_SALT_KEY", "")


@dataclass
class RestoreJournal:
    """``<.env>.restore-journal.json``: which backup is being restored and the last step done,
    so an interrupted restore is named by the next one (and re-running it finishes)."""

    file: JournalFile

    def write(self, backup: Path, step: str) -> None:
        self.file.save({"backup": str(backup), "step": step})

    def read(self) -> dict[str, str] | None:
        """The backup and step; ``?`` for what cannot be read: the restore that follows
        replaces the journal, so a damaged one only loses the name of the interrupted step."""
        try:
            data = self.file.load()
        except EnvFileError:
            return {"backup": "?", "step": "?"}
        if data is None:
            return None
        try:
            return {"backup": str(data["backup"]), "step": str(data["step"])}
        except (KeyError, TypeError):
            return {"backup": "?", "step": "?"}

    def clear(self) -> None:
        self.file.drop()


def journal_for(env_file: Path) -> RestoreJournal:
    return RestoreJournal(JournalFile(env_file, "restore", "the restore journal",
                                      "delete it if no stack.restore is running"))


def restore_database(docker: Docker, folder: Path, values: Mapping[str, str]) -> None:
    """pg_restore the dump into the running postgres, in one transaction (all or nothing):
    ``--clean --if-exists`` drops what the dump holds first."""
    postgres = docker.container(POSTGRES)
    if postgres is None:
        raise StackError("PostgreSQL is not running; the database cannot be restored")
    secrets, conn = pg_secrets(values)
    with (folder / DATABASE).open("rb") as dump:
        docker.stream(docker.exec_argv(postgres, ["pg_restore", "--clean", "--if-exists",
                                                  "--single-transaction", "--no-owner",
                                                  "-d", secrets["PGDATABASE"], *conn], secrets),
                      secrets=secrets, stdin=dump, stdout=None,
                      what="pg_restore in the postgres container")


def restore_webui(docker: Docker, folder: Path) -> None:
    """Open WebUI's volume replaced by the backup's (Open WebUI must be stopped)."""
    with (folder / WEBUI_DATA).open("rb") as archive:
        docker.stream(docker.run_argv(OPENWEBUI, ["python3", "-c", _WEBUI_LOAD, WEBUI_DATA_DIR]),
                      secrets={}, stdin=archive, stdout=None, what="restoring Open WebUI's data")


def restore_files(folder: Path, *, env_file: Path, config: Path) -> list[str]:
    """.env and litellm-config.yaml from the backup, each written atomically and owner-only,
    the current one kept as ``<name>.before-restore.<UTC time>`` (``envfile.keep_copy``) when
    it differs. Notes."""
    notes = []
    for part_name, target in ((ENV, env_file), (CONFIG, config)):
        data = (folder / part_name).read_bytes()
        try:
            current = target.read_bytes()
        except FileNotFoundError:
            current = None
        if current == data:
            continue
        if current is not None:
            kept = envfile.keep_copy(target, current, "before-restore")
            notes.append(f"kept the previous {target.name} as {kept.name}")
        envfile.write_secure(target, data)
        notes.append(f"restored {target}")
    return notes
