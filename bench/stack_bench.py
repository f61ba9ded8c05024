"""stack.start against a bare ``docker compose up -d --wait`` of the same files (prints a table).

    python bench/stack_bench.py [--runs 3]

Needs what the end-to-end tests need (`bash .ci/setup` as root). Each run starts the test stack
from stopped (volumes kept, the key already made) and stops it again. Also prints how long after
the last service turned healthy (per Docker's healthcheck log) stack.start returned.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.stack import docker_env, make_project  # noqa: E402


def healthy_at(container: str) -> float:
    """When the container's healthcheck first passed (epoch seconds)."""
    done = subprocess.run(["docker", "inspect", container, "--format", "{{json .State.Health.Log}}"],
                          capture_output=True, text=True, check=True)
    for entry in json.loads(done.stdout or "[]"):
        if entry.get("ExitCode") == 0:
            stamp = entry["End"][:26].rstrip("Z")
            return datetime.fromisoformat(stamp + "+00:00").timestamp()
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp), docker_env())
        try:
            first_started = time.perf_counter()
            project.ok("stack.start")
            first = time.perf_counter() - first_started
            project.ok("stack.stop")
            ours, bare, lags = [], [], []
            for _ in range(runs):
                started = time.perf_counter()
                project.ok("stack.start")
                ended = time.time()
                ours.append(time.perf_counter() - started)
                last_healthy = max(healthy_at(f"{project.name}-{s}-1")
                                   for s in ("postgres", "litellm", "open-webui", "provider"))
                lags.append(ended - last_healthy)
                project.ok("stack.stop")
                started = time.perf_counter()
                done = project.compose("up", "-d", "--wait")
                bare.append(time.perf_counter() - started)
                assert done.returncode == 0, done.stderr
                project.ok("stack.stop")
        finally:
            project.down()
    print(f"median of {runs} runs; test stack: the real PostgreSQL, LiteLLM (with its key store) and "
          "Open WebUI, a fake provider")
    print(f"{'first stack.start (creates the key)':<44} {first:>7.1f}s")
    print(f"{'stack.start (from stopped)':<44} {statistics.median(ours):>7.1f}s")
    print(f"{'docker compose up -d --wait (from stopped)':<44} {statistics.median(bare):>7.1f}s")
    print(f"{'ratio':<44} {statistics.median(ours) / statistics.median(bare):>7.2f}")
    print(f"{'returned after the last service was healthy':<44} {statistics.median(lags):>7.1f}s")


if __name__ == "__main__":
    main()
