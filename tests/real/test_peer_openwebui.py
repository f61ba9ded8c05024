"""The project's hand-over code in front of a REAL Open WebUI (0.12.4) process on 127.0.0.1,
its connection pointing at the LiteLLM stand-in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tasks.clients.litellm import LiteLLM
from tasks.clients.openwebui import OpenWebUI
from tasks.config.settings import load_settings
from tasks.envstore import envfile
from tasks.virtualkeys.manager import KeyManager
from tasks.virtualkeys.openwebui import hand_over
from tests.support.peers import start_openwebui
from tests.support.project import MASTER, MODELS, Project, Standin

pytestmark = pytest.mark.peer

EMAIL, PASSWORD = "admin@example.com", "peer-admin-password-123"


def test_rotation_reaches_the_real_open_webui(project: Project, litellm: Standin, tmp_path: Path) -> None:
    assert project.run("keys.create").returncode == 0
    old = project.value("VIRTUAL_KEY")
    peer = start_openwebui(tmp_path / "owui", litellm_url=litellm.url, key=old, email=EMAIL,
                           password=PASSWORD)
    connection = f"{litellm.url}/v1"
    try:
        with OpenWebUI(peer.url, EMAIL, PASSWORD, timeout=30) as webui:
            assert webui.held_key(connection) == old
            assert set(webui.models()) >= set(MODELS)
            # an admin's own settings for the connection, which must survive the rotation
            config = webui.config()
            config["OPENAI_API_CONFIGS"] = {"0": {"enable": True, "prefix_id": "gw",
                                                  "tags": [], "model_ids": []}}
            webui._request("POST", "/openai/config/update", config)
            before = webui.config()

            settings = load_settings(None, env_file=str(project.env), url=litellm.url,
                                     env_values=envfile.load(project.env).values)
            rotation_starts = len(litellm.requests())
            with LiteLLM(litellm.url, MASTER) as client:
                keys = KeyManager(settings, client)
                keys.consumer = lambda spec, key: None if not spec.gate else hand_over(
                    webui, client, key, litellm_url=connection)
                result = keys.rotate(settings.key(None))
            new = project.value("VIRTUAL_KEY")
            assert result.key == new != old

            after = webui.config()
            assert webui.held_key(connection) == new
            assert after["OPENAI_API_CONFIGS"] == before["OPENAI_API_CONFIGS"]
            assert after["OPENAI_API_BASE_URLS"] == before["OPENAI_API_BASE_URLS"]
            assert after["ENABLE_OPENAI_API"] == before["ENABLE_OPENAI_API"]
            assert old not in str(after)

            # Open WebUI lists the stand-in's models through the new key, and the old is refused
            assert {f"gw.{m}" for m in MODELS} <= set(webui.models())
            new_auth = hashlib.sha256(new.encode()).hexdigest()[:16]
            assert any(r["auth"] == new_auth and r["path"].endswith("/models")
                       for r in litellm.requests()[rotation_starts:]), [
                (r["path"], r["auth"]) for r in litellm.requests()[rotation_starts:]]
            assert not litellm.accepts(old) and litellm.accepts(new)
    finally:
        peer.stop()


def test_wrong_admin_password_is_a_clear_error(project: Project, litellm: Standin, tmp_path: Path) -> None:
    peer = start_openwebui(tmp_path / "owui", litellm_url=litellm.url, key="sk-none-" + "x" * 20,
                           email=EMAIL, password=PASSWORD)
    try:
        with OpenWebUI(peer.url, EMAIL, "not-the-password", timeout=30) as webui, pytest.raises(
            Exception, match="Open WebUI refused the admin sign-in"
        ):
            webui.config()
    finally:
        peer.stop()


def test_missing_admin_credentials_fail_before_anything(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD must be set"):
        OpenWebUI("http://127.0.0.1:9", "", "")
