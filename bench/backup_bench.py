"""stack.backup and stack.restore against bare pg_dump / pg_restore of the same database, in the
same run (prints a table), and the backup's size.

    python bench/backup_bench.py [--runs 3] [--keys 10000] [--spend-rows 100000]

Needs what the end-to-end tests need (`bash .ci/setup` as root). Starts the test stack (the real
PostgreSQL, LiteLLM and Open WebUI), fills LiteLLM's tables with ``--keys`` keys and
``--spend-rows`` spend rows, then alternates, ``--runs`` times:
- ``invoke stack.backup`` (the database, Open WebUI's volume, config, .env, checksums) and a
  bare ``docker exec <postgres> pg_dump --format=custom --compress=6 > file`` (the database only);
- ``pg_restore --clean --if-exists --single-transaction`` of our dump, as stack.restore runs it
  (the database step), and the bare same command fed the bare dump;
and once, the whole ``invoke stack.restore --yes`` (stop, files, database, Open WebUI's volume,
start, proof) for its wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.stack import StackProject, docker_env, make_project  # noqa: E402


def pg(project: StackProject, tool: list[str], *, stdin: Path | None = None,
       stdout: Path | None = None) -> float:
    """``tool`` inside the postgres container, as the task runs it; seconds taken."""
    argv = ["docker", "exec", "-i", "-e", "PGPASSWORD", f"{project.name}-postgres-1", *tool,
            "-h", "127.0.0.1", "-w", "-U", project.value("POSTGRES_USER") or "litellm"]
    env = {**os.environ, "PGPASSWORD": project.value("POSTGRES_PASSWORD")}
    started = time.perf_counter()
    with (stdin.open("rb") if stdin else open(os.devnull, "rb")) as src, \
         (stdout.open("wb") if stdout else open(os.devnull, "wb")) as dst:
        subprocess.run(argv, stdin=src, stdout=dst, env=env, check=True)
    return time.perf_counter() - started


def row(name: str, ours: list[float], bare: list[float]) -> str:
    a, b = statistics.median(ours), statistics.median(bare)
    return (f"| {name} | {a:.2f} s (min {min(ours):.2f}) | {b:.2f} s (min {min(bare):.2f}) "
            f"| {a / b:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--spend-rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp), docker_env())
        try:
            project.ok("stack.start")
            project.add_bulk_rows(args.keys, args.spend_rows)
            db = project.value("POSTGRES_DB") or "litellm"
            backups, bare_dump = Path(tmp) / "backups", Path(tmp) / "bare.dump"
            dumps: dict[str, list[float]] = {"ours": [], "bare": []}
            loads: dict[str, list[float]] = {"ours": [], "bare": []}
            restore = ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner",
                       "-d", db]
            result: dict[str, object] = {}
            for _ in range(args.runs):
                started = time.perf_counter()
                result = json.loads(project.ok("stack.backup", "--to", str(backups), "--keep", "1",
                                               "--json").stdout)
                dumps["ours"].append(time.perf_counter() - started)
                dumps["bare"].append(pg(project, ["pg_dump", "--format=custom", "--compress=6",
                                                  "-d", db], stdout=bare_dump))
                ours_dump = Path(str(result["path"])) / "litellm.dump"
                loads["ours"].append(pg(project, restore, stdin=ours_dump))
                loads["bare"].append(pg(project, restore, stdin=bare_dump))
            started = time.perf_counter()
            project.ok("stack.restore", str(result["path"]), "--yes")
            whole_restore = time.perf_counter() - started
            parts = dict(result["parts"])  # type: ignore[call-overload]
            bare_size = bare_dump.stat().st_size
        finally:
            project.down()
    print(f"{args.keys} keys, {args.spend_rows} spend rows; median of {args.runs} runs\n")
    print("| operation | ours | bare | ratio |")
    print("| --- | --- | --- | --- |")
    print(row("backup (stack.backup vs pg_dump)", dumps["ours"], dumps["bare"]))
    print(row("database restore (pg_restore of our dump vs of the bare one)", loads["ours"], loads["bare"]))
    print(f"\nwhole stack.restore (stop, files, database, Open WebUI, start, proof): {whole_restore:.1f} s")
    sizes = {name: part["size"] for name, part in parts.items()}
    print(f"backup size: {sum(sizes.values()) / 1e6:.1f} MB "
          f"({', '.join(f'{n} {s / 1e6:.2f} MB' for n, s in sizes.items())}); "
          f"bare dump {bare_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
