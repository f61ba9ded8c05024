"""Support for the end-to-end tests on a real Docker engine and Compose v2.

Each test gets its own compose project (unique name, free ports, its own .env written by
``env.init``), made of docker-compose.yml plus tests/stack/compose.test.yml: the real PostgreSQL
(an image built here, see tests/stack/postgres.Dockerfile), the LiteLLM stand-in, and the real
Open WebUI. Everything is torn down (``down -v``) after.
Outside CI a missing Docker, image or Open WebUI venv skips these tests with the reason; in CI
(``CI`` set) it fails them: there they must run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tasks.envstore import envfile
from tests.support.project import REPO, key_accepted

CACHE = Path(os.environ.get("AI_GATEWAY_CACHE", "/var/cache/ai-gateway-ci"))
BASE_IMAGE = "ai-gateway-base:bookworm"
STACK_DIR = REPO / "tests" / "stack"
POSTGRES_FILES = (STACK_DIR / "postgres.Dockerfile", STACK_DIR / "postgres-entrypoint.sh")
LITELLM_FILES = (STACK_DIR / "litellm-real.Dockerfile", STACK_DIR / "litellm_real_entrypoint.py")
HAPROXY_FILES = (STACK_DIR / "haproxy.Dockerfile",)
REAL_LITELLM_ROOT = CACHE / "real-litellm"


def pinned_version() -> str:
    """The LiteLLM version the stack runs: the tag of docker-compose.yml's default image.

    One place decides it; ``.ci/setup`` reads the same line to install the tests' proxy.
    """
    text = (REPO / "docker-compose.yml").read_text()
    match = re.search(r"LITELLM_IMAGE:-ghcr\.io/berriai/litellm:v([0-9][0-9.]*[0-9](?:\.post\d+)?)\}", text)
    assert match, "docker-compose.yml has no pinned LiteLLM image"
    return match.group(1)


def installed_litellm(venv: Path) -> str | None:
    """The LiteLLM version installed in ``venv`` with its Prisma client generated for it
    (tests/real_litellm/setup.sh's stamp), else None."""
    try:
        stamp = (venv / ".aigw-generated.stamp").read_text().strip()
    except OSError:
        return None
    for info in (venv / "lib").glob("python3*/site-packages/litellm-*.dist-info"):
        version = info.name[len("litellm-"):-len(".dist-info")]
        if stamp.startswith(f"{version}-"):
            return version
    return None


def litellm_venv_for(version: str) -> Path:
    """The venv .ci/setup installed LiteLLM ``version`` in (``$AI_GATEWAY_CACHE/litellm-<version>``)."""
    return CACHE / f"litellm-{version}"


LITELLM_VENV = Path(os.environ.get("LITELLM_VENV") or litellm_venv_for(pinned_version()))


def hashed_image(name: str, files: tuple[Path, ...]) -> str:
    """A test image tagged by a hash of the files it is built from; .ci/setup computes the same
    tag (`cat <files> | sha256sum | cut -c1-12`) and builds it when missing."""
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    return f"ai-gateway-test/{name}:{digest[:12]}"


def postgres_image() -> str:
    return hashed_image("postgres", POSTGRES_FILES)


def litellm_image() -> str:
    return hashed_image("litellm-real", LITELLM_FILES)


def haproxy_image() -> str:
    return hashed_image("haproxy", HAPROXY_FILES)


TEST_IMAGES = ("ai-gateway-test/litellm-standin:latest", postgres_image(), litellm_image(),
               haproxy_image())
IN_CI = bool(os.environ.get("CI"))


def require(ok: bool, reason: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"in CI this test must run, but {reason} (run `bash .ci/setup` as root)")
    pytest.skip(f"{reason}; `bash .ci/setup` as root installs it")


def _quiet(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


@dataclass(frozen=True)
class DockerEnv:
    openwebui_venv: Path
    openwebui_python: Path
    litellm_venv: Path
    litellm_python: Path


def _venv_python(venv: Path) -> Path:
    """The Python installation a venv was made from (bind-mounted beside it into containers)."""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        if line.startswith("home"):
            return Path(line.split("=", 1)[1].strip()).parent
    raise AssertionError(f"{venv}/pyvenv.cfg names no home")


#: A folder of the whole test run (made by the controller in tests/conftest.py before the xdist
#: workers start; they inherit it) where a test leaves what is undone only once every test ended.
RUN_DIR_VAR = "AIGW_TEST_RUN_DIR"
_LEAVE_SWARM = "leave-swarm"


def leave_swarm_after_the_run() -> None:
    """``docker swarm leave --force`` once every test of the run has ended, not now: on Engine
    20.10 leaving a swarm stops Docker's DNS from resolving the containers then running on the
    other networks until each one restarts - every compose stack of the tests beside (LiteLLM
    no longer finds ``postgres``, HAProxy no LiteLLM, Open WebUI no ``litellm``; seen in CI as
    an upgrade's rollback whose new LiteLLM exited and whose old one lost its database)."""
    run_dir = os.environ.get(RUN_DIR_VAR)
    if run_dir and Path(run_dir).is_dir():
        (Path(run_dir) / _LEAVE_SWARM).touch()
    else:
        _quiet(["docker", "swarm", "leave", "--force"])


def end_of_run(run_dir: Path) -> None:
    """What the tests left to undo once every test ended (the controller calls it last)."""
    if (run_dir / _LEAVE_SWARM).exists():
        _quiet(["docker", "swarm", "leave", "--force"])


def docker_env() -> DockerEnv:
    require(shutil.which("docker") is not None, "the docker CLI is not installed")
    require(_quiet(["docker", "info"]).returncode == 0, "no Docker daemon answers")
    require(_quiet(["docker", "compose", "version"]).returncode == 0, "Compose v2 is missing")
    for image in (BASE_IMAGE, *TEST_IMAGES):
        require(_quiet(["docker", "image", "inspect", image]).returncode == 0,
                f"the image {image} is missing")
    venv = Path(os.environ.get("OPENWEBUI_VENV") or CACHE / "openwebui")
    require((venv / "bin" / "open-webui").exists(), f"Open WebUI is not installed in {venv}")
    python = Path(os.environ.get("OPENWEBUI_PYTHON") or _venv_python(venv))
    require((LITELLM_VENV / "bin" / "litellm").exists(), f"LiteLLM is not installed in {LITELLM_VENV}")
    require(installed_litellm(LITELLM_VENV) is not None,
            f"LiteLLM's Prisma client is not generated in {LITELLM_VENV} (tests/real_litellm/setup.sh)")
    return DockerEnv(venv, python, LITELLM_VENV, _venv_python(LITELLM_VENV))


def versioned_litellm_image(version: str, *, never_ready: bool = False) -> str:
    """``ai-gateway-test/litellm:v<version>``: the real LiteLLM's test image naming the venv of
    that version (AIGW_LITELLM_VENV, read by litellm_real_entrypoint.py), so .env's LITELLM_IMAGE
    picks the version (tests/stack/litellm-versions.yml). ``never_ready``: ``...-never-ready``,
    which migrates the database and exits. Built here in a second (two lines on the hashed
    image; Docker's cache makes a second build free)."""
    venv = litellm_venv_for(version)
    require(installed_litellm(venv) == version,
            f"LiteLLM {version} is not installed in {venv} (tests/real_litellm/setup.sh)")
    tag = f"ai-gateway-test/litellm:v{version}" + ("-never-ready" if never_ready else "")
    dockerfile = (f"FROM {litellm_image()}\nENV AIGW_LITELLM_VENV={venv}\n"
                  + ("ENV AIGW_TEST_NEVER_READY=1\n" if never_ready else ""))
    done = subprocess.run(["docker", "build", "--quiet", "-t", tag, "-"], input=dockerfile,
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "DOCKER_BUILDKIT": "0"})
    assert done.returncode == 0, done.stderr
    return tag


def free_port() -> int:
    """A free port below Linux's ephemeral range, so no outgoing connection takes it later."""
    for _ in range(200):
        port = secrets.randbelow(10000) + 20000
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 30000")


@dataclass
class StackProject:
    dir: Path
    env: Path
    name: str
    docker: DockerEnv
    compose_files: list[Path] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    # -- running things ------------------------------------------------------

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INVOKE_", "LITELLM_", "COMPOSE_"))}
        env.update({
            "INVOKE_GATEWAY_ENV_FILE": str(self.env),
            "INVOKE_GATEWAY_COMPOSE_FILES": os.pathsep.join(str(f) for f in self.compose_files),
            "OPENWEBUI_VENV": str(self.docker.openwebui_venv),
            "OPENWEBUI_PYTHON": str(self.docker.openwebui_python),
            "TEST_POSTGRES_IMAGE": postgres_image(),
            "TEST_LITELLM_IMAGE": litellm_image(),
            "TEST_HAPROXY_IMAGE": haproxy_image(),
            "LITELLM_VENV": str(self.docker.litellm_venv),
            "LITELLM_PYTHON": str(self.docker.litellm_python),
            "REAL_LITELLM_ROOT": str(REAL_LITELLM_ROOT),
            "AI_GATEWAY_CACHE": str(CACHE),
            "PYTHONDONTWRITEBYTECODE": "1",
            # a busy machine (e2e modules side by side) takes minutes to start the stack; a
            # crash is still seen at once. Tests of the deadline pass --timeout.
            "INVOKE_GATEWAY_START_TIMEOUT": "900",
        })
        env.update(self.extra_env)
        env.update(extra)
        return env

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 1200,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", "-r", str(REPO), *args], cwd=self.dir,
            env=self.environ(**(env or {})), text=True, capture_output=True, timeout=timeout,
            input=input, stdin=None if input is not None else subprocess.DEVNULL,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        files = [a for f in self.compose_files for a in ("-f", str(f))]
        return subprocess.run(
            ["docker", "compose", "-p", self.name, "--project-directory", str(REPO),
             "--env-file", str(self.env), *files, *args],
            env=self.environ(), capture_output=True, text=True, timeout=300, check=False,
            stdin=subprocess.DEVNULL)

    # -- looking at things ---------------------------------------------------

    def diagnosis(self, tail: int = 40) -> str:
        """Every container of the project (stopped ones too) and each one's last ``tail`` log
        lines with their times, for a failed test's report (tests/conftest.py)."""
        parts = []
        for args in (("ps", "-a"), ("logs", "--no-color", "--timestamps", "--tail", str(tail))):
            try:
                done = self.compose(*args)
                parts.append(f"$ docker compose {' '.join(args)}\n{done.stdout}{done.stderr}")
            except (OSError, subprocess.SubprocessError) as exc:
                parts.append(f"$ docker compose {' '.join(args)}: {exc}")
        return "\n".join(parts)

    def value(self, name: str) -> str:
        return envfile.load(self.env).get(name)

    def port(self, name: str) -> int:
        return int(self.value(name))

    def containers(self) -> list[str]:
        done = _quiet(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}",
                       "--format", "{{.Names}}"])
        return sorted(done.stdout.split())

    def volumes(self) -> list[str]:
        done = _quiet(["docker", "volume", "ls", "--filter",
                       f"label=com.docker.compose.project={self.name}", "--format", "{{.Name}}"])
        return sorted(done.stdout.split())

    def container_env(self, service: str) -> dict[str, str]:
        # by label, not by name: a replaced litellm container is `<project>-litellm-2`
        ids = _quiet(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.name}",
                      "--filter", f"label=com.docker.compose.service={service}"]).stdout.split()
        done = _quiet(["docker", "inspect", (ids or [f"{self.name}-{service}-1"])[0], "--format",
                       "{{json .Config.Env}}"])
        pairs = json.loads(done.stdout or "[]")
        return dict(p.split("=", 1) for p in pairs)

    def litellm_accepts(self, key: str) -> bool:
        return key_accepted(f"http://127.0.0.1:{self.port('LITELLM_PORT')}", key)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Ask LiteLLM's admin API with the master key (as an admin would); the answer's JSON."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port('LITELLM_PORT')}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.value('LITELLM_MASTER_KEY')}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def admin_key(self, alias: str) -> dict[str, Any]:
        """Make a key straight through LiteLLM's admin API (as an admin would)."""
        return dict(self.admin("POST", "/key/generate", {"key_alias": alias, "team_id": "open-webui-team"}))

    def litellm_keys(self) -> list[dict[str, Any]]:
        """Every key in LiteLLM's database (full objects)."""
        return list(self.admin("GET", "/key/list?return_full_object=true&page=1&size=100")["keys"])

    def webui(self) -> Any:
        from tasks.clients.openwebui import OpenWebUI

        return OpenWebUI(f"http://127.0.0.1:{self.port('WEBUI_PORT')}",
                         self.value("WEBUI_ADMIN_EMAIL"), self.value("WEBUI_ADMIN_PASSWORD"),
                         timeout=30)

    def psql(self, sql: str) -> str:
        """Run ``sql`` in the stack's database (psql inside the postgres container, over TCP;
        the password travels in docker exec's environment); its unaligned output."""
        done = subprocess.run(
            ["docker", "exec", "-i", "-e", "PGPASSWORD", f"{self.name}-postgres-1", "psql", "-X",
             "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U",
             self.value("POSTGRES_USER") or "litellm", "-d", self.value("POSTGRES_DB") or "litellm"],
            input=sql, env={**os.environ, "PGPASSWORD": self.value("POSTGRES_PASSWORD")},
            capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def add_bulk_rows(self, keys: int, spend_rows: int) -> None:
        """``keys`` virtual keys and ``spend_rows`` spend log rows, straight into LiteLLM's
        tables (as a busy installation has them)."""
        self.psql(f"""
            INSERT INTO "LiteLLM_VerificationToken" (token, key_alias, team_id, models)
              SELECT md5('bulk-key-' || g), 'Bulk Key ' || g, 'open-webui-team', ARRAY['gpt-4o-mini']
              FROM generate_series(1, {keys}) g;
            INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, "startTime",
                                             "endTime", model, messages, response)
              SELECT 'bulk-req-' || g, 'acompletion', md5('bulk-key-' || (g % {keys} + 1)),
                     0.0001 * (g % 50), now() - g * interval '1 second', now(), 'gpt-4o-mini',
                     '{{"role": "user", "content": "hello"}}', '{{"content": "hi there"}}'
              FROM generate_series(1, {spend_rows}) g;
        """)  # noqa: S608 - two integers of the test's own

    def row_counts(self) -> tuple[int, int]:
        """(keys, spend rows) in LiteLLM's tables."""
        out = self.psql('SELECT (SELECT count(*) FROM "LiteLLM_VerificationToken") || \',\' || '
                        '(SELECT count(*) FROM "LiteLLM_SpendLogs")')
        keys, rows = out.split(",")
        return int(keys), int(rows)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")


def make_project(tmp_path: Path, docker: DockerEnv, *extra_files: str) -> StackProject:
    name = f"aigw-e2e-{secrets.token_hex(3)}"
    project = StackProject(
        dir=tmp_path, env=tmp_path / ".env", name=name, docker=docker,
        compose_files=[REPO / "docker-compose.yml", STACK_DIR / "compose.test.yml",
                       *(STACK_DIR / f for f in extra_files)],
    )
    project.ok("env.init")
    envfile.update(project.env, {
        "COMPOSE_PROJECT_NAME": name,
        "LITELLM_PORT": str(free_port()),
        "WEBUI_PORT": str(free_port()),
    })
    return project


#: LiteLLM's OWN startup (1.108.7, litellm/proxy/db/check_migration.py and
#: litellm_proxy_extras/utils.py) runs `prisma migrate diff --from-url <DATABASE_URL>`, with the
#: database password in that URL, in every configuration that has Prisma (its image does): the
#: password is in the argument list of that child process (Prisma's Python CLI, then node) for
#: the seconds it runs, inside the litellm container and so on the host's process table. Not the
#: tasks' doing, and nothing in the stack's configuration avoids it; the watcher records it apart
#: (the README says so) and still fails on any other secret on any command line.
UPSTREAM_URL_ON_ARGV = "migrate\0diff\0--from-url\0"


class CmdlineWatcher:
    """Reads every process's argument list (/proc/*/cmdline) over and over while a test runs,
    and records any secret it sees there: no secret may ever travel on a command line.
    ``upstream`` collects LiteLLM's own ``prisma migrate diff --from-url`` (see above)."""

    def __init__(self, env: Path) -> None:
        self.env = env  # every secret value .env holds at any moment (keys change on the way)
        self.seen: set[str] = set()
        self.hits: set[str] = set()
        self.upstream: set[str] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    #: The process table: Linux's /proc; under Wine the same table, where Wine maps Linux's
    #: root (drive Z:) - it holds the command line of every Windows process too.
    PROC = next((p for p in (Path("/proc"), Path("Z:/proc")) if (p / "self").exists()), None)

    def _run(self) -> None:
        proc = self.PROC
        assert proc is not None
        while not self._stop.is_set():
            if self.scans % 20 == 0:
                try:
                    values = envfile.load(self.env).values
                except Exception:
                    values = {}
                self.seen |= {v for k, v in values.items()
                              if len(v) >= 8 and (v.startswith("sk-") or "PASSWORD" in k
                                                  or "SECRET" in k or "SALT" in k)}
            for entry in proc.iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
                except OSError:
                    continue
                for value in self.seen:
                    if value in cmdline:
                        where = (self.upstream if UPSTREAM_URL_ON_ARGV in cmdline
                                 and f":{value}@" in cmdline else self.hits)
                        where.add(f"{value[:6]}... in the arguments of pid {entry.name}: "
                                  f"{cmdline.split(chr(0))[0]}")
            self.scans += 1
            time.sleep(0.005)

    def __enter__(self) -> CmdlineWatcher:
        if self.PROC is None:
            pytest.skip("POSIX process table: no /proc to read command lines from (Windows)")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
