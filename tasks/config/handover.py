"""``hand_over``: where a key is handed to another application's .env file.

A declared key names its files under ``gateway.keys.<name>.hand_over`` as a list of
``{dotenv: PATH, var: NAME}``; this module reads and checks that list for the settings (the
writing is ``virtualkeys.dotenvfiles``'s). Paths: ``~``, ``%NAME%``, ``$NAME`` and ``${NAME}`` are
expanded on every system (a config shared by Windows and Linux may say ``%USERPROFILE%``; where
``USERPROFILE`` or ``HOME`` is not set, the home folder stands in); any other unset variable is an
error (exit 2), never a folder named ``%APPDATA%``. A backslash is a folder separator everywhere.
A relative path is taken from the project folder (``gateway.project_dir``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import UsageError
from ..envstore.envfile import NAME_RE

if TYPE_CHECKING:
    from .settings import KeySpec

#: the settings of one ``hand_over`` entry
HAND_OVER_SETTINGS = ("dotenv", "var")

_VAR_RE = re.compile(r"%([A-Za-z_][A-Za-z0-9_()]*)%"
                     r"|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_HOMES = ("USERPROFILE", "HOME")


@dataclass(frozen=True)
class DotenvTarget:
    """One ``hand_over`` entry: the file (expanded, maybe relative) and the variable in it."""

    dotenv: Path
    var: str
    written: str = ""  # as invoke.yaml wrote it

    def path(self, project_dir: Path) -> Path:
        return self.dotenv if self.dotenv.is_absolute() else project_dir / self.dotenv


def expand_path(text: str, where: str, environ: Mapping[str, str] | None = None) -> Path:
    """``~``, ``%NAME%``, ``$NAME``, ``${NAME}`` expanded; backslashes as separators.
    UsageError (exit 2) naming the variable when one is not set."""
    environ = os.environ if environ is None else environ

    def value_of(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        value = environ.get(name)
        if value is None and sys.platform == "win32":
            value = next((v for k, v in environ.items() if k.upper() == name.upper()), None)
        if not value and name.upper() in _HOMES:
            value = str(Path.home())
        if not value:
            raise UsageError(f"{where}: {text!r} names the variable {name}, which is not set")
        return value

    expanded = _VAR_RE.sub(value_of, text.strip())
    if os.sep == "/":
        expanded = expanded.replace("\\", "/")
    return Path(os.path.expanduser(expanded))


def parse_hand_over(where: str, raw: Any, environ: Mapping[str, str] | None = None
                    ) -> tuple[DotenvTarget, ...]:
    """``gateway.keys.<name>.hand_over``: a list of ``{dotenv: PATH, var: NAME}``. UsageError
    (exit 2) naming the entry and the setting when malformed."""
    where = f"{where}.hand_over"
    if raw is None or raw == "":
        return ()
    if isinstance(raw, Mapping):
        raw = [raw]  # one entry written without the dash
    if not isinstance(raw, (list, tuple)):
        raise UsageError(f"{where} takes a list of {{dotenv: PATH, var: NAME}} entries")
    targets = []
    for index, entry in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            raise UsageError(f"{at} takes dotenv: PATH and var: NAME")
        path = entry.get("dotenv")
        if not isinstance(path, str) or not path.strip():
            raise UsageError(f"{at}.dotenv takes the path of a .env file (e.g. ~/.continue/.env)")
        var = entry.get("var")
        if not isinstance(var, str) or not NAME_RE.match(var):
            raise UsageError(f"{at}.var takes a variable name (letters, digits and _), not "
                             f"{var!r}")
        targets.append(DotenvTarget(expand_path(path, f"{at}.dotenv", environ), var, path))
    seen = set()
    for target in targets:
        if (target.dotenv, target.var) in seen:
            raise UsageError(f"{where} names {target.var} in {target.written} twice")
        seen.add((target.dotenv, target.var))
    return tuple(targets)


def _identity(path: Path) -> str:
    """One name per file however it is spelled (``..``, symlinks, case on Windows)."""
    return os.path.normcase(os.path.realpath(path))


def check_targets(specs: Sequence[KeySpec], project_dir: Path | None = None,
                  env_file: Path | None = None) -> None:
    """Two keys must not hand over to the same variable of the same file (each rotation would
    overwrite the other's key), and no key to the stack's own ``.env`` (it would overwrite the
    master key or another key there): UsageError (exit 2) naming them. Paths are compared as
    the files they name, so another spelling of the same file is the same file."""
    base = project_dir or Path.cwd()
    own = _identity(env_file) if env_file is not None else None
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        for target in spec.hand_over:
            identity = _identity(target.path(base))
            if identity == own:
                raise UsageError(
                    f"gateway.keys.{spec.name}.hand_over: {target.written} is the stack's own "
                    ".env; hand the key to the other application's file (e.g. ~/.continue/.env)")
            other = seen.setdefault((identity, target.var), spec.name)
            if other != spec.name:
                raise UsageError(f"gateway.keys: {other!r} and {spec.name!r} both hand over to "
                                 f"{target.var} in {target.written}; give each its own var")
