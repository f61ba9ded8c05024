"""env.init / env.check / env.lock-permissions as plain functions (no Invoke, no printing)."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from . import envfile, perms
from .errors import EnvFileError
from .settings import GATE_VAR, TRUTHY, Settings

#: Secrets env.init generates when the template leaves them blank.
GENERATORS: dict[str, Callable[[], str]] = {
    "LITELLM_MASTER_KEY": lambda: "sk-" + secrets.token_urlsafe(32),
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "UI_PASSWORD": lambda: secrets.token_urlsafe(12),
    "WEBUI_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "WEBUI_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
}
REQUIRED = (
    "LITELLM_MASTER_KEY",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "UI_USERNAME",
    "UI_PASSWORD",
    "WEBUI_SECRET_KEY",
    "WEBUI_ADMIN_EMAIL",
    "WEBUI_ADMIN_PASSWORD",
)
PASSWORDS = ("POSTGRES_PASSWORD", "UI_PASSWORD", "WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY")
PORTS = ("LITELLM_PORT", "WEBUI_PORT")
PLACEHOLDERS = {
    "changeme", "change-me", "change_me", "changethis", "password", "secret", "todo", "xxx",
    "your-key-here", "your_key_here", "sk-1234", "sk-xxxx", "sk-...", "replace-me",
}
_PLACEHOLDER_RE = re.compile(r"(<[^>]*>|your[-_ ].*|sk-x+|x{3,}|\.\.\.)\Z", re.I)


# --------------------------------------------------------------------------- init


@dataclass
class InitResult:
    path: Path
    generated: list[str]
    backup: Path | None


def init(settings: Settings, *, force: bool = False) -> InitResult:
    """Write .env from .env.example with fresh secrets; refuse to replace one unless ``force``."""
    template = envfile.load(settings.example_file)
    changes: dict[str, str] = {}
    for name, make in GENERATORS.items():
        if not template.get(name):
            changes[name] = make()
    changes[GATE_VAR] = "yes"
    for spec in settings.keys.values():
        changes[spec.env_var] = ""
    data = template.render(changes)
    path = settings.env_file
    exists = path.exists() or path.is_symlink()
    backup = None
    with envfile.file_lock(envfile.lock_path_for(path), settings.lock_timeout):
        if exists and not force:
            raise EnvFileError(
                f"{path} already exists; env.init will not replace it "
                "(`invoke env.init --force` keeps a 0600 backup and writes a new one)"
            )
        if exists:
            try:
                old = envfile.resolve(path).read_bytes()
            except OSError as exc:
                raise EnvFileError(f"cannot back up {path}: {exc.strerror or exc}") from None
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            backup = path.with_name(f"{path.name}.backup.{stamp}")
            n = 1
            while backup.exists():
                n += 1
                backup = path.with_name(f"{path.name}.backup.{stamp}-{n}")
            envfile.write_secure(backup, old, exclusive=True)
            envfile.write_secure(path, data)
        else:
            envfile.write_secure(path, data, exclusive=True)
    return InitResult(path, sorted(k for k in changes if k in GENERATORS), backup)


# --------------------------------------------------------------------------- check


@dataclass
class Finding:
    level: str  # ok / warn / error
    check: str
    message: str


def _is_placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDERS or bool(_PLACEHOLDER_RE.match(value.strip()))


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str] | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        return subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def git_findings(path: Path) -> list[Finding]:
    folder = path.parent
    inside = _git(["rev-parse", "--is-inside-work-tree"], folder)
    if inside is None or inside.returncode != 0 or inside.stdout.strip() != "true":
        return [Finding("ok", "git", "not inside a git work tree")]
    findings = []
    tracked = _git(["ls-files", "--error-unmatch", "--", path.name], folder)
    if tracked is not None and tracked.returncode == 0:
        findings.append(Finding(
            "error", "git",
            f"git tracks {path.name}: run `git rm --cached {path.name}`, and rotate every secret "
            "in it if it was ever pushed",
        ))
    ignored = _git(["check-ignore", "-q", "--", path.name], folder)
    if ignored is not None and ignored.returncode == 0:
        findings.append(Finding("ok", "git", f"{path.name} is ignored by git"))
    elif not findings:
        findings.append(Finding("error", "git",
                                f"{path.name} is not ignored by git: add it to .gitignore"))
    return findings


def check(settings: Settings) -> list[Finding]:
    """Everything stack.start needs from .env; each finding ok, warn or error."""
    path = settings.env_file
    try:
        doc = envfile.load(path)
    except EnvFileError as exc:
        return [Finding("error", "parse", exc.message)]
    values = doc.values
    found = [Finding("ok", "parse", f"{path} parses ({len(values)} variables)")]
    add = found.append

    missing = [n for n in REQUIRED if not values.get(n, "").strip()]
    for name in missing:
        add(Finding("error", "required", f"{name} is missing or empty; `invoke env.init` "
                    "generates it (on a new .env)"))
    if not missing:
        add(Finding("ok", "required", "every required variable is set"))

    for name, value in values.items():
        if value and _is_placeholder(value):
            add(Finding("error", "placeholder", f"{name} still holds a placeholder; set a real value"))

    master = values.get("LITELLM_MASTER_KEY", "")
    if master:
        if not master.startswith("sk-"):
            add(Finding("error", "master-key", "LITELLM_MASTER_KEY must start with 'sk-'"))
        elif master == "sk-1234" or len(master) < 20:
            add(Finding("error", "master-key",
                        "LITELLM_MASTER_KEY is too short or a known default; LiteLLM refuses it"))
        else:
            add(Finding("ok", "master-key", "LITELLM_MASTER_KEY looks right"))

    for name in PASSWORDS:
        value = values.get(name, "")
        if value and len(value) < 8:
            add(Finding("error", "password", f"{name} is shorter than 8 characters"))

    ports: dict[str, int] = {}
    for name in PORTS:
        raw = values.get(name, "")
        if not raw:
            continue
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            add(Finding("error", "port", f"{name} must be a port number from 1 to 65535"))
        else:
            ports[name] = int(raw)
    if len(set(ports.values())) < len(ports):
        add(Finding("error", "port", "LITELLM_PORT and WEBUI_PORT must differ"))

    email = values.get("WEBUI_ADMIN_EMAIL", "")
    if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        add(Finding("error", "admin", "WEBUI_ADMIN_EMAIL is not an e-mail address"))

    found.extend(gate_findings(settings, values))
    found.append(mode_finding(path))
    found.extend(git_findings(path))
    return found


def gate_findings(settings: Settings, values: dict[str, str]) -> list[Finding]:
    findings = []
    first_run = values.get(GATE_VAR, "").strip().lower()
    if first_run and first_run not in (*TRUTHY, "no", "false", "0", "off"):
        findings.append(Finding("warn", "gate", f"{GATE_VAR}={first_run!r} is not yes/no; "
                                "it counts as no"))
    for spec in settings.keys.values():
        key = values.get(spec.env_var, "")
        if key and not key.startswith("sk-"):
            findings.append(Finding("error", "gate", f"{spec.env_var} must start with 'sk-'"))
        elif spec.gate and not key and first_run in TRUTHY:
            findings.append(Finding("ok", "gate", f"first run: `invoke stack.start` creates "
                                    f"{spec.env_var} (or run `invoke keys.create`)"))
        elif spec.gate and not key:
            findings.append(Finding(
                "error", "gate",
                f"{spec.env_var} is empty and {GATE_VAR} is not yes: stack.start will refuse; "
                f"run `invoke keys.create --name {spec.name}`",
            ))
        elif not key:
            findings.append(Finding("warn", "key", f"{spec.env_var} ({spec.name}) has no key yet; "
                                    f"`invoke keys.create --name {spec.name}`"))
        else:
            findings.append(Finding("ok", "gate" if spec.gate else "key",
                                    f"{spec.env_var} holds a key"))
    return findings


def mode_finding(path: Path) -> Finding:
    target = envfile.resolve(path)
    what = perms.describe(target)  # `mode 0600`, or on Windows `access list: PC\me`
    if perms.is_private(target):
        return Finding("ok", "mode", f"{what}: readable by you alone")
    return Finding("error", "mode", f"{what}: others can read it; run `invoke env.lock-permissions`")


def summary(findings: list[Finding]) -> dict[str, Any]:
    return {
        "ok": not any(f.level == "error" for f in findings),
        "errors": sum(f.level == "error" for f in findings),
        "warnings": sum(f.level == "warn" for f in findings),
        "findings": [asdict(f) for f in findings],
    }


def lock_permissions(settings: Settings) -> perms.LockResult:
    path = settings.env_file
    target = envfile.resolve(path)
    if not target.exists():
        raise EnvFileError(f"{path} not found; run `invoke env.init` first")
    if target.is_dir():
        raise EnvFileError(f"{path} is a directory, not a file")
    return perms.lock_down(target)
