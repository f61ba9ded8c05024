"""The real LiteLLM proxy WITH its real PostgreSQL key store, on 127.0.0.1, for the ``real`` suite.

What runs:
- PostgreSQL 15 (Debian's ``postgresql-15``, already on the machines) in a cluster of our own
  under the test's temporary folder, on a free loopback port, as user ``postgres`` when we are
  root. LiteLLM's schema is applied once per run to a template database with LiteLLM's own SQL
  migrations (the ``litellm-proxy-extras`` package the proxy ships with); each proxy gets a fresh
  copy (``CREATE DATABASE ... TEMPLATE``), so each test module starts from an empty key store.
- The LiteLLM proxy at the version docker-compose.yml pins (:func:`pinned_version`), installed by
  ``tests/real_litellm/setup.sh`` in ``$AI_GATEWAY_CACHE/litellm-<version>``, with ``prisma`` 0.11.0 whose
  engine transport is the Node stand-in ``tests/real_litellm/shim.mjs`` over Prisma's own WASM
  query engine. Every key, team and auth decision is LiteLLM's own code on a real database.
- A tiny OpenAI-compatible model provider in a thread, as the upstream of every served model, so
  a chat through a virtual key goes all the way through LiteLLM and back.

Outside CI a missing part skips with the reason; in CI (``CI`` set) it fails: there it must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.stack import fake_provider
from tests.stack.fake_provider import Provider
from tests.support.processes import stop_process
from tests.support.stack import CACHE, LITELLM_VENV, free_port, installed_litellm, pinned_version, require

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REAL_ROOT = CACHE / "real-litellm"
REAL_MASTER = "sk-real-master-" + "r" * 24
REAL_SALT = "real-salt-" + "s" * 30
#: The models the real proxy serves in the tests; each is routed to the fake provider.
SERVED = fake_provider.MODELS


def installed_version() -> str | None:
    done = subprocess.run(
        [str(LITELLM_VENV / "bin" / "python"), "-c",
         "import importlib.metadata as m; print(m.version('litellm'), m.version('prisma'))"],
        capture_output=True, text=True, check=False)
    return done.stdout.split()[0] if done.returncode == 0 and len(done.stdout.split()) == 2 else None


def _as_postgres(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL server program as user ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, **kwargs)


@dataclass
class Postgres:
    """A PostgreSQL 15 cluster on 127.0.0.1:``port`` with trust auth for user ``postgres``."""

    folder: Path
    port: int
    template: str = "litellm_template"
    _made: int = 0

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", self.url(database), *args],
            capture_output=True, text=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL)

    def fresh_database(self) -> str:
        """A new database holding LiteLLM's empty schema (a copy of the template)."""
        self._made += 1
        name = f"litellm_{self._made}_{secrets.token_hex(3)}"
        done = self.psql("postgres", "-c", f'CREATE DATABASE "{name}" TEMPLATE {self.template}')
        assert done.returncode == 0, done.stderr
        return name

    def stop(self) -> None:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                      "-w", "stop"])


