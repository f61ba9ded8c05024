"""The keys tasks against the REAL LiteLLM with its PostgreSQL key store (prints a table).

    python bench/real_keys_bench.py [--runs 5] [--lite-pages 10]

Starts PostgreSQL 15 and the real proxy (the version docker-compose.yml pins) on 127.0.0.1 as the
real suite does (tests/support/real_litellm.py; `bash .ci/setup` installs them), with a loopback
relay in front that counts HTTP requests. Prints median wall times and request counts of
`keys.create`, `keys.rotate`, `keys.list`; then `keys.list` with 1,000 and 10,000 real keys in the
key store (rows inserted into LiteLLM's own table with SQL, as generating 10,000 keys over HTTP
takes long) against LiteLLM's own CLI (`lite keys list`, one page of 100 per run). At 10,000
keys `lite` is timed on ``--lite-pages`` pages and scaled to all 100 (printed as an estimate).
A benchmark, not a test: it asserts only that every key is listed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.keys_bench import run, timed, timed_json  # noqa: E402
from tests.support.project import write_env  # noqa: E402
from tests.support.real_litellm import (  # noqa: E402
    LITELLM_VENV,
    REAL_MASTER,
    pinned_version,
    start_postgres,
    start_provider,
    start_proxy,
)
from tests.support.relay import start_relay  # noqa: E402


def fill(proxy_db: str, postgres: object, count: int) -> None:
    """``count`` keys as rows of LiteLLM's own key table (hashes of made-up keys)."""
    psql = postgres.psql  # type: ignore[attr-defined]
    done = psql(proxy_db, "-c", 'DELETE FROM "LiteLLM_VerificationToken" WHERE team_id = \'bench\'')
    assert done.returncode == 0, done.stderr
    done = psql(proxy_db, "-c", f"""
        INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, team_id, models,
                                                 created_at, updated_at)
        SELECT encode(sha256(('sk-bench-' || i)::bytea), 'hex'), 'sk-...' || lpad(i::text, 4, '0'),
               'bench-' || i, 'bench', ARRAY[]::text[], now(), now()
        FROM generate_series(1, {count}) AS i""")  # noqa: S608 - count is our own int
    assert done.returncode == 0, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lite-pages", type=int, default=10)
    options = parser.parse_args()
    runs = options.runs
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        postgres = start_postgres(folder / "pg")
        provider = start_provider()
        started = time.perf_counter()
        proxy = start_proxy(folder / "proxy", postgres, provider)
        ready = time.perf_counter() - started
        relay = start_relay(proxy.url)
        try:
            env_file = write_env(folder / ".env", LITELLM_MASTER_KEY=REAL_MASTER)
            environ = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "LITELLM_"))}
            environ.update({"INVOKE_GATEWAY_ENV_FILE": str(env_file), "LITELLM_PROXY_URL": relay.url})
            invoke = [sys.executable, "-m", "invoke"]
            work = folder / "work"
            work.mkdir()
            bare = folder / "bare"
            bare.mkdir()
            (bare / "tasks.py").write_text("from invoke import task\n\n@task\ndef hello(c):\n    pass\n")
            base = [timed([*invoke, "--list"], bare, environ) for _ in range(runs)]
            rows.append(("invoke --list (one-task tasks.py)", statistics.median(base), "-"))

            for task in ("keys.create", "keys.rotate", "keys.list"):
                times, counts = [], []
                for _ in range(runs):
                    if task == "keys.create":  # a first run each time: no key in .env or LiteLLM
                        proxy.ok("POST", "/key/delete", {"key_aliases": ["Open WebUI Key"]}) \
                            if proxy.by_alias("Open WebUI Key") else None
                        write_env(env_file, LITELLM_MASTER_KEY=REAL_MASTER)
                    before = len(relay.log)
                    times.append(timed([*invoke, "-r", str(REPO), task], work, environ))
                    counts.append(len(relay.log) - before)
                rows.append((task, statistics.median(times), str(statistics.median(counts))))
            list_median = rows[-1][1]
            rows.append(("keys.list / invoke --list (ratio)", list_median / rows[0][1], "ratio"))

            lite = LITELLM_VENV / "bin" / "lite"
            lite_env = {**environ, "LITELLM_PROXY_URL": proxy.url, "LITELLM_PROXY_API_KEY": REAL_MASTER}
            for count in (1_000, 10_000):
                fill(proxy.database, postgres, count)
                before = len(relay.log)
                ours, answer = timed_json([*invoke, "-r", str(REPO), "keys.list", "--json"], work, environ)
                listed = [k for k in answer["keys"] if k["status"] != "missing"]  # type: ignore[index]
                assert len(listed) == count + 1, f"every key is listed ({len(listed)} of {count + 1})"
                rows.append((f"keys.list, {count:,} real keys", ours, str(len(relay.log) - before)))
                pages = -(-(count + 1) // 100)
                sample = pages if count <= 1_000 else min(pages, options.lite_pages)
                started = time.perf_counter()
                for page in range(1, sample + 1):
                    run([str(lite), "keys", "list", "--page", str(page), "--size", "100",
                         "--return-full-object", "--format", "json"], work, lite_env)
                theirs = (time.perf_counter() - started) * pages / sample
                label = "  lite keys list, every page" + (" (est.)" if sample < pages else "")
                rows.append((label, theirs, f"{pages} runs, {theirs / ours:.0f}x"))
        finally:
            relay.close()
            proxy.stop()
            postgres.stop()
            provider.shutdown()

    print(f"real LiteLLM {pinned_version()} + PostgreSQL 15 on 127.0.0.1 (ready {ready:.0f}s after start); "
          f"median of {runs} runs; Python {sys.version.split()[0]}")
    print(f"{'what':<40} {'wall time':>10} {'HTTP requests':>18}")
    for what, seconds, requests in rows:
        shown = f"{seconds:>9.2f}x" if requests == "ratio" else f"{seconds * 1000:>8.0f}ms"
        print(f"{what:<40} {shown:>10} {'' if requests == 'ratio' else requests:>18}")


if __name__ == "__main__":
    main()
