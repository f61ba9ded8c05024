"""A keys task that changes no key never touches Docker: time a no-op ``keys.create`` and a
``keys.list`` with ``DOCKER_HOST`` on a socket that accepts and never answers (target < 2 s),
and ``keys.list`` beside a bare ``invoke --list`` of a one-task tasks.py (target within 1.5x).
A third command shows the floor of that ratio: a one-task tasks.py whose task makes one GET to the
same stand-in with httpx (the project's HTTP client) - what any Invoke task pays that asks LiteLLM
one thing, before a line of this project runs.

Run: ``python bench/noop_bench.py`` (the LiteLLM stand-in on 127.0.0.1; prints the figures).

The tasks run from a venv of their own with the runtime dependencies only (``pip install .``),
as a user has them: the test tools change the figure - import-linter brings click and rich,
and with those installed ``import httpx`` also imports httpx's command line (rich's console,
about 50 ms of every keys task). ``--same-venv`` times them in this Python instead.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.project import MASTER, MODELS, write_env  # noqa: E402
from tests.support.standin import serve_in_thread  # noqa: E402

#: The floor: an Invoke task that asks LiteLLM's readiness once with httpx, and nothing else -
#: with the same plain-http TLS context as tasks/clients/http.py (no CA bundle loaded).
ONE_GET = """import os
import ssl

from invoke import task


@task
def get(c):
    import httpx

    verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with httpx.Client(trust_env=False, verify=verify) as client:
        client.get(os.environ["LITELLM_PROXY_URL"] + "/health/readiness").raise_for_status()
"""


def hanging_socket(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])  # accepted, never answered
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server


def once(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    took = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    return took


def timed(args: list[str], cwd: Path, env: dict[str, str], runs: int = 15) -> list[float]:
    return [once(args, cwd, env) for _ in range(runs)]


def side_by_side(commands: list[tuple[list[str], Path]], env: dict[str, str],
                 runs: int = 31) -> list[list[float]]:
    """Alternate the commands, so a change in the machine's load weighs on all alike."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, took in zip(commands, times, strict=True):
            took.append(once(*command, env))
    return times


def show(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"{label:58s} min {min(times):.2f}s  median {median:.2f}s  max {max(times):.2f}s")
    return median


def runtime_python(folder: Path) -> str:
    """A new venv in ``folder`` with the project and its runtime dependencies alone."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(REPO)], check=True)
    return str(python)


def main() -> None:
    server = serve_in_thread(MASTER, MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        python = sys.executable if "--same-venv" in sys.argv else runtime_python(folder)
        print(f"timing under {python}")
        sock = str(folder / "docker.sock")
        hanging = hanging_socket(sock)
        env_file = write_env(folder / ".env", LITELLM_PORT=server.url.rsplit(":", 1)[1])
        # As on a user's machine: bytecode cached after the first run (the first run is untimed).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INVOKE_", "LITELLM_")) and k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"INVOKE_GATEWAY_ENV_FILE": str(env_file), "LITELLM_PROXY_URL": server.url,
                    "DOCKER_HOST": f"unix://{sock}"})
        invoke = [python, "-m", "invoke", "-r", str(REPO)]
        subprocess.run([*invoke, "keys.create"], cwd=folder, env=env, check=True,
                       capture_output=True, stdin=subprocess.DEVNULL)
        show("no-op keys.create, hanging Docker socket", timed([*invoke, "keys.create"], folder, env))
        bare = folder / "bare"
        bare.mkdir()
        (bare / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n")
        bare_list = [python, "-m", "invoke", "--list"]
        one_get = folder / "one-get"
        one_get.mkdir()
        (one_get / "tasks.py").write_text(ONE_GET)
        one_get_task = [python, "-m", "invoke", "get"]
        for command, cwd in ((bare_list, bare), (one_get_task, one_get)):
            subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True,
                           stdin=subprocess.DEVNULL)
        listed, bare_times, get_times = side_by_side(
            [([*invoke, "keys.list"], folder), (bare_list, bare), (one_get_task, one_get)], env)
        keys_list = show("keys.list, hanging Docker socket", listed)
        base = show("bare `invoke --list` (one-task tasks.py), alternated", bare_times)
        floor = show("one-task tasks.py: one httpx GET to the stand-in", get_times)
        print(f"keys.list / bare invoke --list: {keys_list / base:.2f}x")
        print(f"one httpx GET task / bare invoke --list: {floor / base:.2f}x (the floor)")
        print(f"keys.list beyond that floor: {(keys_list - floor) * 1000:.0f} ms")
        hanging.close()
    server.shutdown()


if __name__ == "__main__":
    main()
