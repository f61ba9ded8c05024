"""stack.upgrade on the real stack (real PostgreSQL, real LiteLLM with its key store, real HAProxy,
real Open WebUI), LiteLLM's version picked by .env's LITELLM_IMAGE as in production
(tests/stack/litellm-versions.yml; one small test image per version, each running the real
LiteLLM of that version from its own venv):

- --dry-run says what would change and touches nothing;
- an upgrade to a release that migrates the database and never turns ready is rolled back: exit
  15, .env pins the old image, the backed-up database is back (what the migration added is gone),
  the old LiteLLM serves and every key, the team, the stored model and the spend rows are there;
- then 1.108.7 -> 1.108.14 while three clients chat without pause: no request fails, the same
  data is there and works, and the wall time is printed;
- Ctrl-C while the new LiteLLM starts: exit 130 and the state in one line; the same command
  again ends the interrupted upgrade, then does it.

One stack for the module (its own compose project: no other module shares it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tasks.envstore import envfile
from tests.support.project import REPO
from tests.support.stack import StackProject, docker_env, make_project, versioned_litellm_image
from tests.support.traffic import traffic_for, wait_for_more

pytestmark = pytest.mark.docker

OLD, NEW = "1.108.7", "1.108.14"
TEAM = "upgrade-team"
STORED = "stored-upgrade-model"
#: every key's hash, alias, team and models; the teams; the (bulk) spend rows; as one digest
#: (the chats of the traffic add spend while an upgrade runs: their rows are not compared)
DATA_DIGEST = """
SELECT md5(
  (SELECT string_agg(token || '|' || coalesce(key_alias, '') || '|' || coalesce(team_id, '')
                     || '|' || array_to_string(models, ','), ';' ORDER BY token)
   FROM "LiteLLM_VerificationToken") || '#' ||
  (SELECT string_agg(team_id || '|' || coalesce(team_alias, ''), ';' ORDER BY team_id)
   FROM "LiteLLM_TeamTable") || '#' ||
  (SELECT count(*) || '|' || sum(spend) || '|' || string_agg(api_key, ',' ORDER BY request_id)
   FROM "LiteLLM_SpendLogs" WHERE request_id LIKE 'bulk-req-%'))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProject]:
    docker = docker_env()
    old_image = versioned_litellm_image(OLD)
    versioned_litellm_image(NEW)
    versioned_litellm_image(NEW, never_ready=True)
    project = make_project(tmp_path_factory.mktemp("upgrade"), docker, "litellm-versions.yml")
    envfile.update(project.env, {"LITELLM_IMAGE": old_image})
    project.ok("stack.start")
    # what must survive: virtual keys, a team with a key, a model stored in LiteLLM's database
    # (its provider key encrypted with the salt key), spend rows
    project.admin("POST", "/team/new", {"team_id": TEAM, "team_alias": "Upgrade Team"})
    project.admin("POST", "/key/generate", {"key_alias": "Team Key", "team_id": TEAM})
    project.admin("POST", "/model/new", {"model_name": STORED, "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": "http://provider:8000/v1",
        "api_key": "sk-provider-secret-stored"}})
    project.add_bulk_rows(keys=200, spend_rows=2_000)
    yield project
    project.down()


def litellm_version(stack: StackProject) -> str:
    return str(stack.admin("GET", "/health/readiness/details").get("litellm_version"))


def running_litellm_images(stack: StackProject) -> set[str]:
    done = stack.compose("ps", "--format", "{{.Image}}", "litellm")
    return set(done.stdout.split())


def served(stack: StackProject) -> set[str]:
    return {m["id"] for m in stack.admin("GET", "/v1/models")["data"]}


def assert_all_there(stack: StackProject, digest: str, keys: list[str]) -> None:
    assert stack.psql(DATA_DIGEST) == digest
    assert STORED in served(stack)
    for key in keys:
        assert stack.litellm_accepts(key)
    webui = stack.webui()
    with webui:
        assert "gpt-4o-mini" in webui.models()


def no_secrets(done: object, stack: StackProject) -> None:
    text = getattr(done, "stdout", "") + getattr(done, "stderr", "")
    for name in ("LITELLM_MASTER_KEY", "VIRTUAL_KEY", "POSTGRES_PASSWORD", "LITELLM_SALT_KEY"):
        assert stack.value(name) not in text, name


