"""keys.*: LiteLLM virtual keys - create, rotate, revoke, list. Thin: the work is in virtualkeys.manager."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from invoke.tasks import task
from invoke.vendor import yaml

from .base.errors import GatewayError, UsageError
from .cli import (
    confirm,
    emit,
    emit_json,
    exactly_one,
    guarded,
    note,
    progress,
    read_stdin_line,
    seconds_flag,
    settings_from,
)
from .config.settings import KeySpec, Settings, parse_duration, parse_overrides, parse_via
from .envstore import envfile
from .virtualkeys import continuedev
from .virtualkeys.dotenvfiles import states

if TYPE_CHECKING:
    from .virtualkeys.manager import KeyManager, KeyResult

NAME = "Which configured key (gateway.keys in invoke.yaml); default: open-webui (VIRTUAL_KEY)"
COMMON = {
    "env-file": "The .env to use (default: .env beside docker-compose.yml)",
    "url": "LiteLLM's URL (default: LITELLM_PROXY_URL, else http://localhost:<LITELLM_PORT>)",
    "via": "How to reach LiteLLM: host (its published port), container (docker exec in the "
           "litellm container), or auto (host, then container; default)",
    "wait": "Give a starting LiteLLM up to this many seconds to become ready (default: 0)",
    "json": "Print the result as JSON for scripts",
}


@contextmanager
def manager(c: Any, env_file: str | None, url: str | None, via: str | None = None,
            as_json: bool = False, wait: str | None = None, reads_only: bool = False,
            about: Callable[[Settings], Sequence[KeySpec]] | None = None,
            ) -> Iterator[tuple[Settings, KeyManager]]:
    """Settings and the gateway's KeyManager (``Gateway.keys``), with Open WebUI as the consumer of
    the gate key - looked up (Docker) only when a key will really change, also when any keys
    task (even ``keys.list``) finishes an interrupted rotation: its hand-over comes first.
    ``reads_only``: the task never writes .env, so it may be a pipe (``settings_from``).
    ``about``: the keys the task is about (default: all), picked before LiteLLM is asked - an
    unknown name is refused first, and the advice when LiteLLM cannot be reached names their
    variables."""
    # imported here: the gateway brings httpx, which `invoke --list` and env.* never need
    from .gateway.stack import Gateway

    via = parse_via(via, "--via")
    seconds = seconds_flag(wait, "--wait") or 0.0
    settings = settings_from(c, env_file=env_file, url=url, with_env=True, reads_only=reads_only)
    specs = list(about(settings)) if about is not None else list(settings.keys.values())
    gateway = Gateway(settings, progress=progress)
    try:
        with gateway.keys(via, wait=seconds, about=specs) as keys:
            for line in gateway.take_notes():  # an interrupted master-key rotation finished
                emit(line, as_json=as_json)
            yield settings, keys
    except GatewayError:
        for line in gateway.take_notes():  # what was done before the failure
            note(line)
        raise
    finally:
        gateway.close()


def _report(result: KeyResult, settings: Settings, as_json: bool) -> None:
    if as_json:
        emit_json(result.public())
        return
    for line in result.notes:
        emit(line)
    if result.action == "unchanged":
        emit(f"{result.env_var}: {result.masked} ({result.alias}, team {result.team_id or '-'})")
        return
    models = ", ".join(result.models) or "all models"
    emit(f"{result.action} {result.alias!r} for {result.name}: {result.masked} "
         f"(team {result.team_id}, {models}, expires {result.expires or 'never'})")
    emit(f"saved in {result.env_var} in {settings.env_file}")


@task(
    help={
        **COMMON,
        "name": NAME,
        "alias": "The key's alias in LiteLLM (default from config: 'Open WebUI Key')",
        "team": "The team id the key belongs to (created if missing; default open-webui-team)",
        "models": "Comma-separated models the key may use (default: all the team may use)",
        "duration": "Lifetime: 30s, 15m, 2h, 7d, 1w, 1mo (default: never expires)",
        "max-budget": "Spend limit in USD",
        "force": "Replace the key .env holds even if it works (done as a safe rotation)",
    }
)
@guarded
def create(
    c: Any,
    name: str | None = None,
    alias: str | None = None,
    team: str | None = None,
    models: str | None = None,
    duration: str | None = None,
    max_budget: str | None = None,
    force: bool = False,
    env_file: str | None = None,
    url: str | None = None,
    via: str | None = None,
    wait: str | None = None,
    json: bool = False,
) -> None:
    """Create the virtual key and save it in .env (a no-op when .env holds a working one)."""
    overrides = parse_overrides(alias=alias, team=team, models=models, duration=duration,
                                max_budget=max_budget)  # a bad flag: exit 2 before any request
    with manager(c, env_file, url, via, json, wait=wait,
                 about=lambda s: [s.key(name)]) as (settings, keys):
        spec = settings.key(name).with_overrides(overrides)
        changed = {n for n, v in (("alias", alias), ("team_id", team), ("models", models),
                                  ("max_budget", max_budget)) if v is not None}
        result = keys.create(spec, force=force, changed=changed)
        _report(result, settings, json)
        if not json and result.old_key is not None:  # --force, or an expired/blocked key replaced
            emit(old_key_line(result, None))


@task(
    help={
        **COMMON,
        "name": NAME,
        "all": "Rotate every configured key that exists",
        "grace": "Let the old key work this long (30s, 15m, 2h, 7d...) instead of deleting it now",
        "older-than": "Rotate only a key at least this old (e.g. 30d; its age is LiteLLM's created_at, "
        "the time of its last rotation); younger keys are left alone quietly (for cron, timers)",
    }
)
@guarded
def rotate(
    c: Any,
    name: str | None = None,
    all: bool = False,
    grace: str | None = None,
    older_than: str | None = None,
    env_file: str | None = None,
    url: str | None = None,
    via: str | None = None,
    wait: str | None = None,
    json: bool = False,
) -> None:
    """Replace a key with a new one; the old one goes only after the new one is proven."""
    if all and name:
        raise UsageError("give --name or --all, not both")
    if grace is not None and not grace.strip():
        raise UsageError("--grace takes a duration such as 1h, not an empty value")
    grace = parse_duration(grace)
    # the keys layer (and httpx with it) loads only once a task runs, not for `invoke --list`
    from .virtualkeys.schedule import min_age

    oldest = min_age(older_than)
    with manager(c, env_file, url, via, json, wait=wait,
                 about=lambda s: list(s.keys.values()) if all else [s.key(name)]
                 ) as (settings, keys):
        specs = list(settings.keys.values()) if all else [settings.key(name)]
        done = keys.rotate_each(specs, grace=grace, older_than=oldest, keep_going=all)
        if json:
            shown = [r.public() for r in done.results] + done.skipped
            emit_json(shown if all else shown[0])
        else:
            for result in done.results:
                _report(result, settings, False)
                emit(old_key_line(result, grace))
        if not done.failures:
            return
        # each failure once: all but the last here, the last as the task's error line
        for key_name, failure in done.failures[:-1]:
            note(f"error: {key_name}: {failure.message}")
        key_name, last = done.failures[-1]
        last.args = (f"{key_name}: {last.message}" if len(specs) > 1 else last.message,)
        raise last


#: LiteLLM's workers each cache the keys they have seen (README, "Several LiteLLM workers").
CACHE_WINDOW = ("a LiteLLM with several workers may still accept it from a worker's cache for "
                "up to its key cache TTL (60 s by default)")


def old_key_line(result: KeyResult, grace: str | None) -> str:
    """What became of the key a rotation replaced, as a person reads it."""
    fate = result.old_key
    if fate == "expires":
        return (f"the old key keeps working until {result.old_expires} (--grace {grace}), then "
                "LiteLLM expires it")
    if fate == "kept":
        return (f"the old key expires at {result.old_expires}, sooner than --grace {grace}; its "
                "expiry is unchanged")
    if fate == "inactive":
        return ("the old key was already expired or blocked, so no grace period applies; "
                f"deleted it in LiteLLM ({CACHE_WINDOW})")
    if fate == "gone":
        return "LiteLLM no longer had the old key"
    if fate == "deleted":
        return f"deleted the old key in LiteLLM ({CACHE_WINDOW})"
    return "no old key to retire"


@task(
    help={
        **COMMON,
        "name": "Revoke the key .env holds for this configured key (default: open-webui, "
        "when no --alias or --key is given)",
        "alias": "Revoke every key with this alias",
        "key": "Revoke by hash (or its first 8+ hex digits, see keys.list), or '-' to read the "
        "key itself from stdin",
        "block": "Block instead of delete (reversible with LiteLLM's /key/unblock)",
        "yes": "Do not ask; required when stdin is not a terminal",
    }
)
@guarded
def revoke(
    c: Any,
    name: str | None = None,
    alias: str | None = None,
    key: str | None = None,
    block: bool = False,
    yes: bool = False,
    env_file: str | None = None,
    url: str | None = None,
    via: str | None = None,
    wait: str | None = None,
    json: bool = False,
) -> None:
    """Delete (or --block) a key in LiteLLM and remove it from .env if it was stored there.
    With no --name/--alias/--key: the key .env holds for the default consumer."""
    if alias is None and key is None and name is None:
        name = ""  # the default key (gateway.default_key)
    exactly_one({"name": name, "alias": alias, "key": key})
    if key == "-":
        key = read_stdin_line("keys.revoke --key -")
        if not key.startswith("sk-"):
            raise UsageError("the key read from stdin must start with 'sk-'")
    with manager(c, env_file, url, via, json, wait=wait,
                 about=lambda s: [s.key(name)] if name is not None else list(s.keys.values())
                 ) as (_settings, keys):
        keys.client.require_database()
        # what an interrupted run left is finished first, and said, even if the revoke stops
        for note in keys.recover_locked():
            emit(note, as_json=json)
        tokens, described = keys.resolve_tokens(name=name, alias=alias, key=key)
        verb = "block" if block else "revoke"
        confirm(f"{verb.capitalize()} {described}?", yes=yes, what=f"keys.revoke ({verb})")
        result = keys.revoke(tokens, block=block)
        if json:
            emit_json({**result.public(), "tokens": tokens})
            return
        if result.action != "cleared":  # else LiteLLM never had it: the notes say what happened
            emit(f"{result.action} {described} in LiteLLM ({CACHE_WINDOW})")
        for note in result.notes:
            emit(note)


@task(name="list", help={**COMMON, "team": "Only keys of this team id"})
@guarded
def list_(
    c: Any,
    team: str | None = None,
    env_file: str | None = None,
    url: str | None = None,
    via: str | None = None,
    wait: str | None = None,
    json: bool = False,
) -> None:
    """List LiteLLM's keys: alias, team, models, expiry, spend, status, which one .env holds."""
    with manager(c, env_file, url, via, json, wait=wait, reads_only=True) as (settings, keys):
        rows, notes = keys.list(team_id=team)
        files = states(settings, envfile.load(settings.env_file).values)
    if json:
        emit_json({"keys": [asdict(r) for r in rows], "hand_over": [asdict(f) for f in files],
                   "notes": notes})
        return
    for line in notes:
        emit(line)
    header = ("ALIAS", "TEAM", "MODELS", "EXPIRES", "SPEND", "STATUS", "KEY", "IN .ENV")
    table = [header] + [
        (
            r.alias or "-",
            r.team_id or "-",
            ",".join(r.models) or "all",
            (r.expires or "never")[:19],
            f"{r.spend:.2f}" + (f"/{r.max_budget:g}" if r.max_budget else ""),
            r.status,
            r.masked,
            r.held_by or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        emit("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    emit(f"{len(rows)} key(s)")
    for file in files:
        emit(f"hand-over: {file.line()}")


@task(
    name="rotate-master",
    help={
        "yes": "Do not ask; required when stdin is not a terminal",
        "salt-key-set": "LiteLLM is not this stack's (the tasks cannot restart it) and it has "
        "LITELLM_SALT_KEY set: write the new key to .env, then you restart LiteLLM with it",
        "timeout": "How long to wait for the recreated LiteLLM to become healthy (default: gateway."
        "start_timeout, 300 s)",
        "env-file": COMMON["env-file"],
        "url": COMMON["url"],
        "json": COMMON["json"],
        "engine": "What runs the stack whose LiteLLM is recreated: compose or swarm (default: "
                  "gateway.engine, compose)",
    },
)
@guarded
def rotate_master(
    c: Any,
    yes: bool = False,
    salt_key_set: bool = False,
    timeout: str | None = None,
    env_file: str | None = None,
    url: str | None = None,
    json: bool = False,
    engine: str | None = None,
) -> None:
    """Replace LITELLM_MASTER_KEY: new key in .env, LiteLLM recreated with it, then proven."""
    from .gateway.stack import Gateway  # httpx: as in manager

    seconds = seconds_flag(timeout, "--timeout")
    settings = settings_from(c, env_file=env_file, url=url, with_env=True, engine=engine)
    confirm("Replace LiteLLM's master key (LiteLLM is restarted with the new one)?", yes=yes,
            what="keys.rotate-master")
    gateway = Gateway(settings, progress=progress)
    try:
        result = gateway.rotate_master(
            wait=seconds if seconds is not None else settings.start_timeout,
            external_salt_key=salt_key_set)
    except GatewayError:
        for line in gateway.take_notes():  # e.g. a pending rotation finished before this one
            note(line)
        raise
    finally:
        gateway.close()
    if json:
        emit_json(result.public())
        return
    for line in result.notes:
        emit(line)
    emit(f"rotated LiteLLM's master key: {result.public()['key']} saved in LITELLM_MASTER_KEY in "
         f"{settings.env_file}" + (" (LiteLLM recreated with it)" if result.restarted else ""))
    for fact in result.proven:
        emit(f"  {fact}")


@task(
    name="continue-config",
    optional=["write"],
    help={
        "name": "Which configured key (default: the one key with a hand_over)",
        "write": "Merge the models into Continue.dev's config.yaml instead of printing them "
        "(default path: config.yaml beside the key's first hand_over file, e.g. "
        "~/.continue/config.yaml)",
        "env-file": COMMON["env-file"],
        "url": COMMON["url"],
        "via": COMMON["via"],
        "wait": COMMON["wait"],
        "json": COMMON["json"],
    },
)
@guarded
def continue_config(
    c: Any,
    name: str | None = None,
    write: Any = None,
    env_file: str | None = None,
    url: str | None = None,
    via: str | None = None,
    wait: str | None = None,
    json: bool = False,
) -> None:
    """Continue.dev's config.yaml models for the models the key may use (apiKey from its .env)."""
    printing = write is None or write is False
    document = json or printing  # stdout carries the JSON or the YAML: notes go to stderr
    with manager(c, env_file, url, via, document, wait=wait, reads_only=True,
                 about=lambda s: [continuedev.key_of(s, name)]) as (settings, keys):
        spec = continuedev.key_of(settings, name)
        for line in keys.recover_locked():
            emit(line, as_json=document)
        models = keys.models_of(spec)
    var = spec.hand_over[0].var
    block = continuedev.models_block(models, settings.litellm_url, var)
    if printing:
        if json:
            emit_json({"models": block})
        else:
            emit(continuedev.render(block, yaml).rstrip())
        return
    default = spec.hand_over[0].path(settings.project_dir).parent / "config.yaml"
    target = continuedev.target_of(write if isinstance(write, str) else "", default)
    merged = continuedev.write(target, block, settings.litellm_url, yaml,
                               timeout=settings.lock_timeout)
    if json:
        emit_json({"path": str(target), "models": block, "replaced": merged.replaced,
                   "kept": merged.kept, "kept_at_this_litellm": merged.kept_here})
        return
    emit(f"wrote {len(block)} model(s) to {target} (apiKey: "
         f"{continuedev.secret_ref(var)}; replaced {merged.replaced} written before, kept "
         f"{merged.kept} other model(s))")
    if merged.kept_here:
        emit(f"kept your own model(s) at this LiteLLM as they were: "
             f"{', '.join(repr(n) for n in merged.kept_here)} (only entries named "
             f"'<model>{continuedev.SUFFIX}' are ours to replace)")
