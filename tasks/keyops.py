"""Virtual-key lifecycle: create, rotate, revoke, list - plain functions, no Invoke, no printing.

Creation and rotation share one protocol, so that a working key is never thrown away before
its replacement is proven to work:

1. journal the intent (``<.env>.keys-journal.json``, 0600; hashes and aliases only, never a
   plaintext key) - so a run killed at any later point can be finished or rolled back;
2. generate the new key under a unique *pending* alias (LiteLLM refuses two keys with one
   alias), with the team, models, budget and metadata of the key it replaces; journal its hash;
3. prove it works: ``/v1/models`` with the new key;
4. switch: write it to .env atomically (and ``FIRST_RUN=no`` in the same write, for the gate
   key), then hand it to its consumer (a hook; the stack wires Open WebUI in);
5. retire the old key: delete it, or with a grace period rename it and let LiteLLM expire it;
6. give the new key the real alias; clear the journal.

A failure or Ctrl-C before the switch deletes the new key and leaves .env and the old key as
they were. After the switch, the journal stays and the next keys task finishes the job; the
error says so. Every keys task first looks at the journal (``recover``): if .env holds the
journaled new key the operation is finished, otherwise the pending key is deleted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from . import envfile
from .errors import (
    ApiError,
    EnvFileError,
    GatewayError,
    IncompleteError,
    Interrupted,
    KeyStateError,
    ProxyUnreachableError,
    UsageError,
)
from .masking import mask
from .proxy import LiteLLM, token_of
from .settings import GATE_VAR, TRUTHY, KeySpec, Settings, duration_seconds

MANAGED_BY = "ai-gateway-tasks"

#: Hands a new key to the program that uses it; raises GatewayError when that fails.
Consumer = Callable[[KeySpec, str], None]


# The aliases a key wears on its way: while being made, and while its grace period runs.
PENDING_RE = re.compile(r"\s\[pending [0-9a-f]+\]\Z")
RETIRED_RE = re.compile(r"\s\(retired [0-9a-f]+\)\Z")


def pending_alias_of(alias: str, txid: str) -> str:
    return f"{alias} [pending {txid}]"


def retired_alias(alias: str, txid: str) -> str:
    return f"{alias} (retired {txid})"


#: How a journaled operation reads in a message.
OP_WORDS = {"created": "key creation", "rotated": "rotation"}

#: Special model names LiteLLM takes in a key's ``models`` besides the models it serves.
SPECIAL_MODELS = ("all-proxy-models", "all-team-models", "*", "")


def check_models(requested: Iterable[str], served: list[str], *, team_id: str = "",
                 team_models: Iterable[str] = ()) -> None:
    """Raise UsageError (exit 2) naming each requested model LiteLLM does not serve (with the
    list it serves), or that the team ``team_id`` does not allow (``team_models``; empty or
    ``all-proxy-models`` = all). A name with ``*`` must match at least one served model."""
    requested = [m for m in requested if m not in SPECIAL_MODELS]
    unknown = [m for m in requested
               if m not in served and not ("*" in m and fnmatch.filter(served, m))]
    if unknown:
        raise UsageError(
            f"LiteLLM serves no model {', '.join(map(repr, unknown))}; it serves: "
            f"{', '.join(served) or 'nothing (its config has no model_list)'}")
    allowed = [m for m in team_models if m not in SPECIAL_MODELS]
    if allowed and not any(m in SPECIAL_MODELS for m in team_models):
        refused = [m for m in requested if m not in allowed
                   and not any(fnmatch.fnmatch(m, a) for a in allowed if "*" in a)]
        if refused:
            raise UsageError(
                f"team {team_id!r} does not allow {', '.join(map(repr, refused))}; it allows: "
                f"{', '.join(allowed)}")


def reached(key_models: Iterable[str], served: list[str]) -> list[str]:
    """The served models among those ``/v1/models`` lists for a key (the real LiteLLM lists a
    model the key is restricted to even when nothing serves it)."""
    return [m for m in key_models if m in served]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _when(value: Any) -> datetime | None:
    """An ISO expiry from LiteLLM as an aware datetime; None for never (or unreadable)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def key_status(info: Mapping[str, Any] | None, now: datetime | None = None) -> str:
    """active / blocked / expired / deleted / missing, from a /key/info or /key/list object."""
    if info is None:
        return "missing"
    stated = str(info.get("status") or "")
    if stated in ("deleted", "revoked", "expired"):
        return "blocked" if stated == "revoked" else stated
    if info.get("blocked"):
        return "blocked"
    expires = info.get("expires")
    if expires:
        try:
            when = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        except ValueError:
            return stated or "active"
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        if when <= (now or _now()):
            return "expired"
    return "active"


