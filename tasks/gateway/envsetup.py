"""env.init / env.check / env.lock-permissions as plain functions (no Invoke, no printing)."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from ..base.errors import (
    ComposeRefusedError,
    DockerUnavailableError,
    EnvFileError,
    GatewayError,
    OpenWebUIError,
    ProxyUnreachableError,
)
from ..config.settings import (
    GATE_VAR,
    PROJECT_NAME_RE,
    PROJECT_NAME_RULE,
    TRUTHY,
    Settings,
    host_ports,
    load_settings,
)
from ..containers import compose
from ..envstore import compat, envfile, perms


def new_master_key() -> str:
    """A new LiteLLM master key: ``sk-`` (LiteLLM requires it) and 43 URL-safe characters
    (256 random bits) - as env.init makes one and keys.rotate-master replaces it."""
    return "sk-" + secrets.token_urlsafe(32)


#: Secrets env.init generates when the template leaves them blank.
GENERATORS: dict[str, Callable[[], str]] = {
    "LITELLM_MASTER_KEY": new_master_key,
    "LITELLM_SALT_KEY": lambda: secrets.token_urlsafe(32),
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "UI_PASSWORD": lambda: secrets.token_urlsafe(12),
    "WEBUI_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "WEBUI_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
}
REQUIRED = (
    "LITELLM_MASTER_KEY",
    "LITELLM_SALT_KEY",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "UI_USERNAME",
    "UI_PASSWORD",
    "WEBUI_SECRET_KEY",
    "WEBUI_ADMIN_EMAIL",
    "WEBUI_ADMIN_PASSWORD",
)
PASSWORDS = ("POSTGRES_PASSWORD", "UI_PASSWORD", "WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY",
             "LITELLM_SALT_KEY")
PLACEHOLDERS = {
    "changeme", "change-me", "change_me", "changethis", "password", "secret", "todo", "xxx",
    "your-key-here", "your_key_here", "sk-1234", "sk-xxxx", "sk-...", "replace-me",
}
_PLACEHOLDER_RE = re.compile(r"(<[^>]*>|your[-_ ].*|x{3,}|\.\.\.|.*[-_ ]here)\Z", re.I)
#: words that mark a value as text to replace, wherever they stand in it
_PLACEHOLDER_WORD_RE = re.compile(
    r"(^|[-_ .])(changeme|change[-_]me|replace[-_]?me|placeholder|your[-_ ]\w+)($|[-_ .])", re.I)


# --------------------------------------------------------------------------- init


#: Values the stack's volumes hold on to once it has run: PostgreSQL takes its user, password
#: and database only when it first initialises its volume; Open WebUI keeps its admin account
#: in its own database and signs sessions with its secret key; LiteLLM's stored credentials are
#: encrypted with the salt key. ``env.init --force`` keeps these (and the virtual keys, which
#: live in the database) while the volumes exist.
VOLUME_BOUND = (
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "LITELLM_SALT_KEY",
    "WEBUI_SECRET_KEY", "WEBUI_ADMIN_EMAIL", "WEBUI_ADMIN_PASSWORD",
)
#: The stack's named volumes (docker-compose.yml), as ``<project>_<name>`` in Docker.
STACK_VOLUMES = ("postgres-data", "open-webui-data")


@dataclass
class InitResult:
    """What ``init`` did. ``kept``: names taken over from the old .env (never values);
    ``volumes``: the stack's volumes found; ``note``: why values were kept, or a warning."""

    path: Path
    generated: list[str]
    backup: Path | None
    kept: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class VolumeProbe:
    """The stack's volumes Docker reports (``names``), or why Docker could not be asked
    (``error``: then nothing is known, and ``names`` is empty)."""

    names: tuple[str, ...] = ()
    error: str = ""


