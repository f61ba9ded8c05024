"""env.*: the stack's .env - init, check, lock-permissions. Thin: the work is in gateway.envsetup."""

from __future__ import annotations

from typing import Any

from invoke.tasks import task

from .base.errors import EnvFileError
from .cli import emit, emit_json, guarded, note, plain, settings_from
from .gateway import envsetup

ENV_FILE = "The .env to use (default: .env beside docker-compose.yml)"


@task(help={"force": "Replace an existing .env, keeping a 0600 backup of it", "env-file": ENV_FILE})
@guarded
def init(c: Any, force: bool = False, env_file: str | None = None) -> None:
    """Write .env from .env.example with strong generated secrets and FIRST_RUN=yes."""
    settings = settings_from(c, env_file=env_file)
    if force:
        # the stack the old .env ran (its COMPOSE_PROJECT_NAME) is the one whose volumes count
        settings = envsetup.with_env_values(settings, plain(c.config))
    result = envsetup.init(settings, force=force)
    if result.backup:
        emit(f"backed up the old file to {result.backup} (0600)")
    emit(f"wrote {result.path} (0600) with new secrets: {', '.join(result.generated)}")
    if result.kept:
        emit(f"kept from the old file: {', '.join(result.kept)}")
    if result.note:
        note(result.note)
    if result.kept:
        emit("next: `invoke stack.start`, or `invoke stack.restart` to apply it to a running stack")
    else:
        emit("next: `invoke stack.start` (it creates the virtual key on this first run)")


@task(help={"env-file": ENV_FILE, "json": "Print the findings as JSON for scripts"})
@guarded
def check(c: Any, env_file: str | None = None, json: bool = False) -> None:
    """Validate .env for stack.start: required values, master key, gate, mode 0600, git; on a
    running stack, that its database password and Open WebUI admin still work."""
    settings = settings_from(c, env_file=env_file, reads_only=True)
    findings = envsetup.check(settings)
    if not any(f.check == "parse" and f.level == "error" for f in findings):
        # on a running stack: do the passwords .env holds still open what the volumes keep?
        # (imported here: it brings httpx and the docker SDK, which the rest of env.* never needs)
        from .gateway.stack import stack_findings

        findings += stack_findings(envsetup.with_env_values(settings, plain(c.config)))
    report = envsetup.summary(findings)
    if json:
        emit_json({"env_file": str(settings.env_file), **report})
    else:
        for f in findings:
            emit(f"{f.level:<5}  {f.check:<11}  {f.message}")
        emit(f"{report['errors']} error(s), {report['warnings']} warning(s)")
    if not report["ok"]:
        raise EnvFileError(f"{settings.env_file} has {report['errors']} problem(s); see above")


@task(name="lock-permissions", help={"env-file": ENV_FILE})
@guarded
def lock_permissions(c: Any, env_file: str | None = None) -> None:
    """Make .env readable by you alone (POSIX: mode 0600; Windows: an ACL for you only)."""
    settings = settings_from(c, env_file=env_file)
    result = envsetup.lock_permissions(settings)
    if result.changed:
        emit(f"{result.path}: was {result.before}, now {result.after}")
    else:
        emit(f"{result.path}: already {result.after}; nothing to do")
