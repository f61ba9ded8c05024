"""Continue.dev's ``config.yaml`` models block for a key: one ``openai`` provider model per model
the key may use, ``apiBase`` LiteLLM's URL + ``/v1`` (what Continue's ``openai`` provider
expects), and ``apiKey: ${{ secrets.NAME }}`` - the variable the key's ``hand_over`` writes to
``~/.continue/.env`` - never the key itself.

``merge`` puts the block into an existing config.yaml: the models that point at this LiteLLM
(same ``apiBase``) are replaced, every other model and every other setting is kept in its
order. A file with comments is refused (reading and writing YAML loses them), as is one that is
not a YAML map. The YAML library is passed in (the task gives Invoke's vendored PyYAML; no
Invoke here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .errors import UsageError

#: what Continue.dev's own config.yaml starts with
HEADER = {"name": "Local Config", "version": "1.0.0", "schema": "v1"}
ROLES = ["chat", "edit", "apply"]


class Yaml(Protocol):
    def safe_load(self, stream: str) -> Any: ...

    def safe_dump(self, data: Any, **kwargs: Any) -> str: ...


def api_base(litellm_url: str) -> str:
    return litellm_url.rstrip("/") + "/v1"


def secret_ref(var: str) -> str:
    return "${{ secrets." + var + " }}"


def models_block(models: Sequence[str], litellm_url: str, var: str) -> list[dict[str, Any]]:
    base = api_base(litellm_url)
    return [{"name": f"{model} (LiteLLM)", "provider": "openai", "model": model,
             "apiBase": base, "apiKey": secret_ref(var), "roles": list(ROLES)}
            for model in models]


def render(block: list[dict[str, Any]], yaml: Yaml) -> str:
    """The block as a whole config.yaml (Continue's header, then ``models:``)."""
    return str(yaml.safe_dump({**HEADER, "models": block}, sort_keys=False,
                              default_flow_style=False, allow_unicode=True))


def _has_comments(text: str) -> bool:
    """Whether ``text`` may have a YAML comment: a ``#`` at the start or after a blank
    (erring on the side of refusing: a ``" #"`` inside a quoted value counts too)."""
    return re.search(r"(^|\s)#", text) is not None


def merge(existing: str, block: list[dict[str, Any]], litellm_url: str, yaml: Yaml,
          where: str) -> tuple[str, int, int]:
    """``existing`` config.yaml text with ``block`` in place of its models at this LiteLLM.
    Returns the new text, how many models it replaced and how many others it kept.
    UsageError (exit 2) naming ``where`` when it cannot be merged without a loss."""
    if not existing.strip():
        return render(block, yaml), 0, 0
    try:
        data = yaml.safe_load(existing)
    except Exception as exc:  # noqa: BLE001 - the vendored YAML's errors have no common base here
        raise UsageError(f"{where} is not valid YAML ({str(exc).splitlines()[0]}); fix it, or "
                         "paste the printed block by hand") from None
    if not isinstance(data, Mapping):
        raise UsageError(f"{where} is not a YAML map of settings; refusing to rewrite it")
    if _has_comments(existing):
        raise UsageError(f"{where} has comments, which rewriting it would lose; paste the block "
                         "`invoke keys.continue-config` prints into it by hand")
    models = data.get("models") or []
    if not isinstance(models, list):
        raise UsageError(f"{where}: models is not a list; refusing to rewrite it")
    base = api_base(litellm_url)
    ours = [m for m in models if isinstance(m, Mapping)
            and str(m.get("apiBase") or "").rstrip("/") == base]
    kept = [m for m in models if m not in ours]
    merged = dict(data) if data else {}
    for name, value in HEADER.items():
        merged.setdefault(name, value)
    merged["models"] = kept + block
    text = str(yaml.safe_dump(merged, sort_keys=False, default_flow_style=False,
                              allow_unicode=True))
    return text, len(ours), len(kept)