def test_dry_run_touches_nothing(stack: StackProject) -> None:
    env_before = stack.env.read_bytes()
    containers = stack.containers()
    done = stack.run("stack.upgrade", "--litellm", NEW, "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"would pin LITELLM_IMAGE=ai-gateway-test/litellm:v{NEW}" in done.stdout
    assert "would back up" in done.stdout and "roll back" in done.stdout
    assert stack.env.read_bytes() == env_before
    assert stack.containers() == containers
    assert not (stack.dir / "backups").exists()
    # the test stack's compose file names Open WebUI's image itself: a pin in .env would change
    # nothing, so it is refused (the same in a real run), nothing changed
    done = stack.run("stack.upgrade", "--openwebui", "0.12.5", "--dry-run")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "do not take open-webui's image from OPENWEBUI_IMAGE" in done.stderr
    assert stack.env.read_bytes() == env_before


def test_a_never_ready_upgrade_is_rolled_back_with_the_data(stack: StackProject) -> None:
    old_image = stack.value("LITELLM_IMAGE")
    digest = stack.psql(DATA_DIGEST)
    keys = [stack.value("VIRTUAL_KEY")]
    done = stack.run("stack.upgrade", "--litellm", f"{NEW}-never-ready", "--timeout", "600")
    assert done.returncode == 15, done.stdout + done.stderr
    line = done.stderr.strip().splitlines()[-1]
    print(f"\n{line}")
    assert line.startswith("error: the upgrade to ") and "rolled back" in line, line
    assert "database restored" in line and old_image in line, line
    assert stack.value("LITELLM_IMAGE") == old_image
    assert running_litellm_images(stack) == {old_image}
    assert litellm_version(stack) == OLD
    # the never-ready release had migrated the database: the backed-up one is back, whole
    assert stack.psql("SELECT to_regclass('public.\"AigwTestNewTable\"') IS NULL") == "t"
    assert stack.psql("SELECT count(*) FROM information_schema.columns "
                      "WHERE column_name = 'aigw_test_column'") == "0"
    assert_all_there(stack, digest, keys)
    assert not (stack.dir / ".env.upgrade-journal.json").exists()
    no_secrets(done, stack)


def test_upgrade_1_108_7_to_1_108_14_without_a_failed_request(stack: StackProject) -> None:
    digest = stack.psql(DATA_DIGEST)
    keys = [stack.value("VIRTUAL_KEY")]
    with traffic_for(stack) as traffic:
        since = traffic.snapshot()
        started = time.monotonic()
        done = stack.run("stack.upgrade", "--litellm", NEW)
        took = time.monotonic() - started
        wait_for_more(traffic, traffic.snapshot())
        report = traffic.report(since)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\nstack.upgrade --litellm {NEW} (from {OLD}, backup first, 1 LiteLLM replaced beside "
          f"the old one, proven) took {took:.1f}s wall time; "
          + ", ".join(f"{n} {r['failed']} of {r['sent']} failed" for n, r in report.items()))
    for name, result in report.items():
        assert result["sent"] > 0, name
        assert result["failed"] == 0, f"{name}: {result['errors']}"
    new_image = f"ai-gateway-test/litellm:v{NEW}"
    assert "upgraded litellm: " in done.stdout and new_image in done.stdout
    assert "proven: VIRTUAL_KEY works" in done.stdout
    assert "Open WebUI lists LiteLLM's models" in done.stdout
    assert stack.value("LITELLM_IMAGE") == new_image
    assert running_litellm_images(stack) == {new_image}
    assert litellm_version(stack) == NEW
    assert_all_there(stack, digest, keys)
    assert not (stack.dir / ".env.upgrade-journal.json").exists()
    no_secrets(done, stack)
    # the same again: nothing to do
    again = stack.run("stack.upgrade", "--litellm", NEW)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr


def test_ctrl_c_then_the_next_run_finishes_or_rolls_back(stack: StackProject) -> None:
    """Interrupted while the new LiteLLM starts (.env already pins it): exit 130 and one line
    saying the state; the same command again ends the interrupted upgrade first, then upgrades
    (here back to 1.108.7, the same mechanism)."""
    digest = stack.psql(DATA_DIGEST)
    current = stack.value("LITELLM_IMAGE")
    target = f"ai-gateway-test/litellm:v{OLD}"
    journal = stack.dir / ".env.upgrade-journal.json"
    assert not journal.exists(), "an upgrade is still under way from an earlier test"
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "-r", str(REPO), "stack.upgrade", "--litellm", OLD],
        cwd=stack.dir, env=stack.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 900
        while not (journal.exists() and stack.value("LITELLM_IMAGE") == target):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the upgrade never pinned the new image"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out + err
    line = err.strip().splitlines()[-1]
    print(f"\n{line}")
    assert "interrupted during the upgrade" in line and "run the same `invoke stack.upgrade` again" in line
    assert journal.exists()

    done = stack.run("stack.upgrade", "--litellm", OLD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "an interrupted upgrade" in done.stdout and "upgraded litellm: " in done.stdout
    assert stack.value("LITELLM_IMAGE") == target != current
    assert running_litellm_images(stack) == {target}
    assert litellm_version(stack) == OLD
    assert_all_there(stack, digest, [stack.value("VIRTUAL_KEY")])
    assert not journal.exists()
