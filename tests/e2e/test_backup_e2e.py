"""stack.backup and stack.restore on the real stack (real PostgreSQL, real LiteLLM with its key
store, real Open WebUI): a backup of a database with 10,000 keys and 100,000 spend rows taken
while the stack runs, the volumes deleted, the backup restored - every row is back, the same
keys work and Open WebUI's accounts are back. A backup whose salt key is
not this stack's is refused before anything changes."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tasks.envstore import envfile
from tests.support.stack import DockerEnv, StackProject, docker_env, make_project

pytestmark = pytest.mark.docker

USER = {"name": "Ada", "email": "ada@example.com", "password": "correct-horse-battery", "role": "user"}


@pytest.fixture(scope="session")
def docker() -> DockerEnv:
    return docker_env()


@pytest.fixture
def stack(tmp_path: Path, docker: DockerEnv) -> Iterator[StackProject]:
    project = make_project(tmp_path, docker)
    yield project
    project.down()


#: every key's hash, alias, team, models and spend, as one digest
KEYS_DIGEST = (
    "SELECT md5(string_agg(token || '|' || coalesce(key_alias, '') || '|' || coalesce(team_id, '')"
    " || '|' || array_to_string(models, ',') || '|' || spend, ';' ORDER BY token))"
    ' FROM "LiteLLM_VerificationToken"')


def webui_client(stack: StackProject) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{stack.port('WEBUI_PORT')}", timeout=60)


def sign_in(stack: StackProject, email: str, password: str) -> int:
    with webui_client(stack) as client:
        return client.post("/api/v1/auths/signin", json={"email": email, "password": password}).status_code


def add_user(stack: StackProject) -> None:
    with webui_client(stack) as client:
        token = client.post("/api/v1/auths/signin", json={
            "email": stack.value("WEBUI_ADMIN_EMAIL"),
            "password": stack.value("WEBUI_ADMIN_PASSWORD")}).json()["token"]
        added = client.post("/api/v1/auths/add", headers={"Authorization": f"Bearer {token}"}, json=USER)
        assert added.status_code == 200, added.text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_then_volumes_deleted_then_restore(stack: StackProject, tmp_path: Path) -> None:
    stack.ok("stack.start")
    virtual_key = stack.value("VIRTUAL_KEY")
    extra = stack.admin_key("Other App Key")["key"]
    add_user(stack)
    assert sign_in(stack, USER["email"], USER["password"]) == 200
    stack.add_bulk_rows(keys=10_000, spend_rows=100_000)
    counts = stack.row_counts()
    assert counts[0] >= 10_002 and counts[1] >= 100_000
    digest = stack.psql(KEYS_DIGEST)

    backups = tmp_path / "backups"
    done = stack.ok("stack.backup", "--to", str(backups), "--json")
    result = json.loads(done.stdout)
    folder = Path(result["path"])
    assert folder.parent == backups and folder.is_dir()
    assert mode(backups) == 0o700 and mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["env", "litellm-config.yaml", "litellm.dump", "manifest.json", "open-webui.tar"])
    assert all(mode(p) == 0o600 for p in folder.iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["parts"]) == {"env", "litellm-config.yaml", "litellm.dump", "open-webui.tar"}
    assert manifest["parts"]["litellm.dump"]["size"] > 1000
    assert set(manifest["images"]) == {"postgres", "litellm", "open-webui"}
    for secret in ("LITELLM_MASTER_KEY", "VIRTUAL_KEY", "POSTGRES_PASSWORD", "LITELLM_SALT_KEY"):
        assert stack.value(secret) not in done.stdout + done.stderr

    # a second backup, --keep 1: the first one goes
    second = json.loads(stack.ok("stack.backup", "--to", str(backups), "--keep", "1", "--json").stdout)
    assert second["pruned"] == [str(folder)] and not folder.exists()
    folder = Path(second["path"])

    stack.ok("stack.stop", "--volumes", "--yes")
    assert stack.volumes() == []

    done = stack.run("stack.restore", str(folder), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restored" in done.stdout
    assert stack.value("VIRTUAL_KEY") == virtual_key
    assert stack.litellm_accepts(virtual_key) and stack.litellm_accepts(extra)
    assert stack.row_counts() == counts
    assert stack.psql(KEYS_DIGEST) == digest
    assert sign_in(stack, USER["email"], USER["password"]) == 200
    assert sign_in(stack, stack.value("WEBUI_ADMIN_EMAIL"), stack.value("WEBUI_ADMIN_PASSWORD")) == 200
    assert not (stack.env.parent / ".env.restore-journal.json").exists()

    # a backup of another installation (another salt key) is refused before anything changes
    envfile.update(stack.env, {"LITELLM_SALT_KEY": "sk-salt-of-another-installation-0123"})
    env_before = stack.env.read_bytes()
    containers_before = stack.containers()
    done = stack.run("stack.restore", str(folder), "--yes")
    assert done.returncode == 14, done.stdout + done.stderr
    assert "another installation" in done.stderr and "--force" in done.stderr
    assert stack.env.read_bytes() == env_before
    assert stack.containers() == containers_before
    assert stack.litellm_accepts(virtual_key)