def probe_volumes(project: str, *, timeout: float = 10.0) -> VolumeProbe:
    """Which of the stack's named volumes (``<project>_postgres-data``, ``<project>_open-webui-
    data``, labelled ``com.docker.compose.project=<project>``) exist. Never raises for an
    expected failure: a missing docker CLI or an unreachable daemon comes back as ``error``."""
    wanted = {f"{project}_{name}" for name in STACK_VOLUMES}
    try:
        docker = compose.find_docker()
        client = compose.connect(compose.docker_endpoint(docker), timeout=timeout)
    except DockerUnavailableError as exc:
        return VolumeProbe(error=exc.message)
    try:
        found = client.volumes.list(filters={"label": f"{compose.PROJECT_LABEL}={project}"})
        return VolumeProbe(tuple(sorted(v.name for v in found if v.name in wanted)))
    except Exception as exc:  # noqa: BLE001 - any SDK/daemon failure means "could not ask"
        return VolumeProbe(error=f"Docker could not list volumes ({type(exc).__name__})")
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _old_values(path: Path) -> dict[str, str]:
    """The old .env's values, for keeping what the volumes hold; EnvFileError if unreadable."""
    try:
        return envfile.load(path).values
    except EnvFileError as exc:
        raise EnvFileError(
            f"env.init --force must keep the database and Open WebUI passwords of the old .env "
            f"(the stack's volumes hold them), but it cannot be read: {exc.message}; fix it, or "
            "remove the volumes first (`invoke stack.stop --volumes`, which deletes every key "
            "and chat)"
        ) from None


def keep_from_old(settings: Settings, old: dict[str, str], probe: VolumeProbe
                  ) -> tuple[dict[str, str], str]:
    """The values of the old .env that must survive ``env.init --force``, and why.

    Kept while the stack's volumes exist, and also when Docker cannot be asked (the safe
    side: keeping a working value never breaks a stack, a new one may). Only non-empty values
    are kept; the rest is generated as usual."""
    if not probe.names and not probe.error:
        return {}, ""
    # the project name too: the volumes are named after it
    names = ["COMPOSE_PROJECT_NAME", *VOLUME_BOUND, GATE_VAR,
             *(spec.env_var for spec in settings.keys.values())]
    kept = {n: old[n] for n in names if old.get(n, "").strip()}
    if probe.error:
        why = (f"could not ask Docker whether the stack's volumes exist ({probe.error}); kept "
               "what they would hold, to be safe")
    else:
        why = (f"the stack's volumes exist ({', '.join(probe.names)}) and hold these; kept them "
               "(to start afresh: `invoke stack.stop --volumes`, then `invoke env.init --force`)")
    return kept, why


def with_env_values(settings: Settings, config: Any) -> Settings:
    """``settings`` resolved again with the existing .env's values, so the compose project name
    is the one that .env ran (``COMPOSE_PROJECT_NAME``). Unchanged when .env is missing or
    cannot be read or resolved: ``init`` reports those itself."""
    try:
        values = envfile.load(settings.env_file).values
    except EnvFileError:
        # a broken .env may still name its project: read just that, leniently (python-dotenv
        # skips the lines it cannot parse), so env.init --force finds that stack's volumes
        values = {"COMPOSE_PROJECT_NAME": _lenient_project(settings.env_file)}
    try:
        return load_settings(config, env_file=str(settings.env_file), env_values=values)
    except GatewayError:
        return settings


def _lenient_project(path: Path) -> str:
    logging.getLogger("dotenv.main").disabled = True  # its warnings would name the bad lines
    try:
        return str(dotenv_values(envfile.resolve(path)).get("COMPOSE_PROJECT_NAME") or "")
    except (OSError, UnicodeError, ValueError):
        return ""


def _back_up(path: Path) -> Path:
    """A 0600 copy of the .env at ``path`` beside it (``<name>.backup.<UTC time>``,
    ``envfile.keep_copy``); EnvFileError when it cannot be read or written."""
    try:
        old = envfile.resolve(path).read_bytes()
    except OSError as exc:
        raise EnvFileError(f"cannot back up {path}: {exc.strerror or exc}") from None
    return envfile.keep_copy(path, old, "backup")


