"""One immutable ``Settings`` per task run, resolved once from Invoke's config (invoke.yaml,
``INVOKE_GATEWAY_*``), the .env file and the environment, with a stated precedence for each
value (the .env path, LiteLLM's URL, the master key, the compose project and files, the engine,
Open WebUI's URL) and the keys declared under ``gateway.keys``.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..base.errors import EnvFileError, UsageError
from ..base.urls import same_endpoint
from ..envstore import envfile
from ..envstore.envfile import NAME_RE
from .handover import DotenvTarget, check_targets, parse_hand_over
from .known import check_known

PROJECT_DIR = Path(__file__).resolve().parents[2]

DEFAULT_KEY = "open-webui"
#: what can run the stack (``gateway.engine``, ``--engine``)
ENGINES = ("compose", "swarm")
#: the project's swarm file, read after the compose files by the ``swarm`` engine
SWARM_FILE = "docker-stack.yml"
GATE_VAR = "FIRST_RUN"
TRUTHY = ("yes", "true", "1", "on")

DEFAULTS: dict[str, Any] = {
    "gateway": {
        "project_dir": "",
        "env_file": "",
        "example_file": "",
        "litellm_url": "",
        # None, not a number: Invoke casts an INVOKE_GATEWAY_* string to the default's type and
        # would end in a traceback on "abc"; settings.py parses the text and names the setting
        "timeout": None,
        "lock_timeout": None,
        "start_timeout": None,
        "project_name": "",
        "compose_files": "",
        "webui_url": "",
        "via": "auto",
        "engine": "compose",
        "default_key": DEFAULT_KEY,
        "keys": {
            DEFAULT_KEY: {
                "env_var": "VIRTUAL_KEY",
                "alias": "Open WebUI Key",
                "team_id": "open-webui-team",
                "team_alias": "Open WebUI Team",
                "models": None,  # None, not []: Invoke cannot cast a variable into a list
                "duration": None,
                "max_budget": None,
                "gate": True,
            },
        },
    },
}

#: Built-in values of the settings whose config default is None (see DEFAULTS).
SECONDS_DEFAULTS = {"timeout": 10.0, "lock_timeout": 30.0, "start_timeout": 300.0}

#: LiteLLM's duration syntax: a whole number (no leading zero) and its unit.
DURATION_RE = re.compile(r"([1-9][0-9]*)(s|m|h|d|w|mo)\Z")
#: A Compose project name (lower-case letters, digits, ``_`` and ``-``; docker/compose's rule).
PROJECT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
#: What a project name must be, for the messages that refuse one.
PROJECT_NAME_RULE = "use lowercase letters, digits, '-' and '_', starting with a letter or digit"
VIA = ("auto", "host", "container")


#: The longest duration taken (100 years, in seconds): longer ones overflow date arithmetic.
MAX_DURATION = 100 * 365 * 86400


def parse_duration(value: str | None) -> str | None:
    """LiteLLM's duration syntax: 30s, 15m, 2h, 7d, 1w, 1mo, at most 100 years. Empty means
    never expires. Raises UsageError (exit 2) otherwise."""
    if value is None or value == "":
        return None
    value = value.strip()
    if not DURATION_RE.match(value):
        raise UsageError(
            f"bad duration {value!r}: use a whole number and a unit, e.g. 30s, 15m, 2h, 7d, 1w, 1mo"
        )
    if duration_seconds(value) > MAX_DURATION:
        raise UsageError(f"bad duration {value!r}: at most 100 years")
    return value


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000}


def duration_seconds(value: str) -> int:
    """Seconds in a duration ``parse_duration`` accepted; ``1mo`` counts 30 days (LiteLLM
    counts calendar months, a day or so apart). Raises UsageError on anything else."""
    match = DURATION_RE.match(value.strip())
    if not match:
        raise UsageError(f"bad duration {value!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_models(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A comma-separated list (or a list from config). Empty means all models."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    if isinstance(value, str) and value.strip() == "":
        return ()
    models = tuple(str(m).strip() for m in items)
    if any(not m for m in models):
        raise UsageError(f"bad model list {value!r}: an empty name between commas")
    if any(re.search(r"\s", m) for m in models):
        raise UsageError(f"bad model list {value!r}: model names have no spaces")
    return models


def parse_budget(value: float | str | None) -> float | None:
    """A spend limit in USD, more than 0; None (no limit) only for None."""
    if value is None:
        return None
    try:
        budget = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"bad budget {value!r}: give an amount in USD, e.g. 25 or 7.5") from None
    if not budget > 0 or budget != budget or budget == float("inf"):
        raise UsageError(f"bad budget {value!r}: it must be a positive amount in USD")
    return budget


#: The first path segments of LiteLLM's own routes (``/v1/...``, ``/ui``, ``/key/...``, ...): a URL
#: whose path holds one is an API path or a page, never a root LiteLLM is served under.
LITELLM_ROUTES = frozenset({
    "v1", "v2", "ui", "chat", "completions", "embeddings", "models", "model", "key", "team",
    "user", "customer", "organization", "health", "docs", "redoc", "openapi.json", "spend",
    "global", "metrics", "routes", "sso", "login", "logout", "config", "openai", "anthropic",
    "messages", "responses", "images", "audio", "files", "batches", "assistants", "threads",
    "fine_tuning", "moderations", "rerank", "engines", "deployments", "mcp", "guardrails",
})


def parse_url(value: str, source: str, what: str = "LiteLLM", *, root_path: bool = False) -> str:
    """``http(s)://host[:port]``: the root of LiteLLM (or Open WebUI) - with ``root_path``, also
    under a path, as a reverse proxy serves LiteLLM started with ``SERVER_ROOT_PATH=/litellm``
    at ``https://host/litellm`` (every API path is added under it). Returned without a trailing
    slash.

    ``source`` names where the URL came from. Raises UsageError (exit 2) for another scheme,
    no host, a bad port, a query or fragment, and a path that is clearly not a root - one of
    LiteLLM's own routes (``/v1``, ``/ui``, ``/chat/completions``, ...), or any path at all
    without ``root_path`` - naming the root to give instead.
    """
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise UsageError(f"bad {what} URL {_shown(value)} (from {source}): bad port; "
                         "expected http://host:port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"bad {what} URL {_shown(value)} (from {source}): expected http://host:port")
    if parts.username or parts.password:
        raise UsageError(f"bad {what} URL (from {source}): it must not hold a user or password")
    segments = [part for part in parts.path.split("/") if part]
    route = next((i for i, part in enumerate(segments) if part.lower() in LITELLM_ROUTES),
                 len(segments)) if root_path else 0
    root = f"{parts.scheme}://{parts.netloc}" + "".join(f"/{part}" for part in segments[:route])
    if route < len(segments) or parts.query or parts.fragment:
        rest = "/" + "/".join(segments[route:]) if route < len(segments) else ""
        rest += ("?" if parts.query else "") + ("#" if parts.fragment else "")
        raise UsageError(f"the {what} URL (from {source}) must be its root, without "
                         f"{_shown(rest)} (the tasks add the API paths themselves): use {root}")
    return root


def parse_via(value: str | None, source: str) -> str | None:
    """How to reach LiteLLM: auto, host or container (None: not given). UsageError (exit 2)
    naming ``source`` (``--via``, ``gateway.via``) otherwise."""
    if value is None:
        return None
    if value not in VIA:
        raise UsageError(f"{source} must be one of {', '.join(VIA)}, not {_shown(value)}")
    return value


def parse_engine(value: str | None, source: str) -> str | None:
    """What runs the stack: compose or swarm (None: not given). UsageError (exit 2) naming
    ``source`` (``--engine``, ``gateway.engine``) otherwise."""
    if value is None:
        return None
    if value not in ENGINES:
        raise UsageError(f"{source} must be one of {', '.join(ENGINES)}, not {_shown(value)}")
    return value


def _text(raw: Mapping[str, Any], name: str) -> str:
    """A text setting of ``gateway``; UsageError (exit 2) when invoke.yaml gave a list or map."""
    value = raw.get(name)
    if value is None:
        return ""
    if isinstance(value, (Mapping, list, tuple)):
        raise UsageError(f"gateway.{name} takes a text value, not a list or a map")
    return str(value)


@dataclass(frozen=True)
class KeySpec:
    """A consumer's virtual key: where it is stored and what LiteLLM should restrict it to."""

    name: str
    env_var: str
    alias: str
    team_id: str
    team_alias: str
    models: tuple[str, ...] = ()
    duration: str | None = None
    max_budget: float | None = None
    gate: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: the .env files of other applications that get the key (README, "Continue.dev and other
    #: applications")
    hand_over: tuple[DotenvTarget, ...] = ()

    @classmethod
    def from_config(cls, name: str, raw: Any) -> KeySpec:
        """One entry of ``gateway.keys``; UsageError (exit 2) naming the setting if malformed."""
        where = f"gateway.keys.{name}"
        if not isinstance(raw, Mapping):
            raise UsageError(f"{where} must map env_var, alias, team_id, ... to values "
                             "(see the README, 'Several consumers')")
        metadata = raw.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise UsageError(f"{where}.metadata must map names to values")
        gate = raw.get("gate", False)
        if isinstance(gate, str):
            if gate.strip().lower() not in (*TRUTHY, "no", "false", "0", "off", ""):
                raise UsageError(f"{where}.gate takes yes or no, not {_shown(gate)}")
            gate = gate.strip().lower() in TRUTHY
        models = raw.get("models")
        if models is not None and not isinstance(models, (str, list, tuple)):
            raise UsageError(f"{where}.models takes a list of model names")
        env_var = str(raw.get("env_var") or "")
        if not NAME_RE.match(env_var):
            raise UsageError(f"key {name!r}: env_var {env_var!r} is not a valid variable name")
        alias = _printable(str(raw.get("alias") or f"{name} key"), f"{where}.alias")
        team_id = _printable(str(raw.get("team_id") or f"{name}-team"), f"{where}.team_id")
        return cls(
            name=name,
            env_var=env_var,
            alias=alias,
            team_id=team_id,
            team_alias=_printable(str(raw.get("team_alias") or team_id), f"{where}.team_alias"),
            models=_key_limit(parse_models, raw, "models", name),
            duration=_key_limit(parse_duration, raw, "duration", name),
            max_budget=_key_limit(parse_budget, raw, "max_budget", name),
            gate=bool(gate),
            metadata=dict(metadata),
            hand_over=parse_hand_over(where, raw.get("hand_over")),
        )

    def with_overrides(self, changes: Mapping[str, Any]) -> KeySpec:
        """This spec with the fields ``parse_overrides`` gave."""
        return replace(self, **changes)


def parse_overrides(
    *,
    alias: str | None = None,
    team: str | None = None,
    models: str | None = None,
    duration: str | None = None,
    max_budget: float | str | None = None,
) -> dict[str, Any]:
    """keys.create's flags as KeySpec fields, checked before any request: UsageError (exit 2)
    naming the flag for an empty or blank value, a control character, a bad duration or budget."""
    changes: dict[str, Any] = {}
    if alias is not None:
        if not alias.strip():
            raise UsageError("--alias must not be empty")
        changes["alias"] = _printable(alias.strip(), "--alias")
    if team is not None:
        if not team.strip():
            raise UsageError("--team must not be empty")
        changes["team_id"] = _printable(team.strip(), "--team")
        changes["team_alias"] = team.strip()
    if models is not None:
        changes["models"] = parse_models(_limit_flag(models, "--models", "models"))
    if duration is not None:
        changes["duration"] = parse_duration(_limit_flag(duration, "--duration", "duration"))
    if max_budget is not None:
        changes["max_budget"] = parse_budget(_limit_flag(max_budget, "--max-budget", "max_budget"))
    return changes


def _printable(value: str, what: str) -> str:
    """``value`` when it holds no control character (a line break, tab, escape, ...); LiteLLM
    refuses such an alias (400) - so it is exit 2 here, before any request."""
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise UsageError(f"{what} holds a control character (a line break, tab or escape); "
                         "give printable text")
    return value


def _blank(value: Any) -> bool:
    return (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple)) and not value)


