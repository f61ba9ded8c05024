"""The rotation protocol: how a key is replaced without ever leaving its user without a working
one (creation is the same protocol with no old key). One function per step - check, journal the
intent, generate under a pending alias, prove, switch .env and hand over, retire the old key,
rename - with ``recover`` finishing or rolling back what a killed run left and ``collect``
deleting its leftovers. Nothing here prints; progress goes through a callback.
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from ..base.errors import (
    ApiError,
    EnvFileError,
    GatewayError,
    IncompleteError,
    Interrupted,
    KeyStateError,
    ProxyUnreachableError,
    UsageError,
)
from ..base.masking import mask
from ..clients.litellm import LiteLLM, token_of
from ..config.settings import GATE_VAR, KeySpec, Settings, duration_seconds
from ..envstore import envfile
from ..envstore.journal import JournalFile, stamp

MANAGED_BY = "ai-gateway-tasks"

Op = Literal["create", "rotate"]
#: How a journaled operation reads in a message.
OP_WORDS: dict[str, str] = {"create": "key creation", "rotate": "rotation"}
KeyStatus = Literal["active", "blocked", "expired", "deleted", "missing"]
OldKeyFate = Literal["deleted", "expires", "kept", "inactive", "gone"]

#: Special model names LiteLLM takes in a key's ``models`` besides the models it serves.
SPECIAL_MODELS = ("all-proxy-models", "all-team-models", "*", "")

# The aliases a key wears on its way: while being made, and while its grace period runs.
PENDING_RE = re.compile(r"\s\[pending [0-9a-f]+\]\Z")
RETIRED_RE = re.compile(r"\s\(retired [0-9a-f]+\)\Z")
#: the alias ``rename`` falls back to when another key holds the real one: the next rotation
#: tries the real alias again
FALLBACK_RE = re.compile(r"\s\([0-9a-f]{8}\)\Z")

#: How long LiteLLM may still carry out a ``/key/generate`` whose answer was lost: its own
#: request timeout (``litellm.request_timeout``, 6000 s unless its ``REQUEST_TIMEOUT`` sets it),
#: plus a minute for the moments between ``started_at`` and the request leaving. Until then an
#: unknown outcome stays unknown: the journal keeps the entry.
GENERATE_MAY_RUN = timedelta(seconds=6000 + 60)


def pending_alias_of(alias: str, txid: str) -> str:
    return f"{alias} [pending {txid}]"


def retired_alias(alias: str, txid: str) -> str:
    return f"{alias} (retired {txid})"


def now() -> datetime:
    return datetime.now(timezone.utc)


def when(value: Any) -> datetime | None:
    """An ISO expiry from LiteLLM as an aware datetime; None for never (or unreadable)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def key_status(info: Mapping[str, Any] | None, at: datetime | None = None) -> KeyStatus:
    """active / blocked / expired / deleted / missing, from a /key/info or /key/list object."""
    if info is None:
        return "missing"
    stated = str(info.get("status") or "")
    if stated == "revoked" or info.get("blocked"):
        return "blocked"
    if stated in ("deleted", "expired"):
        return "deleted" if stated == "deleted" else "expired"
    expires = when(info.get("expires"))
    if expires is not None and expires <= (at or now()):
        return "expired"
    return "active"


def check_models(requested: Iterable[str], served: list[str], *, team_id: str = "",
                 team_models: Iterable[str] = ()) -> None:
    """Raise UsageError (exit 2) naming each requested model LiteLLM does not serve (with the
    list it serves), or that the team ``team_id`` does not allow (``team_models``; empty or
    ``all-proxy-models`` = all). A name with ``*`` must match at least one served model."""
    wanted = [m for m in requested if m not in SPECIAL_MODELS]
    unknown = [m for m in wanted if m not in served and not ("*" in m and fnmatch.filter(served, m))]
    if unknown:
        raise UsageError(
            f"LiteLLM serves no model {', '.join(map(repr, unknown))}; it serves: "
            f"{', '.join(served) or 'nothing (its config has no model_list)'}")
    team = list(team_models)
    allowed = [m for m in team if m not in SPECIAL_MODELS]
    if allowed and len(allowed) == len(team):
        refused = [m for m in wanted if m not in allowed
                   and not any(fnmatch.fnmatch(m, a) for a in allowed if "*" in a)]
        if refused:
            raise UsageError(f"team {team_id!r} does not allow {', '.join(map(repr, refused))}; "
                             f"it allows: {', '.join(allowed)}")


