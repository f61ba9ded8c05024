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
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import envfile
from .errors import (
    ApiError,
    EnvFileError,
    GatewayError,
    IncompleteError,
    Interrupted,
    KeyStateError,
    UsageError,
)
from .masking import mask
from .proxy import LiteLLM, token_of
from .settings import GATE_VAR, TRUTHY, KeySpec, Settings

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


def _now() -> datetime:
    return datetime.now(timezone.utc)


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
            if new_token and held and token_of(held) == new_token:
                notes += self._finish(spec, entry, held)
                notes.append(
                    f"finished an interrupted {entry.get('op', 'key operation')} of {name!r}: "
                    f".env holds the new key {mask(held)}"
                )
            else:
                self._roll_back(entry)
                notes.append(
                    f"rolled back an interrupted {entry.get('op', 'key operation')} of {name!r}: "
                    "deleted the unfinished key; .env is as it was"
                )
            self.journal.drop(name)
        return notes

    def recover_locked(self) -> list[str]:
        if not self.journal.read():
            return []
        with self._operation():
            return self.recover()

    def _roll_back(self, entry: Mapping[str, Any]) -> None:
        if entry.get("new_token"):
            self.client.delete_keys(keys=[str(entry["new_token"])])
        else:  # killed before the journal got the hash: the pending alias is unique to this run
            self.client.delete_keys(aliases=[str(entry["pending_alias"])])

    def _settle_gate(self, spec: KeySpec) -> bool:
        """FIRST_RUN=no once the gate key's variable holds a working key. True if it changed."""
        if spec.gate and self._doc().get(GATE_VAR).lower() != "no":
            self._update_env({GATE_VAR: "no"})
            return True
        return False

    def _finish(self, spec: KeySpec, entry: Mapping[str, Any], new_key: str) -> list[str]:
        """Steps after the switch: consumer, retire old, final alias. Safe to repeat."""
        self._settle_gate(spec)
        if self.consumer is not None:
            self.progress(f"handing the new key to the consumer of {spec.name!r}")
            self.consumer(spec, new_key)
        old_token = entry.get("old_token")
        if old_token and old_token != entry.get("new_token"):
            grace = entry.get("grace")
            if grace:
                self.progress(f"letting the old key expire in {grace}")
                retired = retired_alias(str(entry["alias"]), str(entry["txid"]))
                try:
                    self.client.update_key(
                        {"key": old_token, "key_alias": retired, "duration": grace}
                    )
                except ApiError as exc:
                    if exc.status != 404:
                        raise
            else:
                self.progress("deleting the old key")
                self.client.delete_keys(keys=[str(old_token)])
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
                    f"{alias!r}"]
        return []

    # -- create / rotate -----------------------------------------------------

    def _ensure_team(self, spec: KeySpec) -> None:
        if self.client.team_info(spec.team_id) is None:
            self.progress(f"creating team {spec.team_id!r}")
            try:
                self.client.new_team(spec.team_id, spec.team_alias)
            except ApiError as exc:
                # made meanwhile by someone else: fine; anything else is real
                if self.client.team_info(spec.team_id) is None:
                    raise exc from None

    def _replace(
        self,
        spec: KeySpec,
        *,
        op: str,
        old_token: str | None,
        template: Mapping[str, Any] | None,
        grace: str | None,
    ) -> KeyResult:
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
        new_key = ""
        try:
            self.journal.put(spec.name, entry)
            self.progress(f"generating a new key for {spec.name!r}")
            created = self.client.generate_key(body)
            new_key = str(created["key"])
            entry["new_token"] = str(created.get("token") or token_of(new_key))
            self.journal.put(spec.name, entry)
            self.progress("checking that the new key works (/v1/models)")
            try:
                self.client.models_for(new_key)
            except ApiError as exc:
                raise ApiError(f"the new key does not work: {exc.message}") from None
            self.progress(f"writing the new key to {self.settings.env_file}")
            self._update_env(self._env_changes(spec, new_key))
            switched = True
            try:
                finish_notes = self._finish(spec, entry, new_key)
            except GatewayError as exc:
                raise IncompleteError(
                    f"{spec.env_var} in .env holds the new working key {mask(new_key)}, but the "
                    f"rest failed: {exc.message}; run any keys task (e.g. `invoke keys.list`) "
                    "to finish"
                ) from None
            self.journal.drop(spec.name)
        except (GatewayError, KeyboardInterrupt) as exc:
            if switched:
                if isinstance(exc, KeyboardInterrupt):
                    raise Interrupted(
                        f"interrupted after .env got the new key {mask(new_key)}; the next keys "
                        "task finishes the job (e.g. `invoke keys.list`)"
                    ) from None
                raise
            undone = self._undo(spec.name, entry)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(
                    f"interrupted; {undone}; .env and the old key are unchanged"
                ) from None
            raise type(exc)(f"{exc}; {undone}; .env and the old key are unchanged") from None
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
            self._ensure_team(spec)
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
        self._ensure_team(spec)
        return self._replace(spec, op=op, old_token=old_token, template=info, grace=grace)

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
        with self._operation():
            self.client.require_database()
            notes = self.recover()
            if block:
                for token in tokens:
                    self.client.block_key(token)
            elif not self.client.delete_keys(keys=tokens):
                raise KeyStateError("LiteLLM found no such key to delete (already revoked?)")
            doc = self._doc()
            cleared = [s for s in self.settings.keys.values()
                       if doc.get(s.env_var) and token_of(doc.get(s.env_var)) in tokens]
            if cleared and not block:
                self._update_env({s.env_var: "" for s in cleared})
            first_run = doc.get(GATE_VAR).strip().lower() in TRUTHY
            for spec in cleared:
                if block:
                    notes.append(
                        f"{spec.env_var} in .env still holds the blocked key, so its user's "
                        f"requests now fail; `invoke keys.create --name {spec.name}` replaces it "
                        "(a blocked key is replaced), `/key/unblock` in LiteLLM makes it work again")
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