def _limit(raw: Mapping[str, Any], name: str, where: str) -> Any:
    """A key's limit from config (models, duration, max_budget): None when not set (no limit).
    A blank or empty value - an unset variable in INVOKE_GATEWAY_*, ``models: []`` - is exit 2:
    an empty value never lifts a limit; to have none, leave the setting out."""
    value = raw.get(name)
    if _blank(value):
        raise UsageError(f"{where}.{name} is empty; an empty value never lifts a limit - "
                         "leave the setting out for none, or give a value")
    return value


def _key_limit(parse: Any, raw: Mapping[str, Any], setting: str, name: str) -> Any:
    """A key's limit parsed; a bad value is UsageError naming the setting and the variable
    that may have set it (``parse_*`` name only the value)."""
    where = f"gateway.keys.{name}"
    value = _limit(raw, setting, where)
    try:
        return parse(value)
    except UsageError as exc:
        variable = f"INVOKE_GATEWAY_KEYS_{name.upper()}_{setting.upper()}"
        raise UsageError(f"{where}.{setting} (invoke.yaml or {variable}): {exc.message}") from None


def _limit_flag(value: Any, flag: str, setting: str) -> Any:
    """A limit flag's value; an empty one (``--models "$UNSET"``) is exit 2, never "no limit"."""
    if _blank(value):
        raise UsageError(f"{flag} was given an empty value; leave the flag out to keep the "
                         f"configured {setting}, or give a value")
    return value