def reached(key_models: Iterable[str], served: Iterable[str]) -> list[str]:
    """The served models among those ``/v1/models`` lists for a key (the real LiteLLM lists a
    model a key is restricted to even when nothing serves it)."""
    serving = set(served)
    return [m for m in key_models if m in serving]


# --------------------------------------------------------------------------- the journal


@dataclass
class JournalEntry:
    """One key operation in flight: enough to finish it or undo it after a kill."""

    name: str
    op: Op
    txid: str
    env_var: str
    alias: str
    pending_alias: str
    team_id: str
    gate: bool
    old_token: str | None
    grace: str | None
    started_at: str
    pid: int
    new_token: str | None = None
    #: the run is gone and its key request may still be carried out: kept, under ``slot``,
    #: until its key is found or ``waits_until`` has passed (a new run of the key has its own entry)
    waiting: bool = False

    @property
    def words(self) -> str:
        return OP_WORDS[self.op]

    @property
    def slot(self) -> str:
        """Its place in the journal: the key's name, or apart from it while waiting."""
        return f"{self.name}#{self.txid}" if self.waiting else self.name

    def waits_until(self) -> datetime | None:
        """Until when LiteLLM may still carry out this entry's ``/key/generate`` whose answer
        never came: LiteLLM's request timeout after ``started_at``. None when an answer came
        (``new_token``) or the time cannot be read (then it counts as passed; ``collect``
        still deletes a key that appears later)."""
        started = when(self.started_at)
        return None if self.new_token or started is None else started + GENERATE_MAY_RUN

    @classmethod
    def from_json(cls, slot: str, data: Mapping[str, Any]) -> JournalEntry:
        """An entry as written; also the untyped entries of earlier versions (by name)."""
        op = str(data.get("op", "rotate"))
        return cls(
            name=str(data.get("name") or slot),
            op="create" if op in ("create", "created") else "rotate",
            txid=str(data.get("txid") or ""),
            env_var=str(data["env_var"]),
            alias=str(data["alias"]),
            pending_alias=str(data.get("pending_alias") or ""),
            team_id=str(data.get("team_id") or ""),
            gate=bool(data.get("gate")),
            old_token=str(data["old_token"]) if data.get("old_token") else None,
            grace=str(data["grace"]) if data.get("grace") else None,
            started_at=str(data.get("started_at") or ""),
            pid=int(data.get("pid") or 0),
            new_token=str(data["new_token"]) if data.get("new_token") else None,
            waiting=bool(data.get("waiting")),
        )


