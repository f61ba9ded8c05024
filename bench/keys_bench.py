"""Wall time and HTTP requests of the keys tasks against the LiteLLM stand-in (prints a table).

    python bench/keys_bench.py [--runs 5]

A benchmark, not a test: it asserts nothing about speed, it prints figures.
"""

from __future__ import annotations

import argparse
import hashlib
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

from tests.support.project import MASTER, MODELS, write_env  # noqa: E402
from tests.support.stack import LITELLM_VENV  # noqa: E402
from tests.support.standin import State, serve_in_thread  # noqa: E402


def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall time and stdout of one command, which must succeed."""
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return elapsed, done.stdout


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    return run(args, cwd, env)[0]


def timed_json(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict[str, object]]:
    elapsed, out = run(args, cwd, env)
    return elapsed, json.loads(out)


def fill(state: State, count: int) -> None:
    """Put ``count`` keys straight into the stand-in (generating them over HTTP would take long)."""
    with state.lock:
        state.reset()
        for i in range(count):
            token = hashlib.sha256(f"sk-bench-{i}".encode()).hexdigest()
            state.keys[token] = {"token": token, "key_alias": f"bench-{i}", "team_id": "bench",
                                 "models": [], "metadata": {}, "max_budget": None, "spend": 0.0,
                                 "expires": None, "blocked": False}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    server = serve_in_thread(MASTER, MODELS)
    state = server.state
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env_file = write_env(folder / ".env")
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "LITELLM_"))}
        environ.update({"INVOKE_GATEWAY_ENV_FILE": str(env_file), "LITELLM_PROXY_URL": server.url})
        invoke = [sys.executable, "-m", "invoke"]

        bare = folder / "bare"
        bare.mkdir()
        (bare / "tasks.py").write_text("from invoke import task\n\n@task\ndef hello(c):\n    pass\n")
        base = [timed([*invoke, "--list"], bare, environ) for _ in range(runs)]
        ours = [timed([*invoke, "-r", str(REPO), "--list"], folder, environ) for _ in range(runs)]
        rows.append(("invoke --list (one-task tasks.py)", statistics.median(base), "-"))
        rows.append(("invoke --list (this project)", statistics.median(ours), "-"))

        for task in ("keys.create", "keys.rotate", "keys.list"):
            times, counts = [], []
            for _ in range(runs):
                if task == "keys.create":  # start from an empty .env key each time
                    state.reset()
                    write_env(env_file)
                before = len(state.log)
                times.append(timed([*invoke, "-r", str(REPO), task], folder, environ))
                counts.append(len(state.log) - before)
            rows.append((task, statistics.median(times), str(statistics.median(counts))))

        # keys.list as LiteLLM grows, against LiteLLM's own CLI listing every page
        lite = LITELLM_VENV / "bin" / "lite"
        for count in (10, 1_000, 10_000):
            fill(state, count)
            before = len(state.log)
            listed = timed_json([*invoke, "-r", str(REPO), "keys.list", "--json"], folder, environ)
            ours, answer = listed
            listed_keys = [k for k in answer["keys"] if k["status"] != "missing"]  # type: ignore[index]
            assert len(listed_keys) == count, "every key is listed"
            requests = len(state.log) - before
            rows.append((f"keys.list, {count:,} keys", ours, str(requests)))
            if lite.exists():
                lite_env = {**environ, "LITELLM_PROXY_URL": server.url, "LITELLM_PROXY_API_KEY": MASTER}
                started = time.perf_counter()
                for page in range(1, max(1, -(-count // 100)) + 1):
                    timed([str(lite), "keys", "list", "--page", str(page), "--size", "100",
                           "--return-full-object", "--format", "json"], folder, lite_env)
                theirs = time.perf_counter() - started
                rows.append(("  LiteLLM CLI (lite), every page", theirs,
                             f"{-(-count // 100)} ({theirs / ours:.1f}x)"))
    server.shutdown()

    print(f"median of {runs} runs, LiteLLM stand-in on 127.0.0.1, Python {sys.version.split()[0]}")
    print(f"{'what':<36} {'wall time':>10} {'HTTP requests':>16}")
    for what, seconds, requests in rows:
        print(f"{what:<36} {seconds * 1000:>8.0f}ms {requests:>16}")


if __name__ == "__main__":
    main()