def _port_origin(name: str, values: Mapping[str, str], env_path: Path) -> str:
    return f"in {env_path}" if name in values else "(environment)"


#: The host ports docker-compose.yml publishes: the .env variable, and Compose's default there.
HOST_PORTS = {"LITELLM_PORT": 4000, "WEBUI_PORT": 3000}


@dataclass(frozen=True)
class Settings:
    project_dir: Path
    env_file: Path
    example_file: Path
    litellm_url: str
    url_source: str
    master_key: str = field(repr=False)
    master_key_source: str
    timeout: float
    lock_timeout: float
    keys: Mapping[str, KeySpec]
    default_key: str
    project_name: str = "ai-gateway"
    compose_files: tuple[Path, ...] = ()
    webui_url: str = "http://localhost:3000"
    start_timeout: float = 300.0
    via: str = "auto"
    #: what runs the stack: ``compose`` (Docker Compose on this host) or ``swarm`` (a Docker
    #: Swarm stack, ``docker stack deploy``, from the same compose files plus docker-stack.yml)
    engine: str = "compose"
    #: why the LiteLLM URL is not the one .env's LITELLM_PORT implies ("" when it is)
    url_note: str = ""
    #: the host ports the stack publishes (``host_ports`` of .env's values)
    host_ports: Mapping[str, int | None] = field(default_factory=lambda: dict(HOST_PORTS))

    def key(self, name: str | None) -> KeySpec:
        name = name or self.default_key
        if name not in self.keys:
            known = ", ".join(sorted(self.keys))
            raise UsageError(f"unknown key name {name!r}; configured: {known} (see gateway.keys)")
        return self.keys[name]

    def require_master_key(self) -> str:
        """The master key; EnvFileError (3) when neither .env nor the environment holds one."""
        if not self.master_key:
            raise EnvFileError(f"no LITELLM_MASTER_KEY in {self.env_file} or the environment; "
                               "run `invoke env.init` or set it")
        return self.master_key

    @property
    def gate_key(self) -> KeySpec | None:
        return next((k for k in self.keys.values() if k.gate), None)

    @property
    def keys_lock_file(self) -> Path:
        return self.env_file.with_name(self.env_file.name + ".keys.lock")


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def host_ports(values: Mapping[str, str], environ: Mapping[str, str] | None = None
               ) -> dict[str, int | None]:
    """``{variable: port}`` for HOST_PORTS, read in this one place as Compose reads them: .env's
    ``values``, else the environment's (``environ``, default os.environ: the tasks run Compose
    with it), else the compose file's default when unset or empty; None when not a port number
    from 1 to 65535 - spaces included, which Compose refuses too ("invalid hostPort")."""
    environ = os.environ if environ is None else environ
    ports: dict[str, int | None] = {}
    for name, default in HOST_PORTS.items():
        text = values[name] if name in values else environ.get(name, "")
        ports[name] = default if not text else int(text) if _is_port(text) else None
    return ports


