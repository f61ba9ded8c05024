"""env.*: the stack's .env - init, check, lock-permissions. Thin: the work is in envops."""

from __future__ import annotations

from typing import Any

from invoke.tasks import task

from . import envops
from ._cli import emit, emit_json, guarded, settings_from
from .errors import EnvFileError

ENV_FILE = "The .env to use (default: .env beside docker-compose.yml)"


@task(help={"force": "Replace an existing .env, keeping a 0600 backup of it", "env-file": ENV_FILE})
@guarded
def init(c: Any, force: bool = False, env_file: str | None = None) -> None:
    """Write .env from .env.example with strong generated secrets and FIRST_RUN=yes."""
    settings = settings_from(c, env_file=env_file)
    result = envops.init(settings, force=force)
    if result.backup:
        emit(f"backed up the old file to {result.backup} (0600)")
    emit(f"wrote {result.path} (0600) with new secrets: {', '.join(result.generated)}")
    emit("next: `invoke stack.start` (it creates the virtual key on this first run)")


@task(help={"env-file": ENV_FILE, "json": "Print the findings as JSON for scripts"})
@guarded
def check(c: Any, env_file: str | None = None, json: bool = False) -> None:
    """Validate .env for stack.start: required values, master key, gate, mode 0600, git."""
    settings = settings_from(c, env_file=env_file)
    findings = envops.check(settings)
    report = envops.summary(findings)
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
    result = envops.lock_permissions(settings)
    if result.changed:
        emit(f"{result.path}: was {result.before}, now {result.after}")
    else:
        emit(f"{result.path}: already {result.after}; nothing to do")
