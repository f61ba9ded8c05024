"""Continue.dev's ``config.yaml`` models block for a key - one ``openai`` provider model per model
the key may use, ``apiBase`` LiteLLM's URL + ``/v1``, ``apiKey: ${{ secrets.NAME }}``, never the
key itself - and its merge into an existing config.yaml by editing the text, so every byte of
the user's own file stays as written; a file that cannot be edited so is refused (exit 2).
How it works in detail, and the upstream facts it relies on: docs/modules.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..base.errors import UsageError
from ..config.handover import expand_path
from ..config.settings import KeySpec, Settings
from ..envstore import envfile
from .dotenvfiles import make_folder

#: what Continue.dev's own config.yaml starts with
HEADER = {"name": "Local Config", "version": "1.0.0", "schema": "v1"}
ROLES = ["chat", "edit", "apply"]
#: how the name of a model we write ends
SUFFIX = " (LiteLLM)"
_SECRET_RE = re.compile(r"\$\{\{\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}\Z")
_PASTE = "paste the block `invoke keys.continue-config` prints into it by hand"


class Yaml(Protocol):
    """The parts of PyYAML used here."""

    SafeLoader: Any
    ScalarNode: Any
    SequenceNode: Any
    MappingNode: Any

    def safe_load(self, stream: str) -> Any: ...

    def safe_dump(self, data: Any, **kwargs: Any) -> str: ...

    def compose(self, stream: str, Loader: Any) -> Any: ...


def key_of(settings: Settings, name: str | None) -> KeySpec:
    """The key Continue.dev uses: ``name``'s, or else the one key with a ``hand_over`` (its
    ``.env`` is where Continue.dev reads the secret). UsageError (exit 2) when there is none,
    more than one, or the named key has no ``hand_over``."""
    if name:
        spec = settings.key(name)
    else:
        handing = [s for s in settings.keys.values() if s.hand_over]
        if len(handing) != 1:
            raise UsageError("give --name: "
                             + ("no key of gateway.keys has a hand_over" if not handing else
                                f"{len(handing)} keys have a hand_over "
                                f"({', '.join(s.name for s in handing)})"))
        spec = handing[0]
    if not spec.hand_over:
        raise UsageError(f"key {spec.name!r} has no hand_over: Continue.dev would have no "
                         "secret to read it from; add `hand_over: [{dotenv: ~/.continue/.env, "
                         "var: LITELLM_API_KEY}]` (README, 'Continue.dev and other "
                         f"applications') and run `invoke keys.create --name {spec.name}`")
    return spec


def write(target: Path, block: list[dict[str, Any]], litellm_url: str, yaml: Yaml, *,
          timeout: float) -> Merged:
    """Merge ``block`` into the config.yaml at ``target`` (a new one when missing), its folders
    made 0700, the file written atomically and owner-only (``timeout``: seconds to wait out a
    Windows sharing violation). UsageError (exit 2) when the file is not UTF-8, cannot be read
    or cannot be merged (``merge``); EnvFileError (3) when it cannot be written."""
    try:
        existing = target.read_bytes().decode("utf-8") if target.is_file() else ""
    except UnicodeDecodeError:
        raise UsageError(f"{target} is not UTF-8 text; refusing to rewrite it") from None
    except OSError as exc:
        raise UsageError(f"cannot read {target}: {exc.strerror or exc}") from None
    merged = merge(existing, block, litellm_url, yaml, str(target))
    make_folder(target.parent)
    envfile.write_secure(target, merged.text.encode("utf-8"), timeout=timeout)
    return merged


def target_of(given: str, default: Path) -> Path:
    """The file ``--write [PATH]`` names: ``default`` without a path; ``config.yaml`` inside a
    folder - one that exists, or any path written with a trailing ``/`` (or ``\\``), which is
    made (owner-only) if missing; else the file itself. Expanded like a ``hand_over`` path
    (``~``, ``%NAME%``, ``$NAME``; a backslash is a folder separator everywhere)."""
    if not given:
        return default
    path = expand_path(given, "--write")
    if given.endswith(("/", "\\")) or path.is_dir():
        return path / "config.yaml"
    return path


def api_base(litellm_url: str) -> str:
    return litellm_url.rstrip("/") + "/v1"


def secret_ref(var: str) -> str:
    return "${{ secrets." + var + " }}"


def models_block(models: Sequence[str], litellm_url: str, var: str) -> list[dict[str, Any]]:
    base = api_base(litellm_url)
    return [{"name": f"{model}{SUFFIX}", "provider": "openai", "model": model,
             "apiBase": base, "apiKey": secret_ref(var), "roles": list(ROLES)}
            for model in models]


def _dump(data: Any, yaml: Yaml) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
                              allow_unicode=True, width=4096))


def render(block: list[dict[str, Any]], yaml: Yaml) -> str:
    """The block as a whole config.yaml (Continue's header, then ``models:``)."""
    return _dump({**HEADER, "models": block}, yaml)


def is_ours(entry: Any, litellm_url: str) -> bool:
    """Whether a models entry is one ``models_block`` wrote for this LiteLLM (its roles may
    have been changed since)."""
    if not isinstance(entry, Mapping):
        return False
    name, model, key = entry.get("name"), entry.get("model"), entry.get("apiKey")
    return (isinstance(name, str) and isinstance(model, str) and name == f"{model}{SUFFIX}"
            and entry.get("provider") == "openai"
            and str(entry.get("apiBase") or "").rstrip("/") == api_base(litellm_url)
            and isinstance(key, str) and _SECRET_RE.match(key.strip()) is not None)


@dataclass
class Merged:
    """The new text of config.yaml and what happened to its models."""

    text: str
    replaced: int = 0
    kept: int = 0
    #: the names of the user's own models at this LiteLLM (kept, not ours)
    kept_here: list[str] = field(default_factory=list)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_after(text: str, index: int) -> int:
    """The start of the line after the one ``index`` ends (``index`` itself when it is at the
    start of a line already)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _content_end(node: Any, yaml: Yaml) -> int:
    """Where a node's own text ends (a block collection's end mark lies past the comments
    and blank lines after it)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = list(node.value)
    if not children:
        return int(node.end_mark.index)
    return max(_content_end(child, yaml) for child in children)