def _gateway_config(config: Any) -> Mapping[str, Any]:
    defaults: Mapping[str, Any] = DEFAULTS["gateway"]
    if config is None:
        return defaults
    try:
        raw = config["gateway"]
    except (KeyError, TypeError):
        return defaults
    if raw is None:
        return defaults
    if not isinstance(raw, Mapping):
        raise UsageError("gateway in invoke.yaml must map setting names to values")
    return raw


def parse_seconds(value: object, setting: str, *, allow_zero: bool = False) -> float:
    """A number of seconds from a flag, invoke.yaml or an ``INVOKE_*`` variable.

    ``setting`` names where it came from (``--timeout``, ``gateway.timeout``) for the message.
    Raises UsageError (exit 2) for text that is not a finite number, or one that is not
    positive (0 too, unless ``allow_zero``).
    """
    if isinstance(value, bool):
        number = float("nan")
    else:
        try:
            number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = float("nan")
    shown = _shown(value)
    least = "0 or more" if allow_zero else "more than 0"
    if number != number or number in (float("inf"), float("-inf")):
        raise UsageError(f"{setting} takes a number of seconds ({least}, e.g. 30 or 2.5), not {shown}")
    if number < 0 or (number == 0 and not allow_zero):
        raise UsageError(f"{setting} takes a number of seconds {least}, not {shown}")
    return number


