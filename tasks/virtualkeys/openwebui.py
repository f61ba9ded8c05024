"""Open WebUI as a consumer of the gate key: the new key handed over and proven there.

Open WebUI keeps its own copy of the key (see ``clients.openwebui``), so a rotation of the gate
key gives it the new one through its admin API after the switch and before the old key is
retired, and checks that Open WebUI lists LiteLLM's models with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..base.errors import OpenWebUIUnreachableError
from ..clients.litellm import LiteLLM
from ..clients.openwebui import LITELLM_INTERNAL_URL, OpenWebUI
from .rotation import reached

if TYPE_CHECKING:
    from ..config.settings import KeySpec


def _quiet(_message: str) -> None:
    """No progress output."""


def hand_over(webui: OpenWebUI, client: LiteLLM, key: str, *,
              litellm_url: str = LITELLM_INTERNAL_URL, progress: Callable[[str], None] = _quiet,
              also: Sequence[str] = (), old_keys: Sequence[str] = ()) -> list[str]:
    """Give Open WebUI ``key`` for its LiteLLM connection(s) - found by ``litellm_url`` or
    ``also`` however written, or by holding one of ``old_keys`` - and prove it there: Open WebUI
    must list a model LiteLLM serves that the key reaches. Raises OpenWebUIError (13)."""
    notes = []
    progress("handing the new key to Open WebUI")
    if webui.set_key(key, litellm_url, also=also, old_keys=old_keys):
        notes.append("Open WebUI had no LiteLLM connection; added it")
    progress("checking that Open WebUI reaches LiteLLM's models with it")
    webui.prove(reached(client.models_for(key), client.served_models()))
    notes.append("Open WebUI now uses the new key (checked: /api/models)")
    return notes


class OpenWebUIConsumer:
    """Open WebUI as the consumer of the gate key: ``check()`` before a key is made (the admin
    login works and LiteLLM's connection can be told apart), ``accept()`` after the switch.
    Open WebUI is looked up (``find``: Docker) only when one of them is called, that is only
    when a key will really change; other keys are never its business."""

    def __init__(self, find: Callable[[], OpenWebUI | None], client: LiteLLM, *,
                 also: Callable[[], Sequence[str]] = lambda: (),
                 old_keys: Callable[[], Sequence[str]] = lambda: (),
                 litellm_url: str = LITELLM_INTERNAL_URL, starting: bool = False,
                 progress: Callable[[str], None] = _quiet) -> None:
        self._find = find
        self.client = client
        self._also = also
        self._old_keys = old_keys
        self.litellm_url = litellm_url
        self.starting = starting
        self.progress = progress
        self._looked = False
        self._webui: OpenWebUI | None = None
        #: why Open WebUI's state is unknown ("" when it was found, or found not running)
        self.unknown = ""
        self._urls: tuple[Sequence[str], Sequence[str]] = ((), ())

    def serves(self, spec: KeySpec) -> bool:
        return spec.gate

    def _lookup(self) -> OpenWebUI | None:
        """Open WebUI, or None when it does not run - or when that cannot be told (Docker cannot
        be asked and nothing answers on its host port): then ``unknown`` says why."""
        if not self._looked:
            try:
                self._webui = self._find()
            except OpenWebUIUnreachableError as exc:
                self._webui, self.unknown = None, exc.message
            self._looked = True
            if self._webui is not None:
                self._urls = (tuple(self._also()), tuple(self._old_keys()))
        return self._webui

    def check(self, spec: KeySpec) -> None:
        webui = self._lookup()
        if webui is not None:
            also, old = self._urls
            webui.connections((self.litellm_url, *also), old)

    def accept(self, spec: KeySpec, key: str) -> list[str]:
        webui = self._lookup()
        if webui is None and self.unknown:
            return [f"{self.unknown}: taken as not running; `invoke stack.start` hands it the "
                    "new key"]
        if webui is None:
            return [] if self.starting else [
                "Open WebUI is not running; `invoke stack.start` hands it the new key when it "
                "starts"]
        also, old = self._urls
        return hand_over(webui, self.client, key, litellm_url=self.litellm_url,
                         progress=self.progress, also=also, old_keys=old)

    def close(self) -> None:
        if self._webui is not None:
            self._webui.close()