def _items_text(block: list[dict[str, Any]], column: int, newline: str, yaml: Yaml) -> str:
    lines = _dump(block, yaml).splitlines()
    return "".join(" " * column + line + newline for line in lines)


#: A change to the text: replace ``text[start:end]`` with ``new``.
Edit = tuple[int, int, str]


def merge(existing: str, block: list[dict[str, Any]], litellm_url: str, yaml: Yaml,
          where: str) -> Merged:
    """``existing`` config.yaml text with ``block`` in place of the entries we wrote for this
    LiteLLM, by editing the text (see the module's docstring). UsageError (exit 2) naming
    ``where`` when that cannot be done without changing anything else."""
    if not existing.strip():
        return Merged(render(block, yaml))
    newline = "\r\n" if "\r\n" in existing else "\n"
    tail = "" if existing.endswith("\n") else newline
    data, root = _parse(existing, yaml, where)
    if root is None:  # only comments
        expected = {**HEADER, "models": block}
        text = existing + tail + newline.join(render(block, yaml).splitlines()) + newline
        return _checked(Merged(text), expected, yaml, where)
    node = _models_node(root, yaml, where)
    found = data.get("models")
    models: list[Any] = found if node is not None and isinstance(found, list) else []
    merged = Merged("")
    if node is None:  # no models yet: at the end of the file
        edits: list[Edit] = [(len(existing), len(existing), tail + "models:" + newline
                              + _items_text(block, int(root.start_mark.column), newline, yaml))]
        expected_models = list(block)
    elif (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")) or (
            isinstance(node, yaml.SequenceNode) and node.flow_style and not node.value):
        edits = _fill_empty(existing, node, block, int(root.start_mark.column), newline, tail, yaml)
        expected_models = list(block)
    elif isinstance(node, yaml.SequenceNode) and node.flow_style:
        raise UsageError(f"{where}: models is written in flow style ([...]); write it as a "
                         f"block list (one `- name: ...` entry a line), or {_PASTE}")
    elif not isinstance(node, yaml.SequenceNode) or len(node.value) != len(models):
        raise UsageError(f"{where}: models is not a list; refusing to rewrite it")
    else:
        ours = [i for i, entry in enumerate(models) if is_ours(entry, litellm_url)]
        edits = _replace_ours(existing, node, ours, block, newline, tail, yaml, where)
        expected_models = _models_after(models, ours, block)
        merged.replaced = len(ours)
    text = existing
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        text = text[:start] + new + text[end:]
    others = [m for m in models if not is_ours(m, litellm_url)]
    merged.text = text
    merged.kept = len(others)
    merged.kept_here = [str(m.get("name") or m.get("model") or "?") for m in others
                        if isinstance(m, Mapping)
                        and str(m.get("apiBase") or "").rstrip("/") == api_base(litellm_url)]
    expected = {**data, "models": expected_models}
    return _checked(merged, expected, yaml, where)