def parse_count(value: object, setting: str) -> int:
    """A whole number of 0 or more (``--tail``); raises UsageError (exit 2) otherwise."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not text.isascii():
        raise UsageError(f"{setting} takes a whole number, 0 or more, not {_shown(value)}")
    return int(text)


def _shown(value: object) -> str:
    """A user's flag or config value for a message, cut short (never from .env)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "...'"


def _float(raw: Mapping[str, Any], name: str) -> float:
    value = raw.get(name)
    if value is None or value == "":
        return SECONDS_DEFAULTS[name]
    return parse_seconds(value, f"gateway.{name} (invoke.yaml or INVOKE_GATEWAY_{name.upper()})")


def _default_key(raw: Mapping[str, Any], keys: Mapping[str, KeySpec]) -> str:
    default_key = _text(raw, "default_key") or DEFAULT_KEY
    if default_key not in keys:
        raise UsageError(f"gateway.default_key names no key of gateway.keys "
                         f"({', '.join(sorted(keys))})")
    return default_key


def _webui_url(raw: Mapping[str, Any], ports: Mapping[str, int | None]) -> str:
    """gateway.webui_url, else http://localhost:<WEBUI_PORT>; "" when WEBUI_PORT is no port:
    only a task that needs Open WebUI refuses then (connect.openwebui; the stack tasks'
    env.check), not keys.list or a continue-dev key."""
    if _text(raw, "webui_url"):
        return parse_url(_text(raw, "webui_url"), "gateway.webui_url", "Open WebUI")
    return f"http://localhost:{ports['WEBUI_PORT']}" if ports["WEBUI_PORT"] else ""