def start_postgres(folder: Path) -> Postgres:
    """Make a cluster, start it and load LiteLLM's schema into its template database.

    Raises AssertionError with the server's log when a step fails.
    """
    require((PG_BIN / "initdb").exists(), f"PostgreSQL 15 is not installed in {PG_BIN}")
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        # the postgres user must be able to reach its folder under pytest's tmp tree
        for parent in folder.parents:
            if parent == Path(parent.anchor):
                break
            parent.chmod(parent.stat().st_mode | 0o711)
    port = free_port()
    done = _as_postgres([str(PG_BIN / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--no-sync"])
    assert done.returncode == 0, done.stderr
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    done = _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-l",
                         str(folder / "server.log"), "-o", options, "-w", "start"])
    assert done.returncode == 0, done.stderr + (folder / "server.log").read_text(errors="replace")
    pg = Postgres(folder, port)
    done = pg.psql("postgres", "-c", f"CREATE DATABASE {pg.template}")
    assert done.returncode == 0, done.stderr
    _migrate(pg, pg.template, folder)
    return pg


def _migrate(pg: Postgres, database: str, folder: Path) -> None:
    """Apply every ``migration.sql`` of litellm-proxy-extras, in name order, in one psql run."""
    found = subprocess.run(
        [str(LITELLM_VENV / "bin" / "python"), "-c",
         "import litellm_proxy_extras, os; "
         "print(os.path.join(os.path.dirname(litellm_proxy_extras.__file__), 'migrations'))"],
        capture_output=True, text=True, check=True)
    migrations = Path(found.stdout.strip())
    files = sorted(p / "migration.sql" for p in migrations.iterdir() if (p / "migration.sql").is_file())
    assert files, f"no migrations in {migrations}"
    script = folder / "migrate.sql"
    # \i takes a quoted path: one migration folder's name has spaces
    script.write_text("".join(f"\\i '{f}'\n" for f in files))
    done = pg.psql(database, "-f", str(script), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def start_provider() -> Provider:
    """The fake model provider (tests/stack/fake_provider.py) in a thread on 127.0.0.1."""
    return fake_provider.serve()


def config_yaml(provider_url: str, models: tuple[str, ...] = SERVED, extra: str = "") -> str:
    entries = "".join(
        f"  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n"
        f"      api_base: {provider_url}/v1\n      api_key: sk-fake-provider\n" for m in models)
    return (f"model_list:\n{entries}general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"
            f"  database_url: os.environ/DATABASE_URL\n{extra}litellm_settings:\n  telemetry: false\n")


def proxy_environ(database_url: str, master: str = REAL_MASTER) -> dict[str, str]:
    """The environment the proxy runs with: the production service's variables plus the shim's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LITELLM_", "DATABASE_URL", "PRISMA_", "INVOKE_"))}
    env.update({
        "PATH": f"{LITELLM_VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        "LITELLM_MASTER_KEY": master, "LITELLM_SALT_KEY": REAL_SALT, "DATABASE_URL": database_url,
        "DISABLE_SCHEMA_UPDATE": "true",  # the native schema engine is missing; the schema is applied
        "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
        "PRISMA_BINARY_CACHE_DIR": str(REAL_ROOT / "prisma-cli"),
        "PRISMA_QUERY_ENGINE_BINARY": str(REAL_ROOT / "shim" / "query-engine"),
        "PRISMA_SCHEMA_ENGINE_BINARY": str(REAL_ROOT / "shim" / "schema-engine"),
        "CHECKPOINT_DISABLE": "1", "PRISMA_HIDE_UPDATE_MESSAGE": "1",
    })
    return env


@dataclass
class RealProxy:
    """A running real LiteLLM proxy on its own fresh database."""

    process: subprocess.Popen[bytes]
    url: str
    master: str
    database: str
    log: Path
    postgres: Postgres
    provider: Provider
    folder: Path
    workers: int = 1

    def stop(self) -> None:
        stop_process(self.process, grace=20)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # --- the admin API, asked directly (to check what the tasks did, in LiteLLM itself) ---
    def call(self, method: str, path: str, body: Any = None, key: str | None = None,
             timeout: float = 30) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {key or self.master}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            status = exc.code
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert status == 200, f"{method} {path} -> {status} {answer}"
        return answer

    def keys(self) -> list[dict[str, Any]]:
        """Every key LiteLLM holds (full objects), following its pages."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.ok("GET", f"/key/list?return_full_object=true&page={page}&size=100")
            found.extend(answer["keys"])
            if page >= int(answer.get("total_pages") or 1):
                return found
            page += 1

    def by_alias(self, alias: str) -> list[dict[str, Any]]:
        return [k for k in self.keys() if k.get("key_alias") == alias]

    def info(self, key: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/key/info?key={key}")["info"])

    def models_for(self, key: str) -> tuple[int, list[str]]:
        status, answer = self.call("GET", "/v1/models", key=key)
        return status, [m["id"] for m in answer.get("data", [])] if status == 200 else []

    def accepts(self, key: str) -> bool:
        return self.models_for(key)[0] == 200

    def chat(self, key: str, model: str = SERVED[0]) -> tuple[int, Any]:
        return self.call("POST", "/v1/chat/completions",
                         {"model": model, "messages": [{"role": "user", "content": "ping"}]}, key=key)


def start_proxy(folder: Path, postgres: Postgres, provider: Provider, *, workers: int = 1,
                master: str = REAL_MASTER, config_extra: str = "", wait: float = 900,
                database: str | None = None, extra_env: dict[str, str] | None = None) -> RealProxy:
    """Start the real proxy on a fresh database (or on ``database``, to restart it on the same key
    store) and wait for ``/health/readiness`` (db connected)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    require(binary.exists(), f"the LiteLLM proxy is not installed in {LITELLM_VENV}")
    require(installed_litellm(LITELLM_VENV) is not None,
            f"LiteLLM's Prisma client is not generated in {LITELLM_VENV} (tests/real_litellm/setup.sh)")
    installed = installed_version()
    require(installed == pinned_version(),
            f"the LiteLLM in {LITELLM_VENV} is {installed}, docker-compose.yml pins {pinned_version()}")
    folder.mkdir(parents=True, exist_ok=True)
    database = database or postgres.fresh_database()
    provider_url = f"http://127.0.0.1:{provider.server_address[1]}"
    (folder / "config.yaml").write_text(config_yaml(provider_url, extra=config_extra))
    port = free_port()
    log = folder / "litellm.log"
    args = [str(binary), "--config", str(folder / "config.yaml"), "--host", "127.0.0.1",
            "--port", str(port)]
    if workers > 1:
        args += ["--num_workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(args, env={**proxy_environ(postgres.url(database), master),
                                              **(extra_env or {})}, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=folder,
                                   start_new_session=True)
    proxy = RealProxy(process, f"http://127.0.0.1:{port}", master, database, log, postgres, provider,
                      folder, workers)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the real LiteLLM exited with {process.returncode}:\n{proxy.tail()}")
        with contextlib.suppress(OSError, ValueError):
            status, answer = proxy.call("GET", "/health/readiness", timeout=3)
            if status == 200 and isinstance(answer, dict) and answer.get("db") == "connected":
                return proxy
        time.sleep(0.5)
    proxy.stop()
    raise AssertionError(f"the real LiteLLM was not ready within {wait}s:\n{proxy.tail()}")


@contextlib.contextmanager
def running_proxy(folder: Path, postgres: Postgres, provider: Provider, **kwargs: Any) -> Iterator[RealProxy]:
    proxy = start_proxy(folder, postgres, provider, **kwargs)
    try:
        yield proxy
    finally:
        proxy.stop()