def init(settings: Settings, *, force: bool = False) -> InitResult:
    """Write .env from .env.example with fresh secrets; refuse to replace one unless ``force``.

    With ``force`` on a stack that has run (its volumes exist, or Docker cannot be asked), the
    values in ``VOLUME_BOUND`` and the virtual keys with ``FIRST_RUN`` are taken over from the
    old .env, so LiteLLM still logs in to its database and the tasks to Open WebUI. Raises
    EnvFileError (.env untouched) when .env exists without ``force``, or when the old .env must
    be kept from but cannot be read; LockBusyError when another task holds the lock."""
    template = envfile.load(settings.example_file)
    path = settings.env_file
    exists = path.exists() or path.is_symlink()
    if exists and not force:
        raise EnvFileError(
            f"{path} already exists; env.init will not replace it "
            "(`invoke env.init --force` keeps a 0600 backup and writes a new one)"
        )
    probe = probe_volumes(settings.project_name, timeout=settings.timeout)
    backup = None
    with envfile.file_lock(envfile.lock_path_for(path), settings.lock_timeout):
        kept: dict[str, str] = {}
        note = ""
        if exists and (probe.names or probe.error):
            kept, note = keep_from_old(settings, _old_values(path), probe)
        elif not exists and probe.names:
            note = (f"warning: the stack's volumes exist from an earlier .env "
                    f"({', '.join(probe.names)}); the new passwords will not open them. Put the "
                    "old POSTGRES_PASSWORD, WEBUI_ADMIN_* and LITELLM_SALT_KEY back, or remove "
                    "the volumes (`invoke stack.stop --volumes`)")
        changes: dict[str, str] = {}
        for name, make in GENERATORS.items():
            if not template.get(name):
                changes[name] = make()
        changes[GATE_VAR] = "yes"
        for spec in settings.keys.values():
            changes[spec.env_var] = ""
        changes.update(kept)
        data = template.render(changes)
        if exists:
            backup = _back_up(path)
            envfile.write_secure(path, data)
        else:
            envfile.write_secure(path, data, exclusive=True)
    generated = sorted(k for k in changes if k in GENERATORS and k not in kept)
    return InitResult(path, generated, backup, sorted(kept), list(probe.names), note)


# --------------------------------------------------------------------------- check


@dataclass
class Finding:
    level: str  # ok / warn / error
    check: str
    message: str


def _is_placeholder(value: str) -> bool:
    """``changeme``, ``<...>``, ``your-...``, ``sk-your-master-key-here``, ``sk-<key>``,
    ``sk-xxxx``: text from a guide that was never replaced."""
    text = value.strip()
    body = text[3:] if text.lower().startswith("sk-") else text
    return (text.lower() in PLACEHOLDERS or body.lower() in PLACEHOLDERS
            or bool(_PLACEHOLDER_RE.match(text) or _PLACEHOLDER_RE.match(body))
            or bool(re.fullmatch(r"x+", body, re.I))
            or bool(_PLACEHOLDER_WORD_RE.search(text))
            or bool(re.search(r"<[A-Za-z][\w .-]{2,}>", text)))


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


def check(settings: Settings, *, compare: bool = True) -> list[Finding]:
    """Everything stack.start needs from .env; each finding ok, warn or error.

    Besides the values themselves: every value Docker Compose, a URL the compose files build,
    or an HTTP header would see differently from what the tasks read (``envstore.compat``), and -
    with ``compare`` and Docker Compose v2 installed - what ``docker compose config`` really
    passes to the services, against what the tasks read. No finding quotes a value."""
    path = settings.env_file
    try:
        doc = envfile.load(path)
    except EnvFileError as exc:
        return [Finding("error", "parse", exc.message)]
    values = doc.values
    readers = reader_findings(settings, doc, compare=compare)
    unread = {f.message.split(" ", 1)[0] for f in readers if f.level == "error"}
    return [
        Finding("ok", "parse", f"{path} parses ({len(values)} variables)"),
        *_value_findings(values, unread),
        *_port_findings(values),
        *_name_findings(values),
        *readers,
        *gate_findings(settings, values),
        mode_finding(path),
        *git_findings(path),
    ]