def load_settings(
    config: Any = None,
    *,
    env_file: str | None = None,
    url: str | None = None,
    env_values: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    engine: str | None = None,
) -> Settings:
    """Resolve every setting once. ``env_values``: the parsed .env, when the task needs it;
    ``engine``: the ``--engine`` flag (over ``gateway.engine``).
    Raises UsageError (exit 2) for a bad setting of invoke.yaml or a flag, EnvFileError (3) for
    a bad value of .env."""
    raw = _gateway_config(config)
    environ = os.environ if environ is None else environ
    check_known(raw, DEFAULTS["gateway"], environ)
    values = env_values or {}

    project_dir = Path(_text(raw, "project_dir") or PROJECT_DIR).expanduser()
    engine = (parse_engine(engine, "--engine")
              or parse_engine(_text(raw, "engine") or "compose", "gateway.engine") or "compose")
    env_path = Path(env_file or _text(raw, "env_file") or project_dir / ".env").expanduser()
    example = Path(_text(raw, "example_file") or project_dir / ".env.example").expanduser()

    # without .env's values (a task that does not read it) no port is read, not even the
    # environment's: env.check reports those itself, as findings
    ports = host_ports(values, environ if env_values is not None else {})
    litellm_url, url_source = _litellm_url(raw, url, values, environ, ports, env_path,
                                           env_read=env_values is not None)
    master_key, master_source = _master_key(values, environ, env_path)
    keys = _keys(raw, project_dir, env_path)
    default_key, webui_url = _default_key(raw, keys), _webui_url(raw, ports)
    return Settings(
        project_dir=project_dir,
        env_file=env_path,
        example_file=example,
        litellm_url=litellm_url,
        url_source=url_source,
        master_key=master_key,
        master_key_source=master_source,
        timeout=_float(raw, "timeout"),
        lock_timeout=_float(raw, "lock_timeout"),
        keys=keys,
        default_key=default_key,
        project_name=_project_name(raw, values, env_path),
        compose_files=_compose_files(raw, environ, values, project_dir, engine),
        webui_url=webui_url,
        start_timeout=_float(raw, "start_timeout"),
        via=parse_via(_text(raw, "via") or "auto", "gateway.via") or "auto",
        engine=engine,
        url_note=_url_note(litellm_url, url_source, values, ports, env_path),
        host_ports=ports,
    )


def load_with_env(config: Any = None, *, env_file: str | None = None, url: str | None = None,
                  check: Callable[[Path], None] | None = None, engine: str | None = None,
                  ) -> tuple[Settings, dict[str, str]]:
    """Settings resolved with .env's values, the one way every task that reads .env gets them:
    a first pass finds .env (``--env-file``, ``gateway.env_file``, the project folder), ``check``
    looks at that path before it is read (a task that writes refuses a pipe or a read-only
    file there), then .env is read once and every setting resolved again with its values.
    Returns the settings and .env's values. Raises as ``load_settings``, and EnvFileError
    (exit 3) when .env cannot be read."""
    base = load_settings(config, env_file=env_file, url=url, engine=engine)
    if check is not None:
        check(base.env_file)
    values = envfile.load(base.env_file).values
    return load_settings(config, env_file=env_file, url=url, env_values=values,
                         engine=engine), values


def _litellm_url(raw: Mapping[str, Any], url: str | None, values: Mapping[str, str],
                 environ: Mapping[str, str], ports: Mapping[str, int | None], env_path: Path,
                 *, env_read: bool) -> tuple[str, str]:
    """LiteLLM's URL and where it came from: ``--url`` > ``gateway.litellm_url`` >
    ``LITELLM_PROXY_URL`` > ``http://localhost:<LITELLM_PORT>``."""
    if url:
        return parse_url(url, "--url", root_path=True), "--url"
    if _text(raw, "litellm_url"):
        return (parse_url(_text(raw, "litellm_url"), "gateway.litellm_url", root_path=True),
                "gateway.litellm_url")
    if environ.get("LITELLM_PROXY_URL"):
        return (parse_url(environ["LITELLM_PROXY_URL"], "LITELLM_PROXY_URL", root_path=True),
                "LITELLM_PROXY_URL")
    if ports["LITELLM_PORT"] is None:
        raise EnvFileError(f"LITELLM_PORT {_port_origin('LITELLM_PORT', values, env_path)} "
                           "must be a port number from 1 to 65535")
    source = ("LITELLM_PORT in .env" if "LITELLM_PORT" in values else
              "LITELLM_PORT (environment)" if env_read and environ.get("LITELLM_PORT") else "default")
    return f"http://localhost:{ports['LITELLM_PORT']}", source


