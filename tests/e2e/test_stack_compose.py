"""The shipped stack's definition and what lives in its volumes, on the real programs.

- docker-compose.yml as Compose v2 reads it: it refuses a missing salt key or an empty Open
  WebUI admin, its healthchecks are the strong ones, LiteLLM gets DATABASE_* (no hand-built URL)
  and LiteLLM's own code (1.108.7, from its venv) turns them into a URL the real PostgreSQL
  accepts for a password full of URL characters;
- the test PostgreSQL image (tests/stack/postgres.Dockerfile): initialises its volume once, its
  temporary init server never listens on TCP, and a later start keeps the first password;
- the rolling step removes a LiteLLM container Docker keeps restarting, and a stopped one left
  behind, for good (the real engine; tests/unit/test_rolling.py has the refusals);
- ``env.init --force`` beside the stack's volumes (created with compose's labels), without
  them, and when Docker cannot be asked;
- ``env.check`` against a running PostgreSQL of the test stack: a .env whose password no longer
  opens it is an error that says how to recover.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.containers.compose import LITELLM
from tasks.containers.rolling import Roll
from tasks.envstore import envfile
from tests.support.project import REPO, Project, write_env
from tests.support.stack import (
    BASE_IMAGE,
    LITELLM_VENV,
    STACK_DIR,
    DockerEnv,
    StackProject,
    docker_env,
    make_project,
    postgres_image,
    require,
)

pytestmark = pytest.mark.docker

#: every character that breaks a hand-built postgresql:// URL, and a few more
URL_HOSTILE = "p@ss:w/rd#?x%41&y=z+!*'()[];,~"


def run(*args: str, input: str | None = None, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          input=input, check=False, env=env,
                          stdin=None if input is not None else subprocess.DEVNULL)


def need_compose() -> None:
    require(run("docker", "compose", "version").returncode == 0, "Compose v2 is missing")


def need_engine() -> None:
    need_compose()
    require(run("docker", "info").returncode == 0, "no Docker daemon answers")
    require(run("docker", "image", "inspect", postgres_image()).returncode == 0,
            f"the image {postgres_image()} is missing")


def compose_config(env: Path, *, fmt: str = "json") -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "LITELLM_",
                                                                        "POSTGRES_", "WEBUI_"))}
    return run("docker", "compose", "--project-directory", str(REPO), "--env-file", str(env),
               "-f", str(REPO / "docker-compose.yml"), "config", "--format", fmt, env=environ)


# --------------------------------------------------------------------------- docker-compose.yml


def test_compose_passes_the_salt_key_and_database_parts(tmp_path: Path) -> None:
    need_compose()
    env = write_env(tmp_path / ".env", POSTGRES_PASSWORD=URL_HOSTILE.replace("$", ""))
    done = compose_config(env)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    litellm = services["litellm"]["environment"]
    assert litellm["LITELLM_SALT_KEY"] == "salt-key-1234567890abcdef"
    assert "DATABASE_URL" not in litellm
    assert litellm["DATABASE_HOST"] == "postgres"
    assert litellm["DATABASE_USERNAME"] == "litellm" and litellm["DATABASE_NAME"] == "litellm"
    # the password reaches LiteLLM exactly as .env holds it, not pasted into a URL
    assert litellm["DATABASE_PASSWORD"] == URL_HOSTILE
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == URL_HOSTILE
    webui = services["open-webui"]["environment"]
    assert webui["WEBUI_ADMIN_EMAIL"] == "admin@example.com"
    assert webui["WEBUI_ADMIN_PASSWORD"] == "admin-password-123"


@pytest.mark.parametrize("name", ["LITELLM_SALT_KEY", "WEBUI_ADMIN_EMAIL", "WEBUI_ADMIN_PASSWORD",
                                  "POSTGRES_PASSWORD", "LITELLM_MASTER_KEY"])
@pytest.mark.parametrize("how", ["empty", "missing"])
def test_compose_refuses_a_missing_secret_or_admin(tmp_path: Path, name: str, how: str) -> None:
    need_compose()
    env = write_env(tmp_path / ".env", **{name: ""})
    if how == "missing":
        env.write_text("".join(line + "\n" for line in env.read_text().splitlines()
                               if not line.startswith(f"{name}=")))
    done = compose_config(env)
    assert done.returncode != 0
    assert name in done.stderr and "invoke env.init" in done.stderr


def test_healthchecks_wait_for_what_the_next_service_needs(tmp_path: Path) -> None:
    need_compose()
    done = compose_config(write_env(tmp_path / ".env"))
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    checks = {name: " ".join(s["healthcheck"]["test"]) for name, s in services.items()
              if "healthcheck" in s}
    # over TCP: the image's temporary init server listens on the Unix socket only
    assert "pg_isready -h 127.0.0.1 " in checks["postgres"]
    assert "/health/readiness" in checks["litellm"] and "liveliness" not in checks["litellm"]
    assert "localhost:8080/ready'" in checks["open-webui"]
    assert services["litellm"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Open WebUI's `litellm` is HAProxy, healthy while a ready LiteLLM answers through it
    assert "/health/readiness" in checks["litellm-lb"]
    assert services["litellm-lb"]["depends_on"]["litellm"]["condition"] == "service_healthy"
    assert services["open-webui"]["depends_on"]["litellm-lb"]["condition"] == "service_healthy"


def test_litellm_is_reached_through_haproxy(tmp_path: Path) -> None:
    """HAProxy publishes LiteLLM's port and is `litellm` on Open WebUI's network; LiteLLM
    publishes nothing (two of them run during a replacement) and Open WebUI never sees
    PostgreSQL."""
    need_compose()
    done = compose_config(write_env(tmp_path / ".env"))
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert not services["litellm"].get("ports")
    assert [p["host_ip"] for p in services["litellm-lb"]["ports"]] == ["127.0.0.1"]
    assert services["litellm-lb"]["networks"]["webui"]["aliases"] == ["litellm"]
    assert "litellm-backend" in services["litellm"]["networks"]["default"]["aliases"]
    assert set(services["open-webui"]["networks"]) == {"webui"}
    assert "webui" not in services["postgres"].get("networks", {"default": None})
    assert services["open-webui"]["environment"]["OPENAI_API_BASE_URL"] == "http://litellm:4000/v1"


# --------------------------------------------------------------------------- the rolling step's removals


def test_the_config_restore_writes_is_the_one_the_compose_files_mount(tmp_path: Path) -> None:
    """With no LiteLLM container to ask (a stopped stack), stack.backup and stack.restore take
    litellm-config.yaml from the compose files' bind mount - an override's own file (the test
    stack's) - not the project's: a restore once wrote the test config over the shipped one."""
    need_engine()
    from tasks.config.settings import DEFAULTS, load_settings
    from tasks.containers.compose import Stack
    from tasks.gateway.backup import config_path

    env = write_env(tmp_path / ".env", COMPOSE_PROJECT_NAME=f"aigw-e2e-cf{secrets.token_hex(3)}")
    values = envfile.load(env).values
    default = REPO / "litellm-config.yaml"
    for files, mounted in (([STACK_DIR / "compose.test.yml"], STACK_DIR / "litellm-test-config.yaml"),
                           ([], default)):
        compose_files = os.pathsep.join(str(f) for f in [REPO / "docker-compose.yml", *files])
        settings = load_settings({"gateway": {**DEFAULTS["gateway"], "project_dir": str(REPO),
                                              "env_file": str(env), "compose_files": compose_files}},
                                 env_values=values, environ={})
        stack = Stack(settings, values)
        try:
            assert stack.container_of(LITELLM) is None
            assert config_path(stack, tmp_path / "elsewhere.yaml") == mounted
        finally:
            stack.close()


def test_a_litellm_container_docker_keeps_restarting_is_really_removed() -> None:
    """A new LiteLLM that never turns ready exits, and Docker restarts it (``unless-stopped``):
    the rolling step removes it, and a stopped one left behind, for good - ``docker compose up
    --no-recreate --scale`` would start a leftover again with its old image (an upgrade's
    rollback once started the failed release again that way)."""
    need_engine()
    import docker

    client = docker.from_env()
    project = f"aigw-e2e-rm{secrets.token_hex(3)}"
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": LITELLM}
    restarting = client.containers.run(BASE_IMAGE, ["sh", "-c", "exit 1"], detach=True,
                                       labels=labels, restart_policy={"Name": "unless-stopped"})
    stopped = client.containers.run(BASE_IMAGE, ["true"], detach=True, labels=labels)
    stopped.wait()

    class Listing:  # what Roll asks of the compose Stack here
        @staticmethod
        def containers() -> list[Any]:
            return list(client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={project}"}))

    try:
        deadline = time.monotonic() + 120
        while restarting.attrs.get("RestartCount", 0) < 2:  # in Docker's restart loop
            assert time.monotonic() < deadline, restarting.attrs.get("State")
            time.sleep(0.2)
            restarting.reload()
        roll = Roll(Listing(), timeout=0)  # type: ignore[arg-type]
        assert stopped.id in {c.id for c in roll.leftovers()}
        Roll._remove(restarting, timeout=5)
        for container in roll.leftovers():
            Roll._remove(container, timeout=5)
        assert Listing.containers() == []
    finally:
        for container in Listing.containers():
            container.remove(force=True)


# --------------------------------------------------------------------------- the test PostgreSQL


class Postgres:
    """One container of the test PostgreSQL image on a volume of its own."""

    def __init__(self) -> None:
        self.name = f"aigw-pg-{secrets.token_hex(3)}"
        self.volume = f"{self.name}-data"
        self.container = ""

    def start(self, password: str, user: str = "litellm", db: str = "litellm") -> None:
        # the password travels in the environment of `docker run`, not its arguments
        done = run("docker", "run", "-d", "--name", self.name, "-e", "POSTGRES_PASSWORD",
                   "-e", f"POSTGRES_USER={user}", "-e", f"POSTGRES_DB={db}",
                   "-v", f"{self.volume}:/var/lib/postgresql/data", postgres_image(),
                   env={**os.environ, "POSTGRES_PASSWORD": password})
        assert done.returncode == 0, done.stderr
        self.container = done.stdout.strip()
        deadline = time.monotonic() + 60
        while run("docker", "exec", self.name, "pg_isready", "-h", "127.0.0.1", "-U", user,
                  "-d", db).returncode != 0:
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.3)

    def stop(self) -> None:
        run("docker", "rm", "-f", self.name)

    def logs(self) -> str:
        done = run("docker", "logs", self.name)
        return done.stdout + done.stderr

    def address(self) -> str:
        return run("docker", "inspect", "-f",
                   "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                   self.name).stdout.strip()

    def login(self, url: str) -> subprocess.CompletedProcess[str]:
        """Connect over TCP (scram) with a postgresql:// URL, given to psql on stdin."""
        return run("docker", "exec", "-i", self.name, "psql", "-X", "-q", "-tA", "-v",
                   "ON_ERROR_STOP=1", "-U", "litellm", "-d", "litellm",
                   input=f"\\connect {url}\nSELECT current_user || '@' || current_database();\n")

    def login_with(self, password: str, user: str = "litellm", db: str = "litellm"
                   ) -> subprocess.CompletedProcess[str]:
        quoted = urllib.parse.quote(password, safe="")
        return self.login(f"postgresql://{user}:{quoted}@{self.address()}:5432/{db}")


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    need_engine()
    pg = Postgres()
    yield pg
    pg.stop()
    run("docker", "volume", "rm", "-f", pg.volume)


def test_postgres_image_initialises_once_and_keeps_the_first_password(postgres: Postgres) -> None:
    postgres.start("first-password-123")
    first_logs = postgres.logs()
    assert "initialising" in first_logs
    # the temporary init server listened on the Unix socket only; TCP came with the real start
    init_part = first_logs.split("initialised; starting the server")[0]
    assert "listening on Unix socket" in init_part
    assert "listening on IPv4" not in init_part
    assert "listening on IPv4" in first_logs.split("initialised; starting the server")[1]
    assert postgres.login_with("first-password-123").stdout.strip() == "litellm@litellm"
    wrong = postgres.login_with("not-the-password")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr

    # a new container on the same volume with another password: the old one still holds
    postgres.stop()
    postgres.start("second-password-456")
    assert "initialisation skipped" in postgres.logs()
    assert postgres.login_with("first-password-123").returncode == 0
    refused = postgres.login_with("second-password-456")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr


def test_postgres_image_refuses_to_initialise_without_a_password(postgres: Postgres) -> None:
    done = run("docker", "run", "--rm", "-v", f"{postgres.volume}:/var/lib/postgresql/data",
               postgres_image(), timeout=60)
    assert done.returncode == 1
    assert "POSTGRES_PASSWORD is not set" in done.stderr


def test_litellm_builds_a_url_the_real_postgres_accepts(postgres: Postgres, tmp_path: Path) -> None:
    """LiteLLM's own code (proxy_cli -> construct_database_url_from_env_vars) turns the
    environment compose gives it into the URL it connects with; for a password full of URL
    characters that URL opens the real PostgreSQL."""
    python = LITELLM_VENV / "bin" / "python"
    require(python.exists(), f"the LiteLLM venv is missing ({python})")
    postgres.start(URL_HOSTILE)
    done = compose_config(write_env(tmp_path / ".env", POSTGRES_PASSWORD=URL_HOSTILE))
    litellm_env = json.loads(done.stdout)["services"]["litellm"]["environment"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    environ.update({k: v for k, v in litellm_env.items() if k.startswith("DATABASE_")})
    environ["DATABASE_HOST"] = postgres.address()  # "postgres" resolves only inside compose
    built = run(str(python), "-c", "from litellm.proxy.utils import "
                "construct_database_url_from_env_vars as f; print(f())", env=environ, timeout=180)
    assert built.returncode == 0, built.stderr
    url = built.stdout.strip().splitlines()[-1]
    assert url.startswith("postgresql://litellm:")
    assert postgres.login(url).stdout.strip() == "litellm@litellm"


# --------------------------------------------------------------------------- env.init --force


def label_volume(name: str, project: str) -> None:
    done = run("docker", "volume", "create", "--label", f"com.docker.compose.project={project}",
               "--label", "com.docker.compose.volume=postgres-data", name)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def volume_project(project: Project) -> Iterator[tuple[Project, str]]:
    need_engine()
    name = f"aigw-init-{secrets.token_hex(3)}"
    envfile.update(project.env, {"COMPOSE_PROJECT_NAME": name})
    yield project, name
    run("docker", "volume", "rm", "-f", f"{name}_postgres-data")


KEPT = ("POSTGRES_PASSWORD", "LITELLM_SALT_KEY", "WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD",
        "WEBUI_ADMIN_EMAIL", "POSTGRES_USER", "POSTGRES_DB")


def test_init_force_keeps_what_the_volumes_hold(volume_project: tuple[Project, str]) -> None:
    project, name = volume_project
    envfile.update(project.env, {"WEBUI_ADMIN_EMAIL": "owner@example.org",
                                 "VIRTUAL_KEY": "sk-kept-virtual-key-1234", "FIRST_RUN": "no"})
    before = envfile.load(project.env).values
    label_volume(f"{name}_postgres-data", name)
    done = project.run("env.init", "--force")
    assert done.returncode == 0, done.stderr
    after = envfile.load(project.env).values
    for var in (*KEPT, "VIRTUAL_KEY", "FIRST_RUN"):
        assert after[var] == before[var], var
        assert var in done.stdout  # the names it kept, never the values
    assert after["LITELLM_MASTER_KEY"] != before["LITELLM_MASTER_KEY"]
    assert after["UI_PASSWORD"] != before["UI_PASSWORD"]
    assert f"{name}_postgres-data" in done.stderr
    for var in KEPT:
        if len(before[var]) >= 8 and var != "WEBUI_ADMIN_EMAIL":
            assert before[var] not in done.stdout + done.stderr, var


def test_init_force_without_volumes_starts_afresh(volume_project: tuple[Project, str]) -> None:
    project, _ = volume_project
    before = envfile.load(project.env).values
    done = project.run("env.init", "--force")
    assert done.returncode == 0, done.stderr
    after = envfile.load(project.env).values
    for var in ("POSTGRES_PASSWORD", "LITELLM_SALT_KEY", "WEBUI_SECRET_KEY", "WEBUI_ADMIN_PASSWORD"):
        assert after[var] != before[var], var
    assert "kept" not in done.stdout
    assert after["FIRST_RUN"] == "yes" and after["VIRTUAL_KEY"] == ""


def test_init_force_keeps_them_when_docker_cannot_be_asked(project: Project, tmp_path: Path) -> None:
    before = envfile.load(project.env).values
    done = project.run("env.init", "--force",
                       env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    assert done.returncode == 0, done.stderr
    after = envfile.load(project.env).values
    for var in KEPT:
        assert after[var] == before[var], var
    assert "could not ask Docker" in done.stderr
    assert after["LITELLM_MASTER_KEY"] != before["LITELLM_MASTER_KEY"]


def test_init_force_refuses_an_unreadable_env_beside_volumes(
        volume_project: tuple[Project, str]) -> None:
    project, name = volume_project
    label_volume(f"{name}_postgres-data", name)
    project.env.write_text(project.env.read_text() + "this line is not a variable\n")
    before = project.env.read_bytes()
    done = project.run("env.init", "--force")
    assert done.returncode == 3
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "volumes hold them" in done.stderr
    assert project.env.read_bytes() == before
    assert not list(project.dir.glob(".env.backup.*"))


def test_init_warns_when_volumes_outlive_a_deleted_env(volume_project: tuple[Project, str]) -> None:
    project, name = volume_project
    label_volume(f"{name}_postgres-data", name)
    project.env.unlink()
    done = project.run("env.init", env={"INVOKE_GATEWAY_PROJECT_NAME": name})
    assert done.returncode == 0, done.stderr
    assert "warning: the stack's volumes exist" in done.stderr


# --------------------------------------------------------------------------- env.check, running


@pytest.fixture
def db_stack(tmp_path: Path) -> Iterator[StackProject]:
    need_engine()
    docker: DockerEnv = docker_env()
    project = make_project(tmp_path, docker)
    yield project
    project.down()


def findings(done: subprocess.CompletedProcess[str]) -> dict[str, list[dict[str, Any]]]:
    by_check: dict[str, list[dict[str, Any]]] = {}
    for f in json.loads(done.stdout)["findings"]:
        by_check.setdefault(f["check"], []).append(f)
    return by_check


def test_env_check_finds_a_database_password_that_no_longer_works(db_stack: StackProject) -> None:
    stopped = findings(db_stack.run("env.check", "--json"))
    assert "not running" in stopped["stack"][0]["message"]

    up = db_stack.compose("up", "-d", "--wait", "postgres")
    assert up.returncode == 0, up.stderr
    ok = db_stack.run("env.check", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert findings(ok)["database"][0]["level"] == "ok"

    old = db_stack.value("POSTGRES_PASSWORD")
    envfile.update(db_stack.env, {"POSTGRES_PASSWORD": "a-new-password-12345"})
    bad = db_stack.run("env.check")
    assert bad.returncode == 3
    assert "POSTGRES_PASSWORD (or POSTGRES_USER) in .env no longer opens the running database" \
        in bad.stdout
    assert "\\password litellm" in bad.stdout and ".env.backup" in bad.stdout
    assert "a-new-password-12345" not in bad.stdout + bad.stderr and old not in bad.stdout

    # PostgreSQL answers an unknown user as a wrong password (it does not tell which)
    envfile.update(db_stack.env, {"POSTGRES_USER": "someone-else", "POSTGRES_PASSWORD": old})
    renamed = findings(db_stack.run("env.check", "--json"))
    assert renamed["database"][0]["level"] == "error"
    assert "no longer opens the running database" in renamed["database"][0]["message"]

    envfile.update(db_stack.env, {"POSTGRES_USER": "litellm", "POSTGRES_DB": "other-db"})
    other_db = findings(db_stack.run("env.check", "--json"))
    assert other_db["database"][0]["level"] == "error"
    assert "no database 'other-db'" in other_db["database"][0]["message"]
