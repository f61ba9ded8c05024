"""Issue 11, kind 6, against a REAL Open WebUI (0.12.4): the hand-over finds LiteLLM's
connection however an admin wrote it, never leaves a connection on the revoked key, and stops
before anything changes when it cannot tell which connection is LiteLLM's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.base.errors import OpenWebUIError
from tasks.clients.litellm import LiteLLM
from tasks.clients.openwebui import LITELLM_INTERNAL_URL, OpenWebUI
from tasks.config.settings import load_settings
from tasks.envstore import envfile
from tasks.gateway.stack import webui_consumer
from tasks.virtualkeys.manager import KeyManager
from tests.support.peers import start_openwebui
from tests.support.project import MASTER, MODELS, Project, Standin

pytestmark = pytest.mark.peer

EMAIL, PASSWORD = "admin@example.com", "peer-admin-password-123"


def rewrite(webui: OpenWebUI, urls: list[str], keys: list[str]) -> None:
    """What an admin does in Admin Settings > Connections."""
    config = webui.config()
    config.update({"OPENAI_API_BASE_URLS": urls, "OPENAI_API_KEYS": keys,
                   "OPENAI_API_CONFIGS": {}, "ENABLE_OPENAI_API": True})
    webui._request("POST", "/openai/config/update", config)


def rotate(project: Project, litellm: Standin, webui: OpenWebUI,
           litellm_url: str = LITELLM_INTERNAL_URL) -> tuple[str, str]:
    """keys.rotate as the task wires it: the consumer is checked before anything changes."""
    settings = load_settings(None, env_file=str(project.env), url=litellm.url,
                             env_values=envfile.load(project.env).values)
    old = project.value("VIRTUAL_KEY")
    with LiteLLM(litellm.url, MASTER) as client:
        keys = KeyManager(settings, client)
        # the host-port URL, as the Gateway passes it; the container's own is the default
        keys.consumer = webui_consumer(webui, client, also=[litellm.url], old_keys=[old],
                                       litellm_url=litellm_url)
        keys.rotate(settings.key(None))
    return old, project.value("VIRTUAL_KEY")


@pytest.fixture
def webui(project: Project, litellm: Standin, tmp_path: Path) -> Any:
    assert project.run("keys.create").returncode == 0
    peer = start_openwebui(tmp_path / "owui", litellm_url=litellm.url,
                           key=project.value("VIRTUAL_KEY"), email=EMAIL, password=PASSWORD)
    try:
        with OpenWebUI(peer.url, EMAIL, PASSWORD, timeout=30) as client:
            yield client
    finally:
        peer.stop()


def test_the_connection_is_found_however_it_is_written(project: Project, litellm: Standin,
                                                       webui: OpenWebUI) -> None:
    port = litellm.url.rsplit(":", 1)[1]
    written = [
        litellm.url,  # the example: no /v1
        f"http://localhost:{port}/v1",  # another name for the same host
        f"HTTP://127.0.0.1:{port}",  # upper case, no /v1
    ]
    for url in written:
        rewrite(webui, [url], [project.value("VIRTUAL_KEY")])
        old, new = rotate(project, litellm, webui)
        config = webui.config()
        assert config["OPENAI_API_BASE_URLS"] == [url], "changed in place, nothing appended"
        assert config["OPENAI_API_KEYS"] == [new]
        assert old not in str(config) and not litellm.accepts(old)
        assert set(webui.models()) & set(MODELS), url


def test_a_trailing_slash_is_found_too(project: Project, litellm: Standin,
                                       webui: OpenWebUI) -> None:
    """Open WebUI itself lists no models through `.../v1/` (it asks for `/v1//models`), so no
    rotation is proven there; the hand-over still finds the connection and holds its key."""
    key = project.value("VIRTUAL_KEY")
    for url in (f"{litellm.url}/v1/", f"{litellm.url}/"):
        rewrite(webui, ["http://127.0.0.2:9/v1", url], ["sk-other-" + "o" * 24, key])
        assert webui.connections((LITELLM_INTERNAL_URL, litellm.url)) == [1]
        assert webui.held_key(also=[litellm.url]) == key
        webui.set_key("sk-next-" + "n" * 24, also=[litellm.url])
        assert webui.config()["OPENAI_API_KEYS"] == ["sk-other-" + "o" * 24, "sk-next-" + "n" * 24]


def test_no_connection_is_left_on_the_revoked_key(project: Project, litellm: Standin,
                                                  webui: OpenWebUI) -> None:
    """A second connection an admin made with the same key, under an address the tasks do not
    know (127.0.0.2: nothing listens there), gets the new key too."""
    key = project.value("VIRTUAL_KEY")
    rewrite(webui, [f"{litellm.url}/v1", "http://127.0.0.2:9/v1"], [key, key])
    old, new = rotate(project, litellm, webui)
    config = webui.config()
    assert config["OPENAI_API_KEYS"] == [new, new]
    assert old not in str(config) and not litellm.accepts(old)


def test_it_stops_before_anything_changes_when_it_cannot_tell(
        project: Project, litellm: Standin, webui: OpenWebUI) -> None:
    other = "sk-other-provider-" + "o" * 24
    rewrite(webui, ["http://127.0.0.2:9/v1"], [other])
    before_env, before_config = project.read(), webui.config()
    before_keys = litellm.keys(include_deleted=True)
    with pytest.raises(OpenWebUIError) as err:
        rotate(project, litellm, webui)
    assert err.value.exit_code == 13
    assert "cannot tell" in err.value.message and "nothing was changed" in err.value.message
    assert other not in err.value.message
    assert project.read() == before_env and webui.config() == before_config
    assert litellm.keys(include_deleted=True) == before_keys


def test_no_connection_at_all_gets_one(project: Project, litellm: Standin,
                                       webui: OpenWebUI) -> None:
    rewrite(webui, [], [])
    # the URL to add is the one Open WebUI reaches LiteLLM at: here the stand-in's
    _old, new = rotate(project, litellm, webui, litellm_url=f"{litellm.url}/v1")
    config = webui.config()
    assert config["OPENAI_API_BASE_URLS"] == [f"{litellm.url}/v1"]
    assert config["OPENAI_API_KEYS"] == [new]
