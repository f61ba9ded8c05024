"""stack.*: run the Docker Compose stack. Thin: the work is in gateway.stack and containers.compose."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from invoke.tasks import task

from .base.errors import EnvFileError, StackError, UsageError
from .cli import (
    confirm,
    count_flag,
    emit,
    emit_json,
    guarded,
    is_terminal,
    plain,
    progress,
    seconds_flag,
    service_change,
    settings_from,
)
from .cli import (
    note as stderr_note,
)
from .containers.compose import LITELLM, OPENWEBUI, SERVICES
from .gateway import envsetup
from .virtualkeys.dotenvfiles import states

ENV_FILE = "The .env to use (default: .env beside docker-compose.yml)"
ENGINE = "What runs the stack: compose or swarm (default: gateway.engine, compose)"
TIMEOUT = "Seconds to wait for every service to be healthy (default: gateway.start_timeout, 300)"


@contextmanager
def _gateway(c: Any, env_file: str | None, engine: str | None = None) -> Iterator[Any]:
    """The Gateway for one task (a failing service's state and log lines go to stderr before
    the one-line error: `guarded` prints a StackError's details)."""
    # imported here: the gateway brings httpx, which `invoke --list` and env.* never need
    from .gateway.stack import Gateway

    gateway = Gateway.load(plain(c.config), env_file=env_file, engine=engine, progress=progress,
                           service_change=service_change)
    stderr_note(gateway.settings.url_note)
    try:
        yield gateway
    finally:
        gateway.close()


def _report(outcome: Any, as_json: bool, done: str) -> None:
    if as_json:
        emit_json({
            "changed": outcome.changed,
            "services": {n: {"state": s.describe(), "ports": s.ports}
                         for n, s in outcome.services.items()},
            "urls": outcome.urls,
            "virtual_key": outcome.masked,
            "key_status": outcome.key_status,
            "openwebui_key": outcome.openwebui_key,
            "notes": outcome.notes,
        })
        return
    for note in outcome.notes:
        emit(note)
    emit(done if outcome.changed else "already up; nothing to do")
    for name, url in outcome.urls.items():
        emit(f"  {name + ':':<18} {url}")
    if outcome.key:
        emit(f"  {'virtual key:':<18} {outcome.masked}"
             + (f" ({outcome.key_status})" if outcome.key_status else ""))


def _offer_init(c: Any, env_file: str | None, as_json: bool = False) -> None:
    """No .env: offer env.init at a terminal; elsewhere say what to run. With ``as_json`` what
    it did goes to stderr: stdout holds the task's JSON alone."""
    settings = settings_from(c, env_file=env_file, reads_only=True)  # Gateway.load checks
    if settings.env_file.exists() or settings.env_file.is_symlink():
        return
    if not is_terminal(sys.stdin):
        raise EnvFileError(f"{settings.env_file} not found; run `invoke env.init` first "
                           "(or `invoke env.init stack.start`)")
    confirm(f"{settings.env_file} does not exist. Create it now with generated secrets?",
            yes=False, what="stack.start")
    result = envsetup.init(settings)
    emit(f"wrote {result.path} (0600) with new secrets: {', '.join(result.generated)}",
         as_json=as_json)


@task(help={
    "env-file": ENV_FILE,
    "timeout": TIMEOUT,
    "engine": ENGINE,
    "create-key": "On the first run, create the virtual key before Open WebUI starts (default); "
                  "--no-create-key starts up to LiteLLM and leaves Open WebUI stopped",
    "json": "Print the result as JSON for scripts",
})
@guarded
def start(c: Any, env_file: str | None = None, timeout: str | None = None, create_key: bool = True,
          json: bool = False, engine: str | None = None) -> None:
    """Start the stack and wait until it is healthy (first run: create the virtual key)."""
    deadline = seconds_flag(timeout, "--timeout", allow_zero=False)
    _offer_init(c, env_file, json)
    with _gateway(c, env_file, engine) as gateway:
        outcome = gateway.start(create_key=create_key, timeout=deadline)
    _report(outcome, json, "the stack is up")


@task(help={
    "env-file": ENV_FILE,
    "volumes": "Also delete the volumes: the database with every key, and Open WebUI's data",
    "yes": "Do not ask before deleting volumes; required when stdin is not a terminal",
    "engine": ENGINE,
})
@guarded
def stop(c: Any, env_file: str | None = None, volumes: bool = False, yes: bool = False,
         engine: str | None = None) -> None:
    """Stop and remove the stack's containers; volumes (and a swarm stack's secrets) are kept
    unless --volumes."""
    with _gateway(c, env_file, engine) as gateway:
        if volumes:
            confirm("Delete the stack's volumes (every key, user and chat)?", yes=yes,
                    what="stack.stop --volumes")
        outcome = gateway.stop(volumes=volumes)
    for note in outcome.notes:
        emit(note)


@task(help={
    "env-file": ENV_FILE,
    "timeout": TIMEOUT,
    "service": "Restart only this service (postgres, litellm or open-webui)",
    "json": "Print the result as JSON for scripts",
    "engine": ENGINE,
})
@guarded
def restart(c: Any, env_file: str | None = None, service: str | None = None,
            timeout: str | None = None, json: bool = False, engine: str | None = None) -> None:
    """Recreate the services so they run with the current .env, then wait until healthy."""
    deadline = seconds_flag(timeout, "--timeout", allow_zero=False)
    with _gateway(c, env_file, engine) as gateway:
        outcome = gateway.restart(service=service, timeout=deadline)
    outcome.changed = True
    _report(outcome, json, f"restarted {service or 'the stack'}")


@task(help={"env-file": ENV_FILE, "json": "Print the status as JSON for scripts", "engine": ENGINE})
@guarded
def status(c: Any, env_file: str | None = None, json: bool = False, engine: str | None = None) -> None:
    """Each service's state, health and ports, and the virtual key's status in LiteLLM."""
    with _gateway(c, env_file, engine) as gateway:
        outcome = gateway.status()
        files = states(gateway.settings, gateway.values)
        try:  # litellm-lb when the compose files define it
            shown = gateway.present(SERVICES)
        except StackError:  # compose cannot read them; the states above still say what runs
            shown = list(SERVICES)
    if json:
        emit_json({
            "project": gateway.settings.project_name,
            "services": {name: {"state": st.describe(), "status": st.status, "health": st.health,
                                "ports": st.ports} for name, st in outcome.services.items()},
            "virtual_key": outcome.masked,
            "key_status": outcome.key_status,
            "openwebui_key": outcome.openwebui_key,
            "hand_over": [asdict(f) for f in files],
            "notes": outcome.notes,
        })
        return
    emit(f"project {gateway.settings.project_name}")
    for name in SERVICES:
        st = outcome.services.get(name)
        if name not in shown:
            continue  # compose files without HAProxy in front of LiteLLM
        emit(f"  {name:<11} {st.describe() if st else 'not created':<24} "
             f"{', '.join(st.ports) if st else ''}".rstrip())
    emit(f"  {'virtual key':<11} {outcome.masked or '(none)'} ({outcome.key_status})")
    if outcome.openwebui_key:
        emit(f"  {'open-webui':<11} key {outcome.openwebui_key}")
    for file in files:
        emit(f"  {'hand-over':<11} {file.line()}")
    for note in outcome.notes:
        emit(note)


@task(
    iterable=["service"],
    help={
        "env-file": ENV_FILE,
        "follow": "Keep printing new lines until Ctrl-C",
        "tail": "Lines from the end of each log (default: all)",
        "service": "Only this service; repeat for several",
        "engine": ENGINE,
    },
)
@guarded
def logs(c: Any, env_file: str | None = None, follow: bool = False, tail: str | None = None,
         service: list[str] | None = None, engine: str | None = None) -> None:
    """The services' logs, with every secret from .env masked."""
    lines = count_flag(tail, "--tail")
    for name in service or []:
        if name not in SERVICES:
            raise UsageError(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    with _gateway(c, env_file, engine) as gateway:
        stack = gateway.stack
        gateway.require_docker()  # the same checks, and exit codes, as every stack task
        commands = gateway.logs_commands(service or [], follow=follow, tail=lines)
    for command in commands:
        if not _print_log(command, stack):
            return  # Ctrl-C is how --follow ends


def _print_log(command: list[str], stack: Any) -> bool:
    """Run one logs command, its lines masked; False when Ctrl-C ended it."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=stack.child_env(), stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(stack.scrub(line))
            sys.stdout.flush()
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(10)
        return False
    if code != 0:
        raise StackError(f"`{' '.join(command[1:3])}` exited {code}")
    return True


@task(help={
    "env-file": ENV_FILE,
    "to": "Folder for the backups (default: backups/ beside .env); made 0700",
    "keep": "Then delete all but the newest N complete backups of this project there",
    "json": "Print the result as JSON for scripts (an object with path)",
})
@guarded
def backup(c: Any, env_file: str | None = None, to: str | None = None, keep: str | None = None,
           json: bool = False) -> None:
    """Back the stack up: LiteLLM's database, Open WebUI's data, litellm-config.yaml, .env."""
    count = count_flag(keep, "--keep")
    if count is not None and count < 1:
        raise UsageError("--keep must be 1 or more (it counts the backups to keep)")
    with _gateway(c, env_file) as gateway:
        result = gateway.backup(to=to, keep=count)
    if json:
        emit_json({"path": str(result.path), "created": result.manifest.created,
                   "size": result.size, "seconds": round(result.seconds, 2),
                   "parts": {n: {"size": p.size, "sha256": p.sha256}
                             for n, p in result.manifest.parts.items()},
                   "images": result.manifest.images, "pruned": [str(p) for p in result.pruned]})
        return
    emit(f"backed up to {result.path} ({result.size / 1e6:.1f} MB, {result.seconds:.1f}s)")
    for path in result.pruned:
        emit(f"deleted the older backup {path.name} (--keep {count})")


@task(help={
    "env-file": ENV_FILE,
    "yes": "Do not ask before replacing the stack's data; required when stdin is not a terminal",
    "force": "Restore even a backup made by another installation (another LITELLM_SALT_KEY)",
    "timeout": TIMEOUT,
    "json": "Print the result as JSON for scripts",
})
@guarded
def restore(c: Any, backup: str, env_file: str | None = None, yes: bool = False,
            force: bool = False, timeout: str | None = None, json: bool = False) -> None:
    """Restore a backup made by stack.backup (every checksum checked first), then prove it."""
    if not backup.strip():
        raise UsageError("stack.restore needs the backup folder, e.g. `invoke stack.restore backups/NAME`")
    deadline = seconds_flag(timeout, "--timeout", allow_zero=False)
    folder = Path(backup).expanduser()
    with _gateway(c, env_file) as gateway:
        manifest, notes = gateway.restore_check(folder, force=force)
        confirm(f"Replace the data of stack {gateway.settings.project_name!r} (every key, user "
                f"and chat) with the backup of {manifest.created}?", yes=yes,
                what="stack.restore")
        notes += gateway.restore_stop(folder)
    # .env may have changed: a new Gateway reads the restored one
    with _gateway(c, env_file) as gateway:
        outcome = gateway.restore_data(folder, timeout=deadline)
    outcome.notes = notes + outcome.notes
    outcome.changed = True
    _report(outcome, json, f"restored {folder.name} (made {manifest.created}); the stack is up "
            "and Open WebUI reaches LiteLLM with .env's virtual key")


@task(help={
    "env-file": ENV_FILE,
    "litellm": "The LiteLLM version to run (e.g. 1.108.14: the tag on the current image's "
               "repository) or a whole image reference",
    "openwebui": "The Open WebUI version (e.g. 0.12.5) or a whole image reference",
    "dry-run": "Only say what would change; touch nothing",
    "to": "Folder for the backup taken first (default: backups/ beside .env)",
    "timeout": "Seconds to wait for the new LiteLLM to be ready (default: gateway.start_timeout)",
    "json": "Print the result as JSON for scripts",
})
@guarded
def upgrade(c: Any, litellm: str | None = None, openwebui: str | None = None,
            dry_run: bool = False, to: str | None = None, env_file: str | None = None,
            timeout: str | None = None, json: bool = False) -> None:
    """Upgrade LiteLLM (and/or Open WebUI): backup first, pin in .env, switch, prove, or roll back."""
    from .gateway.upgrade import Upgrade  # the gateway, with httpx: as _gateway

    if not (litellm or "").strip() and not (openwebui or "").strip():
        raise UsageError("say what to upgrade: --litellm VERSION and/or --openwebui VERSION")
    deadline = seconds_flag(timeout, "--timeout", allow_zero=False)
    with _gateway(c, env_file) as gateway:
        run = Upgrade(gateway, timeout=deadline or gateway.settings.start_timeout, to=to,
                      progress=progress)
        result = run.run({LITELLM: litellm, OPENWEBUI: openwebui}, dry_run=dry_run)
    if json:
        emit_json(result.public())
        return
    for note in result.notes:
        emit(note)
    if result.dry_run or not result.changes:
        return
    for change in result.changes:
        emit(f"upgraded {change.service}: {change.old} -> {change.new} (pinned in {change.var})")
    for line in result.proven:
        emit(f"  proven: {line}")
    emit(f"  backup taken first: {result.backup}")
    emit(f"  took {result.seconds:.1f}s")
