"""Entry point of the test stack's real LiteLLM: bring the schema up to date, then run the proxy.

LiteLLM's own image runs ``prisma migrate deploy`` at start; its native schema engine cannot be
downloaded here, so this applies the same migrations (the ``migration.sql`` files of the
``litellm-proxy-extras`` package LiteLLM ships) with psql, each once: applied names are kept in a
table of ours, so a restart on an existing volume applies only what is new. The proxy then runs
with ``DISABLE_SCHEMA_UPDATE=true``. The database password travels in psql's environment
(PGPASSWORD), never in an argument list. Standard library only (runs on the image's python3).

Which LiteLLM: the venv in ``LITELLM_BIN`` (compose.test.yml), unless the image names one of its
own in ``AIGW_LITELLM_VENV`` - the per-version test images (``ai-gateway-test/litellm:v<version>``,
tests/support/stack.py) do, so ``LITELLM_IMAGE`` in .env picks the version, as in production.
``AIGW_TEST_NEVER_READY`` (set by a test image only) applies one migration of its own (a new
table, a new column, its row in the migrations table), then exits: a release that migrates the
database and never turns ready.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

TABLE = "_aigw_test_applied_migrations"


def pg_environ() -> dict[str, str]:
    env = dict(os.environ)
    url = os.environ.get("DATABASE_URL")
    if url:
        parts = urlsplit(url)
        env.update({"PGHOST": parts.hostname or "", "PGPORT": str(parts.port or 5432),
                    "PGUSER": unquote(parts.username or ""), "PGPASSWORD": unquote(parts.password or ""),
                    "PGDATABASE": unquote(parts.path.lstrip("/"))})
    else:  # LiteLLM builds its URL from these when DATABASE_URL is not set
        host = os.environ["DATABASE_HOST"]
        name, _, port = host.partition(":")
        env.update({"PGHOST": name, "PGPORT": port or "5432", "PGUSER": os.environ["DATABASE_USERNAME"],
                    "PGPASSWORD": os.environ["DATABASE_PASSWORD"], "PGDATABASE": os.environ["DATABASE_NAME"]})
    return env


def psql(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", *args], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"migrations: psql failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def main() -> None:
    venv = os.environ.get("AIGW_LITELLM_VENV")
    if venv:
        os.environ["LITELLM_BIN"] = f"{venv}/bin/litellm"
        os.environ["PATH"] = f"{venv}/bin:{os.environ.get('PATH', '')}"
    litellm = Path(os.environ["LITELLM_BIN"])
    python = litellm.parent / "python"
    found = subprocess.run(
        [str(python), "-c", "import litellm_proxy_extras, os; "
         "print(os.path.join(os.path.dirname(litellm_proxy_extras.__file__), 'migrations'))"],
        capture_output=True, text=True, check=True)
    migrations = sorted(p for p in Path(found.stdout.strip()).iterdir() if (p / "migration.sql").is_file())
    env = pg_environ()
    psql(env, "-c", f'CREATE TABLE IF NOT EXISTS "{TABLE}" (name text PRIMARY KEY)')
    applied = set(psql(env, "-c", f'SELECT name FROM "{TABLE}"').split("\n"))
    pending = [p for p in migrations if p.name not in applied]
    if pending:
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            for folder in pending:
                name = folder.name.replace("'", "''")
                script.write(f"\\i '{folder / 'migration.sql'}'\n")
                script.write(f"INSERT INTO \"{TABLE}\" VALUES ('{name}');\n")
        psql(env, "-f", script.name)
        os.unlink(script.name)
    print(f"migrations: {len(pending)} applied, {len(migrations) - len(pending)} already there", flush=True)
    if os.environ.get("AIGW_TEST_NEVER_READY"):
        psql(env, "-1", "-c", 'CREATE TABLE IF NOT EXISTS "AigwTestNewTable" (id text PRIMARY KEY); '
             'ALTER TABLE "LiteLLM_VerificationToken" ADD COLUMN IF NOT EXISTS aigw_test_column text; '
             f'INSERT INTO "{TABLE}" VALUES (\'aigw_test_never_ready\') ON CONFLICT DO NOTHING')
        sys.exit("AIGW_TEST_NEVER_READY: migrated the database, and never turns ready")
    os.execv(str(litellm), [str(litellm), *sys.argv[1:]])


if __name__ == "__main__":
    main()
