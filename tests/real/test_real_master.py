"""keys.rotate-master and keys.rotate --older-than against the REAL LiteLLM with its database.

Here LiteLLM is not a compose service, so it is "not ours to restart": the task writes the new
master key to .env, says what to do and exits 9; once LiteLLM is restarted with .env's key, the
next keys task proves it and finishes. The proxy runs with LITELLM_SALT_KEY and
STORE_MODEL_IN_DB, as the stack does, and a model stored in its database (with an encrypted
provider key) must still work after the rotation. The full path on a compose stack (LiteLLM
recreated by the task) is in tests/e2e/test_stack_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Project, write_env
from tests.support.real_litellm import REAL_MASTER, start_proxy

pytestmark = pytest.mark.real

STORED = {"STORE_MODEL_IN_DB": "True"}


def journal(project: Project) -> Path:
    return project.dir / ".env.master-journal.json"


def test_rotate_master_when_litellm_is_not_ours(tmp_path: Path, real_postgres: Any,
                                                real_provider: Any) -> None:
    proxy = start_proxy(tmp_path / "p1", real_postgres, real_provider, extra_env=STORED)
    try:
        project = Project(tmp_path, write_env(tmp_path / ".env", LITELLM_MASTER_KEY=REAL_MASTER,
                                              LITELLM_PORT=proxy.url.rsplit(":", 1)[1]), proxy.url)
        assert project.run("keys.create").returncode == 0
        virtual = project.value("VIRTUAL_KEY")
        provider_url = f"http://127.0.0.1:{real_provider.server_address[1]}/v1"
        proxy.ok("POST", "/model/new", {"model_name": "stored-model", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": provider_url, "api_key": "sk-provider-secret-1"}})
        assert proxy.chat(virtual, "stored-model")[0] == 200

        # destructive: --yes without a terminal; not ours: the salt key must be confirmed
        done = project.run("keys.rotate-master")
        assert done.returncode == 2 and "needs --yes" in done.stderr
        before = project.env.read_bytes()
        done = project.run("keys.rotate-master", "--yes")
        assert done.returncode == 8 and "--salt-key-set" in done.stderr, done.stderr
        assert project.env.read_bytes() == before and not journal(project).exists()

        done = project.run("keys.rotate-master", "--yes", "--salt-key-set")
        assert done.returncode == 9, done.stderr
        new = project.value("LITELLM_MASTER_KEY")
        assert new != REAL_MASTER and new.startswith("sk-") and len(new) >= 40
        assert f"sk-...{new[-4:]}" in done.stderr and new not in done.stdout + done.stderr
        assert REAL_MASTER not in done.stdout + done.stderr
        assert "restart LiteLLM" in done.stderr
        entry = json.loads(journal(project).read_text())
        assert entry["new_sha256"] == hashlib.sha256(new.encode()).hexdigest()
        assert (journal(project).stat().st_mode & 0o777) == 0o600
        assert new not in journal(project).read_text()
        # until LiteLLM runs with it, every keys task says the same, and nothing else happens
        again = project.run("keys.list")
        assert again.returncode == 9 and "restart LiteLLM" in again.stderr
    finally:
        proxy.stop()

    # the user restarts LiteLLM with .env's key; the next keys task proves it and finishes
    started = time.monotonic()
    proxy = start_proxy(tmp_path / "p2", real_postgres, real_provider, master=new,
                        database=proxy.database, extra_env=STORED)
    try:
        print(f"\nLiteLLM restarted with the new master key in {time.monotonic() - started:.0f}s")
        project = Project(tmp_path, project.env, proxy.url)  # it came back on another port
        done = project.run("keys.list", env={"LITELLM_PORT": proxy.url.rsplit(":", 1)[1]})
        assert done.returncode == 0, done.stderr
        assert "finished an interrupted master-key rotation" in done.stdout
        assert not journal(project).exists()
        assert proxy.call("GET", "/key/list?page=1&size=1", key=REAL_MASTER)[0] == 401
        assert proxy.call("GET", "/key/list?page=1&size=1", key=new)[0] == 200
        assert proxy.accepts(virtual), "virtual keys live on: they are hashes in the database"
        status, answer = proxy.chat(virtual, "stored-model")
        assert status == 200, f"the stored model (salt-key encrypted) must survive: {answer}"
    finally:
        proxy.stop()


def test_an_interrupted_rotation_before_env_changed_rolls_back(tmp_path: Path, real_postgres: Any,
                                                                real_provider: Any) -> None:
    proxy = start_proxy(tmp_path / "p", real_postgres, real_provider)
    try:
        project = Project(tmp_path, write_env(tmp_path / ".env", LITELLM_MASTER_KEY=REAL_MASTER,
                                              LITELLM_PORT=proxy.url.rsplit(":", 1)[1]), proxy.url)
        journal(project).write_text(json.dumps({
            "old_sha256": hashlib.sha256(REAL_MASTER.encode()).hexdigest(),
            "new_sha256": hashlib.sha256(secrets.token_hex(8).encode()).hexdigest(),
            "started_at": "2026-11-30T00:00:00+00:00", "restart": False}))
        done = project.run("keys.list")
        assert done.returncode == 0, done.stderr
        assert "rolled back an interrupted master-key rotation" in done.stdout
        assert not journal(project).exists() and project.value("LITELLM_MASTER_KEY") == REAL_MASTER

        # --older-than on the same proxy: a young key is left alone, quietly
        assert project.run("keys.create").returncode == 0
        key = project.value("VIRTUAL_KEY")
        done = project.run("keys.rotate", "--older-than", "30d")
        assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
        assert project.value("VIRTUAL_KEY") == key
        skipped = json.loads(project.run("keys.rotate", "--older-than", "1d", "--json").stdout)
        assert skipped["action"] == "skipped" and skipped["age_seconds"] < 60
        time.sleep(2.2)
        done = project.run("keys.rotate", "--older-than", "2s")
        assert done.returncode == 0 and "rotated" in done.stdout
        assert project.value("VIRTUAL_KEY") != key and not proxy.accepts(key)
        bad = project.run("keys.rotate", "--older-than", "soon")
        assert bad.returncode == 2 and "bad duration" in bad.stderr
    finally:
        proxy.stop()