def _parse(existing: str, yaml: Yaml, where: str) -> tuple[Any, Any]:
    """The file as data and as YAML nodes (None for a file of comments only); UsageError when
    it is not YAML, or not a block-style map of settings."""
    try:
        data = yaml.safe_load(existing)
        root = yaml.compose(existing, Loader=yaml.SafeLoader)
    except Exception as exc:  # noqa: BLE001 - the vendored YAML's errors have no common base here
        raise UsageError(f"{where} is not valid YAML ({str(exc).splitlines()[0]}); fix it, or "
                         f"{_PASTE}") from None
    if root is None:
        return data, None
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, Mapping):
        raise UsageError(f"{where} is not a YAML map of settings; refusing to rewrite it")
    if root.flow_style:
        raise UsageError(f"{where} is written as one flow map ({{...}}); write it in block style "
                         f"(one setting a line), or {_PASTE}")
    return data, root


def _models_node(root: Any, yaml: Yaml, where: str) -> Any:
    """The node of ``models`` (None when the file has none); UsageError when it has two."""
    values = [v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "models"]
    if len(values) > 1:
        raise UsageError(f"{where} has models twice; keep one, or {_PASTE}")
    return values[0] if values else None


def _fill_empty(existing: str, node: Any, block: list[dict[str, Any]], column: int,
                newline: str, tail: str, yaml: Yaml) -> list[Edit]:
    """``models:``, ``models: ~`` or ``models: []``: the value goes, and the entries go on the
    lines after it, at the column of the key (``column``)."""
    after = _line_after(existing, int(node.end_mark.index))
    return [(int(node.start_mark.index), int(node.end_mark.index), ""),
            (after, after, ("" if after < len(existing) else tail)
             + _items_text(block, column, newline, yaml))]


def _replace_ours(existing: str, node: Any, ours: list[int], block: list[dict[str, Any]],
                  newline: str, tail: str, yaml: Yaml, where: str) -> list[Edit]:
    """A block list of models: the entries at ``ours`` removed, ``block`` where the first of
    them was - or after the last entry when none is ours."""
    items = _items_text(block, int(node.start_mark.column), newline, yaml)
    edits: list[Edit] = []
    for index in ours:
        item = node.value[index]
        dash = existing.rfind("-", 0, int(item.start_mark.index))
        start = _line_start(existing, dash)
        if dash < 0 or existing[start:dash].strip():
            raise UsageError(f"{where}: cannot tell where a models entry starts; {_PASTE}")
        end = _line_after(existing, _content_end(item, yaml))
        edits.append((start, end, items if index == ours[0] else ""))
    if not ours:
        end = _line_after(existing, _content_end(node.value[-1], yaml))
        edits.append((end, end, ("" if end < len(existing) else tail) + items))
    return edits


def _models_after(models: list[Any], ours: list[int], block: list[dict[str, Any]]) -> list[Any]:
    """The models as the edit must leave them: ours replaced by ``block`` in place of the first
    of them (at the end when none was ours), every other entry as it was."""
    after: list[Any] = []
    for index, entry in enumerate(models):
        if ours and index == ours[0]:
            after += block
        if index not in ours:
            after.append(entry)
    return after if ours else [*after, *block]


def _checked(merged: Merged, expected: Mapping[str, Any], yaml: Yaml, where: str) -> Merged:
    """``merged`` when its text reads back as ``expected``; else UsageError: the edit would
    have changed something it must not (the file is left as it was)."""
    try:
        again = yaml.safe_load(merged.text)
    except Exception:  # noqa: BLE001 - see merge
        again = None
    if again != expected:
        raise UsageError(f"cannot put the models into {where} without changing its other "
                         f"settings (anchors, aliases or an unusual layout); {_PASTE}")
    return merged