# --------------------------------------------------------------------------- journal


class Journal:
    """Pending key operations by key name, in a 0600 JSON file beside .env."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(envfile.resolve(self.path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise EnvFileError(
                f"cannot read the keys journal {self.path} ({exc}); if no keys task is running, "
                "check `invoke keys.list` and delete the file"
            ) from None
        return data if isinstance(data, dict) else {}

    def put(self, name: str, entry: Mapping[str, Any]) -> None:
        data = self.read()
        data[name] = dict(entry)
        envfile.write_secure(self.path, json.dumps(data, indent=2, sort_keys=True).encode())

    def drop(self, name: str) -> None:
        data = self.read()
        if name not in data:
            return
        del data[name]
        if data:
            envfile.write_secure(self.path, json.dumps(data, indent=2, sort_keys=True).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


# --------------------------------------------------------------------------- results


OldKeyFate = Literal["deleted", "expires", "kept", "inactive", "gone"]


@dataclass
class Retired:
    """What the retire step did with the old key."""

    fate: OldKeyFate
    expires: str | None = None


@dataclass
class KeyResult:
    name: str
    env_var: str
    action: str  # created / rotated / unchanged / revoked / blocked
    key: str = field(default="", repr=False)  # plaintext; only ever shown masked
    alias: str = ""
    team_id: str = ""
    models: list[str] = field(default_factory=list)
    expires: str | None = None
    notes: list[str] = field(default_factory=list)
    #: what became of the key it replaced: deleted, expires (at ``old_expires``, the grace
    #: period), kept (its own expiry came first), inactive (already expired or blocked:
    #: deleted, no grace), gone (LiteLLM no longer had it), or None (nothing replaced)
    old_key: OldKeyFate | None = None
    old_expires: str | None = None

    @property
    def masked(self) -> str:
        return mask(self.key) if self.key else ""

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["key"] = self.masked
        return data


@dataclass
class KeyRow:
    alias: str
    token: str
    team_id: str
    models: list[str]
    expires: str | None
    spend: float
    max_budget: float | None
    status: str
    held_by: str  # the .env variable that holds this key, or ""
    masked: str  # masked plaintext where .env holds it, else masked hash


# --------------------------------------------------------------------------- the protocol


class KeyManager:
    """Key operations against one LiteLLM and one .env. Construct per task."""

    def __init__(
        self,
        settings: Settings,
        client: LiteLLM,
        *,
        consumer: Consumer | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.consumer = consumer
        self.progress = progress or (lambda _msg: None)
        self.journal = Journal(settings.journal_file)
        self._served_models: list[str] | None = None

    # -- helpers -------------------------------------------------------------

    def _doc(self) -> envfile.EnvDoc:
        return envfile.load(self.settings.env_file)

    def _update_env(self, changes: Mapping[str, str]) -> None:
        envfile.update(self.settings.env_file, changes, lock_timeout=self.settings.lock_timeout)

    @contextlib.contextmanager
    def _operation(self) -> Any:
        with envfile.file_lock(
            self.settings.keys_lock_file, self.settings.lock_timeout, "the keys of this .env"
        ):
            yield

    def _spec_for_entry(self, name: str, entry: Mapping[str, Any]) -> KeySpec:
        spec = self.settings.keys.get(name)
        if spec is not None:
            return spec
        return KeySpec(
            name=name,
            env_var=str(entry["env_var"]),
            alias=str(entry["alias"]),
            team_id=str(entry.get("team_id", "")),
            team_alias=str(entry.get("team_id", "")),
            gate=bool(entry.get("gate")),
        )

    def _env_changes(self, spec: KeySpec, key: str) -> dict[str, str]:
        changes = {spec.env_var: key}
        if spec.gate:
            changes[GATE_VAR] = "no"
        return changes

    # -- recovery ------------------------------------------------------------

    def recover(self) -> list[str]:
        """Finish or roll back operations a killed run left in the journal. Holds no lock."""
        pending = self.journal.read()
        if not pending:
            return []
        notes = []
        doc = self._doc()
        for name, entry in pending.items():
            spec = self._spec_for_entry(name, entry)
            held = doc.get(spec.env_var)
            new_token = entry.get("new_token")
            what = OP_WORDS.get(str(entry.get("op")), "key operation")
            if new_token and held and token_of(held) == new_token:
                finish_notes, _retired = self._finish(spec, entry, held)
                notes += finish_notes
                notes.append(f"finished an interrupted {what} of {name!r}: .env holds the new "
                             f"key {mask(held)}")
            else:
                found = self._roll_back(entry)
                if found:
                    notes.append(f"rolled back an interrupted {what} of {name!r}: deleted the "
                                 "unfinished key; .env is as it was")
                else:
                    notes.append(f"rolled back an interrupted {what} of {name!r}: LiteLLM has no "
                                 "unfinished key of it; .env is as it was")
            self.journal.drop(name)
        return notes

    def recover_locked(self) -> list[str]:
        if not self.journal.read():
            return []
        with self._operation():
            return self.recover()

    def _roll_back(self, entry: Mapping[str, Any]) -> bool:
        """Delete the unfinished key of ``entry``: by its hash when the journal has it, else
        every key LiteLLM has under its pending alias (unique to that run). False when there
        was none."""
        if entry.get("new_token"):
            return self.client.delete_keys(keys=[str(entry["new_token"])])
        tokens = [str(k.get("token")) for k in self._find_by_alias(str(entry["pending_alias"]))]
        return bool(tokens) and self.client.delete_keys(keys=tokens)

    def _settle_gate(self, spec: KeySpec) -> bool:
        """FIRST_RUN=no once the gate key's variable holds a working key. True if it changed."""
        if spec.gate and self._doc().get(GATE_VAR).lower() != "no":
            self._update_env({GATE_VAR: "no"})
            return True
        return False

    def _retire(self, entry: Mapping[str, Any]) -> Retired | None:
        """Step 5: delete the old key, or with a grace period let it expire at the earlier of
        its own expiry and now + grace. An expired or blocked key is deleted, never revived
        (LiteLLM's ``/key/update {"duration"}`` gives even an expired key a new life)."""
        old_token = entry.get("old_token")
        if not old_token or old_token == entry.get("new_token"):
            return None
        grace = entry.get("grace")
        retired = retired_alias(str(entry["alias"]), str(entry["txid"]))
        if grace:
            info = self.client.key_info(str(old_token))
            status = key_status(info)
            if status in ("deleted", "missing"):
                return Retired("gone")
            if status == "active":
                assert info is not None
                expires = _when(info.get("expires"))
                until = _now() + timedelta(seconds=duration_seconds(str(grace)))
                body: dict[str, Any] = {"key": old_token, "key_alias": retired}
                if expires is None or expires > until:
                    body["duration"] = grace
                self.progress(f"letting the old key expire within {grace}")
                try:
                    self.client.update_key(body)
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    return Retired("gone")
                if "duration" in body:
                    return Retired("expires", until.isoformat(timespec="seconds"))
                return Retired("kept", str(info.get("expires")))
            self.progress(f"deleting the old key ({status}: no grace period for it)")
            self.client.delete_keys(keys=[str(old_token)])
            return Retired("inactive")
        self.progress("deleting the old key")
        found = self.client.delete_keys(keys=[str(old_token)])
        return Retired("deleted" if found else "gone")

    def _finish(self, spec: KeySpec, entry: Mapping[str, Any], new_key: str
                ) -> tuple[list[str], Retired | None]:
        """Steps after the switch: consumer, retire old, final alias. Safe to repeat."""
        self._settle_gate(spec)
        if self.consumer is not None:
            self.progress(f"handing the new key to the consumer of {spec.name!r}")
            self.consumer(spec, new_key)
        retired = self._retire(entry)
        alias = str(entry["alias"])
        self.progress(f"naming the new key {alias!r}")
        try:
            self.client.update_key({"key": token_of(new_key), "key_alias": alias})
        except ApiError as exc:
            if exc.status != 400 or "alias" not in exc.message.lower():
                raise
            # another key (not the one replaced) holds the alias: keep ours distinct
            alias = f"{alias} ({entry['txid']})"
            self.client.update_key({"key": token_of(new_key), "key_alias": alias})
            return [f"another key is already named {entry['alias']!r}; the new key is named "
                    f"{alias!r}"], retired
        return [], retired

    # -- create / rotate -----------------------------------------------------

    def _team_models(self, spec: KeySpec) -> tuple[bool, list[str]]:
        """(whether LiteLLM has the team, the models it allows: [] = all)."""
        team = self.client.team_info(spec.team_id)
        if team is None:
            return False, []
        info = team.get("team_info") or team
        models = info.get("models") if isinstance(info, Mapping) else None
        return True, [str(m) for m in models] if isinstance(models, list) else []

    def _ensure_team(self, spec: KeySpec) -> None:
        self.progress(f"creating team {spec.team_id!r}")
        try:
            self.client.new_team(spec.team_id, spec.team_alias)
        except ApiError as exc:
            # made meanwhile by someone else: fine; anything else is real
            if self.client.team_info(spec.team_id) is None:
                raise exc from None

    def _served(self) -> list[str]:
        if self._served_models is None:
            self._served_models = self.client.served_models()
        return self._served_models

    def _replace(
        self,
        spec: KeySpec,
        *,
        op: str,
        old_token: str | None,
        template: Mapping[str, Any] | None,
        grace: str | None,
        check: bool = True,
    ) -> KeyResult:
        served = self._served()
        team_exists, team_models = self._team_models(spec)
        if check:  # before anything is made
            check_models(spec.models, served, team_id=spec.team_id, team_models=team_models)
        if not team_exists:
            self._ensure_team(spec)
        txid = secrets.token_hex(4)
        pending_alias = pending_alias_of(spec.alias, txid)
        entry: dict[str, Any] = {
            "op": op,
            "txid": txid,
            "env_var": spec.env_var,
            "alias": spec.alias,
            "pending_alias": pending_alias,
            "team_id": spec.team_id,
            "gate": spec.gate,
            "old_token": old_token,
            "grace": grace,
            "started_at": _now().isoformat(timespec="seconds"),
            "pid": os.getpid(),
        }
        body = self._generate_body(spec, pending_alias, template, old_token)
        switched = False
        in_flight = False
        new_key = ""
        try:
            self.journal.put(spec.name, entry)
            self.progress(f"generating a new key for {spec.name!r}")
            in_flight = True
            created = self.client.generate_key(body)
            in_flight = False
            new_key = str(created["key"])
            entry["new_token"] = str(created.get("token") or token_of(new_key))
            self.journal.put(spec.name, entry)
            self.progress("checking that the new key works (/v1/models)")
            try:
                reaches = reached(self.client.models_for(new_key), served)
            except ApiError as exc:
                raise ApiError(f"the new key does not work: {exc.message}", exc.status) from exc
            if not reaches:
                raise KeyStateError(
                    f"the new key reaches none of the models LiteLLM serves "
                    f"({', '.join(served) or 'none'}); its models: "
                    f"{', '.join(body['models']) or 'all the team allows'} (team "
                    f"{spec.team_id!r}); `invoke keys.create --force --models ...` picks others")
            self.progress(f"writing the new key to {self.settings.env_file}")
            self._update_env(self._env_changes(spec, new_key))
            switched = True
            try:
                finish_notes, retired = self._finish(spec, entry, new_key)
            except GatewayError as exc:
                raise IncompleteError(
                    f"{spec.env_var} in .env holds the new working key {mask(new_key)}, but the "
                    f"rest failed: {exc.message}; run any keys task (e.g. `invoke keys.list`) "
                    "to finish"
                ) from exc
            self.journal.drop(spec.name)
        except (GatewayError, KeyboardInterrupt) as exc:
            if switched:
                if isinstance(exc, KeyboardInterrupt):
                    raise Interrupted(
                        f"interrupted after .env got the new key {mask(new_key)}; the next keys "
                        "task finishes the job (e.g. `invoke keys.list`)"
                    ) from exc
                raise
            if in_flight and (isinstance(exc, KeyboardInterrupt)
                              or (isinstance(exc, ProxyUnreachableError) and exc.maybe_done)):
                # LiteLLM may have made the key, or may be making it still: the journal keeps
                # its pending alias, and the next keys task looks it up and deletes it
                maybe = (f"LiteLLM may have made a new key named {pending_alias!r} (or be "
                         "making it still); .env and the old key are unchanged; the next keys "
                         "task (e.g. `invoke keys.list`) deletes it if it exists")
                if isinstance(exc, KeyboardInterrupt):
                    raise Interrupted(f"interrupted while LiteLLM was making the new key: "
                                      f"{maybe}") from exc
                exc.extend(maybe)
                raise
            undone = self._undo(spec.name, entry)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(
                    f"interrupted; {undone}; .env and the old key are unchanged"
                ) from exc
            exc.extend(f"{undone}; .env and the old key are unchanged")
            raise
        return KeyResult(
            name=spec.name,
            env_var=spec.env_var,
            action=op,
            key=new_key,
            notes=finish_notes,
            alias=spec.alias,
            team_id=str(created.get("team_id") or spec.team_id),
            models=list(created.get("models") or spec.models),
            expires=created.get("expires"),
            old_key=retired.fate if retired else None,
            old_expires=retired.expires if retired else None,
        )

    def _undo(self, name: str, entry: Mapping[str, Any]) -> str:
        """Roll back before the switch; say what happened. Leaves the journal if it cannot."""
        try:
            if entry.get("new_token") or self.journal.read().get(name):
                self._roll_back(entry)
            self.journal.drop(name)
            return "the new key was deleted" if entry.get("new_token") else "nothing was created"
        except (GatewayError, KeyboardInterrupt):
            return "the unfinished key could not be deleted now; the next keys task will"

    def _generate_body(
        self,
        spec: KeySpec,
        pending_alias: str,
        template: Mapping[str, Any] | None,
        old_token: str | None,
    ) -> dict[str, Any]:
        template = template or {}
        metadata = dict(template.get("metadata") or {}) or dict(spec.metadata)
        metadata.update({"managed_by": MANAGED_BY, "key_name": spec.name})
        if old_token:
            metadata["rotated_from"] = old_token[:12]
            metadata["rotated_at"] = _now().isoformat(timespec="seconds")
        duration = spec.duration or metadata.get("duration")
        if spec.duration:
            metadata["duration"] = spec.duration
        body: dict[str, Any] = {
            "key_alias": pending_alias,
            "team_id": spec.team_id,
            "models": list(spec.models),
            "metadata": metadata,
        }
        if duration:
            body["duration"] = duration
        if spec.max_budget is not None:
            body["max_budget"] = spec.max_budget
        for limit in ("tpm_limit", "rpm_limit", "max_parallel_requests", "budget_duration"):
            if template.get(limit) is not None:
                body[limit] = template[limit]
        return body

    def _spec_from_template(self, spec: KeySpec, info: Mapping[str, Any], changed: set[str]) -> KeySpec:
        """The old key's alias, team, models and budget, unless a flag changed them."""
        updates: dict[str, Any] = {}
        alias = PENDING_RE.sub("", str(info.get("key_alias") or ""))
        if "alias" not in changed and alias and not RETIRED_RE.search(alias):
            updates["alias"] = alias
        if "team_id" not in changed and info.get("team_id"):
            updates["team_id"] = str(info["team_id"])
        if "models" not in changed and isinstance(info.get("models"), list):
            updates["models"] = tuple(str(m) for m in info["models"])
        if "max_budget" not in changed and info.get("max_budget") is not None:
            updates["max_budget"] = float(info["max_budget"])
        return replace(spec, **updates)

    def _find_by_alias(self, alias: str) -> list[dict[str, Any]]:
        return [k for k in self.client.list_keys(key_alias=alias) if k.get("key_alias") == alias]

    def create(self, spec: KeySpec, *, force: bool = False, changed: Iterable[str] = ()) -> KeyResult:
        """Make sure .env holds an active key for ``spec``; replace it only with ``force``."""
        with self._operation():
            self.client.require_database()
            notes = self.recover()
            current = self._doc().get(spec.env_var)
            if current:
                info = self.client.key_info(current)
                status = key_status(info)
                if status == "active" and not force:
                    if self._settle_gate(spec):
                        notes.append(f"set {GATE_VAR}=no: {spec.env_var} holds a working key")
                    return KeyResult(
                        name=spec.name, env_var=spec.env_var, action="unchanged", key=current,
                        alias=str((info or {}).get("key_alias") or spec.alias),
                        team_id=str((info or {}).get("team_id") or ""),
                        models=list((info or {}).get("models") or []),
                        expires=(info or {}).get("expires"),
                        notes=[*notes, f"{spec.env_var} already holds an active key; nothing to "
                               "do (--force replaces it)"],
                    )
                if info is not None and status != "deleted":
                    result = self._rotate_locked(spec, current, info, None, set(changed),
                                                 op="created")
                    result.notes[:0] = [*notes, f"replaced the {status} key that .env held"]
                    return result
            existing = self._find_by_alias(spec.alias)
            if existing and not force:
                raise KeyStateError(
                    f"LiteLLM already has a key named {spec.alias!r}, but {spec.env_var} in .env "
                    "does not hold it, and LiteLLM never shows a key again; run `invoke "
                    f"keys.rotate --name {spec.name}` to replace it with a new one"
                )
            if existing:
                token = str(existing[0].get("token"))
                info = self.client.key_info(token) or existing[0]
                result = self._rotate_locked(spec, None, info, None, set(changed), op="created",
                                             old_token=token)
                result.notes[:0] = notes
                return result
            result = self._replace(spec, op="created", old_token=None,
                                   template=None, grace=None)
            result.notes[:0] = notes
            return result

    def rotate(
        self, spec: KeySpec, *, grace: str | None = None, changed: Iterable[str] = ()
    ) -> KeyResult:
        """Replace the key of ``spec`` with a new one, proven to work before the old one goes."""
        with self._operation():
            self.client.require_database()
            notes = self.recover()
            current = self._doc().get(spec.env_var)
            old_token: str | None = None
            info: Mapping[str, Any] | None = None
            if current:
                info = self.client.key_info(current)
                old_token = token_of(current)
            if info is None:
                existing = self._find_by_alias(spec.alias)
                if existing:
                    old_token = str(existing[0].get("token"))
                    info = self.client.key_info(old_token) or existing[0]
            if info is None:
                raise KeyStateError(
                    f"nothing to rotate: {spec.env_var} in .env holds no key LiteLLM knows and no "
                    f"key is named {spec.alias!r}; run `invoke keys.create --name {spec.name}`"
                )
            result = self._rotate_locked(spec, current or None, info, grace, set(changed),
                                         op="rotated", old_token=old_token)
            result.notes[:0] = notes
            return result

    def _rotate_locked(
        self,
        spec: KeySpec,
        old_key: str | None,
        info: Mapping[str, Any],
        grace: str | None,
        changed: set[str],
        *,
        op: str,
        old_token: str | None = None,
    ) -> KeyResult:
        spec = self._spec_from_template(spec, info, changed)
        if key_status(info) in ("deleted", "missing"):
            old_token = None
        else:
            old_token = old_token or (token_of(old_key) if old_key else str(info.get("token")))
        return self._replace(spec, op=op, old_token=old_token, template=info, grace=grace,
                             check="models" in changed)

    # -- revoke --------------------------------------------------------------

    def resolve_tokens(
        self, *, name: str | None, alias: str | None, key: str | None
    ) -> tuple[list[str], str]:
        """The key hashes a revoke names, and a description of them."""
        if name is not None:
            spec = self.settings.key(name)
            held = self._doc().get(spec.env_var)
            if not held:
                raise KeyStateError(
                    f"{spec.env_var} in .env holds no key, so there is nothing to revoke by name; "
                    "use --alias or --key (see `invoke keys.list`)"
                )
            return [token_of(held)], f"the key in {spec.env_var} ({mask(held)})"
        if alias is not None:
            found = self._find_by_alias(alias)
            if not found:
                raise KeyStateError(f"LiteLLM has no key named {alias!r} (see `invoke keys.list`)")
            return [str(k.get("token")) for k in found], f"the key named {alias!r}"
        assert key is not None
        if key.startswith("sk-"):
            return [token_of(key)], f"the key {mask(key)}"
        needle = key.lower()
        if len(needle) < 8 or any(c not in "0123456789abcdef" for c in needle):
            raise UsageError("--key takes a key hash (or at least its first 8 hex digits) as "
                             "`invoke keys.list` shows it, or `-` to read a key from stdin")
        matches = [str(k.get("token")) for k in self.client.list_keys()
                   if str(k.get("token", "")).startswith(needle)]
        if not matches:
            raise KeyStateError(f"LiteLLM has no key whose hash starts with {needle!r}")
        if len(matches) > 1:
            raise UsageError(f"{len(matches)} keys have a hash starting with {needle!r}; give more digits")
        return matches, f"the key {matches[0][:12]}"

    def revoke(self, tokens: list[str], *, block: bool = False) -> KeyResult:
        """Delete (or block) ``tokens`` in LiteLLM; clear the .env variables that held them.

        A key LiteLLM no longer has but .env holds (an earlier revoke whose answer was lost)
        is cleared from .env; KeyStateError (8) when LiteLLM has none of them and .env holds
        none either."""
        with self._operation():
            self.client.require_database()
            notes = self.recover()
            doc = self._doc()
            cleared = [s for s in self.settings.keys.values()
                       if doc.get(s.env_var) and token_of(doc.get(s.env_var)) in tokens]
            if block:
                for token in tokens:
                    self.client.block_key(token)
            elif not self.client.delete_keys(keys=tokens):
                if not cleared:
                    raise KeyStateError("LiteLLM found no such key to delete (already revoked?)")
                notes.append("LiteLLM no longer had the key (an earlier run deleted it?)")
            if cleared and not block:
                self._update_env({s.env_var: "" for s in cleared})
            first_run = doc.get(GATE_VAR).strip().lower() in TRUTHY
            for spec in cleared:
                if block:
                    notes.append(
                        f"{spec.env_var} in .env still holds the blocked key, so LiteLLM refuses "
                        "its user's requests (a LiteLLM with several workers after up to its key "
                        f"cache TTL, 60 s by default); `invoke keys.create --name {spec.name}` "
                        "replaces it (a blocked key is replaced), `/key/unblock` in LiteLLM makes "
                        "it work again")
                else:
                    notes.append(f"removed the key from {spec.env_var} in .env")
                    if spec.gate and first_run:
                        notes.append(f"the next `invoke stack.start` creates a new one "
                                     f"({GATE_VAR} is yes)")
                    elif spec.gate:
                        notes.append("stack.start will refuse to start until a new key exists: "
                                     f"run `invoke keys.create --name {spec.name}`")
            spec0 = cleared[0] if cleared else None
            return KeyResult(
                name=spec0.name if spec0 else "",
                env_var=spec0.env_var if spec0 else "",
                action="blocked" if block else "revoked",
                notes=notes,
            )

    # -- list ----------------------------------------------------------------

    def list(self, *, team_id: str | None = None) -> tuple[list[KeyRow], list[str]]:
        self.client.require_database()
        notes = self.recover_locked()
        doc = self._doc()
        held = {token_of(doc.get(s.env_var)): (s.env_var, doc.get(s.env_var))
                for s in self.settings.keys.values() if doc.get(s.env_var)}
        rows = []
        seen = set()
        now = _now()
        for item in self.client.list_keys(team_id=team_id):
            token = str(item.get("token") or "")
            seen.add(token)
            var, plain = held.get(token, ("", ""))
            rows.append(KeyRow(
                alias=str(item.get("key_alias") or ""),
                token=token,
                team_id=str(item.get("team_id") or ""),
                models=[str(m) for m in item.get("models") or []],
                expires=item.get("expires"),
                spend=float(item.get("spend") or 0.0),
                max_budget=item.get("max_budget"),
                status=key_status(item, now),
                held_by=var,
                masked=mask(plain) if plain else f"{token[:12]}",
            ))
        for token, (var, plain) in held.items():
            if token not in seen and not team_id:
                rows.append(KeyRow("", token, "", [], None, 0.0, None, "missing", var, mask(plain)))
        return rows, notes