class Journal:
    """Key operations in flight, by slot (the key name; apart while waiting), in a 0600 JSON
    file beside .env."""

    def __init__(self, env_file: Path) -> None:
        self.file = JournalFile(env_file, "keys", "the keys journal", "if no keys task is "
                                "running, check `invoke keys.list` and delete the file")

    def _raw(self) -> dict[str, Any]:
        data = self.file.load()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self.file.unreadable("not an object")
        return data

    def read(self) -> dict[str, JournalEntry]:
        """Every entry, by slot."""
        entries = {}
        for slot, data in self._raw().items():
            try:
                entries[slot] = JournalEntry.from_json(slot, data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise self.file.unreadable(f"its entry for {slot!r} is one this version "
                                           "cannot read") from exc
        return entries

    def _write(self, data: dict[str, Any]) -> None:
        if data:
            self.file.save(data)
        else:
            self.file.drop()

    def put(self, entry: JournalEntry) -> None:
        data = self._raw()
        data[entry.slot] = asdict(entry)
        self._write(data)

    def park(self, entry: JournalEntry) -> None:
        """Move a dead run's entry apart to wait for its key (one write), freeing its key's
        name for a new run."""
        data = self._raw()
        data.pop(entry.slot, None)
        entry.waiting = True
        data[entry.slot] = asdict(entry)
        self._write(data)

    def drop(self, slot: str) -> None:
        data = self._raw()
        if slot not in data:
            return
        del data[slot]
        self._write(data)


# --------------------------------------------------------------------------- consumers


class Consumer(Protocol):
    """The program that uses a key (Open WebUI for the gate key)."""

    def serves(self, spec: KeySpec) -> bool:
        """Whether this consumer uses the key of ``spec``; the others are never asked."""

    def check(self, spec: KeySpec) -> None:
        """Before a key is made: raise a GatewayError if the hand-over could not work."""

    def accept(self, spec: KeySpec, key: str) -> list[str]:
        """After the switch: take ``key`` and prove it works there; notes of what it did."""


# --------------------------------------------------------------------------- the steps


@dataclass
class Run:
    """What every step needs: the settings, LiteLLM, the journal, the consumer, progress."""

    settings: Settings
    client: LiteLLM
    journal: Journal
    consumer: Consumer | None = None
    progress: Callable[[str], None] = lambda _message: None
    _served: list[str] | None = field(default=None, repr=False)

    def served(self) -> list[str]:
        """What LiteLLM serves (asked once per run)."""
        if self._served is None:
            self._served = self.client.served_models()
        return self._served

    def consumer_of(self, spec: KeySpec) -> Consumer | None:
        return self.consumer if self.consumer is not None and self.consumer.serves(spec) else None


@dataclass
class Retired:
    """What ``retire`` did with the old key (``expires``: when it now expires)."""

    fate: OldKeyFate
    expires: str | None = None


@dataclass
class Replaced:
    """A finished replacement, for the caller to report."""

    key: str = field(repr=False)
    created: dict[str, Any]
    notes: list[str]
    retired: Retired | None
    alias: str  # what LiteLLM calls it: the real alias, or the fallback ``rename`` gave


def check(run: Run, spec: KeySpec, *, models: bool) -> None:
    """Step 0: before anything is made. ``models``: check ``spec.models`` (those a flag or the
    config asked for; a rotation's own template is proven in step 3 instead)."""
    served = run.served()  # asked first, always: the proof in step 3 compares with it
    team = run.client.team_info(spec.team_id)
    if models:
        info = (team or {}).get("team_info") or team or {}
        team_models = info.get("models") if isinstance(info, Mapping) else None
        check_models(spec.models, served, team_id=spec.team_id,
                     team_models=[str(m) for m in team_models or []])
    consumer = run.consumer_of(spec)
    if consumer is not None:
        consumer.check(spec)
    if team is None:
        run.progress(f"creating team {spec.team_id!r}")
        try:
            run.client.new_team(spec.team_id, spec.team_alias)
        except ApiError:
            # made meanwhile by someone else: fine; anything else is real
            if run.client.team_info(spec.team_id) is None:
                raise


def journal_intent(run: Run, spec: KeySpec, op: Op, old_token: str | None,
                   grace: str | None) -> JournalEntry:
    """Step 1: journal what is about to happen, before LiteLLM is asked for anything."""
    txid = secrets.token_hex(4)
    entry = JournalEntry(
        name=spec.name, op=op, txid=txid, env_var=spec.env_var, alias=spec.alias,
        pending_alias=pending_alias_of(spec.alias, txid), team_id=spec.team_id, gate=spec.gate,
        old_token=old_token, grace=grace, started_at=stamp(),
        pid=os.getpid())
    run.journal.put(entry)
    return entry


def generate_body(spec: KeySpec, entry: JournalEntry,
                  template: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``/key/generate`` body: the spec, plus the limits and metadata of ``template``."""
    template = template or {}
    metadata = dict(template.get("metadata") or {}) or dict(spec.metadata)
    metadata.update({"managed_by": MANAGED_BY, "key_name": spec.name})
    if entry.old_token:
        metadata["rotated_from"] = entry.old_token[:12]
        metadata["rotated_at"] = now().isoformat(timespec="seconds")
    duration = spec.duration or metadata.get("duration") or _lifetime(template)
    if spec.duration:
        metadata["duration"] = spec.duration
    body: dict[str, Any] = {"key_alias": entry.pending_alias, "team_id": spec.team_id,
                            "models": list(spec.models), "metadata": metadata}
    if duration:
        body["duration"] = duration
    if spec.max_budget is not None:
        body["max_budget"] = spec.max_budget
    for limit in ("tpm_limit", "rpm_limit", "max_parallel_requests", "budget_duration"):
        if template.get(limit) is not None:
            body[limit] = template[limit]
    return body


def _lifetime(info: Mapping[str, Any]) -> str:
    """A key's whole lifetime as a LiteLLM duration (``"604800s"``), from its ``created_at`` and
    ``expires``: how a key not made by these tasks (no ``metadata.duration``) keeps its lifetime
    when rotated. "" for a key that never expires or whose times cannot be read."""
    created, expires = when(info.get("created_at")), when(info.get("expires"))
    if created is None or expires is None or expires <= created:
        return ""
    return f"{int((expires - created).total_seconds())}s"


class OutcomeUnknown(Exception):
    """``/key/generate`` was sent and its outcome is unknown (the key may exist)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def generate(run: Run, spec: KeySpec, entry: JournalEntry, body: Mapping[str, Any]
             ) -> dict[str, Any]:
    """Step 2: make the key under its pending alias; journal its hash. Raises OutcomeUnknown
    (the entry stays) when the request may have been carried out without an answer."""
    run.progress(f"generating a new key for {spec.name!r}")
    try:
        created = run.client.generate_key(body)
    except ProxyUnreachableError as exc:
        if exc.maybe_done:
            raise OutcomeUnknown(exc) from exc
        raise
    except KeyboardInterrupt as exc:
        raise OutcomeUnknown(exc) from exc
    entry.new_token = str(created.get("token") or token_of(str(created["key"])))
    run.journal.put(entry)
    return created


def prove(run: Run, spec: KeySpec, new_key: str, body: Mapping[str, Any]) -> list[str]:
    """Step 3: the new key must reach at least one model LiteLLM serves; returns those."""
    run.progress("checking that the new key works (/v1/models)")
    try:
        listed = run.client.models_for(new_key)
    except ApiError as exc:
        raise ApiError(f"the new key does not work: {exc.message}", exc.status) from exc
    served = run.served()
    reaches = reached(listed, served)
    if not reaches:
        raise KeyStateError(
            f"the new key reaches none of the models LiteLLM serves ({', '.join(served) or 'none'})"
            f"; its models: {', '.join(body.get('models') or []) or 'all the team allows'} (team "
            f"{spec.team_id!r}); `invoke keys.create --force --models ...` picks others")
    return reaches


def switch(run: Run, spec: KeySpec, new_key: str) -> None:
    """Step 4: .env gets the new key (and FIRST_RUN=no for the gate key) in one atomic write."""
    run.progress(f"writing the new key to {run.settings.env_file}")
    changes = {spec.env_var: new_key}
    if spec.gate:
        changes[GATE_VAR] = "no"
    envfile.update(run.settings.env_file, changes, lock_timeout=run.settings.lock_timeout)


def settle_gate(run: Run, spec: KeySpec) -> bool:
    """FIRST_RUN=no once the gate key's variable holds a working key. True if it changed."""
    if spec.gate and envfile.load(run.settings.env_file).get(GATE_VAR).lower() != "no":
        envfile.update(run.settings.env_file, {GATE_VAR: "no"},
                       lock_timeout=run.settings.lock_timeout)
        return True
    return False


def hand_over(run: Run, spec: KeySpec, new_key: str) -> list[str]:
    """Step 4, continued: the consumer takes the new key and proves it there."""
    consumer = run.consumer_of(spec)
    if consumer is None:
        return []
    run.progress(f"handing the new key to the consumer of {spec.name!r}")
    return consumer.accept(spec, new_key)


def retire(run: Run, entry: JournalEntry) -> Retired | None:
    """Step 5: delete the old key, or with a grace period let it expire at the earlier of its
    own expiry and now + grace. An expired or blocked key is deleted, never revived (LiteLLM's
    ``/key/update {"duration"}`` gives even an expired key a new life)."""
    old = entry.old_token
    if not old or old == entry.new_token:
        return None
    if not entry.grace:
        run.progress("deleting the old key")
        return Retired("deleted" if run.client.delete_keys(keys=[old]) else "gone")
    info = run.client.key_info(old)
    status = key_status(info)
    if status in ("deleted", "missing"):
        return Retired("gone")
    if status != "active":
        run.progress(f"deleting the old key ({status}: no grace period for it)")
        run.client.delete_keys(keys=[old])
        return Retired("inactive")
    assert info is not None
    expires = when(info.get("expires"))
    until = now() + timedelta(seconds=duration_seconds(entry.grace))
    body: dict[str, Any] = {"key": old, "key_alias": retired_alias(entry.alias, entry.txid)}
    if expires is None or expires > until:
        body["duration"] = entry.grace
    run.progress(f"letting the old key expire within {entry.grace}")
    try:
        run.client.update_key(body)
    except ApiError as exc:
        if exc.status != 404:
            raise
        return Retired("gone")
    if "duration" in body:
        return Retired("expires", until.isoformat(timespec="seconds"))
    return Retired("kept", str(info.get("expires")))


@dataclass
class Named:
    """What ``rename`` named the new key, and a note when that is not the real alias."""

    alias: str
    notes: list[str]


def rename(run: Run, entry: JournalEntry, new_key: str) -> Named:
    """Step 6: the new key gets the real alias (or a distinct one if another key holds it)."""
    run.progress(f"naming the new key {entry.alias!r}")
    try:
        run.client.update_key({"key": token_of(new_key), "key_alias": entry.alias})
    except ApiError as exc:
        if exc.status != 400 or "alias" not in exc.message.lower():
            raise
        alias = f"{entry.alias} ({entry.txid})"
        run.client.update_key({"key": token_of(new_key), "key_alias": alias})
        return Named(alias, [f"another key is already named {entry.alias!r}; the new key is "
                             f"named {alias!r}"])
    return Named(entry.alias, [])


def finish(run: Run, spec: KeySpec, entry: JournalEntry, new_key: str
           ) -> tuple[list[str], Retired | None, str]:
    """Steps 4 (hand-over) to 6, after the switch; safe to repeat. Drops the entry. Returns
    the notes, what became of the old key, and the alias the new key got."""
    settle_gate(run, spec)
    notes = hand_over(run, spec, new_key)
    retired = retire(run, entry)
    named = rename(run, entry, new_key)
    run.journal.drop(entry.slot)
    return notes + named.notes, retired, named.alias


def roll_back(run: Run, entry: JournalEntry) -> bool:
    """Delete what ``entry`` made before its switch: by hash when journaled, else every key
    under its pending alias (unique to that run). False when LiteLLM had none."""
    if entry.new_token:
        return run.client.delete_keys(keys=[entry.new_token])
    tokens = [str(k.get("token")) for k in run.client.keys_with_alias(entry.pending_alias)]
    return bool(tokens) and run.client.delete_keys(keys=tokens)


def replace(run: Run, spec: KeySpec, *, op: Op, old_token: str | None,
            template: Mapping[str, Any] | None, grace: str | None, check_requested: bool
            ) -> Replaced:
    """Steps 0-6 for one key, rolling back before the switch on any failure or Ctrl-C."""
    check(run, spec, models=check_requested)
    try:
        entry = journal_intent(run, spec, op, old_token, grace)
    except GatewayError as exc:
        exc.extend("nothing was created; .env and the old key are unchanged")
        raise
    body = generate_body(spec, entry, template)
    switched = False
    new_key = ""
    try:
        created = generate(run, spec, entry, body)
        new_key = str(created["key"])
        prove(run, spec, new_key, body)
        switch(run, spec, new_key)
        switched = True
        try:
            notes, retired, alias = finish(run, spec, entry, new_key)
        except GatewayError as exc:
            raise _env_holds_new(spec, new_key, f"the rest failed: {exc.message}") from exc
    except OutcomeUnknown as unknown:
        # the key may exist, or be in the making still: the journal keeps its pending alias
        maybe = (f"LiteLLM may have made a new key named {entry.pending_alias!r} (or be making "
                 "it still); .env and the old key are unchanged; the keys tasks (e.g. `invoke "
                 "keys.list`) delete it if it exists or once it appears")
        cause = unknown.cause
        if isinstance(cause, GatewayError):
            cause.extend(maybe)
            raise cause from unknown
        raise Interrupted(f"interrupted while LiteLLM was making the new key: {maybe}") from cause
    except (GatewayError, KeyboardInterrupt) as exc:
        if not switched and new_key and _env_took(run, spec, new_key):
            # the write landed and what failed came after it (the folder's fsync, the lock's
            # release, a signal): .env holds the new key, which must not be deleted now
            switched = True
            if isinstance(exc, GatewayError):
                raise _env_holds_new(spec, new_key,
                                     f"writing .env ended in an error: {exc.message}") from exc
        if switched:
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(
                    f"interrupted after .env got the new key {mask(new_key)}; the next keys "
                    "task finishes the job (e.g. `invoke keys.list`)") from exc
            raise
        undone = undo(run, entry)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"interrupted; {undone}; .env and the old key are unchanged") from exc
        exc.extend(f"{undone}; .env and the old key are unchanged")
        raise
    return Replaced(new_key, created, notes, retired, alias)


def _env_holds_new(spec: KeySpec, new_key: str, what: str) -> IncompleteError:
    """Exit 9 once .env holds the new key and ``what`` went wrong after: the next keys task
    finishes."""
    return IncompleteError(f"{spec.env_var} in .env holds the new working key {mask(new_key)}, "
                           f"but {what}; run any keys task (e.g. `invoke keys.list`) to finish")


def _env_took(run: Run, spec: KeySpec, new_key: str) -> bool:
    """Whether .env holds ``new_key`` after a failed or interrupted switch; True also when
    .env cannot be read back (then the journal decides later, and nothing is deleted now)."""
    try:
        return envfile.load(run.settings.env_file).get(spec.env_var) == new_key
    except EnvFileError:
        return True


def undo(run: Run, entry: JournalEntry) -> str:
    """Roll back before the switch; say what happened. Leaves the journal if it cannot."""
    try:
        roll_back(run, entry)
        run.journal.drop(entry.slot)
        return "the new key was deleted" if entry.new_token else "nothing was created"
    except (GatewayError, KeyboardInterrupt):
        return "the unfinished key could not be deleted now; the next keys task will"


def recover(run: Run, specs: Mapping[str, KeySpec]) -> list[str]:
    """Finish or roll back what a killed or failed run left in the journal (the caller holds
    the keys lock): finish when .env holds the journaled new key, else delete what the entry
    may have made - or, while its key request may still be carried out and no key is there
    yet, keep it waiting (``waits_until``). Returns one note per entry."""
    pending = run.journal.read()
    if not pending:
        return []
    notes = []
    doc = envfile.load(run.settings.env_file)
    at = now()
    for slot, entry in pending.items():
        name = entry.name
        spec = specs.get(name) or KeySpec(name=name, env_var=entry.env_var, alias=entry.alias,
                                          team_id=entry.team_id, team_alias=entry.team_id,
                                          gate=entry.gate)
        held = doc.get(spec.env_var)
        if entry.new_token and held and token_of(held) == entry.new_token:
            finish_notes, _retired, _alias = finish(run, spec, entry, held)
            notes += finish_notes
            notes.append(f"finished an interrupted {entry.words} of {name!r}: .env holds the new "
                         f"key {mask(held)}")
            continue
        if roll_back(run, entry):
            notes.append(f"rolled back an interrupted {entry.words} of {name!r}: deleted the "
                         "unfinished key; .env is as it was")
        elif (until := entry.waits_until()) is not None and at < until:
            if not entry.waiting:
                run.journal.park(entry)
            notes.append(
                f"an interrupted {entry.words} of {name!r} asked LiteLLM for a key and LiteLLM "
                f"may still make it: none named {entry.pending_alias!r} yet; .env is as it was; "
                "the keys tasks delete it if it appears (the journal waits until "
                f"{until.isoformat(timespec='seconds')}, LiteLLM's request timeout)")
            continue
        else:
            notes.append(f"rolled back an interrupted {entry.words} of {name!r}: LiteLLM has no "
                         "unfinished key of it; .env is as it was")
        run.journal.drop(slot)
    return notes


def leftovers(run: Run, specs: Mapping[str, KeySpec], listing: Iterable[Mapping[str, Any]]
              ) -> list[Mapping[str, Any]]:
    """The ``[pending ...]`` keys in ``listing`` (a ``/key/list``) of these keys' aliases - the
    configured ones and those of the keys .env holds - that no journal entry waits for and no
    .env value holds: what a run killed while LiteLLM made its key left behind."""
    keys = list(listing)
    held = {token_of(v) for v in envfile.load(run.settings.env_file).values.values()
            if v.startswith("sk-")}
    entries = run.journal.read().values()
    waited = {e.pending_alias for e in entries} | {e.new_token for e in entries if e.new_token}
    aliases = {s.alias for s in specs.values()}
    aliases |= {FALLBACK_RE.sub("", str(k.get("key_alias") or "")) for k in keys
                if k.get("token") in held}
    found = []
    for key in keys:
        alias, token = str(key.get("key_alias") or ""), str(key.get("token") or "")
        if (PENDING_RE.search(alias) and PENDING_RE.sub("", alias) in aliases
                and alias not in waited and token not in waited and token not in held):
            found.append(key)
    return found


def collect(run: Run, specs: Mapping[str, KeySpec], listing: Iterable[Mapping[str, Any]]
            ) -> list[str]:
    """Delete the ``leftovers`` (the caller holds the keys lock, so no run of this .env is
    making a key meanwhile); one note saying which, or none."""
    found = leftovers(run, specs, listing)
    if not found:
        return []
    names = ", ".join(repr(str(k.get("key_alias"))) for k in found)
    run.progress(f"deleting {len(found)} unfinished key(s) no .env holds")
    if not run.client.delete_keys(keys=[str(k.get("token")) for k in found]):
        return [f"LiteLLM no longer had the unfinished key(s) {names}"]
    return [f"deleted {len(found)} unfinished key(s) in LiteLLM that an interrupted run made and "
            f"no .env holds: {names}"]