def _value_findings(values: Mapping[str, str], unread: set[str]) -> list[Finding]:
    """The values themselves: required ones set, no placeholder, a strong master key (unless
    ``unread`` - a reader would not see it as written - names it: that finding says the fix),
    passwords long enough."""
    found: list[Finding] = []
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
    if master and "LITELLM_MASTER_KEY" not in unread:
        if not master.startswith("sk-"):
            add(Finding("error", "master-key", "LITELLM_MASTER_KEY must start with 'sk-'"))
        elif master == "sk-1234" or len(master) < 20 or _is_placeholder(master):
            add(Finding("error", "master-key",
                        "LITELLM_MASTER_KEY is too short, a placeholder or a known default; "
                        "`invoke env.init` generates a strong one (on a new .env)"))
        else:
            add(Finding("ok", "master-key", "LITELLM_MASTER_KEY looks right"))

    for name in PASSWORDS:
        value = values.get(name, "")
        if value and len(value) < 8:
            add(Finding("error", "password", f"{name} is shorter than 8 characters"))
    return found


def _name_findings(values: Mapping[str, str]) -> list[Finding]:
    """A compose project name and an e-mail address, where set."""
    found: list[Finding] = []
    add = found.append
    project = values.get("COMPOSE_PROJECT_NAME", "")
    if project and not PROJECT_NAME_RE.match(project):
        add(Finding("error", "project", "COMPOSE_PROJECT_NAME is not a compose project name: "
                    f"{PROJECT_NAME_RULE}"))

    email = values.get("WEBUI_ADMIN_EMAIL", "")
    if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        add(Finding("error", "admin", "WEBUI_ADMIN_EMAIL is not an e-mail address"))
    return found


def _port_findings(values: Mapping[str, str]) -> list[Finding]:
    """LITELLM_PORT and WEBUI_PORT: port numbers, and not the same one."""
    found = []
    ports = host_ports(values)  # .env's, else the environment's (Compose runs with it)
    for name, port in ports.items():
        if port is None:
            origin = "" if name in values else " (from the environment)"
            found.append(Finding("error", "port",
                                 f"{name}{origin} must be a port number from 1 to 65535"))
    if None not in ports.values() and len(set(ports.values())) < len(ports):
        found.append(Finding("error", "port", "LITELLM_PORT and WEBUI_PORT must differ (unset, "
                             "they are 4000 and 3000)"))
    return found


def reader_findings(settings: Settings, doc: envfile.EnvDoc, *, compare: bool = True
                    ) -> list[Finding]:
    """Values that Compose, a URL or an HTTP header would see differently (see envstore.compat)."""
    headers = ["LITELLM_MASTER_KEY", *(spec.env_var for spec in settings.keys.values())]
    problems = (compat.compose_problems(doc) + compat.url_problems(doc, settings.compose_files)
                + compat.header_problems(doc, headers))
    findings = [Finding("error", p.check, p.message) for p in problems]
    if not compare:
        return findings
    if envfile.kind_of(settings.env_file) == "a pipe":
        findings.append(Finding("ok", "compose", f"not compared with `docker compose config`: "
                                f"{settings.env_file} is a pipe, which gives its text once"))
        return findings
    names = list(doc.entries)
    try:
        raw = compose.service_environments(settings, names, interpolate=False)
        passed = compose.service_environments(settings, names) if raw is not None else None
    except ComposeRefusedError as exc:
        findings.append(Finding("error", "compose", exc.message))
        return findings
    if raw is None or passed is None:
        findings.append(Finding("ok", "compose", "not compared with `docker compose config` "
                                "(no Docker Compose v2 here)"))
        return findings
    flagged = {p.name for p in problems}
    more = [p for p in compat.compare_with_compose(doc, raw, passed) if p.name not in flagged]
    findings += [Finding("error", p.check, p.message) for p in more]
    if not problems and not more:
        findings.append(Finding("ok", "compose", "docker compose config passes the services "
                                "what the tasks read from .env"))
    return findings


def gate_findings(settings: Settings, values: dict[str, str]) -> list[Finding]:
    findings = []
    first_run = values.get(GATE_VAR, "").strip().lower()
    if first_run and first_run not in (*TRUTHY, "no", "false", "0", "off"):
        findings.append(Finding("warn", "gate", f"{GATE_VAR} is not yes or no; it counts as no"))
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


