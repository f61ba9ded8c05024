"""Values of .env that reach the stack differently from what the tasks read: through Compose's
interpolation, inside a URL a compose file builds, in the database URL LiteLLM builds itself,
or in an HTTP header. Each finding names the variable, its line and the fix - never the value.
Plain functions: no Invoke, no printing.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import EnvFileError, UsageError
from .envfile import QUOTED_RE, EnvDoc

_BINDING_RE = re.compile(
    r"[^\S\r\n]*(?:export[^\S\r\n]+)?[^=\r\n]*?=(?P<sep>[^\S\r\n]*)(?P<rest>.*)\Z", re.S)
_VAR_IN_TEXT_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)")
_URL_SAFE_RE = re.compile(r"[A-Za-z0-9._~-]*\Z")
_HEADER_SAFE_RE = re.compile(r"[!-~]*\Z")  # printable ASCII, no space


@dataclass(frozen=True)
class Problem:
    """One value another reader would see differently. ``message`` never holds the value."""

    name: str
    line: int
    check: str  # "compose", "url", "header"
    message: str


def compose_problems(doc: EnvDoc) -> list[Problem]:
    """Values Docker Compose reads differently from python-dotenv (the tasks' reader)."""
    problems = []
    for binding in doc.bindings:
        entry = doc.entries.get(binding.key or "")
        if entry is None:
            continue
        match = _BINDING_RE.match(binding.original.string)
        if match is None:  # pragma: no cover - envfile accepted the binding
            continue
        sep, rest = match.group("sep"), match.group("rest")
        where = f"{entry.name} (line {entry.line})"
        single = (f"put the value in single quotes ({entry.name}='...'), where Compose and the "
                  "tasks read it alike")
        if entry.quote == "'":
            quoted = QUOTED_RE["'"].match(rest)
            if quoted and "\\\\" in quoted.group(1):
                problems.append(Problem(entry.name, entry.line, "compose", (
                    f"{where}: Compose keeps \\\\ inside single quotes as two backslashes, the "
                    "tasks read one; write a single backslash there")))
            continue
        if "$$" in entry.value:
            problems.append(Problem(entry.name, entry.line, "compose", (
                f"{where}: Compose reads $$ as one $, the tasks read both; write each $ once "
                f"and {single}")))
        elif "$" in entry.value:
            problems.append(Problem(entry.name, entry.line, "compose", (
                f"{where}: Compose replaces $... in this value with another variable (or "
                f"nothing), so the containers would get a shorter value than the tasks read; "
                f"{single}")))
        if entry.quote == '"':
            quoted = QUOTED_RE['"'].match(rest)
            if quoted and "\\'" in quoted.group(1):
                problems.append(Problem(entry.name, entry.line, "compose", (
                    f"{where}: Compose keeps \\' inside double quotes as written, the tasks read "
                    "'; drop the backslash")))
            continue
        line = re.match(r"[^\r\n]*", rest)
        text = line.group(0) if line else ""
        if sep and text.startswith("#"):
            problems.append(Problem(entry.name, entry.line, "compose", (
                f"{where}: Compose reads the '# ...' after '=' as the value, the tasks read an "
                "empty value; move the comment to a line of its own")))
        elif re.search(r"[\t\v\f]#", text):
            problems.append(Problem(entry.name, entry.line, "compose", (
                f"{where}: a tab before '#' ends the value for the tasks but not for Compose; "
                "put a space before the '#', or move the comment to a line of its own")))
    return problems


def url_variables(compose_files: Iterable[Path]) -> dict[str, str]:
    """Variables the compose files interpolate into a URL (``scheme://...${NAME}...``), each
    with the setting that holds the URL (e.g. ``POSTGRES_PASSWORD -> DATABASE_URL``)."""
    found: dict[str, str] = {}
    for path in compose_files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            if "://" not in line or line.lstrip().startswith("#"):
                continue
            key = re.match(r"\s*-?\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]", line)
            url = line[line.index("://"):].replace("$$", "")
            for braced, bare in _VAR_IN_TEXT_RE.findall(url):
                found.setdefault(braced or bare, key.group(1) if key else "a URL")
    return found


#: The variables LiteLLM builds its database URL from, percent-encoding each with quote_plus.
LITELLM_URL_PARTS = ("DATABASE_USERNAME", "DATABASE_PASSWORD", "DATABASE_NAME")


def encoded_url_variables(compose_files: Iterable[Path]) -> dict[str, str]:
    """Variables the compose files pass as one of :data:`LITELLM_URL_PARTS`, each with the part."""
    found: dict[str, str] = {}
    pattern = re.compile(r"\s*(" + "|".join(LITELLM_URL_PARTS) + r")\s*:\s*\$\{?([A-Za-z_][A-Za-z0-9_]*)")
    for path in compose_files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            match = pattern.match(line)
            if match:
                found.setdefault(match.group(2), match.group(1))
    return found


def url_problems(doc: EnvDoc, compose_files: Iterable[Path]) -> list[Problem]:
    """Values that would change the meaning of a URL the compose files (or LiteLLM) build."""
    compose_files = list(compose_files)
    problems = []
    for name, part in encoded_url_variables(compose_files).items():
        entry = doc.entries.get(name)
        if entry is None or not entry.value or not re.search(r"\s", entry.value):
            continue
        problems.append(Problem(name, entry.line, "url", (
            f"{name} (line {entry.line}) reaches LiteLLM as {part}, and it holds whitespace: "
            "LiteLLM's URL encoding turns a space into '+', so it would log in with another "
            "value than PostgreSQL holds; use a value without spaces")))
    for name, setting in url_variables(compose_files).items():
        entry = doc.entries.get(name)
        if entry is None or not entry.value or _URL_SAFE_RE.match(entry.value):
            continue
        problems.append(Problem(name, entry.line, "url", (
            f"{name} (line {entry.line}) goes into {setting} (docker-compose.yml), and it holds "
            "characters that change what that URL says (such as @ : / # ? % or spaces), so "
            "the service would read another host, user or password; use only letters, digits "
            "and - _ . ~ (percent-encoding does not help: the same variable reaches other "
            "services as written; `python3 -c \"import secrets; print(secrets.token_urlsafe(24))\"` "
            "makes such a value)")))
    return problems


def header_problems(doc: EnvDoc, names: Iterable[str]) -> list[Problem]:
    """Keys sent in an HTTP ``Authorization`` header that such a header cannot carry as is."""
    problems = []
    for name in names:
        entry = doc.entries.get(name)
        if entry is None or not entry.value:
            continue
        reason = header_problem(entry.value)
        if reason:
            problems.append(Problem(name, entry.line, "header", (
                f"{name} (line {entry.line}) {reason}, and it is sent in an HTTP header; "
                + ("`invoke env.init` generates a valid one (on a new .env)"
                   if name == "LITELLM_MASTER_KEY" else "paste the key exactly as LiteLLM showed it"))))
    return problems


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot travel as an HTTP header value unchanged (None: it can)."""
    if value != value.strip():
        return "starts or ends with a space or line break"
    if not value.isascii():
        return "has characters outside ASCII (such as umlauts)"
    if not _HEADER_SAFE_RE.match(value):
        return "has spaces or control characters inside"
    return None


def require_sendable(master_key: str, master_source: str, keys: Mapping[str, str]) -> None:
    """Refuse, before any request, a key that an HTTP header cannot carry (it would end in a
    traceback or a misleading network error). ``keys``: env var name -> value from .env.

    Raises EnvFileError (exit 3) for a value from .env, UsageError (exit 2) for a master key
    from the environment. The message never holds the value."""
    reason = header_problem(master_key) if master_key else None
    if reason:
        error = EnvFileError if " in " in master_source else UsageError
        raise error(f"{master_source} {reason}, and it is sent in an HTTP header; "
                    "`invoke env.check` says how to fix it")
    for name, value in keys.items():
        reason = header_problem(value) if value else None
        if reason:
            raise EnvFileError(f"{name} in .env {reason}, and it is sent in an HTTP header; "
                               "`invoke env.check` says how to fix it")


def interpolate(expression: str, values: Mapping[str, str]) -> str | None:
    """What Compose makes of a compose-file value with ``values`` as its variables, for the
    forms docker-compose.yml uses (``$NAME``, ``${NAME}``, ``${NAME:-d}``, ``${NAME-d}``,
    ``${NAME:?m}``, ``${NAME?m}``, ``$$``); None for any other form."""
    out = []
    i = 0
    while i < len(expression):
        char = expression[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        if expression.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        braced = re.match(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^${}]*))?\}", expression[i:])
        bare = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", expression[i:])
        if braced:
            name, op, arg = braced.group(1), braced.group(2), braced.group(3) or ""
            value = values.get(name)
            if op in (":-", ":?") and not value:
                if op == ":?":
                    return None
                value = arg
            elif op in ("-", "?") and value is None:
                if op == "?":
                    return None
                value = arg
            out.append(value or "")
            i += braced.end()
        elif bare:
            out.append(values.get(bare.group(1)) or "")
            i += bare.end()
        else:
            return None
    return "".join(out)


def names_in(expression: str) -> list[str]:
    """The variables a compose-file value refers to (``$$`` excluded)."""
    return [a or b for a, b in _VAR_IN_TEXT_RE.findall(expression.replace("$$", ""))]


def compare_with_compose(
    doc: EnvDoc, raw: Mapping[str, Mapping[str, str]], passed: Mapping[str, Mapping[str, str]]
) -> list[Problem]:
    """Problems where Compose passes a service another value than the tasks' reading implies.

    ``raw``: each service's environment as written in the compose files (``config
    --no-interpolate``); ``passed``: the same after Compose's interpolation with this .env
    (``config``). Only values that refer to a variable .env sets are compared."""
    problems = []
    values = doc.values
    for service, environment in raw.items():
        for key, expression in environment.items():
            names = [n for n in names_in(str(expression)) if n in doc.entries]
            if not names:
                continue
            expected = interpolate(str(expression), values)
            actual = (passed.get(service) or {}).get(key)
            if expected is None or actual is None or expected == actual:
                continue
            entry = doc.entries[names[0]]
            problems.append(Problem(entry.name, entry.line, "compose", (
                f"docker compose config passes {service} another {key} than the tasks read "
                f"from .env ({', '.join(names)}, line {entry.line}); see the other findings, "
                "or quote the value in single quotes")))
    return problems
