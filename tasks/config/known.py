"""Unknown settings under ``gateway`` are errors (exit 2, naming the setting and the nearest
known name): a restriction a user misspelled - ``model:`` for ``models:`` - is never dropped.
Checked in invoke.yaml and ``-f`` files, and in the ``INVOKE_GATEWAY_*`` variables, which Invoke
would otherwise ignore silently.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from ..base.errors import UsageError

#: settings of ``gateway`` besides those in settings.DEFAULTS
GATEWAY_SETTINGS = ("keys",)
#: settings of one key besides those of the default key in settings.DEFAULTS
KEY_SETTINGS = ("env_var", "alias", "team_id", "team_alias", "models", "duration", "max_budget",
                "gate", "metadata", "hand_over")
#: settings whose value is free-form (not checked inside)
FREE = ("metadata",)
ENV_PREFIX = "INVOKE_GATEWAY_"


def _nearest(name: str, known: Iterable[str]) -> str:
    choices = sorted(set(known))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"known: {', '.join(choices)}"


def _refuse(where: str, name: str, known: Iterable[str], source: str) -> None:
    raise UsageError(f"unknown setting {where}.{name} ({source}); {_nearest(name, known)}")


def check_config(gateway: Mapping[str, Any], defaults: Mapping[str, Any],
                 source: str = "invoke.yaml or a -f file") -> None:
    """Every name under ``gateway`` (the merged config) must be known; raises UsageError."""
    top = set(defaults) | set(GATEWAY_SETTINGS)
    for name in gateway:
        if str(name) not in top:
            _refuse("gateway", str(name), top, source)
    keys = gateway.get("keys")
    if not isinstance(keys, Mapping):
        return
    per_key = set(KEY_SETTINGS)
    for spec in (defaults.get("keys") or {}).values():
        if isinstance(spec, Mapping):
            per_key |= {str(n) for n in spec}
    for key_name, spec in keys.items():
        if not isinstance(spec, Mapping):
            continue  # KeySpec.from_config names the shape
        where = f"gateway.keys.{key_name}"
        for name in spec:
            if str(name) not in per_key:
                _refuse(where, str(name), per_key, source)
        entries = spec.get("hand_over")
        entries = [entries] if isinstance(entries, Mapping) else entries
        if isinstance(entries, (list, tuple)):
            for index, entry in enumerate(entries):
                if isinstance(entry, Mapping):
                    for name in entry:
                        if str(name) not in ("dotenv", "var"):
                            _refuse(f"{where}.hand_over[{index}]", str(name), ("dotenv", "var"),
                                    source)


def env_names(config: Mapping[str, Any], prefix: str = "INVOKE_") -> dict[str, str]:
    """The ``INVOKE_*`` names Invoke would apply to ``config`` (its leaves, as Invoke's
    ``Environment`` builds them: the path joined by ``_``, upper case), each with the dotted
    path of its setting."""
    names = {}

    def crawl(path: list[str], value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                crawl([*path, str(key)], inner)
        else:
            names[prefix + "_".join(path).upper()] = ".".join(path)

    crawl([], config)
    return names


def check_environment(gateway: Mapping[str, Any], defaults: Mapping[str, Any],
                      environ: Mapping[str, str]) -> None:
    """Every ``INVOKE_GATEWAY_*`` variable must be one Invoke applies, and hold a value: an
    empty one would replace invoke.yaml's setting with nothing (Invoke applies the empty text),
    so it is refused like an empty limit, never taken as "unset". Raises UsageError."""
    known = {**env_names({"gateway": defaults}), **env_names({"gateway": gateway})}
    for name in sorted(environ):
        # Windows' environment is case-blind (os.environ upper-cases it); POSIX's is not
        upper = name.upper() if sys.platform == "win32" else name
        if upper.startswith(ENV_PREFIX) and upper not in known:
            raise UsageError(
                f"unknown setting {name} (environment): Invoke ignores it; "
                f"{_nearest(upper, known)}")
        if upper.startswith(ENV_PREFIX) and not environ[name].strip():
            raise UsageError(empty_message(name, known[upper]))


def empty_message(name: str, setting: str) -> str:
    """The line for an ``INVOKE_*`` variable that is set but empty."""
    return (f"{name} is set but empty: it would replace {setting} from invoke.yaml with "
            f"nothing; unset it (`unset {name}`) or give it a value")


def check_known(gateway: Mapping[str, Any], defaults: Mapping[str, Any],
                environ: Mapping[str, str] | None) -> None:
    """Both checks: the merged config, then (when given) the environment."""
    check_config(gateway, defaults)
    if environ is not None:
        check_environment(gateway, defaults, environ)