def _url_note(litellm_url: str, url_source: str, values: Mapping[str, str],
              ports: Mapping[str, int | None], env_path: Path) -> str:
    """A note when a setting sends the tasks to another LiteLLM than .env's LITELLM_PORT."""
    if (url_source in ("--url", "LITELLM_PORT in .env") or not values.get("LITELLM_PORT")
            or ports["LITELLM_PORT"] is None):
        return ""
    implied = f"http://localhost:{ports['LITELLM_PORT']}"
    if same_endpoint(litellm_url, implied):
        return ""
    why = ("gateway.litellm_url (invoke.yaml or INVOKE_GATEWAY_LITELLM_URL)"
           if url_source.startswith("gateway.") else "LITELLM_PROXY_URL in the environment")
    return (f"note: using LiteLLM at {litellm_url}, not {implied} (LITELLM_PORT in "
            f"{env_path}): {why} comes first")


def _master_key(values: Mapping[str, str], environ: Mapping[str, str],
                env_path: Path) -> tuple[str, str]:
    """The master key and where it came from: .env > LITELLM_MASTER_KEY > LITELLM_PROXY_API_KEY
    (the environment's); ``("", "")`` when none."""
    if values.get("LITELLM_MASTER_KEY"):
        return values["LITELLM_MASTER_KEY"], f"LITELLM_MASTER_KEY in {env_path}"
    if environ.get("LITELLM_MASTER_KEY"):
        return environ["LITELLM_MASTER_KEY"], "LITELLM_MASTER_KEY (environment)"
    if environ.get("LITELLM_PROXY_API_KEY"):
        return environ["LITELLM_PROXY_API_KEY"], "LITELLM_PROXY_API_KEY"
    return "", ""


def _keys(raw: Mapping[str, Any], project_dir: Path, env_path: Path) -> dict[str, KeySpec]:
    """``gateway.keys``, checked: each in its own variable, one gate key at most, hand-over
    files that can be written."""
    keys_raw = raw.get("keys") or {}
    if not isinstance(keys_raw, Mapping) or not keys_raw:
        raise UsageError("gateway.keys must map key names to their settings")
    keys = {str(n): KeySpec.from_config(str(n), spec or {}) for n, spec in keys_raw.items()}
    env_vars = [k.env_var for k in keys.values()]
    if len(set(env_vars)) != len(env_vars):
        raise UsageError("gateway.keys: two keys are stored in the same env_var")
    if sum(k.gate for k in keys.values()) > 1:
        raise UsageError("gateway.keys: only one key can be the first-run gate key")
    check_targets(list(keys.values()), project_dir, env_path)
    return keys


def _project_name(raw: Mapping[str, Any], values: Mapping[str, str], env_path: Path) -> str:
    """``gateway.project_name`` > COMPOSE_PROJECT_NAME in .env > ``ai-gateway``, checked."""
    configured = _text(raw, "project_name")
    project_name = (configured or values.get("COMPOSE_PROJECT_NAME") or "ai-gateway").strip()
    if not PROJECT_NAME_RE.match(project_name):
        # .env's value is never quoted back (a line of .env may hold a secret)
        where = "gateway.project_name" if configured else f"COMPOSE_PROJECT_NAME in {env_path}"
        raise (UsageError if configured else EnvFileError)(
            f"bad compose project name (from {where}): {PROJECT_NAME_RULE}")
    return project_name


def _compose_files(raw: Mapping[str, Any], environ: Mapping[str, str], values: Mapping[str, str],
                   project_dir: Path, engine: str) -> tuple[Path, ...]:
    """``gateway.compose_files`` > COMPOSE_FILE (the environment's, else .env's, as Compose
    reads it; split as Compose does, on COMPOSE_PATH_SEPARATOR or the OS's path separator, and
    on commas) > docker-compose.yml (and docker-stack.yml after it for the ``swarm`` engine);
    relative to the project folder."""
    def compose_var(name: str) -> str:
        return environ.get(name) or values.get(name) or ""

    files_raw = _text(raw, "compose_files") or compose_var("COMPOSE_FILE")
    separator = compose_var("COMPOSE_PATH_SEPARATOR") or os.pathsep
    return tuple(
        (Path(f).expanduser() if Path(f).is_absolute() else project_dir / f)
        for f in files_raw.replace(",", separator).split(separator) if f.strip()
    ) or (project_dir / "docker-compose.yml",
          *((project_dir / SWARM_FILE,) if engine == "swarm" else ()))

