"""Virtual-key lifecycle: create, rotate, revoke, list - plain functions, no Invoke, no printing.

``create`` and ``rotate`` work out which key to replace (the one .env holds, or the one with the
alias) and with what (its team, models, budget, limits, metadata), then run the rotation
protocol of ``rotation.py``; ``revoke`` and ``list`` are direct. Every task first finishes or
rolls back what an interrupted one left (``rotation.recover``), and once per task deletes the
unfinished keys no journal waits for (``rotation.collect``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from ..base.errors import ApiError, GatewayError, KeyStateError, UsageError
from ..base.masking import mask
from ..clients.litellm import LiteLLM, token_of
from ..config.settings import GATE_VAR, TRUTHY, KeySpec, Settings
from ..envstore import envfile
from . import dotenvfiles, rotation
from .rotation import (
    FALLBACK_RE,
    PENDING_RE,
    RETIRED_RE,
    Consumer,
    Journal,
    KeyStatus,
    OldKeyFate,
    key_status,
    now,
)
from .schedule import due

#: "cleared": LiteLLM did not have the key; only .env held it, and no longer does
Action = Literal["created", "rotated", "unchanged", "revoked", "blocked", "cleared"]


class FunctionConsumer:
    """A plain ``(spec, key) -> None`` function as a consumer of every key (tests, scripts)."""

    def __init__(self, accept: Callable[[KeySpec, str], Any]) -> None:
        self._accept = accept

    def serves(self, spec: KeySpec) -> bool:
        return True

    def check(self, spec: KeySpec) -> None:
        pass

    def accept(self, spec: KeySpec, key: str) -> list[str]:
        notes = self._accept(spec, key)
        return list(notes) if isinstance(notes, list) else []


# --------------------------------------------------------------------------- results


@dataclass
class Rotations:
    """What ``KeyManager.rotate_each`` did: the keys rotated, those skipped as too young
    (``{"name", "action": "skipped", "age_seconds"}``), and each failure by key name."""

    results: list[KeyResult] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, GatewayError]] = field(default_factory=list)


@dataclass
class KeyResult:
    name: str
    env_var: str
    action: Action
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
    status: KeyStatus
    held_by: str  # the .env variable that holds this key, or ""
    masked: str  # masked plaintext where .env holds it, else masked hash


# --------------------------------------------------------------------------- the manager


def keys_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """The lock every task that changes this .env's keys (or its master key) holds from its
    first read to its last write: ``settings.keys_lock_file``, waited for up to
    ``settings.lock_timeout`` seconds, then LockBusyError (exit 5)."""
    return envfile.file_lock(settings.keys_lock_file, settings.lock_timeout, "the keys of this .env")


class KeyManager:
    """Key operations against one LiteLLM and one .env. Construct per task."""

    def __init__(
        self,
        settings: Settings,
        client: LiteLLM,
        *,
        consumer: Consumer | Callable[[KeySpec, str], Any] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.progress = progress or (lambda _msg: None)
        self.journal = Journal(settings.env_file)
        self.run = rotation.Run(settings, client, self.journal, progress=self.progress)
        self.consumer = consumer
        self._collected = False  # rotation.collect ran (once per task is enough)

    @property
    def consumer(self) -> Consumer | None:
        return self.run.consumer

    @consumer.setter
    def consumer(self, value: Consumer | Callable[[KeySpec, str], Any] | None) -> None:
        if value is not None and not hasattr(value, "accept"):
            value = FunctionConsumer(value)
        # the hand_over files of the keys come with every consumer (dotenvfiles.py)
        self.run.consumer = dotenvfiles.with_files(
            value, self.settings, self.progress)  # type: ignore[arg-type]

    def _doc(self) -> envfile.EnvDoc:
        return envfile.load(self.settings.env_file)

    # -- recovery ------------------------------------------------------------

    def recover(self) -> list[str]:
        """Finish or roll back operations a killed run left in the journal, then (once per
        task) delete the unfinished keys no journal waits for. The caller holds the keys lock."""
        notes = rotation.recover(self.run, self.settings.keys)
        if not self._collected:
            notes += rotation.collect(self.run, self.settings.keys, self.client.list_keys())
            self._collected = True
        return notes

    def recover_locked(self, listing: Iterable[Mapping[str, Any]] | None = None) -> list[str]:
        """``recover`` under the keys lock, taken only when there is something to do: a journal,
        or leftovers in ``listing`` (every key; listed here when not given)."""
        if not self._collected:
            keys = self.client.list_keys() if listing is None else listing
            if not rotation.leftovers(self.run, self.settings.keys, keys):
                self._collected = True  # nothing to collect (checked again under the lock)
        if self._collected and not self.journal.read():
            return []
        with keys_lock(self.settings):
            return self.recover()

    # -- create / rotate -----------------------------------------------------

    def _replace(self, spec: KeySpec, *, op: rotation.Op, old_token: str | None,
                 template: Mapping[str, Any] | None, grace: str | None, check: bool) -> KeyResult:
        done = rotation.replace(self.run, spec, op=op, old_token=old_token, template=template,
                                grace=grace, check_requested=check)
        created = done.created
        return KeyResult(
            name=spec.name,
            env_var=spec.env_var,
            action="created" if op == "create" else "rotated",
            key=done.key,
            notes=done.notes,
            alias=done.alias,
            team_id=str(created.get("team_id") or spec.team_id),
            models=list(created.get("models") or spec.models),
            expires=created.get("expires"),
            old_key=done.retired.fate if done.retired else None,
            old_expires=done.retired.expires if done.retired else None,
        )

    def _spec_from_template(self, spec: KeySpec, info: Mapping[str, Any], changed: set[str]) -> KeySpec:
        """The old key's alias, team, models and budget, unless a flag changed them."""
        updates: dict[str, Any] = {}
        alias = FALLBACK_RE.sub("", PENDING_RE.sub("", str(info.get("key_alias") or "")))
        if "alias" not in changed and alias and not RETIRED_RE.search(alias):
            updates["alias"] = alias
        if "team_id" not in changed and info.get("team_id"):
            updates["team_id"] = str(info["team_id"])
        if "models" not in changed and isinstance(info.get("models"), list):
            updates["models"] = tuple(str(m) for m in info["models"])
        if "max_budget" not in changed and info.get("max_budget") is not None:
            updates["max_budget"] = float(info["max_budget"])
        return replace(spec, **updates)

    def create(self, spec: KeySpec, *, force: bool = False, changed: Iterable[str] = ()) -> KeyResult:
        """Make sure .env holds an active key for ``spec``; replace it only with ``force``."""
        with keys_lock(self.settings):
            self.client.require_database()
            notes = self.recover()
            current = self._doc().get(spec.env_var)
            if current:
                info = self.client.key_info(current)
                status = key_status(info)
                if status == "active" and not force:
                    if rotation.settle_gate(self.run, spec):
                        notes.append(f"set {GATE_VAR}=no: {spec.env_var} holds a working key")
                    notes += dotenvfiles.DotenvConsumer(
                        self.settings.project_dir, lock_timeout=self.settings.lock_timeout,
                        progress=self.progress).sync(spec, current)
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
                                                 op="create")
                    result.notes[:0] = [*notes, f"replaced the {status} key that .env held"]
                    return result
            if not force and self.client.keys_with_alias(spec.alias):
                raise KeyStateError(
                    f"LiteLLM already has a key named {spec.alias!r}, but {spec.env_var} in .env "
                    "does not hold it, and LiteLLM never shows a key again; run `invoke "
                    f"keys.rotate --name {spec.name}` to replace it with a new one"
                )
            existing = self.client.named_key(spec.alias) if force else None
            if existing:
                token, info = existing
                result = self._rotate_locked(spec, None, info, None, set(changed), op="create",
                                             old_token=token)
                result.notes[:0] = notes
                return result
            result = self._replace(spec, op="create", old_token=None, template=None,
                                   grace=None, check=True)
            result.notes[:0] = notes
            return result

    def rotate(self, spec: KeySpec, *, grace: str | None = None) -> KeyResult:
        """Replace the key of ``spec`` with a new one, proven to work before the old one goes."""
        with keys_lock(self.settings):
            self.client.require_database()
            notes = self.recover()
            current = self._doc().get(spec.env_var)
            found = self.client.find_key(current or "", spec.alias)
            if found is None:
                raise KeyStateError(
                    f"nothing to rotate: {spec.env_var} in .env holds no key LiteLLM knows and no "
                    f"key is named {spec.alias!r}; run `invoke keys.create --name {spec.name}`"
                )
            old_token, info = found
            result = self._rotate_locked(spec, current or None, info, grace, set(),
                                         op="rotate", old_token=old_token)
            result.notes[:0] = notes
            return result

    def models_of(self, spec: KeySpec) -> list[str]:
        """The models LiteLLM serves that the key .env holds for ``spec`` may use. KeyStateError
        (exit 8) when .env holds none, LiteLLM refuses it, or it reaches no served model."""
        key = self._doc().get(spec.env_var)
        if not key:
            raise KeyStateError(f"{spec.env_var} in .env holds no key; run `invoke keys.create "
                                f"--name {spec.name}`")
        try:
            reaches = self.client.models_for(key, var=spec.env_var)
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise
            raise KeyStateError(f"{exc.message}; run `invoke keys.create --name {spec.name}` to "
                                "replace it") from None
        models = rotation.reached(reaches, self.client.served_models())
        if not models:
            raise KeyStateError(f"the key in {spec.env_var} reaches none of the models LiteLLM "
                                "serves")
        return models

    def rotate_each(self, specs: Iterable[KeySpec], *, grace: str | None = None,
                    older_than: int | None = None, keep_going: bool = False) -> Rotations:
        """``rotate`` each of ``specs`` in turn. ``older_than`` (seconds): only the keys at
        least that old (``schedule.due``), the others are skipped. ``keep_going``: a key's
        GatewayError is gathered and the next key rotated; otherwise it is raised at once."""
        done = Rotations()
        for spec in specs:
            try:
                if older_than is not None:
                    held = self._doc().get(spec.env_var)
                    is_due, age = due(self.client, held, spec.alias, older_than)
                    if not is_due:
                        done.skipped.append({"name": spec.name, "action": "skipped",
                                             "age_seconds": int(age or 0)})
                        continue
                done.results.append(self.rotate(spec, grace=grace))
            except GatewayError as exc:
                if not keep_going:
                    raise
                done.failures.append((spec.name, exc))
        return done

    def _rotate_locked(
        self,
        spec: KeySpec,
        old_key: str | None,
        info: Mapping[str, Any],
        grace: str | None,
        changed: set[str],
        *,
        op: rotation.Op,
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
            found = self.client.keys_with_alias(alias)
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
        with keys_lock(self.settings):
            self.client.require_database()
            notes = self.recover()
            doc = self._doc()
            cleared = [s for s in self.settings.keys.values()
                       if doc.get(s.env_var) and token_of(doc.get(s.env_var)) in tokens]
            deleted = True
            if block:
                for token in tokens:
                    self.client.block_key(token)
            elif not self.client.delete_keys(keys=tokens):
                deleted = False
                if not cleared:
                    raise KeyStateError("LiteLLM found no such key to delete (already revoked?)")
                notes.append("LiteLLM no longer had the key (an earlier run deleted it?)")
            if cleared and not block:
                envfile.update(self.settings.env_file, {s.env_var: "" for s in cleared},
                               lock_timeout=self.settings.lock_timeout)
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
                action="blocked" if block else ("revoked" if deleted else "cleared"),
                notes=notes,
            )

    # -- list ----------------------------------------------------------------

    def list(self, *, team_id: str | None = None) -> tuple[list[KeyRow], list[str]]:
        self.client.require_database()
        listing = [*self.client.list_keys(team_id=team_id)]
        notes = self.recover_locked(None if team_id else listing)
        if notes:  # it changed keys: list them as they are now
            listing = [*self.client.list_keys(team_id=team_id)]
        doc = self._doc()
        held = {token_of(doc.get(s.env_var)): (s.env_var, doc.get(s.env_var))
                for s in self.settings.keys.values() if doc.get(s.env_var)}
        rows = []
        seen = set()
        at = now()
        for item in listing:
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
                status=key_status(item, at),
                held_by=var,
                masked=mask(plain) if plain else f"{token[:12]}",
            ))
        for token, (var, plain) in held.items():
            if token not in seen and not team_id:
                rows.append(KeyRow("", token, "", [], None, 0.0, None, "missing", var, mask(plain)))
        return rows, notes