# --------------------------------------------------------------------------- running stack

#: The program run in the postgres container: psql to the container's own network address, so
#: the connection is checked as LiteLLM's is (a host connection: scram-sha-256), not as a
#: trusted local one. The password travels in the exec's environment (PGPASSWORD).
def _psql_argv(address: str, user: str, db: str) -> list[str]:
    return ["psql", "-w", "-X", "-q", "-tA", "-h", address, "-U", user, "-d", db,
            "-c", "SELECT 1"]


def _address(container: Any) -> str:
    networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    for net in networks.values():
        if (net or {}).get("IPAddress"):
            return str(net["IPAddress"])
    return ""


def database_finding(container: Any, values: dict[str, str], env_name: str) -> Finding:
    """Does .env's POSTGRES_PASSWORD (with POSTGRES_USER / POSTGRES_DB) open the running
    PostgreSQL? Checked with psql inside its container over TCP; the password is passed in the
    exec's environment, never in an argument list."""
    user = values.get("POSTGRES_USER") or "litellm"
    db = values.get("POSTGRES_DB") or "litellm"
    address = _address(container)
    if not address:
        return Finding("warn", "database", "the postgres container has no network address; "
                       "the database password was not checked")
    try:
        done = container.exec_run(_psql_argv(address, user, db), stdout=True, stderr=True,
                                  environment={"PGPASSWORD": values.get("POSTGRES_PASSWORD", ""),
                                               "PGCONNECT_TIMEOUT": "5"})
    except Exception as exc:  # noqa: BLE001 - any SDK/daemon failure: not checked
        return Finding("warn", "database", f"could not run psql in the postgres container "
                       f"({type(exc).__name__}); the database password was not checked")
    output = (done.output or b"").decode("utf-8", "replace")
    if done.exit_code == 0:
        return Finding("ok", "database", f"POSTGRES_PASSWORD opens the running database "
                       f"({user}@{db})")
    if "password authentication failed" in output or "no password supplied" in output:
        return Finding(
            "error", "database",
            f"POSTGRES_PASSWORD (or POSTGRES_USER) in {env_name} no longer opens the running "
            "database: PostgreSQL keeps the user and password of its first start, so LiteLLM "
            "cannot log in. Recover: put the old values back (from a .env.backup.* file), or "
            "give the database .env's password - "
            f"`docker exec -it <postgres container> psql -U {user} -d {db}`, then "
            f"`\\password {user}` and type POSTGRES_PASSWORD - then `invoke stack.restart`",
        )
    if "does not exist" in output:
        return Finding(
            "error", "database",
            f"the running PostgreSQL has no database {db!r} (POSTGRES_DB changed since its "
            f"first start, which created it); put the old value back in {env_name} (a "
            ".env.backup.* file has it)",
        )
    if done.exit_code == 126 or done.exit_code == 127:
        return Finding("warn", "database", "no psql in the postgres container; the database "
                       "password was not checked")
    last = output.strip().splitlines()[-1:] or [f"exit code {done.exit_code}"]
    return Finding("warn", "database", f"could not check the database password: {last[0]}")


def admin_finding(webui: Any, env_name: str) -> Finding:
    """Does Open WebUI accept .env's WEBUI_ADMIN_EMAIL / WEBUI_ADMIN_PASSWORD (a sign-in)?"""
    try:
        with webui:
            webui.token  # noqa: B018 - signs in
    except OpenWebUIError:
        return Finding(
            "error", "admin",
            f"Open WebUI refuses WEBUI_ADMIN_EMAIL / WEBUI_ADMIN_PASSWORD from {env_name}: it "
            "keeps the admin account of its first start, so the tasks cannot hand it keys. "
            "Recover: put the old values back (from a .env.backup.* file), or sign in to Open "
            "WebUI with the old ones and set the password to .env's (Settings > Account)",
        )
    except ProxyUnreachableError as exc:
        return Finding("warn", "admin", f"could not reach Open WebUI to check the admin sign-in "
                       f"({exc.message})")
    return Finding("ok", "admin", "Open WebUI accepts the admin sign-in from .env")


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
